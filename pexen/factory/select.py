"""Selecting tasks, and the post-processor that completes a selection.

`select_tasks` picks tasks of a catalogue (what a factory found) by glob
patterns on their keys, then, like a package manager resolving a virtual
package, adds a provider for every requirement no selected task provides:
where several tasks provide it, one is chosen (the first the user prefers,
else the one with the lowest ``priority`` value, then the first key), never
all of them. `resolve_deps` is that second step alone, over any selection.

Neither runs a task or touches the engine; both return a `Selection` saying
what will run, what was pulled in and why, and (with ``deps=False``) which
tasks cannot run and why. See doc/suites.md, "Selecting tasks".
"""

from __future__ import annotations

import fnmatch
from collections import deque

from ..sched._keys import auto_name, explicit_key
from ..sched.meta import get_priority, get_provides, get_requires
from ..util import Factory, PexenError, Record

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Iterable, List, Sequence, Tuple


class SelectionError(PexenError, ValueError):
    """The selection cannot be made; the one-line message says which input is wrong."""


class Pulled(Record, frozen=True):
    """A task added to the selection because a selected (or pulled) task needs it.

    `requirement` is what it provides for `wanted_by`; `candidates` are every
    task that could have provided it (the chosen one first); `rule` says why
    this one: ``only provider``, ``preferred`` (``--prefer`` or a ``prefer``
    list), ``lowest priority value`` or ``first key``.
    """

    key: str
    requirement: Any
    wanted_by: str
    candidates: Tuple[str, ...]
    rule: str

    def why(self) -> str:
        """'provides REQ for WANTED_BY (RULE[; over OTHERS])'."""
        text = f"provides {self.requirement!r} for {self.wanted_by} ({self.rule}"
        others = [c for c in self.candidates if c != self.key]
        if others:
            text += "; over " + ", ".join(others)
        return text + ")"

    def describe(self) -> str:
        """One line: 'KEY provides REQ for WANTED_BY (RULE[; over OTHERS])'."""
        return f"{self.key} {self.why()}"

    def to_json(self) -> Dict[str, Any]:
        return {"key": self.key, "requirement": _plain(self.requirement),
                "wanted_by": self.wanted_by, "candidates": list(self.candidates),
                "rule": self.rule}


class Selection(Record):
    """What `select_tasks`/`resolve_deps` decided.

    `tasks`: (key, task) pairs to run, in catalogue order (the selected ones
    and those pulled in); `selected`: the keys the patterns picked; `pulled`:
    one `Pulled` per added task; `unmet`: key -> reason, the selected tasks
    that cannot run because a requirement has no provider in the selection
    (only with ``deps=False``; they are not in `tasks`); `missing`: keys
    asked for by `select_tasks(keys=...)` that the catalogue does not have.
    """

    tasks: List[Tuple[str, Any]] = Factory(list)
    selected: List[str] = Factory(list)
    pulled: List[Pulled] = Factory(list)
    unmet: Dict[str, str] = Factory(dict)
    missing: List[str] = Factory(list)

    @property
    def keys(self) -> List[str]:
        return [key for key, _ in self.tasks]


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


def task_key(task: Any) -> str:
    """The key `pexen.sched.Sched` gives a task: its callpath joined with '/', else its name."""
    return explicit_key(task) or auto_name(task)


def _keyed(catalogue: Iterable[Any]) -> List[Tuple[str, Any]]:
    pairs: List[Tuple[str, Any]] = []
    seen: Dict[str, Any] = {}
    for item in catalogue:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            key, task = item
        else:
            key, task = task_key(item), item
        if not callable(task):
            raise SelectionError(f"catalogue entry {key!r} is not callable: {task!r}")
        if key in seen:
            if seen[key] is task:
                continue
            raise SelectionError(f"two tasks in the catalogue have the key {key!r}")
        seen[key] = task
        pairs.append((key, task))
    return pairs


def check_pattern(pattern: Any, flag: str = "pattern") -> str:
    """`pattern` if it is a usable glob, else a SelectionError naming `flag`."""
    if not isinstance(pattern, str):
        raise SelectionError(f"{flag} {pattern!r}: not a string")
    if not pattern.strip():
        raise SelectionError(f"{flag}: empty pattern")
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            close = pattern.find("]", j)
            if close < 0:
                raise SelectionError(f"{flag} {pattern!r}: '[' at position {i + 1} is "
                                     "never closed (write [[] for a literal '[')")
            i = close
        i += 1
    return pattern


def matches(key: str, pattern: str) -> bool:
    """Does the glob `pattern` match task key `key`? ``*`` also matches '/', and a
    pattern matches the keys under it too (``net`` matches ``net/ping``)."""
    return fnmatch.fnmatchcase(key, pattern) or fnmatch.fnmatchcase(key, pattern.rstrip("/")
                                                                      + "/*")


def _pick(candidates: List[Tuple[str, Any]], prefer: Sequence[str]) -> Tuple[str, Any, str]:
    """The provider to add among `candidates` (key, task), and the rule that chose it."""
    if len(candidates) == 1:
        return candidates[0] + ("only provider",)
    by_key = dict(candidates)
    for key in prefer:
        if key in by_key:
            return key, by_key[key], "preferred"
    ranked = sorted(candidates, key=lambda kt: (get_priority(kt[1]), kt[0]))
    best = ranked[0]
    tie = get_priority(ranked[1][1]) == get_priority(best[1])
    return best + ("first key" if tie else "lowest priority value",)


def resolve_deps(selected: Iterable[Any], catalogue: Iterable[Any],
                 prefer: Sequence[str] = (), excluded: Iterable[str] = (),
                 deps: bool = True) -> Selection:
    """Complete `selected` (tasks, or (key, task) pairs) with providers from
    `catalogue` (the same kinds; it may include the selected ones).

    For each requirement of a selected task that no selected task provides,
    one provider from the catalogue is added (not one whose key is in
    `excluded`), then the requirements of what was added, and so on. Where
    several could provide it: the first key of `prefer` among them, else the
    lowest ``priority`` value, then the first key in sort order. A requirement
    no allowed task provides is a SelectionError naming the task and the
    requirement; with ``deps=False`` nothing is added, and the tasks whose
    requirements are not met (also through another such task) are left out
    and listed in `unmet` with the reason.
    """
    chosen = _keyed(selected)
    pool = _keyed(catalogue)
    known = {key for key, _ in pool} | {key for key, _ in chosen}
    for key in prefer:
        if key not in known:
            raise SelectionError(f"--prefer {key!r}: no task has this key")
    order = {key: i for i, (key, _) in enumerate(pool)}
    for key, _ in chosen:
        order.setdefault(key, len(order))
    excluded = set(excluded)
    in_sel: Dict[str, Any] = dict(chosen)
    result = Selection(selected=[key for key, _ in chosen])
    if not deps:
        result.unmet = _unmet(chosen)
        result.tasks = [(k, t) for k, t in chosen if k not in result.unmet]
        return result
    providers: Dict[Any, List[Tuple[str, Any]]] = {}
    for key, task in pool:
        if key in excluded or key in in_sel:
            continue
        for what in get_provides(task):
            providers.setdefault(what, []).append((key, task))
    given: Dict[Any, str] = {}
    for key, task in chosen:
        for what in get_provides(task):
            given.setdefault(what, key)
    todo = deque(chosen)
    while todo:
        key, task = todo.popleft()
        for what in sorted(get_requires(task), key=repr):
            if what in given:
                continue
            candidates = [kt for kt in providers.get(what, ()) if kt[0] not in in_sel]
            if not candidates:
                raise SelectionError(_no_provider(key, what, catalogue=pool,
                                                  excluded=excluded))
            pkey, ptask, rule = _pick(candidates, prefer)
            others = tuple(k for k, _ in candidates if k != pkey)
            result.pulled.append(Pulled(pkey, what, key, (pkey,) + others, rule))
            in_sel[pkey] = ptask
            for more in get_provides(ptask):
                given.setdefault(more, pkey)
            todo.append((pkey, ptask))
    result.tasks = sorted(in_sel.items(), key=lambda kt: order[kt[0]])
    return result


def _no_provider(key: str, what: Any, catalogue: List[Tuple[str, Any]],
                 excluded: set) -> str:
    blocked = sorted(k for k, t in catalogue if k in excluded and what in get_provides(t))
    if blocked:
        return (f"task {key} requires {what!r}, and every task providing it is excluded "
                f"({', '.join(blocked)}); select one, or use --no-deps to skip {key}")
    return f"task {key} requires {what!r}, which no task provides"


def _unmet(chosen: List[Tuple[str, Any]]) -> Dict[str, str]:
    """Tasks of `chosen` whose requirements no other task of it can give
    (cascading): key -> reason."""
    unmet: Dict[str, str] = {}
    everything: Dict[Any, str] = {}
    for key, task in chosen:
        for what in get_provides(task):
            everything.setdefault(what, key)
    while True:
        can_give: Dict[Any, str] = {}
        for key, task in chosen:
            if key not in unmet:
                for what in get_provides(task):
                    can_give.setdefault(what, key)
        more = False
        for key, task in chosen:
            if key in unmet:
                continue
            missing = sorted((w for w in get_requires(task) if w not in can_give), key=repr)
            if missing:
                first = missing[0]
                if first in everything:
                    why = f"its provider {everything[first]} cannot run"
                else:
                    why = "which no selected task provides"
                unmet[key] = f"requires {first!r}, {why} (--no-deps)"
                more = True
        if not more:
            return unmet


def select_tasks(catalogue: Iterable[Any], select: Sequence[str] = (),
                 exclude: Sequence[str] = (), prefer: Sequence[str] = (),
                 deps: bool = True, keys: Sequence[str] = ()) -> Selection:
    """The tasks of `catalogue` (tasks or (key, task) pairs) to run.

    A task is selected when its key matches one of the `select` globs (all
    tasks when there are none) and none of the `exclude` globs (see
    `matches`), or is one of `keys` (exact keys; those the catalogue lacks
    are listed in `missing`); a `select` pattern that matches no task is a
    SelectionError (a typo would otherwise run nothing, or everything). Then
    `resolve_deps` adds what the selected tasks require.
    """
    pool = _keyed(catalogue)
    select = [check_pattern(p, "--select") for p in select]
    exclude = [check_pattern(p, "--exclude") for p in exclude]
    for pattern in select:
        if not any(matches(key, pattern) for key, _ in pool):
            raise SelectionError(f"--select {pattern!r} matches no task")
    excluded = {key for key, _ in pool if any(matches(key, p) for p in exclude)}
    wanted = set(keys)
    everything = not select and not wanted
    picked = [(key, task) for key, task in pool
              if key not in excluded and (everything or key in wanted
                                          or any(matches(key, p) for p in select))]
    if not picked:
        raise SelectionError("the selection is empty: "
                             + ("every selected task is excluded" if not everything else
                                "--exclude excludes every task"))
    result = resolve_deps(picked, pool, prefer=prefer, excluded=excluded, deps=deps)
    have = {key for key, _ in pool}
    result.missing = [key for key in keys if key not in have]
    return result


__all__ = ["Pulled", "Selection", "SelectionError", "check_pattern", "matches",
           "resolve_deps", "select_tasks", "task_key"]

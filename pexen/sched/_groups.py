"""Exclusivity groups: sets of tasks that run one group at a time, each group
with a pool of its own (kind and size).

`TaskGroup` is the public object a user hands to `Sched` beside plain tasks.
`GroupTable` is the Sched's record of its groups: their order, which task is
in which, and the earliest group providing each `provides` (so that a task
requiring what only a later group provides is refused when it is added).
A Sched without groups has no table at all and pays nothing for them.
"""

from __future__ import annotations

import heapq

from ._keys import describe
from ._plan import bucket_add, bucket_items
from .common import SchedulerError
from .meta import SCHED_ATTR_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

    PoolKind = Union[str, Callable[..., Any]]

# The methods `Sched` calls on a pool (see pool.py): what a pool factory must
# return.
_POOL_METHODS = ("register", "start", "submit", "iter_results", "shutdown", "full")


def _check_count(group: str, name: str, value: Any, least: int) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"group {group!r}: {name} must be an int >= {least} or None, "
                        f"not {value!r}")
    if value < least:
        raise ValueError(f"group {group!r}: {name} must be >= {least}, not {value!r}")
    return value


class TaskGroup:
    """Tasks that run together, alone: while a group runs, no task of another
    group does. Groups run in the order they were added to the Sched; each
    gets a new pool of its own kind and size, torn down when the group ends.

    `pool` is "thread", "process", or a pool class (or any factory returning
    a pool); it is called with `workers=` and `spare=` when those are given
    (None: the pool's own default, one worker and one spare).
    """

    __slots__ = ("_name", "_tasks", "_pool", "_workers", "_spare")

    def __init__(self, name: str, tasks: Iterable[Callable[..., Any]] = (),
                 pool: PoolKind = "thread", workers: Optional[int] = None,
                 spare: Optional[int] = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a group's name must be a str, not {name!r}")
        if not name:
            raise ValueError("a group's name must not be empty")
        if isinstance(pool, str):
            if pool not in ("thread", "process"):
                raise ValueError(f"group {name!r}: pool must be 'thread', 'process', or "
                                 f"a pool class or factory, not {pool!r}")
        elif not callable(pool):
            hint = (" (an instance: give its class, or a function making one, since "
                    "each run of the group needs a new pool)"
                    if hasattr(pool, "submit") else "")
            raise TypeError(f"group {name!r}: pool must be 'thread', 'process', or a "
                            f"pool class or factory, not {pool!r}{hint}")
        self._name = name
        self._pool: Optional[PoolKind] = pool
        self._workers = _check_count(name, "workers", workers, 1)
        self._spare = _check_count(name, "spare", spare, 0)
        if isinstance(tasks, (str, bytes)) or not hasattr(tasks, "__iter__"):
            raise TypeError(f"group {name!r}: tasks must be an iterable of callables, "
                            f"not {tasks!r}")
        items = tuple(tasks)
        for task in items:
            if not callable(task):
                kind = ("a TaskGroup: groups do not nest" if isinstance(task, TaskGroup)
                        else "not callable")
                raise TypeError(f"group {name!r}: task {task!r} is {kind}")
        self._tasks = items

    @classmethod
    def _implicit(cls) -> TaskGroup:
        """The group of a Sched's ungrouped tasks: named '', run with the pool
        given to `Sched.run()`."""
        group = cls.__new__(cls)
        group._name = ""
        group._tasks = ()
        group._pool = None
        group._workers = group._spare = None
        return group

    @property
    def name(self) -> str:
        """Unique in a Sched; '' for the ungrouped tasks."""
        return self._name

    @property
    def tasks(self) -> Tuple[Callable[..., Any], ...]:
        """The tasks given to this object (a Sched's members of the group may
        include tasks added later with `add_tasks(..., group=)`)."""
        return self._tasks

    @property
    def pool(self) -> Optional[PoolKind]:
        """'thread', 'process', a pool factory, or None (the ungrouped tasks:
        the pool given to `Sched.run()`)."""
        return self._pool

    @property
    def workers(self) -> Optional[int]:
        return self._workers

    @property
    def spare(self) -> Optional[int]:
        return self._spare

    def make_pool(self) -> Any:
        """A new pool for one run of the group."""
        from . import pool as _pool

        kind = self._pool
        if kind is None:
            raise ValueError("the ungrouped tasks run with the pool given to run()")
        factory: Callable[..., Any]
        if kind == "thread":
            factory = _pool.ThreadWorkerPool
        elif kind == "process":
            factory = _pool.ProcessWorkerPool
        else:
            factory = kind  # type: ignore[assignment]
        kwargs = {}
        if self._workers is not None:
            kwargs["workers"] = self._workers
        if self._spare is not None:
            kwargs["spare"] = self._spare
        made = factory(**kwargs)
        missing = [m for m in _POOL_METHODS if not hasattr(made, m)]
        if missing:
            raise TypeError(f"group {self._name!r}: its pool factory returned {made!r}, "
                            f"which is not a pool (no {', '.join(missing)})")
        return made

    def label(self) -> str:
        """How messages name the group."""
        return f"group {self._name!r}" if self._name else "the ungrouped tasks"

    def __repr__(self) -> str:
        if not self._name:
            return "TaskGroup(<ungrouped tasks>)"
        kind = self._pool if isinstance(self._pool, str) else describe(self._pool)
        extra = "".join(f", {n}={v}" for n, v in (("workers", self._workers),
                                                  ("spare", self._spare))
                        if v is not None)
        return (f"TaskGroup({self._name!r}, {len(self._tasks)} tasks, pool={kind!r}"
                f"{extra})")


def _field(task: Any, name: str) -> Any:
    meta = getattr(task, SCHED_ATTR_NAME, None)
    return meta.get(name) if meta is not None else ()


class GroupTable:
    """A Sched's groups: their run order (a position per group), the group of
    each task, and the earliest group providing each provide."""

    def __init__(self) -> None:
        self.order: List[TaskGroup] = []
        self.position: Dict[str, int] = {}       # name -> position
        self.group_of: Dict[Any, int] = {}       # task -> position
        self.members: List[List[Any]] = []       # position -> its tasks, in order
        self.default: Optional[int] = None       # position of the ungrouped tasks
        # provide -> (position, key) of its earliest provider; -1 if assumed
        self.first: Dict[Any, Tuple[int, str]] = {}

    @classmethod
    def from_plain(cls, tasks: Dict[Any, str], assumed: Iterable[Iterable[Any]]) -> GroupTable:
        """The table of a Sched that had no groups: its tasks (if any) are the
        ungrouped tasks, at position 0."""
        table = cls()
        if tasks:
            table.append(TaskGroup._implicit())
            table.default = 0
            table.members[0] = list(tasks)
            table.group_of = dict.fromkeys(tasks, 0)
            table.note_provides(list(tasks), list(tasks.values()), [0] * len(tasks))
        for provided in assumed:
            table.assume(provided)
        return table

    def append(self, group: TaskGroup) -> int:
        pos = len(self.order)
        self.order.append(group)
        self.members.append([])
        if group.name:
            self.position[group.name] = pos
        else:
            self.default = pos
        return pos

    def assume(self, provided: Iterable[Any]) -> None:
        for p in provided:
            self.first[p] = (-1, "")

    def commit(self, tasks: List[Any], keys: List[str], positions: List[int],
               new_groups: List[TaskGroup]) -> None:
        for group in new_groups:
            self.append(group)
        members = self.members
        group_of = self.group_of
        for task, pos in zip(tasks, positions):
            members[pos].append(task)
            group_of[task] = pos
        self.note_provides(tasks, keys, positions)

    def note_provides(self, tasks: List[Any], keys: List[str], positions: List[int]) -> None:
        first = self.first
        for task, key, pos in zip(tasks, keys, positions):
            meta = getattr(task, SCHED_ATTR_NAME, None)
            if meta is None:
                continue
            for p in meta.get("provides"):
                cur = first.get(p)
                if cur is None or pos < cur[0]:
                    first[p] = (pos, key)

    def label(self, pos: int) -> str:
        return self.order[pos].label()


class GroupedBatch:
    """A batch of `add_tasks` being checked for a Sched with groups (or getting
    its first): the new tasks, their explicit keys and the position of the
    group each goes to, and the groups the batch adds.

    `admit(task, new_keys)` checks one new task for the Sched and returns its
    explicit key; `run_pos` is the position of the running group, None when no
    run is in progress.
    """

    def __init__(self, table: Optional[GroupTable], known: Dict[Any, str],
                 run_pos: Optional[int],
                 admit: Callable[[Any, Dict[str, Any]], Optional[str]]) -> None:
        self.known = known
        self.run_pos = run_pos
        self.admit = admit
        if table is not None:
            self.order: List[TaskGroup] = table.order
            self.default = table.default
            self.names: Dict[str, int] = table.position
            self.group_of: Optional[Dict[Any, int]] = table.group_of
        else:  # a Sched's first group: its tasks so far are the ungrouped ones
            self.order = [TaskGroup._implicit()] if known else []
            self.default = 0 if known else None
            self.names = {}
            self.group_of = None
        self.base = len(self.order)
        self.new_groups: List[TaskGroup] = []
        self.batch_names: Dict[str, int] = {}
        self.tasks: List[Any] = []
        self.explicit: List[Optional[str]] = []
        self.positions: List[int] = []
        self.new_keys: Dict[str, Any] = {}
        self.seen: Dict[int, int] = {}  # id(task) -> its position in this batch

    def label(self, pos: int) -> str:
        base = self.base
        return (self.order[pos] if pos < base else self.new_groups[pos - base]).label()

    def collect(self, new: Iterable[Any], group: Any = None) -> None:
        """Take the items of one `add_tasks` call; `group` as it was given."""
        kw_pos = None if group is None else self.named(group)
        plain_pos: Optional[int] = None
        known = self.known
        seen = self.seen
        for item in new:
            if isinstance(item, TaskGroup):
                if kw_pos is not None:
                    raise TypeError(f"add_tasks(group=...) takes plain tasks, not {item!r}")
                pos = self.position_of(item)
                # take() inlined for the common case (a new task: a group's
                # tasks are callables, checked when the group was made)
                tasks, explicit, positions = self.tasks, self.explicit, self.positions
                admit, new_keys = self.admit, self.new_keys
                for task in item.tasks:
                    if task in known or id(task) in seen:
                        self.take(task, pos, True)
                        continue
                    seen[id(task)] = pos
                    explicit.append(admit(task, new_keys))
                    tasks.append(task)
                    positions.append(pos)
            elif kw_pos is not None:
                self.take(item, kw_pos, True)
            elif item in known or id(item) in seen:
                continue  # already in the set (in whatever group)
            else:
                if plain_pos is None:
                    plain_pos = self.plain_position()
                self.take(item, plain_pos, False)

    def named(self, group: Any) -> int:
        """The position of the group `add_tasks(group=)` names."""
        if isinstance(group, TaskGroup):
            pos = self.names.get(group.name) if group.name else self.default
            if pos is None or self.order[pos] is not group:
                raise ValueError(f"{group!r} is not a group of this Sched; add it first")
        elif isinstance(group, str):
            pos = self.names.get(group) if group else self.default
            if pos is None:
                raise ValueError(f"no group named {group!r} in this Sched")
        else:
            raise TypeError(f"group must be a group name or a TaskGroup, not {group!r}")
        if self.run_pos is not None and pos < self.run_pos:
            raise SchedulerError(f"{self.order[pos].label()} has already run in this "
                                 "run; tasks added to it would never run")
        return pos

    def position_of(self, group: TaskGroup) -> int:
        """The position of a group given in the batch (appended if new)."""
        name = group.name
        if not name:
            raise ValueError("the group of the ungrouped tasks cannot be added; add "
                             "its tasks without a group")
        pos = self.names.get(name)
        if pos is not None:
            if self.order[pos] is not group:
                raise ValueError(f"a different group named {name!r} is already in this "
                                 "Sched (group names are unique)")
            return pos
        pos = self.batch_names.get(name)
        if pos is not None:
            if self.new_groups[pos - self.base] is not group:
                raise ValueError(f"two different groups are named {name!r} (group "
                                 "names are unique)")
            return pos
        return self.append(group)

    def append(self, group: TaskGroup) -> int:
        self.new_groups.append(group)
        pos = self.base + len(self.new_groups) - 1
        if group.name:
            self.batch_names[group.name] = pos
        else:
            self.default = pos
        return pos

    def plain_position(self) -> int:
        """Where new ungrouped tasks go: during a run, the running group;
        else the ungrouped tasks' group, placed here if it is the first."""
        if self.run_pos is not None:
            return self.run_pos
        if self.default is not None:
            return self.default
        return self.append(TaskGroup._implicit())

    def take(self, task: Any, pos: int, strict: bool) -> None:
        """Add a task to the batch in the group at `pos`; `strict`: it was put
        in that group by name, so being in any other is an error."""
        if task in self.known:
            had: Optional[int] = self.group_of[task] if self.group_of is not None else 0
        else:
            had = self.seen.get(id(task))
        if had is not None:
            if strict and had != pos:
                key = self.known.get(task) or describe(task)
                raise ValueError(f"task {key} is in two groups: {self.label(had)} and "
                                 f"{self.label(pos)} (a task belongs to one group)")
            return  # a set of tasks: adding one twice adds it once
        self.seen[id(task)] = pos
        self.explicit.append(self.admit(task, self.new_keys))
        self.tasks.append(task)
        self.positions.append(pos)


def order_check(tasks: List[Any], keys: List[str], positions: List[int],
                first: Callable[[Any], Optional[Tuple[int, str]]],
                label: Callable[[int], str],
                ) -> Optional[Tuple[str, Dict[Any, List[str]]]]:
    """Simulate a batch whose tasks sit in groups at `positions`, on top of a
    set whose every task can run (the earliest group providing each provide
    given by `first`): a require is met only by a provider that can run, in
    the same group or an earlier one.

    Returns None if every require can be met, else the DepcheckError's
    message and its `.remain` (each unmet require -> the keys needing it).

    The runnable tasks are taken in group order (a heap by position), so the
    first time a provide is met it is by its earliest possible group: a task
    of an earlier group still waiting for it can never get it.
    """
    need = [0] * len(tasks)
    index: Dict[Any, Any] = {}   # require -> the batch indexes waiting for it
    go: List[Tuple[int, int]] = []
    for i, task in enumerate(tasks):
        meta = getattr(task, SCHED_ATTR_NAME, None)
        if meta is None:
            continue  # requires nothing, provides nothing: nothing to simulate
        n = 0
        pos = positions[i]
        for r in meta.get("requires"):
            known = first(r)
            if known is not None and known[0] <= pos:
                continue
            n += 1
            bucket_add(index, r, i)
        if n:
            need[i] = n
        elif meta.get("provides"):
            go.append((pos, i))
    heapq.heapify(go)
    met: set = set()
    late: List[Tuple[Any, int, int, str]] = []  # (require, needing index, provider pos, key)
    while go:
        pos, i = heapq.heappop(go)
        for p in _field(tasks[i], "provides"):
            if p in met:
                continue
            met.add(p)
            for j in bucket_items(index.pop(p, None)):
                if positions[j] < pos:
                    late.append((p, j, pos, keys[i]))
                    continue
                n = need[j] - 1
                need[j] = n
                if n == 0:
                    heapq.heappush(go, (positions[j], j))
    unmet: Dict[Any, List[str]] = {}
    for r, entries in index.items():
        known = first(r)
        for j in bucket_items(entries):
            if known is not None:  # provided, by a later group only
                late.append((r, j, known[0], known[1]))
            else:
                unmet.setdefault(r, []).append(keys[j])
    messages = [f"task {keys[j]} ({label(positions[j])}) requires {r!r}, which only a "
                f"later group provides: task {key} ({label(pos)})"
                for r, j, pos, key in late]
    if not unmet and not late:
        return None
    remain: Dict[Any, List[str]] = {}
    for r, j, _, _ in late:
        remain.setdefault(r, []).append(keys[j])
    for r, needing in unmet.items():
        remain.setdefault(r, []).extend(needing)
    parts = []
    if unmet:  # worded as without groups: users match on it
        who = "; ".join(f"{r!r} by {', '.join(ks)}" for r, ks in unmet.items())
        parts.append(f"Unsatisfied requires remain: {list(unmet)} (required {who})")
    if messages:
        more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
        parts.append("; ".join(messages[:3]) + more +
                     "; groups run in the order they were added")
    return "; ".join(parts), remain

"""The selection of a run: which tasks of the suite run (`start --select`,
`--exclude`, `--prefer`, `--no-deps`, `--rerun-failed`), over
`pexen.factory.select_tasks`; and the tasks of a finished run to run again."""

from __future__ import annotations

from ..factory.select import Selection, SelectionError, select_tasks
from ..sched.meta import SCHED_ATTR_NAME
from . import execmeta
from .suite import SuiteError, SuiteSpec

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Sequence, Set, Tuple

#: A task that ended in one of these did not pass: --rerun-failed runs it again.
NOT_PASSED = ("fail", "timeout", "error", "pending", "queued", "running", "rebooting",
              "interrupted")


def choose(spec: SuiteSpec, tasks: Sequence[Tuple[str, Any]]) -> Selection:
    """What of `tasks` (the whole suite) runs under `spec`'s selection. The
    providers preferred are `spec.prefer`, then the suite's `prefer` list
    (its top pexen.toml). Any problem is a SuiteError with a one-line message."""
    prefer = list(spec.prefer)
    if spec.kind == "dir":
        try:
            prefer += [k for k in execmeta.suite_prefer(spec.target) if k not in prefer]
        except execmeta.MetaSyntaxError as exc:
            raise SuiteError(str(exc)) from None
        known = {key for key, _ in tasks}
        for key in prefer[len(spec.prefer):]:
            if key not in known:
                raise SuiteError(f"{execmeta.DIR_FILE} of {spec.target}: prefer names "
                                 f"{key!r}, which is not a task of the suite")
    try:
        return select_tasks(tasks, select=spec.select, exclude=spec.exclude, prefer=prefer,
                            deps=spec.deps, keys=spec.keys)
    except SelectionError as exc:
        raise SuiteError(str(exc)) from None


def report_lines(selection: Selection) -> List[str]:
    """What to print (and journal) about a selection: the tasks pulled in and
    why, those that cannot run, keys no longer in the suite."""
    lines = [f"pulled in {p.describe()}" for p in selection.pulled]
    lines += [f"not run: {key}: {why}" for key, why in selection.unmet.items()]
    if selection.missing:
        lines.append(f"not in the suite any more: {', '.join(selection.missing)}")
    return lines


def to_json(selection: Selection) -> Dict[str, Any]:
    """The selection as the journal's "selection" run event keeps it."""
    return {"selected": len(selection.selected),
            "pulled": [p.to_json() for p in selection.pulled],
            "unmet": dict(selection.unmet), "missing": list(selection.missing)}


def _meta(task: Any, name: str) -> Set[Any]:
    meta = getattr(task, SCHED_ATTR_NAME, None)
    return set(meta.get(name)) if meta is not None else set()


def rerun_keys(states: Dict[str, str], tasks: Sequence[Tuple[str, Any]]) -> List[str]:
    """The keys of a run to run again: those that did not pass (see
    NOT_PASSED), and the skipped ones that need what one of those provides
    (skipped because it failed), in suite order."""
    by_key = dict(tasks)
    again = {key for key, state in states.items() if state in NOT_PASSED}
    while True:
        lost: Set[Any] = set()
        for key in again:
            if key in by_key:
                lost |= _meta(by_key[key], "provides")
        more = {key for key, state in states.items()
                if state == "skip" and key not in again and key in by_key
                and _meta(by_key[key], "requires") & lost}
        if not more:
            break
        again |= more
    order = [key for key, _ in tasks if key in again]
    return order + sorted(again - set(order))


def rerun_spec(spec: SuiteSpec, states: Dict[str, str],
               tasks: Sequence[Tuple[str, Any]], run_id: int,
               prefer: Sequence[str] = ()) -> SuiteSpec:
    """The spec of a new run of what did not pass in run `run_id` (`states`:
    key -> state); the old run's tasks are preferred as providers, so the
    same ones set things up again. SuiteError when everything passed."""
    keys = rerun_keys(states, tasks)
    if not keys:
        raise SuiteError(f"run {run_id}: every task passed or was skipped; "
                         "nothing to run again")
    in_suite = {key for key, _ in tasks}
    ran = [key for key in states if key in in_suite]
    return spec.replace(select=(), exclude=(), keys=tuple(keys),
                   prefer=tuple(dict.fromkeys([*prefer, *spec.prefer, *ran])))

__all__ = ["NOT_PASSED", "choose", "report_lines", "rerun_keys", "rerun_spec", "to_json"]

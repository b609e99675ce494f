"""Several results per task: `pexen.report(name, outcome, message)` from
Python, `pexen-harness report NAME OUTCOME [-m MESSAGE]` from an executable.

A report is written to the journal named by the task's context
(PEXEN_JOURNAL) by the reporting process itself, committed before the call
returns: the controller is not asked (it may be busy, hung, or about to be
rebooted), so reporting cannot hang the test. A marker file next to the
task's output (``ATTEMPT.reported``) tells the harness, when the task ends,
that the attempt reported something; the task's final outcome is then the
worst of its own and its reported results.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional, Tuple

from .context import TaskContext, context
from .outcome import OUTCOMES

# best first (pass < warn < skip < fail < timeout < error); the journal's
# SEVERITY, without importing the journal (and SQLAlchemy) with `pexen`
_RANK = {outcome: n for n, outcome in enumerate(OUTCOMES)}

_journals: Dict[Tuple[int, str], Any] = {}
_lock = threading.Lock()


def _marker(ctx: TaskContext) -> str:
    return os.path.join(os.path.dirname(ctx.data_path), f"{ctx.attempt}.reported")


def _journal(path: str) -> Any:
    """One open journal per process and path (a report may come often)."""
    key = (os.getpid(), path)
    with _lock:
        j = _journals.get(key)
        if j is None:
            from ..journal import open_journal

            j = _journals[key] = open_journal(path, create=False)
        return j


def use_journal(path: str, j: Any) -> None:
    """Reports of tasks run in this process go through `j` (the controller's
    own journal, under the thread pool: one set of connections per file in a
    process)."""
    with _lock:
        if j is None:
            _journals.pop((os.getpid(), path), None)
        else:
            _journals[(os.getpid(), path)] = j


def check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")


def report(name: str, outcome: str, message: Optional[str] = None) -> None:
    """Record a result of the running task besides its own: `name` (what was
    checked), `outcome` (pass, warn, skip, fail, timeout, error) and an
    optional message. The task's final outcome is the worst of its own and of
    what it reported; `warn` still lets its dependents run.

    Raises ValueError for an unknown outcome or an empty name, and
    NoContextError outside a task run by pexen-harness.
    """
    check_outcome(outcome)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a result needs a name, not {name!r}")
    ctx = context()
    from .controller import storable

    _journal(ctx.journal).add_result(ctx.run_id, ctx.task, ctx.attempt, storable(name) or "",
                                     outcome, storable(message))
    marker = _marker(ctx)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "a"):
        pass


def reported_worst(ctx: TaskContext) -> Optional[Tuple[str, str]]:
    """(outcome, message) of the worst result the attempt reported, or None
    if it reported none."""
    if not os.path.exists(_marker(ctx)):
        return None
    found = _journal(ctx.journal).results(ctx.run_id, ctx.task, ctx.attempt)
    if not found:
        return None
    worst = max(found, key=lambda r: _RANK[r.outcome])
    text = f"reported {worst.name}: {worst.outcome}"
    if worst.message:
        text += f": {worst.message}"
    return worst.outcome, text


def outranks(reported: str, own: str) -> bool:
    """Whether a reported outcome is worse than the task's own."""
    return _RANK[reported] > _RANK[own]

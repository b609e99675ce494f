"""Several results per task: `pexen.report(name, outcome, message)` from
Python, `pexen-harness report NAME OUTCOME [-m MESSAGE]` from an executable.

A report is written to the journal named by the task's context
(PEXEN_JOURNAL) by the reporting process itself, committed before the call
returns: the controller is not asked (it may be busy, hung, or about to be
rebooted), so reporting cannot hang the test. A marker file next to the
task's output (``ATTEMPT.reported``) tells the harness, when the task ends,
that the attempt reported something; the task's final outcome is then the
worst of its own and its reported results.

So that the harness need not look for that file after every task (a system
call per task, which under the thread pool also hands the interpreter lock
to another thread), every report also bumps a counter of the run
(``RUN.reports`` beside the tasks' directories, 8 bytes, under an exclusive
``flock``), which the harness reads through a shared memory map: a task
whose run counted no report while it ran reported nothing.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading

from ._words import OUTCOMES
from .context import TaskContext, context

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Optional, Tuple

# best first (pass < warn < skip < fail < timeout < error); the journal's
# SEVERITY, without importing the journal (and SQLAlchemy) with `pexen`
_RANK = {outcome: n for n, outcome in enumerate(OUTCOMES)}

_journals: Dict[Tuple[int, str], Any] = {}
_lock = threading.Lock()


def _marker(ctx: TaskContext) -> str:
    return os.path.join(os.path.dirname(ctx.data_path), f"{ctx.attempt}.reported")


#: The report counter of a run: 8 bytes (little endian) in RUN.reports.
COUNTER_SIZE = 8
_maps: Dict[str, Any] = {}


def counter_path(ctx: TaskContext) -> Optional[str]:
    """The run's report counter (``<data root>/RUN.reports``), or None if
    the task's data path is not laid out as the harness makes it."""
    suffix = f"/{ctx.task}/data"
    if not ctx.data_path.endswith(suffix):
        return None
    return ctx.data_path[:-len(suffix)] + ".reports"


def make_counter(path: str) -> None:
    """Create a run's report counter (0) if it is not there (the controller
    does, before any task runs)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, bytes(COUNTER_SIZE))
    finally:
        os.close(fd)


def report_count(ctx: TaskContext) -> Optional[int]:
    """How many reports the task's run has counted (a read of shared memory,
    no system call once the map is made), or None if there is no counter."""
    return count_at(counter_path(ctx))


def count_at(path: Optional[str]) -> Optional[int]:
    """`report_count` of the counter at `path` (None: no counter)."""
    if path is None:
        return None
    counter = _maps.get(path)
    if counter is None:
        try:
            with open(path, "rb") as f:
                counter = mmap.mmap(f.fileno(), COUNTER_SIZE, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        _maps[path] = counter
    return int.from_bytes(counter[:COUNTER_SIZE], "little")


def _count_report(ctx: TaskContext) -> None:
    path = counter_path(ctx)
    if path is None:
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return  # no counter: the harness looks for the marker file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        now = int.from_bytes(os.pread(fd, COUNTER_SIZE, 0).ljust(COUNTER_SIZE, b"\0"),
                             "little")
        os.pwrite(fd, (now + 1).to_bytes(COUNTER_SIZE, "little"), 0)
    finally:
        os.close(fd)  # (releases the lock)


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
    from ._words import storable

    spool = os.environ.get("PEXEN_REPORT_SPOOL")
    if spool:
        # On a Dask worker: the result goes back with the task's, and the
        # controller journals it (pexen.remote).
        import json

        with open(spool, "a") as f:
            f.write(json.dumps({"name": storable(name) or "", "outcome": outcome,
                                "message": storable(message)}) + "\n")
        return

    _journal(ctx.journal).add_result(ctx.run_id, ctx.task, ctx.attempt, storable(name) or "",
                                     outcome, storable(message))
    marker = _marker(ctx)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "a"):
        pass
    _count_report(ctx)  # after the marker: a count seen means the marker is there


def reported_worst(ctx: TaskContext, count_before: Optional[int] = None,
                   counter: Optional[str] = None) -> Optional[Tuple[str, str]]:
    """(outcome, message) of the worst result the attempt reported, or None
    if it reported none. `count_before`: `report_count(ctx)` when the attempt
    started; if the run counted no report since, nothing is looked up.
    `counter`: `counter_path(ctx)`, if known."""
    if count_before is not None and count_at(counter or counter_path(ctx)) == count_before:
        return None
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

"""`pexen-harness export`: a run's results as JUnit XML, from the journal
only (mid-run, after a crash, after resume)."""

from __future__ import annotations

import _socket
import os
import re

from .. import xunit
from ..journal import Journal, RunInfo
from .capture import key_path, log_paths

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

UNFINISHED = {"pending": "not started", "queued": "queued, not started",
              "running": "still running", "rebooting": "rebooting",
              "interrupted": "interrupted"}
#: (looked up with an event's detail["by"], which may be missing)
_WHY: Dict[Optional[str], str] = {"controller death": "its controller died",
                                  "signal": "stopped by a signal"}
#: Unfinished states of a run whose controller is gone (and not resumed yet).
_ORPHANED = {**UNFINISHED, "running": "was running"}


def controller_gone(run: RunInfo) -> bool:
    """Whether the run is unfinished and its controller is no longer running
    (it crashed, it was killed, the machine went down), unless the caller is
    that controller."""
    if run.state == "finished" or run.controller_pid == os.getpid():
        return False
    from ._journal import controller_alive

    return not controller_alive(run)


def suite_name(run: RunInfo) -> str:
    """A name that stays the same from run to run of one suite: the
    directory's name, or the module's."""
    target = str(run.suite.get("target") or "pexen")
    kind = run.suite.get("kind")
    if kind == "dir" or "/" in target:
        name = os.path.basename(os.path.normpath(target))
    else:
        name = target.split(":", 1)[0]
    return re.sub(r"[^\w.-]+", "_", name) or "pexen"


def tasks_dir(run: RunInfo, journal_path: str) -> str:
    """The directory of run `run`'s task directories (KEY/ under it)."""
    root = run.config.get("data_root")
    if not root:   # (a run from before the config held it)
        from .controller import data_root  # (the engine and psutil: only then)

        root = data_root(journal_path)
    return os.path.join(root, str(run.id))


def cases_of(j: Journal, run: RunInfo, journal_path: str,
             gone: Optional[bool] = None) -> List[xunit.Case]:
    """One xunit.Case per task of the run, as the journal has it now.
    `gone`: whether the run's controller died (default: looked up)."""
    if gone is None:
        gone = controller_gone(run)
    cut: Dict[str, List[Any]] = {}
    for ev in j.events_to(run.id, "interrupted"):
        if ev.key is not None:
            cut.setdefault(ev.key, []).append(ev)
    reported: Dict[Tuple[str, int], List[xunit.SubResult]] = {}
    for r in j.results(run.id):
        reported.setdefault((r.key, r.attempt), []).append(
            xunit.SubResult(r.name, r.outcome, r.message))
    cases = []
    out: Optional[str]
    err: Optional[str]
    run_dir = tasks_dir(run, journal_path)
    exists = os.path.exists
    for key, state, attempt, message, time_used, exc_type, exc_text in j.export_rows(run.id):
        task_dir = os.path.join(run_dir, key_path(key))
        cuts = cut.get(key, [])
        if state == "interrupted" and cuts:
            cuts = cuts[:-1]   # the attempt cut last is the task's present state
        if state in UNFINISHED:
            why = UNFINISHED[state]
            if state == "interrupted":
                why += f" ({message or 'its controller died'}; pexen-harness resume " \
                       "continues the run)"
            elif gone:
                why = (f"{_ORPHANED[state]} when its controller died (pexen-harness "
                       "resume continues the run)")
            message, state = f"not finished: {why}", "skip"
        attempts = []
        n = 0
        for ev in cuts:
            if ev.from_state == "pending":
                continue   # (no attempt was made)
            n += 1
            if ev.from_state == "queued":
                continue   # handed out, never started: it ran nothing, no rerun
            by: Optional[str] = (ev.detail or {}).get("by")
            out, err = log_paths(task_dir, n)
            attempts.append(xunit.Attempt(n, "interrupted", _WHY.get(by, by), out, err))
        out = err = None
        if attempt:
            out, err = log_paths(task_dir, attempt)
            out = out if exists(out) else None
            err = err if exists(err) else None
        cases.append(xunit.Case(key, state, message, time_used or 0.0, exc_type, exc_text,
                                out, err, attempts,
                                reported.get((key, attempt), []) if reported else []))
    return cases


def export_run(j: Journal, run: RunInfo, journal_path: str, path: str,
               subresults: str = "message", cap: int = xunit.DEFAULT_CAP) -> Dict[str, int]:
    """Write run `run`'s JUnit XML file to `path` (atomically)."""
    return xunit.write(path, suite_name(run), cases_of(j, run, journal_path),
                       timestamp=run.created_at, hostname=run.host or _socket.gethostname(),
                       cap=cap, subresults=subresults,
                       properties=[("pexen.run", run.id), ("pexen.suite",
                                                           run.suite.get("target", ""))])


def check_target(path: Optional[str], option: str = "--xunit") -> None:
    """Refuse, before anything runs, an --xunit (or --html) file that cannot
    be written."""
    if path is None:
        return
    from ._journal import HarnessError

    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise HarnessError(f"{option} {path}: is a directory")
    if not os.path.isdir(directory):
        raise HarnessError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise HarnessError(f"{option} {path}: directory {directory} is not writable")

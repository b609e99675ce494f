"""What every `pexen-harness` verb needs of a journal, and nothing heavier:
its path, opening it for a verb, picking a run, whether the run's
controller lives, `HarnessError`.

`status`, `list`, `log` and `export` import this (through `run`, which
re-exports it) and `pexen.journal`, and not the engine, the pools, the
suites or the controller: those are imported by `start` and `resume`, and
by `controller_alive` for a run that has not finished.
"""

from __future__ import annotations

import os

from ..journal import Journal, JournalError, JournalLocationError, RunInfo, open_journal
from ..util import PexenError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Optional

DEFAULT_JOURNAL = "pexen-journal.sqlite"

# The exit codes of DESIGN.md (those of `controller`, which the verbs that
# only read a journal do not import; tests/harness/test_startup.py holds them
# equal).
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2, 3, 4


class HarnessError(PexenError):
    """A command cannot go on; `exit_code` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def journal_path(arg: Optional[str]) -> str:
    path = arg or os.environ.get("PEXEN_JOURNAL") or DEFAULT_JOURNAL
    return path if "://" in path else os.path.abspath(path)


def open_for_verb(path: str, create: bool) -> Journal:
    """`open_journal`, its errors as the CLI exits on them."""
    try:
        return open_journal(path, create=create)
    except JournalError as exc:
        code = EXIT_USAGE if isinstance(exc, JournalLocationError) else EXIT_INTERNAL
        raise HarnessError(str(exc), code) from None


#: Two start times of a process (from /proc, in clock ticks: 10 ms) closer
#: than this are the same process's; a pid taken over by a process started a
#: moment after the controller died is not the controller.
_SAME_START = 0.05


#: A controller on another machine (a journal shared by a lab) is taken for
#: alive while its heartbeat is younger than this, by this machine's clock.
REMOTE_STALE = 30.0


def this_host() -> str:
    import socket

    return socket.gethostname()


def controller_alive(run: RunInfo) -> bool:
    """Is the run's recorded controller still running (same boot, same pid,
    same process start time)? One on another machine: is its heartbeat
    fresh (younger than REMOTE_STALE)?"""
    from .controller import boot_id, process_started

    if run.controller_pid is None:
        return False
    if run.host and run.host != this_host():
        import time

        return (run.state in ("running", "rebooting") and run.heartbeat_at is not None
                and time.time() - run.heartbeat_at < REMOTE_STALE)
    if run.boot_id != boot_id():
        return False
    if run.controller_pid == os.getpid():
        return False
    started = process_started(run.controller_pid)
    if started is None or _dead(run.controller_pid):
        return False
    return run.controller_started is None or abs(started - run.controller_started) < _SAME_START


def _dead(pid: int) -> bool:
    """Whether process `pid` has died and waits for its parent to reap it (a
    zombie: killed, not yet waited for, it still has its start time)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except ProcessLookupError:   # (ESRCH: it is exiting)
        return True
    except OSError:
        return False   # (gone, or no /proc: the start time said enough)
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] in (b"Z", b"X")


def pick_run(j: Journal, run_id: Optional[int]) -> RunInfo:
    if run_id is not None:
        try:
            return j.run(run_id)
        except JournalError:
            raise HarnessError(f"{j.where} has no run {run_id} (pexen-harness list "
                               "shows the runs)") from None
    run = j.newest_unfinished()
    if run is None:
        raise HarnessError(f"{j.where} has no unfinished run to resume "
                           "(pexen-harness list shows the runs)")
    return run

"""Tests that reboot the machine on purpose: `pexen.reboot()` from Python,
`pexen-harness reboot` from an executable.

The request is written to the journal by the task's own process and
committed (synchronous=FULL) before anything else happens; then the task
blocks. The controller notices it (it polls the journal), hands out no more
tasks, lets the other running tasks finish (up to --drain-timeout; what is
still running then is ended and requeued, not failed), records the task
`rebooting`, writes the partial xUnit file if asked, and runs the reboot
command. After the boot, `pexen-harness resume` runs the task again with
PEXEN_REBOOT_COUNT (and REBOOTCOUNT, RSTRNT_REBOOTCOUNT, TMT_REBOOT_COUNT)
one higher: it continues the same attempt (its output file, its reported
results and its data directory are kept).
"""

from __future__ import annotations

import os
import sys
import time

from .context import context
from .outcome import TaskOutcome

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import NoReturn, Optional

#: The default command that reboots the machine (PEXEN_REBOOT_COMMAND, or
#: `--reboot-command`, replaces it).
DEFAULT_REBOOT_COMMAND = "systemctl reboot"


def reboot_command(given: Optional[str] = None) -> str:
    return given or os.environ.get("PEXEN_REBOOT_COMMAND") or DEFAULT_REBOOT_COMMAND


#: The reason of a task that asked for a reboot in a run that does not allow them.
NOT_ALLOWED = ("asked for a reboot, and the run does not allow reboots (start it with "
               "--allow-reboot)")
#: The reason of a task that asked for a reboot on a Dask worker.
REMOTE = ("asked for a reboot on a Dask worker: reboots of other hosts are not "
          "supported (doc/lab.md)")


def reboot() -> NoReturn:
    """Ask for a reboot of the machine, then block until it comes (the
    controller ends this task before rebooting). After the boot the task runs
    again from its start with `pexen.context().reboot_count` one higher:
    branch on it. Raises NoContextError outside a task run by pexen-harness.

    In a run started without ``--allow-reboot`` nothing is asked for: the
    task ends `skip` (TaskOutcome) with the reason `NOT_ALLOWED`."""
    ctx = context()
    if os.environ.get("PEXEN_REMOTE"):
        raise TaskOutcome("skip", REMOTE)
    if not ctx.allow_reboot:
        raise TaskOutcome("skip", NOT_ALLOWED)
    from .controller import boot_id
    from .report import _count_report, _journal

    # What the task printed before asking must not die in a buffer of this
    # process with it (the controller kills it for the reboot).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:   # (closed, or replaced by something odd)
            pass
    _journal(ctx.journal).request_reboot(ctx.run_id, ctx.task, boot_id())
    # The run's report counter moves: the controller looks at the journal
    # for reboot requests only then (not a query every quarter second).
    _count_report(ctx)
    while True:
        time.sleep(3600)

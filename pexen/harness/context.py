"""The context of the task being run: who it is, in which run, which attempt.

Executables get it as PEXEN_* environment variables; Python tasks read the
same with `pexen.context()` (under the thread pool several tasks share one
process environment, so the context is kept per thread).
"""

from __future__ import annotations

import os
import sys
import threading

from ..util import PexenError, Record

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Dict, Iterable, Iterator, Optional, Tuple


class NoContextError(PexenError):
    """Asked for the task context outside a task run by the harness."""


class TaskContext(Record, frozen=True):
    """Who the running task is. `data_dir` is created when first asked for
    (a directory per task costs a few hundred microseconds on some disks, and
    most tasks never use it)."""

    journal: str
    run_id: int
    task: str
    attempt: int
    token: str
    data_path: str
    reboot_count: int = 0
    interrupt_count: int = 0   # unplanned reboots it was run again after
    allow_reboot: bool = False  # the run was started (or resumed) with --allow-reboot
    run_data_path: str = ""     # the directory all tasks of the run share

    @property
    def data_dir(self) -> str:
        """The task's own directory, kept across attempts (created here)."""
        if self.data_path not in _created:
            os.makedirs(self.data_path, exist_ok=True)
            _created.add(self.data_path)
        return self.data_path

    @property
    def run_data_dir(self) -> str:
        """A directory every task of the run shares (created here): where a
        setup task leaves what later tasks use."""
        path = self.run_data_path or os.path.join(os.path.dirname(self.data_path), "shared")
        if path not in _created:
            os.makedirs(path, exist_ok=True)
            _created.add(path)
        return path

    def env(self) -> Dict[str, str]:
        """The PEXEN_* environment variables of the task (its data directory
        and the run's are created, since a program given their names may
        write there)."""
        variables = self.variables()
        variables["PEXEN_TASK_DATA"] = self.data_dir
        variables["PEXEN_RUN_DATA"] = self.run_data_dir
        return variables

    def variables(self) -> Dict[str, str]:
        """The environment variables of the task, creating nothing: PEXEN_*,
        the reboot count under restraint's and tmt's names, and PATH with
        their commands first (what a worker process sets before a Python
        task: see doc/harness.md, "The task's environment", and
        doc/restraint-tmt.md)."""
        reboots = str(self.reboot_count)
        return {
            "PEXEN_JOURNAL": self.journal,
            "PEXEN_RUN_ID": str(self.run_id),
            "PEXEN_TASK": self.task,
            "PEXEN_ATTEMPT": str(self.attempt),
            "PEXEN_TASK_TOKEN": self.token,
            "PEXEN_TASK_DATA": self.data_path,
            "PEXEN_RUN_DATA": self.run_data_path or os.path.join(
                os.path.dirname(self.data_path), "shared"),
            "PEXEN_REBOOT_COUNT": reboots,
            # the names tests written for restraint and tmt read
            "REBOOTCOUNT": reboots,
            "RSTRNT_REBOOTCOUNT": reboots,
            "TMT_REBOOT_COUNT": reboots,
            "PEXEN_INTERRUPT_COUNT": str(self.interrupt_count),
            "PEXEN_ALLOW_REBOOT": "1" if self.allow_reboot else "0",
            # restraint's and tmt's commands (rstrnt-report-result, ...): see
            # compat.py
            "PATH": task_path(),
            "PEXEN_PYTHON": PYTHON,
        }

    @classmethod
    def many(cls, journal: str, run_id: int, allow_reboot: bool, run_data_path: str,
             each: Iterable[Tuple[str, int, str, str, int, int]]) -> Iterator[TaskContext]:
        """Contexts of the tasks of one run, from (task, attempt, token,
        data_path, reboot_count, interrupt_count) each: what `cls(...)`
        makes, without a frozen dataclass's ten guarded assignments per
        object (the controller makes one per task of a run)."""
        new = object.__new__
        for task, attempt, token, data_path, reboots, interrupts in each:
            ctx = new(cls)
            ctx.__dict__.update(journal=journal, run_id=run_id, task=task, attempt=attempt,
                                token=token, data_path=data_path, reboot_count=reboots,
                                interrupt_count=interrupts, allow_reboot=allow_reboot,
                                run_data_path=run_data_path)
            yield ctx

    @classmethod
    def from_env(cls, environ: Optional[Dict[str, str]] = None) -> Optional[TaskContext]:
        env = os.environ if environ is None else environ
        try:
            return cls(env["PEXEN_JOURNAL"], int(env["PEXEN_RUN_ID"]), env["PEXEN_TASK"],
                       int(env["PEXEN_ATTEMPT"]), env["PEXEN_TASK_TOKEN"],
                       env["PEXEN_TASK_DATA"], int(env.get("PEXEN_REBOOT_COUNT", "0")),
                       int(env.get("PEXEN_INTERRUPT_COUNT", "0")),
                       env.get("PEXEN_ALLOW_REBOOT") == "1", env.get("PEXEN_RUN_DATA", ""))
        except (KeyError, ValueError):
            return None


_local = threading.local()
_created: set = set()

#: The directory of the commands of restraint and tmt that pexen provides
#: (rstrnt-report-result, tmt-reboot, ...: see compat.py), first on every
#: task's PATH.
COMPAT_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_compat_bin")
#: The interpreter those commands run pexen with: this one (a task's PATH
#: need not lead to it, e.g. a virtual environment that is not activated).
PYTHON = sys.executable or "python3"

_environ_data = getattr(os.environ, "_data", None)   # (os._Environ's own: bytes -> bytes)
#: (PATH as this process's environment held it last (its very object), the
#: task's PATH made of it): one tuple, so that threads see the two together
_path_cache: tuple = (None, "")


def task_path() -> str:
    """The PATH of a task: this process's, with COMPAT_BIN first. Made anew
    only when this process's PATH changed (a suite or a task may change it),
    since it is asked for every task: the object the environment holds is
    the value last seen while it is the same object."""
    global _path_cache
    raw = (_environ_data.get(b"PATH") if _environ_data is not None
           else os.environ.get("PATH"))
    seen = _path_cache
    if raw is seen[0] and raw is not None:
        return seen[1]
    path = os.fsdecode(raw) if raw is not None else os.defpath
    if not path:
        path = COMPAT_BIN
    elif path != COMPAT_BIN and not path.startswith(COMPAT_BIN + os.pathsep):
        path = COMPAT_BIN + os.pathsep + path   # (not twice: a worker's PATH has it)
    _path_cache = (raw, path)
    return path


def set_context(ctx: Optional[TaskContext]) -> None:
    """Make `ctx` the context of the calling thread (None: clear it)."""
    _local.ctx = ctx


def context() -> TaskContext:
    """The context of the task this code runs in.

    Raises NoContextError outside a task started by `pexen-harness`.
    """
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = TaskContext.from_env()
    if ctx is None:
        raise NoContextError("no task context: this code is not running as a task of "
                             "pexen-harness (PEXEN_TASK and friends are not set)")
    return ctx

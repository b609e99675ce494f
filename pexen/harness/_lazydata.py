"""A Python task's data directory, made when the task first needs it.

In a worker process of the process pool, `PEXEN_TASK_DATA` names the
running task's directory from the moment the task starts, but the directory
is made only when something may use it: when the task reads the variable
(`os.environ`, `os.getenv`, a copy of the environment, `pexen.context()`),
or starts a program (`subprocess`, `os.fork`), which inherits the variable.
Most tasks never use it, and making two directories per task cost more than
a small test itself (doc/harness.md, "The task's environment").

Executables get theirs made before they start: nothing can watch what a
program does with its environment.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .context import TaskContext

#: The task whose directory is owed (None between tasks).
_owed: Optional[TaskContext] = None
_installed = False


def _make() -> None:
    ctx = _owed
    if ctx is not None:
        _ = ctx.data_dir   # (the property makes it)


class _Environ(os._Environ):  # type: ignore[name-defined]
    """`os.environ`, making the task's directory before its name is read."""

    def __getitem__(self, key: Any) -> Any:
        if key == "PEXEN_TASK_DATA":
            _make()
        return super().__getitem__(key)


def _wrap_execute_child(original: Any) -> Any:
    def _execute_child(self: Any, *args: Any, **kwargs: Any) -> Any:
        _make()
        return original(self, *args, **kwargs)

    _execute_child.__wrapped__ = original  # type: ignore[attr-defined]
    return _execute_child


def owe(ctx: TaskContext) -> None:
    """The task `ctx` starts in this process: its directory is made when it
    first needs it (see the module docstring)."""
    global _owed, _installed
    _owed = ctx
    if not _installed:
        _installed = True
        if type(os.environ) is os._Environ:  # type: ignore[attr-defined]
            os.environ.__class__ = _Environ
        import subprocess  # (in a worker, with its first Python task)

        popen = subprocess.Popen
        popen._execute_child = _wrap_execute_child(popen._execute_child)  # type: ignore
        os.register_at_fork(before=_make)


def settle() -> None:
    """The task has ended: nothing is owed any more."""
    global _owed
    _owed = None

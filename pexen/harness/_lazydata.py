"""A Python task's data directory, made when the task first needs it.

In a worker process of the process pool, `PEXEN_TASK_DATA` names the
running task's directory from the moment the task starts, but the directory
is made only when something may use it: when the task reads the variable
(`os.environ`, `os.getenv`, a copy of the environment, `pexen.context()`),
or starts a program (`subprocess`, `os.fork`, `os.system`, `os.posix_spawn`),
which inherits the variable.
Most tasks never use it, and making two directories per task cost more than
a small test itself (doc/harness.md, "The task's environment").

Executables get theirs made before they start: nothing can watch what a
program does with its environment.
"""

from __future__ import annotations

import os
import sys

from .context import TaskContext

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Optional

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


def _made_first(original: Any) -> Any:
    """`original` (a function that starts a program), making the owed
    directory first."""

    def call(*args: Any, **kwargs: Any) -> Any:
        _make()
        return original(*args, **kwargs)

    call.__wrapped__ = original  # type: ignore[attr-defined]
    call.__name__ = getattr(original, "__name__", "call")
    return call


def _hook_program_starts() -> None:
    """Make the owed directory before any program starts. subprocess forks
    with `_posixsubprocess.fork_exec` (bound by name when subprocess is
    imported: so it is replaced in subprocess too if that is loaded
    already, and importing subprocess here, 8 ms, is not needed) or
    `os.posix_spawn`; os.fork runs the at-fork hooks."""
    import _posixsubprocess

    original = _posixsubprocess.fork_exec
    hooked = _made_first(original)
    _posixsubprocess.fork_exec = hooked
    sub = sys.modules.get("subprocess")
    if sub is not None and getattr(sub, "_fork_exec", None) is original:
        sub._fork_exec = hooked  # type: ignore[attr-defined]
    for name in ("posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            setattr(os, name, _made_first(getattr(os, name)))
    os.register_at_fork(before=_make)


def owe(ctx: TaskContext) -> None:
    """The task `ctx` starts in this process: its directory is made when it
    first needs it (see the module docstring)."""
    global _owed, _installed
    _owed = ctx
    if not _installed:
        _installed = True
        if type(os.environ) is os._Environ:  # type: ignore[attr-defined]
            os.environ.__class__ = _Environ
        _hook_program_starts()


def settle() -> None:
    """The task has ended: nothing is owed any more."""
    global _owed
    _owed = None

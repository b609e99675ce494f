"""Task conditions: the `when` metadata field, evaluated right before the task.

The condition runs where the task runs (in its worker, after the pool said
the task started), so it counts against the task's timeout and a hung one is
ended as a hung task is. A task object that evaluates its own condition (it
knows better where the command should run and where its output goes: the
harness's wrappers, `ExecutableTask`) says so with a true
``pexen_checks_when_`` attribute, and the engine leaves it to it.
"""

from __future__ import annotations

import os
import signal

from ..util import LazyModule
from .common import TaskSkipError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Mapping, Optional

# (imported when a program is first run: not for a suite of Python tasks)
subprocess: Any = LazyModule("subprocess", globals())

#: A true attribute of this name on a task: it evaluates its `when` itself.
CHECKS_WHEN_ATTR = "pexen_checks_when_"
_SHELL = "/bin/sh"
_SHOWN = 200  # characters of a command or a return value shown in a reason


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def describe_when(when: Any) -> Optional[str]:
    """A condition as readable text (what the journal stores): the command
    as it is, a callable as its call, ``module.qualname()`` (its repr when it
    has no qualified name); None for no condition."""
    if when is None or isinstance(when, str):
        return when
    module = getattr(when, "__module__", None)
    qualname = getattr(when, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}()"
    try:
        return f"{repr(when)}()"
    except Exception:  # a broken __repr__
        return f"<{type(when).__name__} object>()"


def _status(status: int) -> str:
    if status >= 0:
        return f"exited {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {-status} ({name})"


def run_command(command: str, *, cwd: Optional[str] = None,
                env: Optional[Mapping[str, str]] = None, stdout: Optional[int] = None,
                stderr: Optional[int] = None) -> int:
    """Run a condition command with ``/bin/sh -c`` and return its exit status
    (negative: killed by that signal).

    It runs in a session of its own (so its whole process group can be
    killed), stdin from /dev/null, its output to `stdout`/`stderr` (file
    descriptors; None: this process's fds 1 and 2), in `cwd` with `env`
    (None: this process's). Interrupted while waiting, it kills the
    command's process group before it lets the exception through.
    """
    proc = subprocess.Popen([_SHELL, "-c", command], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True)
    return wait_session(proc)


def wait_session(proc: subprocess.Popen) -> int:
    """Wait for `proc`, started in a session of its own, and return its exit
    status. Interrupted while waiting (KeyboardInterrupt, ...), it kills the
    whole process group first, so nothing is left running."""
    try:
        return proc.wait()
    except BaseException:
        # The leader is not reaped yet, so its pid (= the group id) cannot
        # have been reused.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise


def check_when(when: Any, *, cwd: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None, stdout: Optional[int] = None,
               stderr: Optional[int] = None) -> None:
    """Return if the condition `when` holds; raise TaskSkipError saying why
    if it does not.

    None holds. A callable is called with no arguments: a true value holds;
    what it raises goes through (the task ends with that exception). A str
    is a shell command (`run_command`, with the keyword arguments): exit
    status 0 holds, anything else does not.
    """
    if when is None:
        return
    if isinstance(when, str):
        status = run_command(when, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        if status != 0:
            raise TaskSkipError(f"condition not met: `{_shorten(when)}` {_status(status)}")
        return
    result = when()
    if not result:
        try:
            shown = _shorten(repr(result))
        except Exception:  # a broken __repr__
            shown = f"a false {type(result).__name__}"
        raise TaskSkipError(f"condition not met: {describe_when(when)} returned {shown}")

"""Values every room shares: task results, failure signalling, the error base."""

from __future__ import annotations

import functools
from collections import namedtuple

from ..util import PexenError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Optional, Type, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


class SchedulerError(PexenError):
    """Base of the scheduler's errors."""


class TaskFailError(Exception):
    """Raised by a task to fail in a controlled way.

    `deps_ok=True` still satisfies the task's `provides` (its dependents run);
    `locks_ok=True` releases its `claims`/`uses` locks.
    """

    def __init__(self, *args: Any, deps_ok: bool = True, locks_ok: bool = True) -> None:
        self.deps_ok = deps_ok
        self.locks_ok = locks_ok
        super().__init__(*args)

    def __reduce__(self) -> Any:
        # Keep deps_ok/locks_ok across a process boundary (the default pickling
        # of exceptions only keeps args).
        return (_rebuild_taskfail, (type(self), self.args, self.deps_ok, self.locks_ok,
                                    self.__dict__))


def _rebuild_taskfail(cls: Type[TaskFailError], args: tuple, deps_ok: bool,
                      locks_ok: bool, state: dict) -> TaskFailError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    exc.deps_ok = deps_ok
    exc.locks_ok = locks_ok
    return exc


class TaskKilledError(TaskFailError):
    """The task's worker was killed on request (e.g. by the watchdog).

    Its dependents do not run; its locks are released, because whoever killed it
    confirmed that nothing of it is left running.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args, deps_ok=False, locks_ok=True)


class TaskSkipError(TaskFailError):
    """The task did not run, and says why (its `when` condition was false).

    A controlled failure whose dependents do not run (they end skipped, as
    for any unmet dependency) and whose locks are released. A task may raise
    it itself to end as skipped.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args, deps_ok=False, locks_ok=True)


class WorkerDiedError(Exception):
    """The process running the task died (os._exit, a signal, a crash).

    An uncontrolled failure: dependents do not run and locks stay held.
    """


def task_fail_wrap(func: Optional[F] = None, *, deps_ok: bool = True,
                   locks_ok: bool = True,
                   reraise: Type[TaskFailError] = TaskFailError) -> Any:
    """Decorator: any exception from the function becomes a controlled failure.

    Bare (`@task_fail_wrap`) or with arguments (`@task_fail_wrap(deps_ok=False)`,
    `@task_fail_wrap(reraise=MyError)` with `MyError` a `TaskFailError`).
    """
    if not (isinstance(reraise, type) and issubclass(reraise, TaskFailError)):
        raise TypeError(f"reraise must be a subclass of TaskFailError, not {reraise!r}")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def task_fail_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except TaskFailError:
                raise
            except Exception as exc:
                raise reraise(f"{type(exc).__name__}: {exc}", deps_ok=deps_ok,
                              locks_ok=locks_ok) from exc

        return task_fail_wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


# A task's result as the scheduler yields it; defaults as in 0.0.x, so that
# TaskRes(f) == TaskRes(f, {}, None, None).
TaskRes = namedtuple("TaskRes", ["task", "shared", "ret", "excinfo"])
TaskRes.__new__.__defaults__ = ({}, None, None)


# (named "ExceptionInfo": the name its repr shows, as in 0.0.x)
_ExceptionInfoBase = namedtuple("ExceptionInfo", ["type", "val", "tb"])  # type: ignore[name-match]
_ExceptionInfoBase.__new__.__defaults__ = (None, None, None)


class ExceptionInfo(_ExceptionInfoBase):
    """`sys.exc_info()` of a failed task, as named fields.

    Parts that could not cross a process boundary are None. `text` (not part of
    the tuple, so comparisons and unpacking stay as in 0.0.x) holds the
    formatted traceback when it is known.
    """

    text: Optional[str]

    def __new__(cls, type: Any = None, val: Any = None, tb: Any = None,
                text: Optional[str] = None) -> ExceptionInfo:
        self = super().__new__(cls, type, val, tb)
        self.text = text
        return self

    def __reduce__(self) -> Any:
        return (ExceptionInfo, (self.type, self.val, None, self.text))


def is_controlled_fail(excinfo: Optional[ExceptionInfo]) -> bool:
    """True if the task failed by raising a TaskFailError."""
    return (excinfo is not None and isinstance(excinfo.type, type)
            and issubclass(excinfo.type, TaskFailError))


__all__ = [
    "ExceptionInfo",
    "SchedulerError",
    "TaskFailError",
    "TaskKilledError",
    "TaskRes",
    "TaskSkipError",
    "WorkerDiedError",
    "is_controlled_fail",
    "task_fail_wrap",
]

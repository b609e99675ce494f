"""Calling one task: the calling convention and the one record of the call."""

from __future__ import annotations

import sys

from ._when import CHECKS_WHEN_ATTR, check_when
from .common import ExceptionInfo, TaskRes
from .meta import SCHED_ATTR_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, List

_CO_VARARGS = 0x04   # inspect.CO_VARARGS (inspect is imported only when needed)
_FUNCTION = type(lambda: None)
_NO_KWARGS: Dict[str, Any] = {}


def takes_shared(task: Callable[..., Any]) -> bool:
    """True if the task has a positional parameter (it gets the shared dict)."""
    # Fast path for plain functions: looking at the code object costs well under
    # a microsecond, inspect.signature() some tens (this runs once per call).
    # (functools.wraps puts __wrapped__ in the function's __dict__: looked up
    # there, a plain function raises no AttributeError on the way)
    if type(task) is _FUNCTION and "__wrapped__" not in task.__dict__:
        code = task.__code__
        return code.co_argcount > 0 or bool(code.co_flags & _CO_VARARGS)
    # (a callable object that says so, asked before __code__, which it lacks)
    flag = getattr(task, "pexen_takes_shared_", None)
    if flag is not None:
        return bool(flag)
    code_attr = getattr(task, "__code__", None)
    if code_attr is not None and "__wrapped__" not in getattr(task, "__dict__", _NO_KWARGS):
        return code_attr.co_argcount > 0 or bool(code_attr.co_flags & _CO_VARARGS)
    import inspect

    try:
        sig = inspect.signature(task)
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in sig.parameters.values())


def call_task(task: Callable[..., Any], shared: Dict[str, Any]) -> TaskRes:
    """Run a task once and return its TaskRes (the exception, if any, inside).

    Its `when` condition is evaluated first, here, so that it runs under the
    task's timeout (unless the task evaluates it itself: see `_when`); a
    false one ends the task with a TaskSkipError.
    """
    meta = getattr(task, SCHED_ATTR_NAME, None)
    if meta is None:
        kwargs, when = _NO_KWARGS, None
    else:
        kwargs, when = meta.get("kwargs"), meta.get("when")
    try:
        if when is not None and not getattr(task, CHECKS_WHEN_ATTR, False):
            check_when(when)
        if takes_shared(task):
            ret = task(shared, **kwargs)
        else:
            ret = task(**kwargs)
    except BaseException as exc:
        # sys.exit() in a task fails the task, it does not end the controller.
        if isinstance(exc, KeyboardInterrupt) and not _worker_flag[0]:
            raise
        return TaskRes(task, shared, None, exc_info_of(exc))
    return TaskRes(task, shared, ret, None)


def exc_info_of(exc: BaseException) -> ExceptionInfo:
    """An ExceptionInfo for an exception being handled, with its formatted text."""
    import traceback  # (only for a task that failed)

    etype, _, tb = sys.exc_info()
    if etype is None:
        etype, tb = type(exc), exc.__traceback__
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return ExceptionInfo(type(exc), exc, tb, text)


# Set in a process-pool worker: there a KeyboardInterrupt is the task's failure.
_worker_flag = [False]

#: Called, in order, when a process-pool worker stops in good order (its
#: pool shut down): what tasks set up to live as long as their worker (a
#: pytest session, see pexen.harness.pytestsuite) ends there. Errors are
#: written to stderr and do not stop the others.
at_worker_exit: List[Callable[[], Any]] = []


def run_worker_exit() -> None:
    while at_worker_exit:
        hook = at_worker_exit.pop(0)
        try:
            hook()
        except BaseException as exc:   # (the worker is ending: say so, go on)
            sys.stderr.write(f"pexen: at the worker's exit: {type(exc).__name__}: {exc}\n")

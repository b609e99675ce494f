"""Python tests as people write them: plain ``test_*`` functions and
`unittest.TestCase` classes, found in a module suite beside the callables
with metadata (doc/suites.md, "Plain test_* functions and unittest classes").

`SuiteTreeFactory` walks a module or package as `pexen.factory.ModTreeFactory`
does, and finds in each module, in name order:

- the callables with metadata, as `ModTreeFactory` would (imported ones
  too), unchanged;
- the module's own functions named ``test_*`` without metadata, each as a
  `PlainTest` (keyed ``module/test_name``);
- the module's own `unittest.TestCase` subclasses, each test method (as
  `unittest.TestLoader().getTestCaseNames` lists them) as a `UnitTest`
  (keyed ``module/Class/test_method``).

"Own" means defined in that module (its ``__module__``), as pytest does: a
function or class imported from elsewhere is found where it is defined, once.

Both kinds are plain objects holding a function or a class, so they pickle by
reference, and map what the test did to pexen's outcomes (`TaskOutcome`).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

from ..factory import ModTreeFactory, ModuleFactory
from ._words import exc_summary as _summary
from .outcome import TaskOutcome

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

_FUNCTION = type(lambda: None)
PREFIX = "test_"

# code flags (inspect.CO_*: inspect is not imported to collect tests)
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200


def _assert_message(exc: AssertionError) -> str:
    """The short message of a failed assertion; for a bare ``assert x == 1``
    (no message) the line that failed, as the traceback shows it."""
    text = _summary(exc)
    if text != type(exc).__name__:
        return text
    import linecache  # (only for a bare assert that failed)

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
        if line:
            return f"{text}: {line}"
    return text


def _foreign_outcome(exc: BaseException) -> Optional[TaskOutcome]:
    """The outcome of a skip or failure raised the way other tools spell it:
    `unittest.SkipTest`, pytest's ``skip()``, ``fail()`` and ``xfail()``
    (recognised by name: pytest is not imported)."""
    unittest = sys.modules.get("unittest")
    if unittest is not None and isinstance(exc, unittest.SkipTest):
        return TaskOutcome("skip", str(exc) or "skipped")
    cls = type(exc)
    # (pytest gives its outcome classes the module "builtins": their base tells)
    if any(base.__name__ == "OutcomeException" and base.__module__ == "_pytest.outcomes"
           for base in cls.__mro__):
        msg = getattr(exc, "msg", None) or ""
        if cls.__name__ == "Skipped":
            return TaskOutcome("skip", msg or "skipped")
        if cls.__name__ == "XFailed":
            return TaskOutcome("skip", f"xfail: {msg}" if msg else "xfail")
        if cls.__name__ == "Failed":
            return TaskOutcome("fail", msg or "failed")
    return None


def _call_shape(func: Callable[..., Any], name: str) -> Tuple[bool, Optional[str]]:
    """How to call a plain test function: (whether it gets the shared dict,
    why it cannot be called, or None). It takes no arguments, or one named
    ``shared``; parameters with defaults are left to them."""
    code = func.__code__
    if code.co_flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE | _CO_ASYNC_GENERATOR):
        return False, (f"{name} is a coroutine function: pexen calls plain functions "
                       "(run the coroutine with asyncio.run in one)")
    if code.co_flags & _CO_GENERATOR:
        return False, f"{name} is a generator function: pexen calls plain functions"
    npos = code.co_argcount
    positional = code.co_varnames[:npos]
    required = list(positional[:npos - len(func.__defaults__ or ())])
    kwonly = code.co_varnames[npos:npos + code.co_kwonlyargcount]
    required += [n for n in kwonly if n not in (func.__kwdefaults__ or {})]
    shared = bool(positional) and positional[0] == "shared"
    if not required or (required == ["shared"] and shared):
        return shared, None
    return False, (f"{name}({', '.join(required)}) has parameters pexen does not fill: a "
                   "plain test_* function takes no arguments, or one named shared "
                   "(pytest fixtures are not supported)")


def _without_own_frame(exc: BaseException) -> BaseException:
    """`exc` with the frame of the call that caught it cut from its traceback
    (the journal's traceback starts at the test)."""
    tb = exc.__traceback__
    return exc.with_traceback(tb.tb_next) if tb is not None and tb.tb_next else exc


class PlainTest:
    """A module's plain ``test_*`` function as a task.

    It passes by returning; a failed ``assert`` (any AssertionError) ends it
    ``fail`` with the assertion's message, a skip (`TaskSkipError`,
    `unittest.SkipTest`, pytest's ``skip()``) ``skip``, any other exception
    ``error``, as for any Python task. It gets the shared dict only if its
    first parameter is named ``shared``; one that wants other arguments
    (pytest fixtures), a coroutine or a generator function ends ``error``,
    saying so.
    """

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.func = func
        self.__name__ = name
        self.__module__ = func.__module__
        self.__qualname__ = getattr(func, "__qualname__", name)
        self.pexen_takes_shared_, self.problem = _call_shape(func, name)

    def __call__(self, *shared: Any) -> Any:
        if self.problem is not None:
            raise TaskOutcome("error", self.problem)
        try:
            return self.func(*shared)
        except AssertionError as exc:
            raise TaskOutcome("fail", _assert_message(exc)) from _without_own_frame(exc)
        except BaseException as exc:
            outcome = _foreign_outcome(exc)
            if outcome is None:
                raise
            raise outcome from _without_own_frame(exc)

    def __repr__(self) -> str:
        return f"<test function {self.__module__}.{self.__qualname__}>"


# -- unittest ----------------------------------------------------------------------

#: Outcomes of the parts of one unittest run, best first (the worst one wins).
_RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3}

# Locks that keep a class's (or a module's) fixtures to one test at a time in
# one process: under the thread pool, two tests of a class would otherwise
# run setUpClass and tearDownClass at once on the same class object.
_fixture_locks: Dict[Any, threading.Lock] = {}
_fixture_locks_guard = threading.Lock()


def _overrides(cls: type, base: type, name: str) -> bool:
    mine, theirs = getattr(cls, name, None), getattr(base, name, None)
    return getattr(mine, "__func__", mine) is not getattr(theirs, "__func__", theirs)


def _fixture_lock(cls: type, unittest: ModuleType) -> ContextManager[Any]:
    """The lock a test of `cls` holds while it runs: its module's when the
    module has setUpModule or tearDownModule, else its class's when the class
    has its own setUpClass or tearDownClass, else none."""
    mod = sys.modules.get(cls.__module__)
    key: Any = None
    if mod is not None and (hasattr(mod, "setUpModule") or hasattr(mod, "tearDownModule")):
        key = mod.__name__
    elif (_overrides(cls, unittest.TestCase, "setUpClass")
          or _overrides(cls, unittest.TestCase, "tearDownClass")):
        key = cls
    if key is None:
        import contextlib

        return contextlib.nullcontext()
    with _fixture_locks_guard:
        lock = _fixture_locks.get(key)
        if lock is None:
            lock = _fixture_locks[key] = threading.Lock()
    return lock


def _relevant(exc: BaseException) -> BaseException:
    """`exc` with unittest's own frames cut from the top of its traceback (as
    unittest does when it prints one)."""
    tb = exc.__traceback__
    while tb is not None and "__unittest" in tb.tb_frame.f_globals:
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


class _Part:
    """What one part of a unittest run came to (the test, a sub-test, a class
    or module fixture)."""

    __slots__ = ("outcome", "message", "exc")

    def __init__(self, outcome: str, message: str,
                 exc: Optional[BaseException] = None) -> None:
        self.outcome = outcome
        self.message = message
        self.exc = exc


_result_class: List[type] = []


def _make_result_class(unittest: ModuleType) -> type:
    """A unittest.TestResult that also keeps each outcome as a `_Part`
    (made once, when unittest is imported)."""

    class Result(unittest.TestResult):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.parts: List[_Part] = []
            self.reports: List[str] = []

        def _where(self, test: Any) -> str:
            # a class or module fixture's failure comes as an _ErrorHolder
            if isinstance(test, unittest.TestCase):
                return ""
            return f"{getattr(test, 'description', test)}: "

        def _note(self, outcome: str, test: Any, err: Any, where: str = "") -> None:
            exc = err[1] if err[1] is not None else err[0]()
            msg = _assert_message(exc) if isinstance(exc, AssertionError) else _summary(exc)
            self.parts.append(_Part(outcome, where + self._where(test) + msg, _relevant(exc)))

        def addError(self, test: Any, err: Any) -> None:
            super().addError(test, err)
            self.reports.append(f"ERROR: {test}\n{self.errors[-1][1]}")
            self._note("error", test, err)

        def addFailure(self, test: Any, err: Any) -> None:
            super().addFailure(test, err)
            self.reports.append(f"FAIL: {test}\n{self.failures[-1][1]}")
            self._note("fail", test, err)

        def addSkip(self, test: Any, reason: str) -> None:
            super().addSkip(test, reason)
            self.parts.append(_Part("skip", self._where(test) + (reason or "skipped")))

        def addExpectedFailure(self, test: Any, err: Any) -> None:
            super().addExpectedFailure(test, err)
            self._note("pass", test, err, "expected failure: ")

        def addUnexpectedSuccess(self, test: Any) -> None:
            super().addUnexpectedSuccess(test)
            self.parts.append(_Part("fail", "unexpected success (the test is marked "
                                            "expectedFailure)"))

        def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
            super().addSubTest(test, subtest, err)
            if err is None:
                return
            describe = getattr(subtest, "_subDescription", None)
            where = f"{describe()}: " if describe is not None else f"{subtest}: "
            if issubclass(err[0], test.failureException):
                self.reports.append(f"FAIL: {subtest}\n{self.failures[-1][1]}")
                self._note("fail", test, err, where)
            else:
                self.reports.append(f"ERROR: {subtest}\n{self.errors[-1][1]}")
                self._note("error", test, err, where)

    return Result


class UnitTest:
    """One test method of a `unittest.TestCase` class as a task.

    Running it runs that one test through unittest, as unittest runs a class
    with one selected test: setUpModule and setUpClass before it,
    tearDownClass and tearDownModule (and the cleanups) after it. Outcomes:
    success passes; a failure (an AssertionError, ``self.fail``) is ``fail``
    with the assertion's message; another exception, in the test or in a
    fixture, ``error``; a skip (``skipTest``, ``@skip``, a SkipTest from
    setUpClass) ``skip`` with the reason; an expected failure passes (its
    return value says so); an unexpected success is ``fail``. With several
    (sub-tests, a test and its tearDownClass), the worst wins. unittest's
    report of each failure and error goes to stderr (the task's log).

    In one process, tests whose module has setUpModule/tearDownModule, or
    whose class has its own setUpClass/tearDownClass, run one at a time
    (what matters under the thread pool: they share the class object).
    """

    pexen_takes_shared_ = False

    def __init__(self, cls: type, method: str) -> None:
        self.cls = cls
        self.method = method
        self.__name__ = method
        self.__module__ = cls.__module__
        self.__qualname__ = f"{cls.__qualname__}.{method}"

    def __call__(self) -> Optional[Dict[str, str]]:
        import unittest

        if not _result_class:
            _result_class.append(_make_result_class(unittest))
        result = _result_class[0]()
        suite = unittest.TestSuite([self.cls(self.method)])
        with _fixture_lock(self.cls, unittest):
            suite.run(result)
        if result.reports:
            sys.stderr.write("".join(f"{'=' * 70}\n{r}\n" for r in result.reports))
            sys.stderr.flush()
        if not result.parts:
            return None
        worst = max(result.parts, key=lambda p: _RANK[p.outcome])
        if worst.outcome == "pass":
            return {"expected_failure": worst.message.partition(": ")[2]}
        message = worst.message
        more = len(result.parts) - 1
        if more:
            message += f" (and {more} more)"
        if worst.exc is not None:
            raise TaskOutcome(worst.outcome, message) from worst.exc
        raise TaskOutcome(worst.outcome, message)

    def __repr__(self) -> str:
        return f"<unittest {self.__module__}.{self.__qualname__}>"


# -- finding them ------------------------------------------------------------------


class SuiteModuleFactory(ModuleFactory):
    """`ModuleFactory` (the callables with metadata) plus the module's own
    plain test_* functions and unittest test methods; see the module docstring."""

    def extract_from_mod(self, mod: ModuleType) -> Iterator[Any]:
        # (a module that defines a TestCase class has imported unittest)
        unittest = sys.modules.get("unittest")
        testcase = unittest.TestCase if unittest is not None else None
        loader = None
        modname = mod.__name__
        for name in sorted(dir(mod)):
            try:
                obj = getattr(mod, name)
            except AttributeError:
                continue
            if self.is_valid_callable(name, obj):
                self.callpath_burn(obj, name)
                yield obj
            elif (type(obj) is _FUNCTION and name.startswith(PREFIX)
                  and obj.__module__ == modname):
                task: Any = PlainTest(obj, name)
                self.callpath_burn(task, name)
                yield task
            elif (testcase is not None and isinstance(obj, type)
                  and issubclass(obj, testcase) and obj.__module__ == modname):
                if loader is None:
                    loader = unittest.TestLoader()  # type: ignore[union-attr]
                for method in loader.getTestCaseNames(obj):
                    task = UnitTest(obj, method)
                    self.callpath_burn(task, method, path=self.callpath + [name])
                    yield task


class SuiteTreeFactory(ModTreeFactory):
    """`ModTreeFactory` with `SuiteModuleFactory` for each module."""

    module_factory = SuiteModuleFactory


__all__ = ["PlainTest", "SuiteModuleFactory", "SuiteTreeFactory", "UnitTest"]

"""`pytest:PATH` suites: every test pytest collects under PATH is a task.

Collection runs pytest in a process of its own (``--collect-only`` with a
plugin of ours that writes each item's node id and pexen-relevant markers
to a file): the controller imports no test module. Each item becomes a
`PytestTask` keyed by its node id (`node_key`).

Running: a `PytestTask` called in a worker process starts, the first time,
a pytest session in that process (configured as pytest would be from the
suite's directory and arguments, output not captured by pytest: pexen
captures each attempt's), collects the suite once, and keeps it: the next
tests the worker runs use the same session, so fixtures of module, class
and session scope live per worker as under pytest-xdist. The session ends
(its fixtures torn down, ``pytest_sessionfinish`` called) when the worker
stops.

pytest is imported only in those processes and in the collecting one, and
only if installed (`pexen[pytest]`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ..sched import meta as sched_meta
from ..sched._keys import CALLPATH_ATTR_NAME
from .outcome import TaskOutcome

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: The prefix of a pytest suite on the command line.
PREFIX = "pytest:"
EXTRA = "pytest is not installed: pip install 'pexen[pytest]'"

#: Metadata a ``@pytest.mark.pexen(...)`` marker may give (as pexen's own).
MARK_FIELDS = ("requires", "provides", "claims", "uses", "priority", "timeout")


def have_pytest() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytest") is not None


def node_key(nodeid: str) -> str:
    """The task key of a pytest node id: the file's path without ``.py``,
    then each ``::`` part, joined by ``/``; in a parameter id (``[...]``),
    ``%`` is written ``%25`` and ``/`` ``%2F`` (a key's ``/`` separates its
    parts). ``tests/test_x.py::TestY::test_z[a/b]`` ->
    ``tests/test_x/TestY/test_z[a%2Fb]``."""
    # The parameter id is all from the first "[" (as pytest's JUnit has it):
    # it may hold "::" and "/" ("ldap://[2001:db8::7]/x").
    head, bracket, param = nodeid.partition("[")
    path, sep, rest = head.partition("::")
    if path.endswith(".py"):
        path = path[:-3]
    parts = [path] + (rest.split("::") if sep else [])
    if bracket:
        parts[-1] += bracket + param.replace("%", "%25").replace("/", "%2F")
    return "/".join(parts)


# -- collection, in a process of its own -----------------------------------------


def collect(target: str, cwd: str, args: Sequence[str]) -> List[Dict[str, Any]]:
    """The items pytest collects at `target` (a path, maybe with ``::``
    parts) from `cwd` with `args`: [{"nodeid", "mark"}] in pytest's order.
    A ValueError with one line saying what went wrong."""
    fd, out = tempfile.mkstemp(prefix="pexen-pytest-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, "collect", out, *args, target],
                              cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
        with open(out) as f:
            text = f.read()
    finally:
        os.unlink(out)
    found = json.loads(text) if text else None
    if not isinstance(found, dict):
        tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or [
            f"exit status {proc.returncode}"]
        raise ValueError(f"pytest did not collect: {tail[0]}")
    if found["code"] not in (0, 5) and not found["errors"]:
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("ERROR")] or lines[-1:] or [
            f"exit status {found['code']}"]
        raise ValueError(f"pytest refused: {said[0]}")
    if found["errors"]:
        where, what = found["errors"][0]
        more = len(found["errors"]) - 1
        raise ValueError(f"collecting {where} failed: {what}"
                         + (f" (and {more} more)" if more else ""))
    if not found["items"]:
        raise ValueError("pytest collected no tests")
    return list(found["items"])


class _Collector:
    """The plugin of the collecting process."""

    def __init__(self) -> None:
        self.items: List[Dict[str, Any]] = []
        self.errors: List[Tuple[str, str]] = []

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append((report.nodeid or "?", _one_line(_crash_line(report))))

    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:
            self.items.append({"nodeid": item.nodeid, "mark": item_meta(item)})


def item_meta(item: Any) -> Dict[str, Any]:
    """pexen metadata of a pytest item: ``@pytest.mark.pexen(...)``, and
    ``@pytest.mark.timeout(S)`` (pytest-timeout's) as the deadline."""
    out: Dict[str, Any] = {}
    timeout = item.get_closest_marker("timeout")
    if timeout is not None:
        seconds = timeout.args[0] if timeout.args else timeout.kwargs.get("timeout")
        if isinstance(seconds, (int, float)) and seconds > 0:
            out["timeout"] = seconds
    for mark in reversed(list(item.iter_markers("pexen"))):   # the closest wins
        for name, value in mark.kwargs.items():
            if name not in MARK_FIELDS:
                raise ValueError(f"{item.nodeid}: @pytest.mark.pexen has no field {name!r} "
                                 f"(it takes {', '.join(MARK_FIELDS)})")
            out[name] = list(value) if isinstance(value, (list, tuple, set)) else value
    return out


def _crash_line(report: Any) -> str:
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    text = [line for line in str(longrepr or "").strip().splitlines() if line.strip()]
    said = [line[1:].strip() for line in text if line.startswith("E ")]
    return said[0] if said else text[-1] if text else "failed"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _collect_main(out: str, args: List[str]) -> int:
    import pytest

    plugin = _Collector()
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *args],
                       plugins=[plugin, _Markers()])
    with open(out, "w") as f:
        json.dump({"items": plugin.items, "errors": plugin.errors, "code": int(code)}, f)
    return 0


class _Markers:
    """Registers the markers pexen reads, so ``--strict-markers`` accepts them."""

    def pytest_configure(self, config: Any) -> None:
        config.addinivalue_line("markers", "pexen(requires=, provides=, claims=, uses=, "
                                           "priority=, timeout=): pexen's task metadata")
        known = " ".join(config.getini("markers"))
        if "timeout(" not in known and "timeout:" not in known:
            config.addinivalue_line("markers", "timeout(seconds): the test's deadline")


# -- the tasks ---------------------------------------------------------------------


class PytestTask:
    """One collected pytest item as a task: runs in its worker's pytest
    session (see the module's docstring) and ends as pytest said:

    passed -> pass; failed -> fail (the assertion's short message; the long
    report on stderr); skipped -> skip (its reason); xfail -> pass, with a
    reported result ``xfail``; xpass -> pass (strict: fail); an error in
    setup or teardown -> error.
    """

    def __init__(self, nodeid: str, key: str, target: str, cwd: str,
                 args: Tuple[str, ...]) -> None:
        self.nodeid = nodeid
        self.target = target
        self.cwd = cwd
        self.args = args
        self.__name__ = key.rsplit("/", 1)[-1]
        self.__qualname__ = self.__name__
        self.__module__ = "pytest"
        setattr(self, CALLPATH_ATTR_NAME, key.split("/"))

    def __repr__(self) -> str:
        return f"<pytest {self.nodeid}>"

    def __call__(self) -> None:
        session = _SESSIONS.get((self.target, self.cwd, self.args))
        if session is None:
            session = _Session(self.target, self.cwd, self.args)
            _SESSIONS[(self.target, self.cwd, self.args)] = session
        session.run(self.nodeid)


_SESSIONS: Dict[Tuple[str, str, Tuple[str, ...]], Any] = {}


class _Reports:
    """The plugin of a worker's session: the reports of the test running."""

    def __init__(self) -> None:
        self.reports: List[Any] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.append(report)


class _Session:
    """A pytest session in this process, its items collected once."""

    def __init__(self, target: str, cwd: str, args: Tuple[str, ...]) -> None:
        import pytest  # noqa: F401  (the error if it is missing: the task's)
        from _pytest.config import _prepareconfig
        from _pytest.main import Session

        self.recorder = _Reports()
        args = per_worker_basetemp(args, f"pexen-worker-{os.getpid()}")
        here = os.getcwd()
        os.chdir(cwd)
        try:
            parent = _basetemp_parent(args)
            if parent:
                os.makedirs(parent, exist_ok=True)
            config = _prepareconfig([*args, "--capture=no", "-p", "no:terminal",
                                     "-p", "no:cacheprovider", target],
                                    plugins=[self.recorder, _Markers()])
            config._do_configure()
            session = Session.from_config(config)
            config.hook.pytest_sessionstart(session=session)
            config.hook.pytest_collection(session=session)
        finally:
            os.chdir(here)
        self.config = config
        self.session = session
        self.index = {item.nodeid: i for i, item in enumerate(session.items)}
        from ..sched import _call

        _call.at_worker_exit.append(self.finish)

    def run(self, nodeid: str) -> None:
        i = self.index.get(nodeid)
        if i is None:
            raise TaskOutcome("error", f"{nodeid}: not collected in this worker (did the "
                                       "tests change since the run started?)")
        items = self.session.items
        item = items[i]
        # What the test before it left set up that this one does not need
        # (its neighbour was guessed, and was not what ran next here).
        self.session._setupstate.teardown_exact(item)
        nextitem = items[i + 1] if i + 1 < len(items) else None
        self.recorder.reports = []
        self.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        _outcome(self.recorder.reports)

    def finish(self) -> None:
        try:
            self.session._setupstate.teardown_exact(None)
        finally:
            self.config.hook.pytest_sessionfinish(session=self.session, exitstatus=0)
            self.config._ensure_unconfigure()


def _basetemp(args: Sequence[str]) -> Optional[Tuple[int, str, str]]:
    """Where `args` give ``--basetemp DIR`` or ``--basetemp=DIR``: (the
    index of the argument holding DIR, what comes before DIR in it, DIR)."""
    for i, arg in enumerate(args):
        if arg == "--basetemp" and i + 1 < len(args):
            return i + 1, "", args[i + 1]
        if arg.startswith("--basetemp="):
            return i, "--basetemp=", arg[len("--basetemp="):]
    return None


def per_worker_basetemp(args: Sequence[str], name: str) -> Tuple[str, ...]:
    """`args` with a ``--basetemp DIR`` (or ``--basetemp=DIR``) made
    ``DIR/name``: each worker's session clears its own directory when it
    starts, as pytest does its base, not the other workers' (as
    pytest-xdist gives each of its workers one)."""
    out = list(args)
    found = _basetemp(out)
    if found is not None:
        i, prefix, base = found
        out[i] = prefix + os.path.join(base, name)
    return tuple(out)


def _basetemp_parent(args: Sequence[str]) -> Optional[str]:
    """The directory a per-worker ``--basetemp`` is made in (pytest makes
    the base itself, not its parents)."""
    found = _basetemp(args)
    return os.path.dirname(found[2]) if found is not None else None


def _outcome(reports: List[Any]) -> None:
    """End the task as its reports say (return: it passed)."""
    by = {r.when: r for r in reports if not hasattr(r, "context")}
    for report in reports:
        if report.failed:
            sys.stderr.write(str(report.longrepr) + "\n")
    sys.stderr.flush()
    setup, call, teardown = by.get("setup"), by.get("call"), by.get("teardown")
    if setup is not None and setup.failed:
        raise TaskOutcome("error", f"error in setup: {_crash_line(setup)}")
    if setup is not None and setup.skipped:
        raise TaskOutcome("skip", _skip_reason(setup))
    # Subtests (the ``subtests`` fixture, unittest's subTest): a failed one
    # fails the test, as in pytest's JUnit, its message the first's.
    failed_subtests = [r for r in reports if hasattr(r, "context") and r.failed]
    if failed_subtests:
        first = failed_subtests[0]
        more = len(failed_subtests) - 1
        raise TaskOutcome("fail", f"subtest {_subtest_name(first.context)} failed: "
                                  f"{_crash_line(first)}"
                                  + (f" (and {more} more failed subtests)" if more else ""))
    if call is not None:
        wasxfail = getattr(call, "wasxfail", None)
        if call.skipped and wasxfail is not None:
            _report_xfail("xfail", wasxfail)
        elif call.skipped:
            raise TaskOutcome("skip", _skip_reason(call))
        elif call.failed:
            raise TaskOutcome("fail", _crash_line(call))
        elif wasxfail is not None:
            _report_xfail("xpass", wasxfail)
    if teardown is not None and teardown.failed:
        raise TaskOutcome("error", f"error in teardown: {_crash_line(teardown)}")


def _subtest_name(context: Any) -> str:
    """A subtest as pytest names it: ``[msg] (k=v, ...)``."""
    parts = []
    msg = getattr(context, "msg", None)
    if msg is not None:
        parts.append(f"[{msg}]")
    kwargs = getattr(context, "kwargs", None) or {}
    if kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")")
    return " ".join(parts) or "(<subtest>)"


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else \
        str(longrepr or "skipped")
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _report_xfail(name: str, reason: str) -> None:
    from .report import report

    report(name, "pass", reason or None)


def load(spec_target: str, cwd: str, args: Tuple[str, ...]
         ) -> List[Tuple[str, Callable[..., Any]]]:
    """The tasks of a pytest suite as (key, task); ValueError if it has none."""
    items = collect(spec_target, cwd, args)
    out: List[Tuple[str, Callable[..., Any]]] = []
    seen: Dict[str, str] = {}
    for item in items:
        nodeid = item["nodeid"]
        key = node_key(nodeid)
        if key in seen:
            raise ValueError(f"two tests have the task key {key!r}: {seen[key]} and {nodeid}")
        seen[key] = nodeid
        task = PytestTask(nodeid, key, spec_target, cwd, args)
        mark = item.get("mark") or {}
        if mark:
            sched_meta.assign_val(task, **mark)
        out.append((key, task))
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "collect":
        sys.exit(_collect_main(sys.argv[2], sys.argv[3:]))
    sys.exit("usage: python -m pexen.harness.pytestsuite collect OUT [PYTEST ARGS]")

"""pytest suites (``pexen-harness start pytest:PATH``) on generated pytest
projects: outcomes, fixtures of every scope living per worker, markers,
JUnit names as ``pytest --junitxml`` writes them, bad input."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from pexen.harness.pytestsuite import node_key

from .test_cli import harness, resume_until_it_ends, states

CONFTEST = textwrap.dedent('''
    import os
    import pytest

    LOG = os.environ["FIXTURE_LOG"]


    def note(what):
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\\n")


    @pytest.fixture(scope="session")
    def sess():
        note("session-up")
        yield "s"
        note("session-down")


    @pytest.fixture(scope="package")
    def pkg():
        note("package-up")
        yield
        note("package-down")


    @pytest.fixture(scope="class")
    def klass(request, pkg):
        note(f"class-up {request.cls.__name__}")
        yield
        note(f"class-down {request.cls.__name__}")


    @pytest.fixture(scope="module")
    def mod(request, sess):
        note(f"module-up {request.module.__name__}")
        yield "m"
        note(f"module-down {request.module.__name__}")
''')

OUTCOMES = textwrap.dedent('''
    import os
    import sys
    import time

    import pytest


    def test_pass(mod):
        print("to stdout")
        print("to stderr", file=sys.stderr)


    def test_fail():
        x = 1
        assert x == 2, "x is not two"


    @pytest.mark.skip(reason="not today")
    def test_skip():
        pass


    @pytest.mark.xfail(reason="known bug")
    def test_xfail():
        assert 0


    @pytest.mark.xfail(strict=True, reason="should fail")
    def test_xpass_strict():
        pass


    @pytest.fixture
    def broken():
        raise RuntimeError("fixture broke")


    def test_setup_error(broken):
        pass


    @pytest.fixture
    def bad_teardown():
        yield
        raise RuntimeError("teardown broke")


    def test_teardown_error(bad_teardown):
        pass


    @pytest.mark.parametrize("v", [1, "a/b", "x%y"])
    def test_param(v, mod):
        assert v


    class TestClass:
        def test_method(self, capsys, mod, klass):
            print("captured")
            assert capsys.readouterr().out == "captured\\n"

        def test_other(self, klass):
            pass


    def test_dies():
        os._exit(3)


    @pytest.mark.timeout(1)
    def test_hangs():
        time.sleep(60)
''')

SECOND = textwrap.dedent('''
    import os

    import pytest


    @pytest.mark.pexen(provides=["db"], priority=-5)
    def test_makes_db(mod):
        open(os.path.join(os.environ["ORDER_DIR"], "db"), "w").close()


    @pytest.mark.pexen(requires=["db"])
    def test_uses_db(mod):
        assert os.path.exists(os.path.join(os.environ["ORDER_DIR"], "db"))
''')


def project(tmp_path):
    top = tmp_path / "proj"
    (top / "tests").mkdir(parents=True)
    (top / "tests" / "__init__.py").write_text("")
    (top / "tests" / "conftest.py").write_text(CONFTEST)
    (top / "tests" / "test_outcomes.py").write_text(OUTCOMES)
    (top / "tests" / "test_second.py").write_text(SECOND)
    (tmp_path / "order").mkdir()
    env = {"FIXTURE_LOG": str(tmp_path / "fixtures.log"), "ORDER_DIR": str(tmp_path / "order")}
    return top, env


def test_basetemp_is_one_per_worker():
    from pexen.harness.pytestsuite import per_worker_basetemp

    assert per_worker_basetemp(("-x", "--basetemp", "/t"), "w1") == ("-x", "--basetemp", "/t/w1")
    assert per_worker_basetemp(("--basetemp=/t", "-q"), "w1") == ("--basetemp=/t/w1", "-q")
    assert per_worker_basetemp(("-q",), "w1") == ("-q",)


def test_basetemp_given_each_worker_has_its_own(tmp_path):
    top = tmp_path / "proj"
    top.mkdir()
    (top / "test_tmp.py").write_text(textwrap.dedent('''
        import time

        import pytest


        @pytest.mark.parametrize("i", range(8))
        def test_keeps_its_file(tmp_path, i):
            (tmp_path / "mine").write_text(str(i))
            time.sleep(0.1)
            assert (tmp_path / "mine").read_text() == str(i)
    '''))
    base = tmp_path / "base"
    res = harness("start", "pytest:test_tmp.py", "-j", "2", f"--pytest-args=--basetemp={base}",
                  cwd=top)
    assert res.returncode == 0, res.stdout + res.stderr
    workers = sorted(p.name for p in base.iterdir())
    assert 1 <= len(workers) <= 2 and all(w.startswith("pexen-worker-") for w in workers)


def test_node_keys():
    assert node_key("tests/test_x.py::TestY::test_z[a/b]") == "tests/test_x/TestY/test_z[a%2Fb]"
    assert node_key("test_x.py::test_y[50%/x]") == "test_x/test_y[50%25%2Fx]"
    assert node_key("tests/test_x.py::test_y") == "tests/test_x/test_y"
    # a parameter id with "::" and "/" in it (an IPv6 URL)
    assert node_key("t.py::T::test_u[ldap://[2001:db8::7]/c=GB]") == \
        "t/T/test_u[ldap:%2F%2F[2001:db8::7]%2Fc=GB]"


def test_outcomes_fixtures_and_junit(tmp_path):
    top, env = project(tmp_path)
    res = harness("start", "pytest:tests", "-j", "2", "--xunit", "r.xml", cwd=top, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, run = states(top / "pexen-journal.sqlite")
    got = {key: (row.state, row.reason) for key, row in rows.items()}
    p = "tests/test_outcomes/"
    assert got[p + "test_pass"] == ("pass", None)
    assert got[p + "test_fail"][0] == "fail"
    assert got[p + "test_fail"][1].startswith("AssertionError: x is not two")
    assert got[p + "test_skip"] == ("skip", "not today")
    assert got[p + "test_xfail"] == ("pass", None)
    assert got[p + "test_xpass_strict"] == ("fail", "[XPASS(strict)] should fail")
    assert got[p + "test_setup_error"] == ("error", "error in setup: RuntimeError: fixture broke")
    assert got[p + "test_teardown_error"] == (
        "error", "error in teardown: RuntimeError: teardown broke")
    for param in ("1", "a%2Fb", "x%25y"):
        assert got[p + f"test_param[{param}]"] == ("pass", None)
    assert got[p + "TestClass/test_method"] == ("pass", None)
    assert got[p + "TestClass/test_other"] == ("pass", None)
    assert got[p + "test_dies"][0] == "error" and "status 3" in got[p + "test_dies"][1]
    assert got[p + "test_hangs"][0] == "timeout"
    assert got["tests/test_second/test_makes_db"] == ("pass", None)
    assert got["tests/test_second/test_uses_db"] == ("pass", None)
    # output per test, as pexen captures it; the failure's long report on stderr
    out = harness("log", p + "test_pass", cwd=top)
    assert "to stdout" in out.stdout and "to stderr" in out.stdout
    out = harness("log", p + "test_fail", cwd=top)
    assert '>       assert x == 2, "x is not two"' in out.stdout
    # xfail: a reported result
    res = json.loads(harness("status", "--json", cwd=top).stdout)
    assert res["counts"]["pass"] >= 8
    import pexen.journal as journal
    with journal.open(str(top / "pexen-journal.sqlite"), create=False) as j:
        reported = [(r.key, r.name, r.outcome, r.message) for r in j.results(run.id)]
    assert reported == [(p + "test_xfail", "xfail", "pass", "known bug")]
    # fixtures: a session per worker, a module fixture per module per worker,
    # and each torn down (the session's when its worker stopped)
    lines = (tmp_path / "fixtures.log").read_text().split("\n")
    events = [line.split(" ", 1) for line in lines if line]
    pids = {pid for pid, _ in events}
    ups = [pid for pid, what in events if what == "session-up"]
    assert len(ups) == len(set(ups)) and set(ups) == pids
    downs = [pid for pid, what in events if what == "session-down"]
    # (the worker the dying test took, and the hung one's, never tore down)
    assert len(downs) >= 1 and set(downs) <= set(ups)
    # a module fixture lives while its worker runs tests of that module: set
    # up again only after it was torn down (the worker ran another module's)
    live = set()
    for pid, what in events:
        if what.startswith("module-"):
            kind, module = what.split(" ")
            if kind == "module-up":
                assert (pid, module) not in live, (pid, module)
                live.add((pid, module))
            else:
                live.discard((pid, module))
    ups = sum(1 for _, what in events if what == "module-up tests.test_outcomes")
    assert ups < 5   # (five tests of the module use it: shared, not made for each)
    # class and package fixtures: in a worker that ended in good order,
    # each set up is torn down once, in that worker
    orderly = set(downs)
    for scope in ("class", "package"):
        mine = [(pid, what.split("-")[1]) for pid, what in events
                if what.startswith(scope + "-")]
        assert any(kind.startswith("up") for _, kind in mine), scope
        for pid in orderly:
            kinds = [kind.split()[0] for p, kind in mine if p == pid]
            assert kinds.count("up") == kinds.count("down"), (scope, pid, kinds)
            assert all(kinds[:i + 1].count("down") <= kinds[:i + 1].count("up")
                       for i in range(len(kinds))), (scope, pid, kinds)
    # JUnit: the classnames and names pytest --junitxml gives the same tests
    ours = {(c.get("classname"), c.get("name"))
            for c in ET.parse(top / "r.xml").getroot().iter("testcase")}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--junitxml", str(tmp_path / "pytest.xml"), "tests",
                    "--deselect", "tests/test_outcomes.py::test_dies",
                    "--deselect", "tests/test_outcomes.py::test_hangs"],
                   cwd=top, env={**os.environ, **env}, capture_output=True, timeout=120)
    theirs = {(c.get("classname"), c.get("name"))
              for c in ET.parse(tmp_path / "pytest.xml").getroot().iter("testcase")}
    assert theirs and theirs <= ours
    assert ours - theirs == {("tests.test_outcomes", "test_dies"),
                             ("tests.test_outcomes", "test_hangs")}
    # --rerun-failed: a new run of what did not pass (and what it needs)
    res = harness("start", "--rerun-failed", cwd=top, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    again, run2 = states(top / "pexen-journal.sqlite")
    assert run2.id == run.id + 1
    assert set(again) == {key for key, (state, _) in got.items()
                          if state not in ("pass", "skip")}
    assert again[p + "test_fail"].state == "fail"


def test_list_and_select(tmp_path):
    top, env = project(tmp_path)
    res = harness("list", "--tasks", "pytest:tests/test_second.py", cwd=top, env=env)
    assert res.returncode == 0, res.stderr
    assert "tests/test_second/test_makes_db" in res.stdout
    assert "tests/test_outcomes" not in res.stdout
    res = harness("start", "pytest:tests", "--select", "tests/test_outcomes/test_param*",
                  "--pytest-args", "-k 'param and not x'", cwd=top, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(top / "pexen-journal.sqlite")
    assert sorted(rows) == ["tests/test_outcomes/test_param[1]",
                            "tests/test_outcomes/test_param[a%2Fb]"]


@pytest.mark.parametrize("case", ["missing", "collect-error", "args-elsewhere", "empty",
                                  "bad-args", "thread-pool"])
def test_bad_pytest_suites(tmp_path, case):
    top, env = project(tmp_path)
    if case == "collect-error":
        (top / "tests" / "test_broken.py").write_text("import no_such_module_here\n")
    if case == "empty":
        (top / "empty").mkdir()
    args = {"missing": ["pytest:nope"], "collect-error": ["pytest:tests"],
            "args-elsewhere": [str(top / "tests"), "--pytest-args=-x"],
            "empty": ["pytest:empty"],
            "bad-args": ["pytest:tests", "--pytest-args", "-k 'x%'"],
            "thread-pool": ["pytest:tests", "--pool", "thread"]}[case]
    res = harness("start", *args, cwd=top, env=env)
    assert res.returncode == 4, res.stdout + res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith("pexen-harness: error: ")
    assert {"missing": "no such file or directory: nope",
            "collect-error": "collecting tests/test_broken.py failed: ModuleNotFoundError",
            "args-elsewhere": "--pytest-args is for a pytest:PATH suite",
            "empty": "pytest collected no tests",
            "bad-args": "pytest refused: ERROR: Wrong expression passed to '-k'",
            "thread-pool": "a pytest:PATH suite runs on the process pool, not --pool thread"
            }[case] in line
    assert not (top / "pexen-journal.sqlite").exists() or case == "args-elsewhere"


def test_without_pytest_a_pytest_suite_is_one_line_naming_the_extra(tmp_path):
    top, env = project(tmp_path)
    hide = ("import runpy, sys; sys.modules['pytest'] = None; "
            "sys.argv = ['pexen-harness', 'start', 'pytest:tests']; "
            "runpy.run_module('pexen.harness.cli', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", hide], cwd=top, capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env})
    assert res.returncode == 4, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        "pexen-harness: error: suite 'pytest:tests': pytest is not installed: "
        "pip install 'pexen[pytest]'"]
    assert not (top / "pexen-journal.sqlite").exists()


def test_resume_refuses_the_thread_pool_for_a_pytest_suite(tmp_path):
    top, env = project(tmp_path)
    res = harness("start", "pytest:tests/test_second.py", cwd=top, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    journal = top / "pexen-journal.sqlite"
    with sqlite3.connect(journal) as con:   # (as if its controller had died)
        con.execute("UPDATE runs SET state = 'running'")
    before = contents(journal)
    res = harness("resume", "--pool", "thread", cwd=top, env=env)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "runs on the process pool, not --pool thread" in res.stderr
    assert contents(journal) == before


def contents(journal):
    with sqlite3.connect(journal) as con:
        return {table: con.execute(f"SELECT * FROM {table}").fetchall()
                for table in ("runs", "tasks", "events", "results")}


SLOW = textwrap.dedent('''
    import os
    import time

    import pytest


    @pytest.mark.parametrize("i", range(16))
    def test_slow(i, request):
        with open(os.environ["RUNS_LOG"], "a") as f:
            f.write(request.node.nodeid + "\\n")
        time.sleep(0.2)
''')


def test_controller_killed_and_resumed(tmp_path):
    """SIGKILL the controller mid-run; resume runs the rest, and no test
    that had passed runs again."""
    import signal
    import time

    import pexen.journal as journal

    from .test_cli import end, has_run, spawn

    top = tmp_path / "proj"
    top.mkdir()
    (top / "test_slow.py").write_text(SLOW)
    log = tmp_path / "runs.log"
    env = {"RUNS_LOG": str(log)}
    proc = spawn("start", "pytest:test_slow.py", "-j", "2", cwd=top, env=env)
    path = top / "pexen-journal.sqlite"
    try:
        deadline = time.monotonic() + 60
        passed = set()
        while time.monotonic() < deadline:
            if has_run(path):
                with journal.open(str(path), create=False) as j:
                    passed = {t.key for t in j.tasks(1) if t.state == "pass"}
                if len(passed) >= 4:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    assert 4 <= len(passed) < 16
    time.sleep(0.5)   # (what the dead controller's workers still finish)
    res = harness("resume", cwd=top, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, run = states(path)
    assert run.state == "finished" and {r.state for r in rows.values()} == {"pass"}
    ran = log.read_text().split()
    for key in passed:
        nodeid = "test_slow.py::" + key.split("/", 1)[1]
        assert ran.count(nodeid) == 1, (nodeid, ran)
    assert sorted(set(ran)) == sorted(f"test_slow.py::test_slow[{i}]" for i in range(16))


CRASHES = textwrap.dedent('''
    import ctypes
    import os
    import subprocess
    import time

    import pytest


    def test_segfaults():
        ctypes.string_at(0)


    @pytest.mark.timeout(1)
    def test_hangs_with_children():
        child = subprocess.Popen(["sleep", "300"])
        with open(os.environ["CHILD_PID"], "w") as f:
            f.write(str(child.pid))
        time.sleep(300)


    def test_after():
        pass
''')


def test_a_segfault_and_a_hung_test_with_children(tmp_path):
    """A test that segfaults its worker ends error, naming the signal; one
    past its deadline ends timeout with its child; the run goes on."""
    import psutil

    top = tmp_path / "proj"
    top.mkdir()
    (top / "test_crashes.py").write_text(CRASHES)
    res = harness("start", "pytest:test_crashes.py", "-j", "2", cwd=top,
                  env={"CHILD_PID": str(tmp_path / "child.pid")})
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(top / "pexen-journal.sqlite")
    seg = rows["test_crashes/test_segfaults"]
    assert seg.state == "error" and "SIGSEGV" in seg.reason
    hung = rows["test_crashes/test_hangs_with_children"]
    assert hung.state == "timeout"
    assert rows["test_crashes/test_after"].state == "pass"
    pid = int((tmp_path / "child.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


KILLER = textwrap.dedent('''
    import os
    import signal

    import psutil


    def test_fine():
        pass


    def test_takes_the_machine_down():
        with open(os.environ["RUNS_LOG"], "a") as f:
            f.write("ran\\n")
        # worker -> fork server -> controller: both go, as in a crash of the machine
        os.kill(psutil.Process().parent().parent().pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
''')


def test_a_test_that_takes_the_controller_down(tmp_path):
    """resume goes on after it; past --max-attempts it ends error, the run
    finishes with the other tests. (Tests handed out behind it would be
    spared, doc/harness.md, "Attempts"; here the other test comes first.)"""
    top = tmp_path / "proj"
    top.mkdir()
    (top / "test_killer.py").write_text(KILLER)
    env = {"RUNS_LOG": str(tmp_path / "runs.log")}
    res = harness("start", "pytest:test_killer.py", "-j", "1", cwd=top, env=env)
    assert res.returncode != 0
    res = resume_until_it_ends(top, env)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    rows, run = states(top / "pexen-journal.sqlite")
    killer = rows["test_killer/test_takes_the_machine_down"]
    assert killer.state == "error" and killer.reason.startswith("crash loop: 3 attempts")
    assert rows["test_killer/test_fine"].state == "pass"
    assert (tmp_path / "runs.log").read_text().split() == ["ran"] * 3


KINDS = textwrap.dedent('''
    import unittest

    import pytest


    class Case(unittest.TestCase):
        def test_subtests(self):
            for i in range(3):
                with self.subTest(i=i):
                    self.assertNotEqual(i, 1)

        def test_fine(self):
            self.assertEqual(1, 1)

        @unittest.skip("not here")
        def test_skipped(self):
            pass


    def test_subtests_fixture(subtests):
        for i in range(4):
            with subtests.test(msg="even", i=i):
                assert i % 2 == 0


    def test_subtests_all_pass(subtests):
        for i in range(3):
            with subtests.test(i=i):
                pass


    @pytest.mark.parametrize("url", ["ldap://[2001:db8::7]/c=GB", "http://x/a%20b"])
    def test_url(url):
        pass


    @pytest.mark.parametrize("v", [1], ids=["y" * 300])
    def test_long_id(v):
        print("long id ran")


    def add(a, b):
        """
        >>> add(1, 2)
        3
        >>> add(2, 2)
        5
        """
        return a + b
''')


def junit_outcomes(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out[(case.get("classname"), case.get("name"))] = kinds[0] if kinds else "passed"
    return out


@pytest.mark.skipif(not pytest.version_tuple >= (9,), reason="subtests are pytest 9's")
def test_unittest_subtests_doctests_and_odd_ids_as_pytest_has_them(tmp_path):
    """unittest cases, subtests (a failed one fails its test, named in the
    message), doctests, parameter ids holding ``::``, ``/`` and ``%``, an id
    too long for a file name: the outcomes and JUnit names of pytest."""
    (tmp_path / "test_kinds.py").write_text(KINDS)
    res = harness("start", "pytest:test_kinds.py", "--pytest-args=--doctest-modules",
                  "--xunit", "r.xml", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    got = {key: (row.state, row.reason) for key, row in rows.items()}
    assert got["test_kinds/Case/test_subtests"] == (
        "fail", "subtest (i=1) failed: AssertionError: 1 == 1")
    assert got["test_kinds/test_subtests_fixture"] == (
        "fail", "subtest [even] (i=1) failed: assert (1 % 2) == 0 (and 1 more failed subtests)")
    assert got["test_kinds/test_subtests_all_pass"] == ("pass", None)
    assert got["test_kinds/Case/test_skipped"] == ("skip", "not here")
    assert got["test_kinds/test_url[ldap:%2F%2F[2001:db8::7]%2Fc=GB]"] == ("pass", None)
    assert got["test_kinds/test_url[http:%2F%2Fx%2Fa%2520b]"] == ("pass", None)
    assert got["test_kinds/test_long_id[" + "y" * 300 + "]"] == ("pass", None)
    assert got["test_kinds/test_kinds.add"][0] == "fail"
    out = harness("log", "test_kinds/test_long_id[" + "y" * 300 + "]", cwd=tmp_path)
    assert "long id ran" in out.stdout, out.stderr
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--doctest-modules", "--junitxml", str(tmp_path / "pytest.xml"),
                    "test_kinds.py"], cwd=tmp_path, capture_output=True, timeout=120)
    assert junit_outcomes(tmp_path / "r.xml") == junit_outcomes(tmp_path / "pytest.xml")


"""Module suites as people write them: plain test_* functions and
unittest.TestCase classes, run through the CLI (doc/suites.md, "Plain test_*
functions and unittest classes")."""

import json
import pickle
import textwrap
import time

import psutil
import pytest

import pexen.journal as journal
from pexen.harness.suite import load_suite, parse_suite
from pexen.sched.meta import get_provides

from .test_cli import harness, states
from .test_suite import isolated_imports, suite_error, write_tree  # noqa: F401

PLAIN = textwrap.dedent('''
    import os

    from pexen.sched.common import TaskSkipError


    def test_passes():
        assert 1 + 1 == 2


    def test_bare_assert():
        answer = 41
        assert answer == 42


    def test_assert_message():
        assert False, "the message"


    def test_raises():
        raise ValueError("not an assertion")


    def test_skips():
        raise TaskSkipError("no hardware")


    def test_unittest_skip():
        import unittest

        raise unittest.SkipTest("unittest's skip")


    def test_pytest_skip():
        import pytest

        pytest.skip("pytest's skip")


    def test_pytest_fail():
        import pytest

        pytest.fail("pytest's fail")


    def test_gets_shared(shared):
        return {"shared": isinstance(shared, dict)}


    def test_wants_a_fixture(tmp_path):
        pass


    def helper():
        raise RuntimeError("not a test")


    async def test_coroutine():
        pass


    test_alias_of_helper = helper    # named test_*, defined here: a test
''')


def _rows(tmp_path):
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    return {key: (row.state, row.reason) for key, row in rows.items()}, run


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_plain_test_functions(tmp_path, pool):
    (tmp_path / "plain.py").write_text(PLAIN)
    res = harness("start", "plain", "--pool", pool, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, run = _rows(tmp_path)
    assert rows == {
        "test_passes": ("pass", None),
        "test_bare_assert": ("fail", "AssertionError: assert answer == 42"),
        "test_assert_message": ("fail", "AssertionError: the message"),
        "test_raises": ("error", "ValueError: not an assertion"),
        "test_skips": ("skip", "no hardware"),
        "test_unittest_skip": ("skip", "unittest's skip"),
        "test_pytest_skip": ("skip", "pytest's skip"),
        "test_pytest_fail": ("fail", "pytest's fail"),
        "test_gets_shared": ("pass", None),
        "test_wants_a_fixture": (
            "error", "test_wants_a_fixture(tmp_path) has parameters pexen does not fill: a "
                     "plain test_* function takes no arguments, or one named shared (pytest "
                     "fixtures are not supported)"),
        "test_coroutine": (
            "error", "test_coroutine is a coroutine function: pexen calls plain functions "
                     "(run the coroutine with asyncio.run in one)"),
        "test_alias_of_helper": ("error", "RuntimeError: not a test"),
    }
    assert "FAIL    test_bare_assert: AssertionError: assert answer == 42" in res.stdout
    tasks, _ = states(tmp_path / "pexen-journal.sqlite")
    assert json.loads(tasks["test_gets_shared"].ret) == {"shared": True}
    # the journal's traceback starts at the test, not in pexen
    text = tasks["test_bare_assert"].exc_text.splitlines()
    assert text[0] == "Traceback (most recent call last):"
    assert 'plain.py", line ' in text[1] and text[1].endswith(", in test_bare_assert")
    assert run.suite == {"kind": "module", "target": "plain",
                                     "cwd": str(tmp_path)}


PACKAGE = {
    "pkg/__init__.py": "def test_top():\n    pass\n",
    "pkg/helpers.py": "def test_shared_helper():\n    assert False, 'runs once'\n",
    "pkg/net/__init__.py": "",
    "pkg/net/ping.py": ("from pkg.helpers import test_shared_helper\n"
                        "from pkg.helpers import test_shared_helper as test_renamed\n"
                        "def test_ping():\n    pass\n"),
    "pkg/net/dns.py": ("from pexen.sched.meta import func_meta\n"
                       "from pkg.net.ping import test_ping\n"
                       "@func_meta(provides=['dns'])\n"
                       "def resolver():\n    pass\n"
                       "@func_meta(requires=['dns'])\n"
                       "def test_lookup():\n    pass\n"
                       "def test_plain_lookup():\n    pass\n"
                       "def _test_private():\n    pass\n"),
}


def test_a_package(tmp_path):
    write_tree(tmp_path, PACKAGE)
    res = harness("start", "pkg", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = _rows(tmp_path)
    # a function imported into another module is collected once, where it is
    # defined; decorated and plain functions of one module side by side
    assert rows == {
        "test_top": ("pass", None),
        "helpers/test_shared_helper": ("fail", "AssertionError: runs once"),
        "net/ping/test_ping": ("pass", None),
        "net/dns/resolver": ("pass", None),
        "net/dns/test_lookup": ("pass", None),
        "net/dns/test_plain_lookup": ("pass", None),
    }
    tasks, _ = states(tmp_path / "pexen-journal.sqlite")
    # the decorated test kept its metadata: it ran after what it requires
    assert tasks["net/dns/test_lookup"].started_at >= tasks["net/dns/resolver"].finished_at
    listing = harness("list", "--tasks", "pkg", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()[:-1]] == [
        "test_top", "helpers/test_shared_helper", "net/dns/resolver", "net/dns/test_lookup",
        "net/dns/test_plain_lookup", "net/ping/test_ping"]


@pytest.mark.usefixtures("isolated_imports")
def test_mixed_module_keeps_metadata_and_pickles(tmp_path):
    write_tree(tmp_path, {"mixed.py": textwrap.dedent('''
        import unittest

        from pexen.sched.meta import func_meta


        @func_meta(provides=["db"])
        def test_decorated():
            return "decorated"


        def test_plain():
            return "plain"


        class TestCase(unittest.TestCase):
            def test_one(self):
                pass
    ''')})
    pairs = load_suite(parse_suite("mixed", cwd=str(tmp_path)))
    assert [key for key, _ in pairs] == ["TestCase/test_one", "test_decorated", "test_plain"]
    tasks = dict(pairs)
    assert set(get_provides(tasks["test_decorated"])) == {"db"}
    # the decorated function is the task itself, as before
    assert tasks["test_decorated"]() == "decorated"
    for key in ("test_plain", "TestCase/test_one"):
        again = pickle.loads(pickle.dumps(tasks[key]))
        assert type(again) is type(tasks[key])
    assert pickle.loads(pickle.dumps(tasks["test_plain"]))() == "plain"
    assert pickle.loads(pickle.dumps(tasks["TestCase/test_one"]))() is None


@pytest.mark.parametrize("files, target, where", [
    ({"empty.py": "def helper():\n    pass\nX = 1\n"}, "empty", "empty"),
    ({"emptypkg/__init__.py": "from os.path import join as test_join\n",
      "emptypkg/more.py": ("import unittest\n"
                           "from unittest import TestCase\n"
                           "class NotATest:\n    def test_x(self):\n        pass\n")},
     "emptypkg", "emptypkg or its submodules"),
])
def test_no_tasks_says_what_was_looked_for(tmp_path, files, target, where):
    write_tree(tmp_path, files)
    res = harness("start", target, cwd=tmp_path)
    assert res.returncode == 4
    assert res.stderr == (
        f"pexen-harness: error: suite '{target}': no tasks: no functions decorated with "
        f"@func_meta and no test_* functions or unittest.TestCase classes in {where}\n")
    assert not (tmp_path / "pexen-journal.sqlite").exists()


FIXTURE_LOG = textwrap.dedent('''
    import os

    LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures.log")


    def log(what):
        with open(LOG, "a") as f:
            f.write(f"{what} {os.getpid()}\\n")
''')

UNITTESTS = textwrap.dedent('''
    import time
    import unittest

    from utpkg import log


    class TestThings(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            log("setUpClass")
            cls.resource = {"answer": 42}

        @classmethod
        def tearDownClass(cls):
            del cls.resource
            log("tearDownClass")

        def test_uses_the_class_fixture(self):
            time.sleep(0.05)
            self.assertEqual(self.resource["answer"], 42)

        def test_fails(self):
            time.sleep(0.05)
            self.assertEqual(self.resource["answer"], 41)

        def test_fails_with_fail(self):
            self.fail("on purpose")

        def test_errors(self):
            {}["missing"]

        def test_skips(self):
            self.skipTest("not on this machine")

        @unittest.skip("never")
        def test_decorated_skip(self):
            raise AssertionError("not run")

        @unittest.expectedFailure
        def test_expected_failure(self):
            self.assertTrue(False, "known bug")

        @unittest.expectedFailure
        def test_unexpected_success(self):
            pass

        def test_subtests(self):
            for i in range(3):
                with self.subTest(i=i):
                    self.assertLess(i, 1)

        def helper(self):
            raise AssertionError("not a test method")


    class TestNoHardware(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            raise unittest.SkipTest("no hardware")

        def test_needs_hardware(self):
            pass


    class TestBrokenFixture(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            raise OSError("cannot set up")

        def test_never_runs(self):
            pass


    @unittest.skip("whole class")
    class TestSkippedClass(unittest.TestCase):
        def test_a(self):
            pass
''')

MODULE_FIXTURES = textwrap.dedent('''
    import time
    import unittest

    from utpkg import log

    state = {}


    def setUpModule():
        log("setUpModule")
        state["up"] = True


    def tearDownModule():
        state.clear()
        log("tearDownModule")


    class TestA(unittest.TestCase):
        def test_one(self):
            time.sleep(0.05)
            self.assertTrue(state["up"])


    class TestB(unittest.TestCase):
        def test_two(self):
            time.sleep(0.05)
            self.assertTrue(state["up"])
''')


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_unittest_classes(tmp_path, pool):
    write_tree(tmp_path, {"utpkg/__init__.py": FIXTURE_LOG, "utpkg/things.py": UNITTESTS,
                          "utpkg/modfix.py": MODULE_FIXTURES})
    res = harness("start", "utpkg", "--pool", pool, "-j", "4", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = _rows(tmp_path)
    assert rows == {
        "modfix/TestA/test_one": ("pass", None),
        "modfix/TestB/test_two": ("pass", None),
        "things/TestThings/test_uses_the_class_fixture": ("pass", None),
        "things/TestThings/test_fails": ("fail", "AssertionError: 42 != 41"),
        "things/TestThings/test_fails_with_fail": ("fail", "AssertionError: on purpose"),
        "things/TestThings/test_errors": ("error", "KeyError: 'missing'"),
        "things/TestThings/test_skips": ("skip", "not on this machine"),
        "things/TestThings/test_decorated_skip": ("skip", "never"),
        "things/TestThings/test_expected_failure": ("pass", None),
        "things/TestThings/test_unexpected_success": (
            "fail", "unexpected success (the test is marked expectedFailure)"),
        "things/TestThings/test_subtests": (
            "fail", "(i=1): AssertionError: 1 not less than 1 (and 1 more)"),
        "things/TestNoHardware/test_needs_hardware": (
            "skip", "setUpClass (utpkg.things.TestNoHardware): no hardware"),
        "things/TestBrokenFixture/test_never_runs": (
            "error", "setUpClass (utpkg.things.TestBrokenFixture): OSError: cannot set up"),
        "things/TestSkippedClass/test_a": ("skip", "whole class"),
    }
    tasks, _ = states(tmp_path / "pexen-journal.sqlite")
    assert json.loads(tasks["things/TestThings/test_expected_failure"].ret) == {
        "expected_failure": "AssertionError: False is not true : known bug"}
    assert "42 != 41" in tasks["things/TestThings/test_fails"].exc_text
    # unittest's report is in the test's log
    log = harness("log", "things/TestThings/test_fails", cwd=tmp_path)
    assert "FAIL: test_fails (utpkg.things.TestThings" in log.stdout
    assert "AssertionError: 42 != 41" in log.stdout
    # each task ran its class's fixtures and its module's around itself
    lines = [line.split()[0] for line in (tmp_path / "fixtures.log").read_text().splitlines()]
    things = sum(key.startswith("things/TestThings/") for key in rows)
    assert lines.count("setUpClass") == lines.count("tearDownClass") == things
    assert lines.count("setUpModule") == lines.count("tearDownModule") == 2


KILLER = textwrap.dedent('''
    import os
    import signal
    import unittest

    import psutil

    import pexen


    def test_before():
        pass


    class TestCrash(unittest.TestCase):
        def test_kills_its_controller_once(self):
            if pexen.context().attempt == 1:
                # worker -> fork server -> controller, and the worker with it
                # (as a machine going down: else the worker would outlive
                # the controller and record this attempt's failure)
                os.kill(psutil.Process().parent().parent().pid, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

        def test_other(self):
            pass
''')


def test_resume_rebuilds_the_same_tasks(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    listed = harness("list", "--tasks", "killer", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    keys = [line.split()[0] for line in listed.stdout.splitlines()[:-1]]
    assert keys == ["TestCrash/test_kills_its_controller_once", "TestCrash/test_other",
                    "test_before"]
    res = harness("start", "killer", "-j", "1", cwd=tmp_path)
    assert res.returncode != 0
    deadline = time.monotonic() + 10
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    before, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state != "finished"
    assert sorted(before) == sorted(keys)
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, (res.stdout, res.stderr)
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished" and sorted(rows) == sorted(keys)
    assert {key: row.state for key, row in rows.items()} == dict.fromkeys(keys, "pass")
    assert rows["TestCrash/test_kills_its_controller_once"].attempt == 2
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        assert len(j.runs()) == 1


@pytest.mark.usefixtures("isolated_imports")
def test_load_suite_message_for_a_module_without_tests(tmp_path):
    write_tree(tmp_path, {"nothing.py": "import unittest\nclass T(unittest.TestCase):\n"
                                        "    def helper(self):\n        pass\n"})
    msg = suite_error(load_suite, parse_suite("nothing", cwd=str(tmp_path)))
    assert msg == ("suite 'nothing': no tasks: no functions decorated with @func_meta and "
                   "no test_* functions or unittest.TestCase classes in nothing")

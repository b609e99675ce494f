"""pexen-harness export and --xunit: JUnit XML from the journal, at any time
(at the end, mid-run, after a crash, after resume), valid for Jenkins."""

import os
import pathlib
import signal
import textwrap
import time

import pytest
import xmlschema
from junitparser import JUnitXml

from .test_cli import end, harness, spawn, states

XSD = pathlib.Path(__file__).resolve().parents[1] / "junit-10.xsd"

SUITE = textwrap.dedent(r'''
    import os
    import sys
    import time

    import pexen
    from pexen.harness.outcome import TaskOutcome
    from pexen.harness.suite import ExecutableTask
    from pexen.sched import meta

    HERE = os.path.dirname(os.path.abspath(__file__))


    @meta.func_meta(provides=["db"])
    def setup_db():
        print("db up")


    @meta.func_meta(requires=["db"])
    def query():
        raise RuntimeError("lone \ud800 surrogate and ]]> <tag> & \x1b[31mred\x1b[0m")


    @meta.func_meta(provides=["net"])
    def network():
        raise TaskOutcome("fail", "link down")


    @meta.func_meta(requires=["net"])
    def needs_network():
        pass


    def warns():
        raise TaskOutcome("warn", "slow disk")


    def tasks():
        hostile = ExecutableTask(os.path.join(HERE, "hostile.sh"), "output/hostile")
        big = ExecutableTask(os.path.join(HERE, "big.sh"), "output/big")
        named = ExecutableTask(os.path.join(HERE, "hostile.sh"), "ünïcödé/tëst-ß")
        return [setup_db, query, network, needs_network, warns, hostile, big, named]
''')

HOSTILE_SH = r"""#!/bin/sh
printf 'NUL\000 BEL\007 \033[1;31mred\033[0m bad \377\376 cdata ]]> lt < \n'
printf 'to stderr \001\n' >&2
exit 1
"""

BIG_SH = r"""#!/bin/sh
echo HEAD-MARK
yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 10485760
echo
echo TAIL-MARK
exit 0
"""


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(XSD))  # the schema Jenkins' xUnit plugin uses


def make(tmp_path):
    (tmp_path / "exsuite.py").write_text(SUITE)
    for name, body in (("hostile.sh", HOSTILE_SH), ("big.sh", BIG_SH)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)


def read(path, schema):
    schema.validate(str(path))
    xml = JUnitXml.fromfile(str(path))
    suite = next(iter(xml))
    return xml, suite, {f"{c.classname}/{c.name}": c for c in suite}


def test_start_with_xunit_writes_a_valid_file(tmp_path, schema):
    make(tmp_path)
    res = harness("start", "exsuite:tasks", "--xunit", "results.xml", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "xunit: results.xml (8 tests, 3 failures, 1 errors, 1 skipped)" in res.stdout
    xml, suite, cases = read(tmp_path / "results.xml", schema)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (8, 3, 1, 1)
    assert cases["ünïcödé/tëst-ß"].system_err == "to stderr \\x01\n"
    assert suite.name == "exsuite"
    [err] = cases["exsuite/query"].result
    assert err.type == "RuntimeError"
    assert err.message == "RuntimeError: lone \\ud800 surrogate and ]]> <tag> & red"
    [skipped] = cases["exsuite/needs_network"].result
    assert skipped.message == "dependency 'net' not met: its provider network failed"
    assert cases["exsuite/warns"].system_out.startswith("pexen: warn: slow disk")
    assert cases["exsuite/setup_db"].system_out == "db up\n"
    hostile = cases["output/hostile"]
    [failure] = hostile.result
    assert failure.message == "exit status 1"
    assert hostile.system_out == "NUL\\x00 BEL\\x07 red bad \\xff\\xfe cdata ]]> lt < \n"
    assert hostile.system_err == "to stderr \\x01\n"
    big = cases["output/big"].system_out
    assert big.startswith("HEAD-MARK") and big.rstrip().endswith("TAIL-MARK")
    assert "bytes here; the whole stream is in" in big and len(big) < 101_000
    # the journal agrees
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["query"].state == "error" and rows["output/hostile"].state == "fail"
    # the same file again from the journal, any time later
    again = harness("export", "--xunit", "again.xml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "run 1 (finished): again.xml (8 tests" in again.stdout
    assert (tmp_path / "again.xml").read_text() == (tmp_path / "results.xml").read_text()


SLOW = textwrap.dedent('''
    import os
    import time

    import pexen


    def _make(i):
        def task():
            print("attempt", pexen.context().attempt)
            time.sleep(0.3 if i < 3 else 30)
        task.__name__ = task.__qualname__ = f"t{i}"
        return task


    def tasks():
        return [_make(i) for i in range(5)]
''')


def test_export_mid_run_after_crash_and_after_resume(tmp_path, schema):
    (tmp_path / "slowsuite.py").write_text(SLOW.replace("30)", "30 if pexen.context().attempt"
                                                                " == 1 else 0.1)"))
    journal = tmp_path / "pexen-journal.sqlite"
    # (the thread pool: its Python tasks die with their controller, and run again)
    proc = spawn("start", "slowsuite:tasks", "-j", "2", "--pool", "thread", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            try:
                rows, _ = states(journal)
            except Exception:
                continue
            if rows and rows["t3"].state == "running" and rows["t4"].state == "running":
                break
        # mid-run: what is not finished is there, as skipped "not finished"
        mid = harness("export", "--xunit", "mid.xml", cwd=tmp_path)
        assert mid.returncode == 0, mid.stderr
        xml, _, cases = read(tmp_path / "mid.xml", schema)
        assert xml.tests == 5 and xml.skipped == 2
        [running] = cases["slowsuite/t3"].result
        assert running.message == "not finished: still running"
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    crashed = harness("export", "--xunit", "crashed.xml", cwd=tmp_path)
    assert crashed.returncode == 0, crashed.stderr
    xml, _, cases = read(tmp_path / "crashed.xml", schema)
    assert xml.tests == 5 and xml.skipped == 2
    # the controller is gone: the file says so, not "still running"
    for key in ("slowsuite/t3", "slowsuite/t4"):
        [cut] = cases[key].result
        assert cut.message == ("not finished: was running when its controller died "
                               "(pexen-harness resume continues the run)"), cut.message
    res = harness("resume", "--xunit", "final.xml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    xml, _, cases = read(tmp_path / "final.xml", schema)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 0, 0, 0)
    text = (tmp_path / "final.xml").read_text()
    assert text.count("<flakyFailure") == 2
    assert ('<flakyFailure type="interrupted" message="attempt 1: interrupted: its controller '
            'died"><system-out>attempt 1\n</system-out>') in text
    assert cases["slowsuite/t3"].system_out == "attempt 2\n"


def test_xunit_written_when_stopped(tmp_path, schema):
    (tmp_path / "slowsuite.py").write_text(SLOW)
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "slowsuite:tasks", "-j", "2", "--xunit", "stopped.xml",
                 cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            try:
                rows, _ = states(journal)
            except Exception:
                continue
            if rows and rows["t3"].state == "running":
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        end(proc)
    assert proc.returncode == 2
    assert "xunit: stopped.xml (5 tests" in out
    xml, _, cases = read(tmp_path / "stopped.xml", schema)
    [cut] = cases["slowsuite/t3"].result
    assert "stopped by a signal" in cut.message


@pytest.mark.parametrize("args,message,code", [
    (("export", "--xunit", "r.xml"), "no journal at", 4),
    (("export",), "export needs --xunit FILE, --html FILE or both", 4),
    (("start", "exsuite:tasks", "--xunit", "no/such/dir/r.xml"), "does not exist", 4),
    (("start", "exsuite:tasks", "--xunit", "."), "is a directory", 4),
    (("start", "exsuite:tasks", "--xunit-subresults", "all"), "invalid choice", 4),
])
def test_bad_export_input(tmp_path, args, message, code):
    make(tmp_path)
    res = harness(*args, cwd=tmp_path)
    assert res.returncode == code
    assert message in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()  # nothing was run


def test_export_of_a_missing_run(tmp_path):
    make(tmp_path)
    harness("start", "exsuite:tasks", cwd=tmp_path)
    res = harness("export", "9", "--xunit", "r.xml", cwd=tmp_path)
    assert res.returncode == 4 and "has no run 9" in res.stderr
    assert not os.path.exists(tmp_path / "r.xml")


def test_a_failing_executable_gives_its_exit_status_and_stderr_not_pexens_traceback(
        tmp_path, schema):
    suite = tmp_path / "sh"
    suite.mkdir()
    (suite / "fmt").write_text("#!/bin/sh\necho 'mkfs: no such device' >&2\nexit 3\n")
    (suite / "fmt").chmod(0o755)
    (tmp_path / "asserts.py").write_text(
        "from pexen.sched.meta import func_meta\n\n\n"
        "@func_meta()\ndef compare():\n    assert 1 == 2, 'one is not two'\n")
    for target, jpath, xml in ((str(suite), "sh.sqlite", "sh.xml"),
                               ("asserts", "py.sqlite", "py.xml")):
        res = harness("start", target, "--journal", jpath, "--xunit", xml, cwd=tmp_path)
        assert res.returncode == 1, res.stderr
        schema.validate(str(tmp_path / xml))
    [case] = list(next(iter(JUnitXml.fromfile(str(tmp_path / "sh.xml")))))
    [failure] = case.result
    assert failure._tag == "failure" and failure.message == "exit status 3"
    assert failure.text == "exit status 3\n\nits stderr:\nmkfs: no such device"
    [case] = list(next(iter(JUnitXml.fromfile(str(tmp_path / "py.xml")))))
    [failure] = case.result
    assert failure._tag == "failure" and failure.type == "AssertionError"
    assert "assert 1 == 2" in failure.text   # (its traceback: the test's own line)


def test_an_attempt_that_never_started_is_no_rerun(tmp_path, schema):
    """A task handed out (queued) but not started when its controller died
    used an attempt number and ran nothing: the file shows no rerun of it;
    one that was running does get its <flakyFailure>, and the attempts keep
    their numbers (the second run of `late` is its attempt 2)."""
    import pexen.journal as journal
    from pexen.harness.export import cases_of, export_run
    from pexen.journal import TaskState as S

    path = str(tmp_path / "j.sqlite")
    with journal.open(path, create=True) as j:
        rid = j.create_run({"kind": "module", "target": "m"}, {}, [("early", {}),
                                                                    ("late", {})],
                           host="h", boot_id="b", controller_pid=1, controller_started=0.0)
        w = j.writer(rid)
        w.transition("early", S.QUEUED, attempt=1)
        w.transition("early", S.RUNNING)
        w.transition("late", S.QUEUED, attempt=1)
        for key in ("early", "late"):   # the controller died; resume cut them
            w.transition(key, S.INTERRUPTED, detail={"by": "controller death"},
                         reason="its controller died")
        for key in ("early", "late"):
            w.transition(key, S.QUEUED, attempt=2)
            w.transition(key, S.RUNNING)
            w.transition(key, S.PASS)
        w.close()
        run = j.run(rid)
        cases = {c.key: c for c in cases_of(j, run, path, gone=False)}
        assert [(a.number, a.outcome) for a in cases["early"].attempts] == [(1, "interrupted")]
        assert cases["late"].attempts == []
        export_run(j, run, path, str(tmp_path / "r.xml"))
    schema.validate(str(tmp_path / "r.xml"))
    text = (tmp_path / "r.xml").read_text()
    assert text.count("<flakyFailure") == 1

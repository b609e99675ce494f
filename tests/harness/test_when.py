"""`when` under the harness: conditions of Python tasks and executables, their
outcome in the journal, `status --json` and the JUnit file, a hung condition
ended by the watchdog, malformed conditions of executables."""

import json
import sqlite3
import textwrap
import xml.etree.ElementTree as ET

import pytest

from pexen.harness.suite import SuiteError, load_suite, parse_suite
from pexen.sched import meta

from .test_cli import harness, states
from .test_execmeta import write_suite
from .test_watchdog_cli import no_process_left

PY_SUITE = textwrap.dedent('''
    import os

    from pexen.sched import TaskSkipError
    from pexen.sched.meta import assign_val


    def linux():
        return os.uname().sysname == "Linux"


    def windows():
        return os.uname().sysname == "Windows"


    def undecided():
        raise RuntimeError("cannot tell")


    def own_reason():
        raise TaskSkipError("no GPU here")


    def _task(name, **fields):
        def task():
            return name
        task.__name__ = task.__qualname__ = name
        assign_val(task, **fields)
        return task


    def tasks():
        return [
            _task("on_linux", when=linux),
            _task("on_windows", when=windows, provides=["win"]),
            _task("needs_windows", requires=["win"]),
            _task("undecided", when=undecided),
            _task("own_reason", when=own_reason),
            _task("cmd_true", when='echo "cond of $PEXEN_TASK"; echo to-err >&2'),
            _task("cmd_false", when="test -e /no/such/file"),
        ]
''')


def run_rows(tmp_path, *args):
    res = harness("start", *args, "--xunit", "junit.xml", cwd=tmp_path)
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    return res, rows, run


@pytest.mark.parametrize("pool", ["process", "thread"])
@pytest.mark.parametrize("workers", ["1", "3"])
def test_python_task_conditions(tmp_path, pool, workers):
    (tmp_path / "whensuite.py").write_text(PY_SUITE)
    res, rows, run = run_rows(tmp_path, "whensuite:tasks", "--pool", pool, "-j", workers)
    assert res.returncode == 1, (res.stdout, res.stderr)   # the raising condition
    got = {key: (row.state, row.reason) for key, row in rows.items()}
    assert got == {
        "on_linux": ("pass", None),
        "on_windows": ("skip", "condition not met: whensuite.windows() returned False"),
        "needs_windows": ("skip", "dependency 'win' not met: its provider on_windows was skipped"),
        "undecided": ("error", "RuntimeError: cannot tell"),
        "own_reason": ("skip", "no GPU here"),
        "cmd_true": ("pass", None),
        "cmd_false": ("skip", "condition not met: `test -e /no/such/file` exited 1"),
    }
    assert json.loads(rows["on_linux"].ret) == "on_linux"
    # a command condition writes to the task's output files, with its environment
    out = harness("log", "cmd_true", "--stdout", cwd=tmp_path)
    assert out.stdout == "cond of cmd_true\n", out
    err = harness("log", "cmd_true", "--stderr", cwd=tmp_path)
    assert err.stdout == "to-err\n", err
    assert "SKIP    on_windows: condition not met: whensuite.windows() returned False" \
        in res.stdout
    # the journal keeps the condition as text
    con = sqlite3.connect(tmp_path / "pexen-journal.sqlite")
    try:
        stored = dict(con.execute("SELECT key, meta FROM tasks").fetchall())
    finally:
        con.close()
    assert json.loads(stored["on_linux"])["when"] == "whensuite.linux()"
    assert json.loads(stored["cmd_false"])["when"] == "test -e /no/such/file"
    assert json.loads(stored["needs_windows"])["when"] is None


def exe(path, *lines, body="echo ran"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + "".join(line + "\n" for line in lines) + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_executable_conditions(tmp_path, pool):
    top = tmp_path / "suite"
    exe(top / "never.sh", "# pexen: when=false provides=thing")
    exe(top / "after.sh", "# pexen: requires=thing")
    exe(top / "piped.sh", '# pexen: priority=1 when="uname -s | grep -q Linux && '
                          'test \\"$PEXEN_TASK\\" = piped"')
    # a command runs in the executable's directory
    exe(top / "sub" / "here.sh", "# pexen: when='test -e marker'")
    (top / "sub" / "marker").write_text("")
    exe(top / "sub" / "not-here.sh", "# pexen: when='test -e no-marker'")
    res, rows, run = run_rows(tmp_path, str(top), "--pool", pool)
    assert res.returncode == 0, (res.stdout, res.stderr)
    got = {key: (row.state, row.reason) for key, row in rows.items()}
    never = "condition not met: `false` exited 1"
    assert got == {
        "never": ("skip", never),
        "after": ("skip", "dependency 'thing' not met: its provider never was skipped"),
        "piped": ("pass", None),
        "sub/here": ("pass", None),
        "sub/not-here": ("skip", "condition not met: `test -e no-marker` exited 1"),
    }
    status = json.loads(harness("status", "--json", cwd=tmp_path).stdout)
    detail = {t["key"]: t for t in status["tasks_detail"]}
    assert detail["never"]["state"] == "skip" and detail["never"]["reason"] == never
    case = ET.parse(tmp_path / "junit.xml").find(".//testcase[@name='never']")
    assert case.find("skipped").get("message") == never
    assert ET.parse(tmp_path / "junit.xml").getroot().get("tests") == "5"
    # the same from `export`
    harness("export", "--xunit", "again.xml", cwd=tmp_path)
    case = ET.parse(tmp_path / "again.xml").find(".//testcase[@name='never']")
    assert case.find("skipped").get("message") == never


def test_directory_default_and_sidecar(tmp_path):
    top = tmp_path / "suite"
    exe(top / "kvm" / "boot.sh")
    exe(top / "kvm" / "nested" / "deep.sh")
    exe(top / "kvm" / "always.sh")
    exe(top / "plain.sh")
    (top / "kvm" / "pexen.toml").write_text('when = "test -e /dev/kvm && test -w /dev/kvm"\n')
    (top / "kvm" / "always.sh.pexen.toml").write_text('when = "true"\n')
    tasks = dict(load_suite(parse_suite(str(top))))
    assert meta.get_when(tasks["kvm/boot"]) == "test -e /dev/kvm && test -w /dev/kvm"
    assert meta.get_when(tasks["kvm/nested/deep"]) == meta.get_when(tasks["kvm/boot"])
    assert meta.get_when(tasks["kvm/always"]) == "true"
    assert meta.get_when(tasks["plain"]) is None
    listed = json.loads(harness("list", "--tasks", str(top), "--json", cwd=tmp_path).stdout)
    whens = {t["key"]: t["meta"]["when"] for t in listed["tasks"]}
    assert whens["kvm/always"] == "true" and whens["plain"] is None


@pytest.mark.parametrize("files,message", [
    ({"t.sh": ['# pexen: when="test -e x']}, "t.sh:2: no closing quotation"),
    ({"t.sh": ["# pexen: when=test -e x"]},
     "t.sh:2: expected field=value, not '-e' (quote a value with spaces"),
    ({"t.sh": ['# pexen: when=""']}, "t.sh:2: expected field=value, not 'when='"),
    ({"t.sh": ["# pexen: when=true when=false"]}, "t.sh:2: when given twice"),
    ({"t.sh": [], "t.sh.pexen.toml": "\nwhen = 1\n"},
     "t.sh.pexen.toml:2: when must be a shell command (a non-empty string), not 1"),
    ({"t.sh": [], "pexen.toml": "when = ' '\n"}, "pexen.toml:1: when must be a shell command"),
])
def test_malformed_conditions_are_errors_naming_file_and_line(tmp_path, files, message):
    top = tmp_path / "suite"
    write_suite(top, files)
    with pytest.raises(SuiteError, match="t.sh|pexen.toml"):
        load_suite(parse_suite(str(top)))
    res = harness("start", str(top), cwd=tmp_path)
    assert res.returncode == 4 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pexen-journal.sqlite").exists()


BAD_TYPE_SUITE = textwrap.dedent('''
    from pexen.sched.meta import assign_meta


    def task():
        pass


    def tasks():
        object.__setattr__(assign_meta(task), "when", 42)  # around the check
        return [task]
''')


def test_a_bad_condition_type_in_python_is_a_suite_error(tmp_path):
    (tmp_path / "badwhen.py").write_text(BAD_TYPE_SUITE)
    res = harness("start", "badwhen:tasks", cwd=tmp_path)
    assert res.returncode == 4, (res.stdout, res.stderr)
    assert "task" in res.stderr and "cannot be used for when" in res.stderr, res.stderr


HUNG_SUITE = textwrap.dedent('''
    import os
    import time

    from pexen.harness.suite import ExecutableTask
    from pexen.sched.meta import assign_val

    HERE = os.path.dirname(os.path.abspath(__file__))


    def _sleeps():
        time.sleep(600)
        return True


    def task():
        return "ran"


    def tasks():
        hung_cmd = ExecutableTask(os.path.join(HERE, "passes.sh"), "hung_cmd_exe")
        assign_val(hung_cmd, when="sleep 600; true", timeout=1)
        task.__name__ = task.__qualname__ = "hung_cmd_py"
        assign_val(task, when="trap '' TERM; sleep 600 & wait; true", timeout=1)
        out = [hung_cmd, task]
        if os.environ.get("HUNG_CALLABLE"):
            def hung_callable():
                return "ran"
            assign_val(hung_callable, when=_sleeps)
            out.append(hung_callable)
        return out
''')


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_hung_condition_ends_as_timeout_with_nothing_left(tmp_path, pool):
    (tmp_path / "hungsuite.py").write_text(HUNG_SUITE)
    exe(tmp_path / "passes.sh", body="exit 0")
    # A Python function hung in a thread cannot be ended (doc/watchdog.md):
    # a hung callable condition only under the process pool.
    env = {"HUNG_CALLABLE": "1"} if pool == "process" else {}
    res = harness("start", "hungsuite:tasks", "--pool", pool, "-j", "3", "--timeout", "1",
                  "--kill-grace", "1", cwd=tmp_path, env=env)
    assert res.returncode == 1, (res.stdout, res.stderr)
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    expected = {"hung_cmd_exe": "1 s", "hung_cmd_py": "1 s"}
    if pool == "process":
        expected["hung_callable"] = "1 s"
    assert set(rows) == set(expected)
    for key, limit in expected.items():
        row = rows[key]
        assert row.state == "timeout", (key, row.state, row.reason)
        assert row.reason.startswith(f"timeout: still running after its {limit} limit"), \
            row.reason
        assert "LEAKED" not in row.reason
        assert row.ret is None
    assert "(sleep)" in rows["hung_cmd_exe"].reason
    no_process_left(tmp_path / "pexen-journal.sqlite")


def test_an_executable_task_checks_its_condition_in_its_directory_without_the_harness(
        tmp_path):
    from pexen.harness.suite import ExecutableTask
    from pexen.sched import Sched, ThreadWorkerPool

    (tmp_path / "marker").write_text("")
    yes = ExecutableTask(str(exe(tmp_path / "yes.sh", body="exit 0")), "yes")
    meta.assign_val(yes, when="test -e marker")
    no = ExecutableTask(str(exe(tmp_path / "no.sh", body="exit 0")), "no")
    meta.assign_val(no, when="test -e no-marker")
    res = {r.task.key: r for r in Sched([yes, no]).run(ThreadWorkerPool())}
    assert res["yes"].ret == {"returncode": 0}
    assert str(res["no"].excinfo.val) == "condition not met: `test -e no-marker` exited 1"

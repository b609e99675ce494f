"""Suites on a Dask cluster (`start --dask ADDRESS`, `pexen.sched.DaskWorkerPool`):
a scheduler and two workers on loopback, started as processes for the
session (tests/conftest.py). Dependencies and locks stay in the controller;
each task runs in a process of its own on a worker, under the worker's
runner (pexen.remote): its deadline, its output, its reported results."""

import json
import os
import signal
import textwrap
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from pexen import journal

from .test_cli import end, harness, spawn

XSD = os.path.join(os.path.dirname(os.path.dirname(__file__)), "junit-10.xsd")


def _states(where):
    with journal.open(str(where), create=False) as j:
        run = j.runs()[-1]
        return {t.key: t for t in j.tasks(run.id)}, run


def _journaled(tmp_path, key):
    try:
        return _states(tmp_path / "pexen-journal.sqlite")[0][key].state
    except Exception:
        return None


def _exe(suite, name, body):
    path = suite / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


PY_SUITE = '''
import os
import time

import pexen
from pexen.sched import meta


@meta.func_meta(provides=["db"], claims=["disk"])
def make_db(shared):
    shared["db"] = "ready"
    print("made the db on", os.uname().nodename)


@meta.func_meta(requires=["db"], claims=["disk"])
def use_db(shared):
    assert shared["db"] == "ready"
    with open(MARKS, "a") as f:
        f.write(f"use_db {os.environ['PEXEN_TASK']} {os.environ['PEXEN_ATTEMPT']}\\n")


def reports():
    pexen.report("sub-check", "fail", "the sub-check failed")


def reboots():
    pexen.reboot()


@meta.func_meta(timeout=1.0)
def hangs():
    import subprocess
    child = subprocess.Popen(["sleep", "300"])
    with open(MARKS, "a") as f:
        f.write(f"hang-child {child.pid}\\n")
    time.sleep(300)


def leaves():
    # a daemon that leaves its session and drops the task's environment
    import subprocess
    subprocess.run(["setsid", "env", "-i", "sh", "-c", "sleep 321 &"], check=True)


def tasks():
    return [make_db, use_db, reports, reboots, hangs, leaves]
'''


def test_a_python_suite_on_the_cluster(tmp_path, dask_cluster):
    marks = tmp_path / "marks"
    # (the suite names the file: a task's environment is its worker's)
    (tmp_path / "labsuite.py").write_text(f"MARKS = {str(marks)!r}\n" + PY_SUITE)
    res = harness("start", "labsuite:tasks", "--dask", dask_cluster, "--kill-grace", "1",
                  "--xunit", "out.xml", cwd=tmp_path,
                  env={"MARKS": str(marks), "PYTHONPATH": str(tmp_path)})
    assert res.returncode == 1, res.stderr
    assert f"Dask cluster {dask_cluster}" in res.stdout
    rows, run = _states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished"
    assert rows["make_db"].state == "pass" and rows["use_db"].state == "pass"
    assert rows["reports"].state == "fail"
    assert rows["reports"].reason == "reported sub-check: fail: the sub-check failed"
    assert rows["reboots"].state == "skip"
    assert "reboot on a Dask worker" in rows["reboots"].reason
    assert rows["hangs"].state == "timeout"
    assert "limit on" in rows["hangs"].reason
    # the hung task's child was ended with it, on the worker
    child = int([ln for ln in marks.read_text().splitlines()
                 if ln.startswith("hang-child")][0].split()[1])
    assert f"{child} (sleep)" in rows["hangs"].reason
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    # the task's output came back from its worker
    log = harness("log", "make_db", cwd=tmp_path)
    assert "made the db on" in log.stdout
    import xmlschema

    xmlschema.XMLSchema(XSD).validate(str(tmp_path / "out.xml"))
    root = ET.parse(tmp_path / "out.xml").getroot()
    assert int(root.get("tests")) == 6
    # what a task left running on its worker is ended and named
    assert rows["leaves"].state == "warn"
    assert "the task left processes running: ended" in rows["leaves"].reason
    assert "(sleep)" in rows["leaves"].reason


PYTEST_SUITE = textwrap.dedent('''
    import os

    import pytest

    LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures.log")


    @pytest.fixture(scope="session")
    def sess():
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} up\\n")
        yield
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} down\\n")


    def test_passes(sess):
        print("ran on", os.getpid())


    def test_fails(sess):
        assert 1 == 2, "one is not two"


    @pytest.mark.parametrize("n", [1, 2])
    def test_param(sess, n):
        pass
''')


def test_a_pytest_suite_on_the_cluster(tmp_path, dask_cluster):
    """Each test in a process of its own on a worker, with a pytest session
    of its own: its session fixtures set up and torn down there."""
    (tmp_path / "test_lab.py").write_text(PYTEST_SUITE)
    res = harness("start", "pytest:test_lab.py", "--dask", dask_cluster, "--xunit", "out.xml",
                  cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, run = _states(tmp_path / "pexen-journal.sqlite")
    got = {key: (row.state, row.reason) for key, row in rows.items()}
    assert got == {"test_lab/test_passes": ("pass", None),
                   "test_lab/test_fails": ("fail", "AssertionError: one is not two\nassert 1 == 2"),
                   "test_lab/test_param[1]": ("pass", None),
                   "test_lab/test_param[2]": ("pass", None)}
    assert "ran on" in harness("log", "test_lab/test_passes", cwd=tmp_path).stdout
    events = [line.split() for line in (tmp_path / "fixtures.log").read_text().splitlines()]
    ups = sorted(pid for pid, what in events if what == "up")
    downs = sorted(pid for pid, what in events if what == "down")
    assert len(ups) == 4 and ups == downs
    names = {(c.get("classname"), c.get("name"))
             for c in ET.parse(tmp_path / "out.xml").getroot().iter("testcase")}
    assert names == {("test_lab", "test_passes"), ("test_lab", "test_fails"),
                     ("test_lab", "test_param[1]"), ("test_lab", "test_param[2]")}


def test_executables_on_the_cluster(tmp_path, dask_cluster):
    suite = tmp_path / "suite"
    suite.mkdir()
    _exe(suite, "01-setup.sh", """\
        # pexen: provides=setup
        echo "setup on $(hostname) attempt $PEXEN_ATTEMPT"
        echo "to stderr" >&2
        """)
    _exe(suite, "02-check.sh", """\
        # pexen: requires=setup
        pexen-harness report part-a pass
        rstrnt-report-result part-b WARN
        exit 0
        """)
    _exe(suite, "03-fails.sh", "exit 3\n")
    pids = tmp_path / "pids"
    _exe(suite, "04-hangs.sh", f"""\
        sleep 300 &
        echo $! > "{pids}"
        sleep 300
        """)
    _exe(suite, "05-gone.sh", "# pexen: requires=removed\nexit 0\n")
    _exe(suite, "00-remove.sh", f"""\
        # pexen: provides=removed
        rm -f "{suite}/05-gone.sh"
        """)
    res = harness("start", str(suite), "--dask", dask_cluster, "--timeout", "2",
                  "--kill-grace", "1", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = _states(tmp_path / "pexen-journal.sqlite")
    assert rows["01-setup"].state == "pass"
    assert rows["02-check"].state == "warn"
    assert rows["03-fails"].state == "fail" and rows["03-fails"].reason == "exit status 3"
    assert rows["04-hangs"].state == "timeout"
    assert "2 s limit" in rows["04-hangs"].reason
    background = int(pids.read_text())
    assert f"{background} (sleep)" in rows["04-hangs"].reason
    assert not psutil.pid_exists(background) or psutil.Process(background).status() == "zombie"
    # an executable that is not on the worker: a clear error, not a hang
    assert rows["05-gone"].state == "error"
    assert "not on this worker" in rows["05-gone"].reason
    log = harness("log", "01-setup", cwd=tmp_path)
    assert "setup on" in log.stdout and "attempt 1" in log.stdout and "to stderr" in log.stdout
    status = json.loads(harness("status", "--json", cwd=tmp_path).stdout)
    assert status["counts"] == {"pass": 2, "warn": 1, "fail": 1, "timeout": 1, "error": 1}


def test_the_library_pool(dask_cluster):
    from pexen.sched import DaskWorkerPool, Sched, meta
    from pexen.sched.common import TaskKilledError

    @meta.func_meta(provides=["x"])
    def first(shared):
        shared["x"] = 41
        return "one"

    @meta.func_meta(requires=["x"])
    def second(shared):
        return shared["x"] + 1

    @meta.func_meta(timeout=1.0)
    def hangs():
        time.sleep(60)

    def fails():
        raise ValueError("bad value")

    results = {r.task.__name__: r for r in Sched([first, second, hangs, fails]).run(
        DaskWorkerPool(dask_cluster, grace=0.5))}
    assert results["first"].ret == "one" and results["second"].ret == 42
    assert isinstance(results["hangs"].excinfo.val, TaskKilledError)
    assert isinstance(results["fails"].excinfo.val, ValueError)
    assert "bad value" in results["fails"].excinfo.text


@pytest.mark.parametrize("attempts", [1, 2])
def test_a_worker_that_dies_mid_task(tmp_path, dask_cluster, attempts):
    """SIGKILL the worker running a task: what the task started on that host
    is ended (by its token); the task runs again as its next attempt, on a
    worker the cluster still has, up to --max-attempts, after which it ends
    `error` naming the lost worker; the run goes on."""
    suite = tmp_path / "suite"
    suite.mkdir()
    worker_file = tmp_path / "worker"
    _exe(suite, "dies.sh", f"""\
        if [ "$PEXEN_ATTEMPT" -gt 1 ]; then echo "again"; exit 0; fi
        echo $PPID $$ > "{worker_file}"
        sleep 300
        """)
    _exe(suite, "other.sh", "sleep 1\n")
    proc = spawn("start", str(suite), "--dask", dask_cluster, "--max-attempts", str(attempts),
                 cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not worker_file.exists() or not worker_file.read_text().strip():
            assert time.monotonic() < deadline, "the task did not start"
            time.sleep(0.05)
        # the task's parent is the worker's process (its runner's thread)
        worker_pid, script_pid = map(int, worker_file.read_text().split())
        runner = psutil.Process(worker_pid)
        script = psutil.Process(script_pid)
        assert "python" in runner.name()
        runner.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        # what the task started on that host is ended too (by its token)
        deadline = time.monotonic() + 30
        while script.is_running() and script.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the lost worker's task was left running"
            time.sleep(0.05)
    finally:
        end(proc)
    rows, run = _states(tmp_path / "pexen-journal.sqlite")
    assert rows["other"].state == "pass"
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        moves = [(e.from_state, e.to_state) for e in j.events(run.id) if e.key == "dies"]
    if attempts == 1:
        assert proc.returncode == 1, err
        assert rows["dies"].state == "error"
        assert "worker lost" in rows["dies"].reason
        assert rows["dies"].attempt == 1
    else:
        assert proc.returncode == 0, err
        assert rows["dies"].state == "pass" and rows["dies"].attempt == 2
        assert ("running", "interrupted") in moves and ("interrupted", "queued") in moves
        log = harness("log", "dies", cwd=tmp_path)
        assert "again" in log.stdout


def test_without_dask_installed(tmp_path):
    """--dask without dask.distributed: one line naming the extra, exit 4,
    nothing journaled."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "distributed.py").write_text("raise ImportError('No module named distributed')\n")
    suite = tmp_path / "suite"
    suite.mkdir()
    _exe(suite, "a.sh", "exit 0\n")
    res = harness("start", str(suite), "--dask", "tcp://127.0.0.1:1", cwd=tmp_path,
                  env={"PYTHONPATH": str(fake)})
    assert res.returncode == 4
    assert res.stderr.strip() == ("pexen-harness: error: --dask needs Dask's distributed: "
                                  "pip install 'pexen[dask]'")
    assert not (tmp_path / "pexen-journal.sqlite").exists()


@pytest.mark.parametrize("address", ["", "   "])
def test_an_empty_address(tmp_path, address):
    suite = tmp_path / "suite"
    suite.mkdir()
    _exe(suite, "a.sh", "exit 0\n")
    res = harness("start", str(suite), "--dask", address, cwd=tmp_path)
    assert res.returncode == 4
    assert "--dask needs the address of a Dask scheduler" in res.stderr


def test_resume_after_the_controller_died(tmp_path, dask_cluster):
    """The controller SIGKILLed while a task runs on a worker: `resume` ends
    that task's processes on the worker (by its token) and runs it again
    there; a task that had finished does not run again."""
    suite = tmp_path / "suite"
    suite.mkdir()
    marks = tmp_path / "marks"
    _exe(suite, "a-quick.sh", f"""\
        # pexen: provides=quick-done
        echo quick >> "{marks}"
        """)
    _exe(suite, "b-long.sh", f"""\
        echo "long $PEXEN_ATTEMPT $$" >> "{marks}"
        if [ "$PEXEN_ATTEMPT" -gt 1 ]; then exit 0; fi
        sleep 300
        """)
    _exe(suite, "c-late.sh", f"""\
        # pexen: requires=quick-done
        echo "late started" >> "{marks}"
        sleep 3
        echo "late output"
        echo "late done" >> "{marks}"
        """)
    proc = spawn("start", str(suite), "--dask", dask_cluster, "-j", "2", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "long 1" not in (marks.read_text() if marks.exists() else ""):
            assert time.monotonic() < deadline, "the long task did not start"
            time.sleep(0.05)
        while _journaled(tmp_path, "a-quick") != "pass":
            assert time.monotonic() < deadline, "the quick task did not pass"
            time.sleep(0.05)
        while "late started" not in marks.read_text():
            assert time.monotonic() < deadline, "the late task did not start"
            time.sleep(0.05)
        first = int([ln for ln in marks.read_text().splitlines()
                     if ln.startswith("long 1")][0].split()[2])
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    assert psutil.pid_exists(first)   # (still running on its worker)
    deadline = time.monotonic() + 30
    while "late done" not in marks.read_text():   # (it ends with no controller)
        assert time.monotonic() < deadline, "the late task did not end"
        time.sleep(0.05)
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
    lines = marks.read_text().splitlines()
    assert lines.count("quick") == 1
    assert [ln.split()[1] for ln in lines if ln.startswith("long")] == ["1", "2"]
    rows, run = _states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished" and rows["b-long"].state == "pass"
    assert rows["b-long"].attempt == 2
    # the task that ended on its worker while no controller was there is
    # recorded by resume, with its output, and not run again
    assert lines.count("late started") == 1
    assert rows["c-late"].state == "pass" and rows["c-late"].attempt == 1
    assert "recorded 1 task(s) that ended on their Dask workers" in res.stdout
    assert "late output" in harness("log", "c-late", cwd=tmp_path).stdout


def test_resources(tmp_path, dask_cluster):
    """`resources` metadata: a task runs only on a worker that has them; one
    that no worker has never starts (here: the run's deadline ends it)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    where = tmp_path / "where"
    _exe(suite, "on-gpu.sh", f"""\
        # pexen: resources=gpu:1
        echo "$PEXEN_TASK_DATA" > "{where}"
        """)
    _exe(suite, "on-tpu.sh", """\
        # pexen: resources=tpu:1
        exit 0
        """)
    res = harness("start", str(suite), "--dask", dask_cluster, "--run-timeout", "5",
                  cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = _states(tmp_path / "pexen-journal.sqlite")
    assert rows["on-gpu"].state == "pass"
    assert "/gpu/" in where.read_text()   # (the worker with the resource)
    assert rows["on-tpu"].state in ("skip", "timeout")
    assert "run timeout" in rows["on-tpu"].reason
    listed = json.loads(harness("list", "--tasks", str(suite), "--json", cwd=tmp_path).stdout)
    metas = {t["key"]: t for t in listed["tasks"]}
    assert metas["on-gpu"]["meta"]["resources"] == {"gpu": 1.0}


def test_bad_resources_are_refused(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    _exe(suite, "bad.sh", "# pexen: resources=gpu:lots\nexit 0\n")
    res = harness("start", str(suite), cwd=tmp_path)
    assert res.returncode == 4
    assert "resources: 'lots' is not an amount" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

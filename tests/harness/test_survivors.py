"""A task outlives its controller: under the process pool, a worker whose
controller died finishes the task it runs and records its result; `resume`
waits for such workers (up to their deadlines) and runs again only what has
no result. What a task started is ended with it, however the run stops."""

import json
import os
import signal
import sqlite3
import textwrap
import time

import psutil
import pytest

from pexen.journal import open_journal

from .test_cli import end, harness, spawn, states

JOURNAL = "pexen-journal.sqlite"


def _script(path, body):
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)


def _wait(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _rows(journal):
    try:
        rows, _ = states(journal)
    except Exception:
        return {}
    return rows


def _running(journal, key):
    return lambda: _rows(journal).get(key) is not None and _rows(journal)[key].state == \
        "running"


def _events(journal, key):
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return [(f, t, json.loads(d) if d else None) for f, t, d in con.execute(
            "SELECT from_state, to_state, detail FROM events WHERE key = ? ORDER BY id",
            (key,))]
    finally:
        con.close()


def _workers_of(tmp_path):
    """The worker processes of the run's dead controller (their spools are
    named after their pids)."""
    spools = tmp_path / f"{JOURNAL}.d" / "1.spool"
    found = []
    for own in spools.glob("*.own"):
        try:
            found.append(psutil.Process(int(own.name.split("-")[0])))
        except (psutil.Error, ValueError):
            pass
    return found


def _kill_controller(proc, tmp_path):
    """SIGKILL the controller; return the processes it leaves (its fork server
    and workers, found before the kill: the test ends them if they linger)."""
    me = psutil.Process(proc.pid)
    below = me.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    end(proc)
    return below


def _no_survivors(procs, timeout=30.0):
    gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)
    assert not alive, f"still alive: {alive}"


def _suite(tmp_path, sleep="1.5"):
    suite = tmp_path / "suite"
    suite.mkdir()
    log = tmp_path / "ran.log"
    _script(suite / "slow.sh", f"""\
        echo "start $PEXEN_ATTEMPT" >> {log}
        sleep {sleep}
        echo "end $PEXEN_ATTEMPT" >> {log}
        echo slow output
        """)
    _script(suite / "quick.sh", "exit 0\n")
    return log


def test_the_worker_records_what_ended_after_its_controller_died(tmp_path):
    log = _suite(tmp_path)
    journal = tmp_path / JOURNAL
    proc = spawn("start", "suite", cwd=tmp_path)
    try:
        _wait("slow running", lambda: log.exists() and _rows(journal).get("slow") is not None
              and _rows(journal)["slow"].state == "running")
        below = _kill_controller(proc, tmp_path)
    finally:
        end(proc)
    # nobody resumes: the worker itself records the pass once the test ends
    try:
        _wait("the survivor's record", lambda: _rows(journal)["slow"].state == "pass")
    except AssertionError:
        spools = sorted(p.name for p in (tmp_path / f"{JOURNAL}.d").glob("1.spool/*"))
        alive = [(p.pid, p.is_running() and p.status()) for p in below]
        raise AssertionError(f"no record: events {_events(journal, 'slow')}, quick "
                             f"{_events(journal, 'quick')}, processes {alive}, spools "
                             f"{spools}, log {log.read_text()!r}") from None
    _no_survivors(below)
    to_pass = [d for f, t, d in _events(journal, "slow") if t == "pass"]
    assert len(to_pass) == 1 and to_pass[0]["recorded_by"] == "worker"
    # its output is where a controller would have put it
    out = tmp_path / f"{JOURNAL}.d" / "1" / "slow" / "1.out"
    assert out.read_text() == "slow output\n"
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert log.read_text().split("\n").count("end 1") == 1
    assert "start 2" not in log.read_text()
    rows, run = states(journal)
    assert run.state == "finished" and rows["slow"].attempt == 1


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_resume_waits_for_the_survivor_and_takes_its_outcome(tmp_path, pool):
    """(Under the thread pool the executables' spawner is the survivor.)"""
    suite = tmp_path / "suite"
    log = _suite(tmp_path, sleep="2")
    _script(suite / "fails.sh", f"touch {tmp_path / 'fails.started'}\nsleep 2\n"
                                "echo broken >&2\nexit 3\n")
    journal = tmp_path / JOURNAL
    proc = spawn("start", "suite", "-j", "3", "--pool", pool, cwd=tmp_path)
    try:
        # (both executables started, and both running in the journal)
        _wait("both running", lambda: log.exists() and (tmp_path / "fails.started").exists()
              and all(_rows(journal).get(k) is not None
                      and _rows(journal)[k].state == "running" for k in ("slow", "fails")))
        below = _kill_controller(proc, tmp_path)
    finally:
        end(proc)
    res = harness("resume", cwd=tmp_path)
    _no_survivors(below)
    assert res.returncode == 1, res.stderr
    assert "worker(s) of run 1's previous controller to finish" in res.stdout
    rows, _ = states(journal)
    assert rows["slow"].state == "pass" and rows["slow"].attempt == 1
    assert rows["fails"].state == "fail" and rows["fails"].attempt == 1
    assert rows["fails"].reason == "exit status 3"
    assert log.read_text().split() == ["start", "1", "end", "1"]
    recorded = [d for f, t, d in _events(journal, "slow") if t == "pass"][0]
    assert recorded["recorded_by"] == ("worker" if pool == "process" else "spawner")


def test_a_python_task_survives_too(tmp_path):
    (tmp_path / "pysuite.py").write_text(textwrap.dedent(f"""\
        import time

        from pexen.sched.meta import func_meta


        @func_meta()
        def slowpy():
            with open({str(tmp_path / 'py.log')!r}, "a") as f:
                f.write("start\\n")
            time.sleep(1.5)
            with open({str(tmp_path / 'py.log')!r}, "a") as f:
                f.write("end\\n")
            return 42
        """))
    journal = tmp_path / JOURNAL
    proc = spawn("start", "pysuite", cwd=tmp_path)
    try:
        _wait("slowpy running", lambda: (tmp_path / "py.log").exists())
        below = _kill_controller(proc, tmp_path)
    finally:
        end(proc)
    res = harness("resume", cwd=tmp_path)
    _no_survivors(below)
    assert res.returncode == 0, res.stderr
    rows, _ = states(journal)
    assert rows["slowpy"].state == "pass" and rows["slowpy"].attempt == 1
    assert json.loads(rows["slowpy"].ret) == 42
    assert (tmp_path / "py.log").read_text() == "start\nend\n"


def test_past_its_deadline_a_survivor_is_ended_with_its_daemons_and_run_again(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    marker = f"sleep 32{os.getpid() % 10}{int(time.time()) % 1000}"
    # a daemon that leaves the task's session and drops its environment
    _script(suite / "hangs.sh", f"""\
        # pexen: timeout=2
        setsid env -i sh -c '{marker} &'
        echo "start $PEXEN_ATTEMPT" >> {tmp_path / 'hangs.log'}
        sleep 60
        """)
    journal = tmp_path / JOURNAL
    proc = spawn("start", "suite", "--kill-grace", "0.5", cwd=tmp_path)
    try:
        _wait("hangs running", lambda: (tmp_path / "hangs.log").exists())
        below = _kill_controller(proc, tmp_path)
    finally:
        end(proc)
    res = harness("resume", "--max-attempts", "2", cwd=tmp_path)
    try:
        assert res.returncode == 1, res.stderr
        rows, _ = states(journal)
        # ended at its deadline by resume, then run again, and timed out
        assert rows["hangs"].state == "timeout" and rows["hangs"].attempt == 2
        assert (tmp_path / "hangs.log").read_text().split() == ["start", "1", "start", "2"]
        daemons = [p for p in psutil.process_iter(["cmdline", "status"])
                   if " ".join(p.info["cmdline"] or []) == marker
                   and p.info["status"] != psutil.STATUS_ZOMBIE]
        assert not daemons
    finally:
        _no_survivors(below)
        for p in psutil.process_iter(["cmdline"]):
            if " ".join(p.info["cmdline"] or []) == marker:
                p.kill()


def test_a_stop_ends_a_daemon_that_left_the_tasks_session_and_environment(tmp_path):
    pool = "process"   # (the thread pool has no worker to find it under: doc/watchdog.md)
    suite = tmp_path / "suite"
    suite.mkdir()
    marker = f"sleep 33{os.getpid() % 10}{int(time.time()) % 1000}"
    _script(suite / "daemon.sh", f"""\
        setsid env -i sh -c '{marker} &'
        touch {tmp_path / 'started'}
        sleep 60
        """)
    proc = spawn("start", "suite", "--pool", pool, "--kill-grace", "1", cwd=tmp_path)
    try:
        _wait("the daemon", lambda: (tmp_path / "started").exists())
        _wait("the daemon", lambda: [p for p in psutil.process_iter(["cmdline"])
                                     if " ".join(p.info["cmdline"] or []) == marker])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 2
    finally:
        end(proc)
    left = [p for p in psutil.process_iter(["cmdline", "status"])
            if " ".join(p.info["cmdline"] or []) == marker
            and p.info["status"] != psutil.STATUS_ZOMBIE]   # (dead, its reaper not yet told)
    for p in left:
        p.kill()
    assert not left, "the daemon outlived the stop"


def test_a_survivor_does_not_record_over_a_new_controller(tmp_path):
    """The record is refused once another controller has claimed the run, or
    when the task's row has moved on to another attempt."""
    (tmp_path / "one.py").write_text(
        "from pexen.sched.meta import func_meta\n\n\n@func_meta()\ndef one():\n    pass\n")
    res = harness("start", "one", cwd=tmp_path)
    assert res.returncode == 0
    journal = str(tmp_path / JOURNAL)
    con = sqlite3.connect(journal)
    with con:
        con.execute("UPDATE tasks SET state = 'running', attempt = 1, token = 'tok'")
        con.execute("UPDATE runs SET state = 'running'")
    con.close()
    j = open_journal(journal, create=False)
    try:
        kwargs = dict(fields={"reason": "x"}, used=1.0, started=1.0, detail=None)
        assert not j.finish_survivor(1, "one", 1, "tok", "fail", 2.0, is_alive=lambda r: True,
                                     **kwargs)
        assert not j.finish_survivor(1, "one", 2, "tok", "fail", 2.0,
                                     is_alive=lambda r: False, **kwargs)
        assert not j.finish_survivor(1, "one", 1, "other", "fail", 2.0,
                                     is_alive=lambda r: False, **kwargs)
        rows, _ = states(journal)
        assert rows["one"].state == "running"
        assert j.finish_survivor(1, "one", 1, "tok", "fail", 2.0, is_alive=lambda r: False,
                                 **kwargs)
        # once: the row is no longer running
        assert not j.finish_survivor(1, "one", 1, "tok", "pass", 3.0,
                                     is_alive=lambda r: False, **kwargs)
    finally:
        j.close()
    rows, _ = states(journal)
    assert rows["one"].state == "fail" and rows["one"].reason == "x"

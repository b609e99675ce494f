"""Every verb on both journals: a SQLite file and a PostgreSQL database
(``--journal postgresql+psycopg://...``; the server of tests/conftest.py).
The same runs, stops, crashes and refusals, checked the same way; and, on
PostgreSQL, several controllers on one database at once."""

import json
import random
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from pexen import journal

from .suites import CRASH_SUITE, SLOW_SUITE
from .test_cli import SMOKE, end, harness, spawn
from .test_htmlreport import page_data


def _states(where):
    with journal.open(where, create=False) as j:
        run = j.runs()[-1]
        return {t.key: t for t in j.tasks(run.id)}, run


def _has_run(where):
    try:
        with journal.open(where, create=False) as j:
            return bool(j.runs())
    except Exception:
        return False


def _data(tmp_path, where):
    return tmp_path / (f"{tmp_path / 'pexen-journal.sqlite'}.d" if "://" not in where
                       else "pexen-data")


def _executions(tmp_path, where):
    return {p.parent.parent.name: p.read_text().split()
            for p in _data(tmp_path, where).glob("*/*/data/runs")}


def _wait_for_executions(tmp_path, where, n, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(v) for v in _executions(tmp_path, where).values()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("the tasks did not start")


def test_every_verb(tmp_path, journal_at):
    res = harness("start", str(SMOKE), "--journal", journal_at, "--xunit", "out.xml",
                  cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "FAIL    fs/expected-failure: exit status 1" in res.stdout
    rows, run = _states(journal_at)
    assert run.state == "finished" and run.exit_code == 1
    assert rows["fs/expected-failure"].state == "fail"
    status = json.loads(harness("status", "--json", "--journal", journal_at,
                                cwd=tmp_path).stdout)
    assert status["counts"]["fail"] == 1 and status["state"] == "finished"
    listing = harness("list", "--journal", journal_at, cwd=tmp_path)
    assert listing.returncode == 0 and "finished" in listing.stdout
    runs = json.loads(harness("list", "--json", "--journal", journal_at, cwd=tmp_path).stdout)
    assert [r["run"] for r in runs] == [run.id] and runs[0]["tasks"] == len(rows)
    log = harness("log", "fs/expected-failure", "--journal", journal_at, cwd=tmp_path)
    assert log.returncode == 0 and "==> stdout of fs/expected-failure" in log.stdout
    export = harness("export", "--xunit", "again.xml", "--html", "page.html",
                     "--journal", journal_at, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    for name in ("out.xml", "again.xml"):
        root = ET.parse(tmp_path / name).getroot()
        assert int(root.get("tests")) == len(rows)
        assert int(root.get("failures")) == 1
    page = page_data(tmp_path / "page.html")
    assert page["run"]["counts"] == {state: sum(1 for r in rows.values() if r.state == state)
                                     for state in {r.state for r in rows.values()}}
    keys = page["tasks"]["key"]
    (attempt,) = page["output"][str(keys.index("fs/expected-failure"))]
    assert attempt[0] == 1 and "fails on purpose" in attempt[4] and attempt[5]
    follow = harness("follow", "--json", "--journal", journal_at, cwd=tmp_path)
    assert follow.returncode == 1   # (the run's own exit status)
    assert any(json.loads(line).get("to") == "fail" for line in follow.stdout.splitlines())
    again = harness("resume", "--journal", journal_at, cwd=tmp_path)
    assert again.returncode == 4 and "no unfinished run" in again.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_a_stop_and_resume(tmp_path, journal_at, sig):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "2", "--max-attempts", "1",
                 "--journal", journal_at, cwd=tmp_path)
    try:
        _wait_for_executions(tmp_path, journal_at, 2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        end(proc)
    assert proc.returncode == 2, err
    rows, run = _states(journal_at)
    assert run.state == "interrupted"
    assert any(r.state == "interrupted" for r in rows.values())
    res = harness("resume", "--journal", journal_at, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows, run = _states(journal_at)
    assert run.state == "finished" and all(r.state == "pass" for r in rows.values())


def test_a_second_controller_is_refused(tmp_path, journal_at):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "1", "--journal", journal_at, cwd=tmp_path)
    try:
        _wait_for_executions(tmp_path, journal_at, 1)
        res = harness("resume", "--journal", journal_at, cwd=tmp_path)
        assert res.returncode == 4
        assert f"pid {proc.pid}" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        status = harness("status", "--journal", journal_at, cwd=tmp_path)
        assert "controller alive" in status.stdout
    finally:
        end(proc)


def test_sigkill_and_resume_loses_nothing(tmp_path, journal_at):
    """The controller SIGKILLed at random moments and resumed: every task
    ends once, and no task that had passed before a kill runs again."""
    (tmp_path / "crash.py").write_text(CRASH_SUITE)
    rng = random.Random(4321)
    proc = spawn("start", "crash:tasks", "-j", "2", "--journal", journal_at, cwd=tmp_path)
    kills = 0
    err = ""
    try:
        while True:
            try:
                proc.wait(timeout=rng.uniform(0.3, 1.0))
                _, err = proc.communicate()
                break
            except subprocess.TimeoutExpired:
                pass
            if not _has_run(journal_at):
                continue
            passed = {k for k, r in _states(journal_at)[0].items() if r.state == "pass"}
            before = _executions(tmp_path, journal_at)
            proc.send_signal(signal.SIGKILL)
            end(proc)
            kills += 1
            deadline = time.monotonic() + 15   # (its workers finish their tasks)
            while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _states(journal_at)[1].state == "finished":
                break
            proc = spawn("resume", "--journal", journal_at, cwd=tmp_path)
            time.sleep(0.3)
            now = _executions(tmp_path, journal_at)
            for key in passed:
                assert now.get(key) == before.get(key), key
            if kills >= 3:
                _, err = proc.communicate(timeout=120)
                break
    finally:
        end(proc)
    assert kills > 0
    rows, run = _states(journal_at)
    assert run.state == "finished", (run, err)
    assert len(rows) == 50
    with journal.open(journal_at, create=False) as j:
        ends = [e.key for e in j.events(run.id) if e.key and e.to_state in
                ("pass", "fail", "error", "skip", "timeout", "warn")]
    assert sorted(ends) == sorted(rows), "a task ended twice or never"
    for key, row in rows.items():
        assert row.state in ("pass", "error", "skip"), (key, row.state, row.reason)


def test_several_controllers_on_one_database(tmp_path, postgres_journal):
    """Two controllers (two runs, from two directories: two hosts of a lab)
    write one PostgreSQL journal at once, while `status` and `list` read it
    from a third process; each run keeps its own tasks and results."""
    procs = []
    try:
        for name in ("a", "b"):
            where = tmp_path / name
            where.mkdir()
            (where / "slow.py").write_text(SLOW_SUITE)
            procs.append(spawn("start", "slow:tasks", "-j", "2", "--journal",
                               postgres_journal, cwd=where))
        deadline = time.monotonic() + 60
        seen_running = False
        while any(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "the runs did not end"
            listing = harness("list", "--json", "--journal", postgres_journal, cwd=tmp_path)
            if listing.returncode == 0 and listing.stdout.strip():
                runs = json.loads(listing.stdout)
                if sum(r["state"] == "running" for r in runs) == 2:
                    seen_running = True
                    for r in runs:
                        status = harness("status", str(r["run"]), "--json", "--journal",
                                         postgres_journal, cwd=tmp_path)
                        assert status.returncode in (0, 1), status.stderr
                        assert json.loads(status.stdout)["run"] == r["run"]
            time.sleep(0.1)
        for proc in procs:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            end(proc)
    assert seen_running, "the two runs never ran at once"
    with journal.open(postgres_journal, create=False) as j:
        runs = j.runs()
        assert len(runs) == 2
        for run in runs:
            tasks = j.tasks(run.id)
            assert len(tasks) == 8 and all(t.state == "pass" for t in tasks)
        assert {run.config.get("data_root") for run in runs} == {
            str(tmp_path / "a" / "pexen-data"), str(tmp_path / "b" / "pexen-data")}


def _foreign_run(where, heartbeat_age):
    """A run as a controller on another host left it in a shared journal."""
    with journal.open(where) as j:
        rid = j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {"workers": 1},
                           [("a", {})], host="rack3-node2", boot_id="other-boot",
                           controller_pid=4242, controller_started=1.0)
        with j._transaction(write=True) as cur:
            cur.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?",
                        (time.time() - heartbeat_age, rid))
    return rid


def test_a_run_of_another_host(tmp_path, journal_at):
    """A controller on another machine is alive while its heartbeat is fresh
    (its pid means nothing here); a run is resumed only on its own host."""
    rid = _foreign_run(journal_at, heartbeat_age=1.0)
    status = json.loads(harness("status", "--json", "--journal", journal_at,
                                cwd=tmp_path).stdout)
    assert status["controller"] == "alive"
    res = harness("resume", "--journal", journal_at, cwd=tmp_path)
    assert res.returncode == 4
    assert f"run {rid} is still being run on rack3-node2" in res.stderr
    with journal.open(journal_at) as j:
        with j._transaction(write=True) as cur:
            cur.execute("UPDATE runs SET heartbeat_at = ?", (time.time() - 120,))
    res = harness("resume", "--journal", journal_at, cwd=tmp_path)
    assert res.returncode == 4
    assert res.stderr.strip() == (f"pexen-harness: error: run {rid} was started on "
                                  "rack3-node2, not here; resume it there (its processes, "
                                  "cgroups, data directories and reboots are that "
                                  "machine's)")
    rows, run = _states(journal_at)
    assert run.controller_pid == 4242 and rows["a"].state == "pending"   # untouched

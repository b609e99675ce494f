"""Hung tests, as a user meets them: `pexen-harness start --timeout ...` on
executables and Python tasks that sleep, ignore SIGTERM, stop themselves,
fork daemons or floods of children, or leave processes behind. Each must end
`timeout` (or `warn` for leftovers) with nothing of it left running."""

import os
import signal
import sqlite3
import textwrap
import time

import psutil
import pytest

from .test_cli import end, harness, spawn, states

HOSTILE = {
    "sleeps": "sleep 60",
    "ignores-term": "trap '' TERM\nsleep 60 &\nwait\nsleep 60",
    "stopped": "kill -STOP $$\nsleep 60",
    "daemon": "setsid sh -c 'trap \"\" TERM HUP; exec sleep 60' </dev/null >/dev/null 2>&1 &\n"
              "sleep 60",
    "fifty-children": "for i in $(seq 50); do sleep 60 & done\nwait",
    "floods-stdout": "while :; do echo 'flood <&]]> \\033[31mred\\033[0m'; done",
}


def write_exe(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def of_journal(journal):
    """Live processes started for a run of this journal (they all carry it)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.environ().get("PEXEN_JOURNAL") == str(journal)
                    and proc.status() != psutil.STATUS_ZOMBIE):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def no_process_left(journal, timeout=10.0):
    deadline = time.monotonic() + timeout
    while of_journal(journal):
        if time.monotonic() > deadline:
            left = of_journal(journal)
            for proc in left:  # end them, so one failure does not cascade
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            pytest.fail(f"left running: {[(p.pid, p.name()) for p in left]}")
        time.sleep(0.05)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_hung_executables_end_as_timeout_with_nothing_left(tmp_path, pool):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, body in HOSTILE.items():
        write_exe(suite / f"{name}.sh", body)
    # (the pause: so that the child is a sleep, not a shell yet to exec it, when named)
    write_exe(suite / "leaves-child.sh", "sleep 60 &\nsleep 0.5\nexit 0")
    write_exe(suite / "passes.sh", "exit 0")
    journal = tmp_path / "pexen-journal.sqlite"
    with open(tmp_path / "out", "w") as out:
        res = harness("start", str(suite), "--timeout", "2", "--kill-grace", "1",
                      "-j", "8", "--pool", pool, cwd=tmp_path, stdout=out)
    assert res.returncode == 1, res.stderr
    rows, run = states(journal)
    assert run.state == "finished" and run.exit_code == 1
    for name in HOSTILE:
        row = rows[name]
        assert row.state == "timeout", (name, row.state, row.reason)
        assert row.reason.startswith("timeout: still running after its 2 s limit"), row.reason
        assert "LEAKED" not in row.reason
    fifty = rows["fifty-children"].reason
    assert "ended" in fifty and "and 4" in fifty, fifty  # 50 sleeps + the shell
    # what a task leaves running ends with it, and is named in its result
    left = rows["leaves-child"]
    assert left.state == "warn", (left.state, left.reason)
    assert "left processes running: ended" in left.reason and "(sleep)" in left.reason, \
        left.reason
    assert rows["passes"].state == "pass", rows["passes"].reason
    no_process_left(journal)
    # the journal names what was killed
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        detail = con.execute("SELECT detail FROM events WHERE key = 'daemon' AND "
                             "to_state = 'timeout'").fetchone()[0]
    finally:
        con.close()
    assert '"by": "watchdog"' in detail and '"leaked": []' in detail
    assert detail.count('"name": "sleep"') >= 2  # the child and the daemon


LOCKED_SUITE = textwrap.dedent('''
    import os

    from pexen.harness.suite import ExecutableTask
    from pexen.sched import meta

    HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "suite")


    def tasks():
        out = []
        for name in sorted(os.listdir(HERE)):
            key = name[:-3]
            hung = ExecutableTask(os.path.join(HERE, name), key)
            meta.assign_val(hung, timeout=1, claims=[f"lock-{key}"], provides=[key])
            after = ExecutableTask(os.path.join(HERE, "../passes.sh"), f"{key}-same-lock")
            meta.assign_val(after, claims=[f"lock-{key}"], priority=5)
            child = ExecutableTask(os.path.join(HERE, "../passes.sh"), f"{key}-dependent")
            meta.assign_val(child, requires=[key])
            out += [hung, after, child]
        return out
''')


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_each_hung_executable_releases_its_lock_and_skips_dependents(tmp_path, pool):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, body in HOSTILE.items():
        write_exe(suite / f"{name}.sh", body)
    write_exe(tmp_path / "passes.sh", "exit 0")
    (tmp_path / "locked.py").write_text(LOCKED_SUITE)
    journal = tmp_path / "pexen-journal.sqlite"
    with open(tmp_path / "out", "w") as out:
        res = harness("start", "locked:tasks", "--kill-grace", "1", "-j", "6", "--pool", pool,
                      cwd=tmp_path, stdout=out)
    assert res.returncode == 1, res.stderr
    rows, run = states(journal)
    assert run.state == "finished"
    for name in HOSTILE:
        hung, after, child = (rows[name], rows[f"{name}-same-lock"],
                              rows[f"{name}-dependent"])
        assert hung.state == "timeout", (name, hung.reason)
        # the lock was released only once the tree was confirmed dead
        assert after.state == "pass" and after.started_at >= hung.finished_at, name
        assert child.state == "skip" and f"its provider {name} failed" in child.reason
    no_process_left(journal)


PY_SUITE = textwrap.dedent('''
    import os
    import subprocess
    import time

    from pexen.sched import meta


    @meta.func_meta(timeout=1, claims=["disk"], provides=["formatted"])
    def tight_loop():
        while True:
            pass


    @meta.func_meta(requires=["formatted"])
    def needs_formatted():
        pass


    @meta.func_meta(claims=["disk"], priority=5)
    def same_lock_after():
        return "ran"


    @meta.func_meta(timeout=1)
    def ignores_term_with_daemon():
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen(["setsid", "sh", "-c", "trap '' TERM; sleep 60"])
        time.sleep(60)


    def leaves_daemon():
        subprocess.Popen(["setsid", "sleep", "60"])
        time.sleep(0.3)  # (so that it is a sleep, not still a setsid, when it is named)


    def tasks():
        return [tight_loop, needs_formatted, same_lock_after, ignores_term_with_daemon,
                leaves_daemon]
''')


def test_hung_python_tasks_under_the_process_pool(tmp_path):
    (tmp_path / "pysuite.py").write_text(PY_SUITE)
    journal = tmp_path / "pexen-journal.sqlite"
    res = harness("start", "pysuite:tasks", "--kill-grace", "0.5", "-j", "3", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = states(journal)
    assert rows["tight_loop"].state == "timeout"
    assert rows["ignores_term_with_daemon"].state == "timeout"
    assert "(sleep)" in rows["ignores_term_with_daemon"].reason
    # locks released only after the kill, dependents skipped with the reason
    assert rows["same_lock_after"].state == "pass"
    assert rows["same_lock_after"].started_at >= rows["tight_loop"].finished_at
    assert rows["needs_formatted"].state == "skip"
    assert "tight_loop" in rows["needs_formatted"].reason
    assert rows["leaves_daemon"].state == "warn"
    assert "(sleep)" in rows["leaves_daemon"].reason
    no_process_left(journal)


RUN_TIMEOUT_SUITE = textwrap.dedent('''
    import time

    from pexen.sched import meta


    def _make(i):
        def task():
            time.sleep(60)
        task.__name__ = task.__qualname__ = f"long{i}"
        meta.assign_val(task, priority=i)
        return task


    def tasks():
        return [_make(i) for i in range(4)]
''')


def test_run_timeout_ends_running_skips_the_rest(tmp_path):
    (tmp_path / "runlimit.py").write_text(RUN_TIMEOUT_SUITE)
    journal = tmp_path / "pexen-journal.sqlite"
    res = harness("start", "runlimit:tasks", "--run-timeout", "1", "--kill-grace", "0",
                  "-j", "2", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, run = states(journal)
    assert run.state == "finished" and run.exit_code == 1
    assert [rows[f"long{i}"].state for i in range(4)] == ["timeout", "timeout", "skip",
                                                          "skip"]
    assert "run timeout" in rows["long0"].reason
    assert rows["long2"].reason.endswith("run timeout")
    no_process_left(journal)


BUDGET_SUITE = textwrap.dedent('''
    import time

    from pexen.sched import meta


    @meta.func_meta(timeout=8)
    def slow():
        time.sleep(60)


    def tasks():
        return [slow]
''')


def test_time_budget_counts_across_a_controller_crash(tmp_path):
    (tmp_path / "budget.py").write_text(BUDGET_SUITE)
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "budget:tasks", cwd=tmp_path)
    try:
        # wait until a heartbeat charges the running attempt with >= 3 s
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            if not journal.exists():
                continue
            try:
                rows, run = states(journal)
            except Exception:
                continue
            row = rows.get("slow")
            if (row is not None and row.state == "running" and run.heartbeat_at
                    and run.heartbeat_at - row.started_at >= 3):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = states(journal)
    row = rows["slow"]
    assert row.state == "timeout" and row.attempt == 2
    # the second attempt had only what the first left of the 8 s
    assert row.finished_at - row.started_at < 6.5
    assert row.time_used >= 7.5
    no_process_left(journal)


@pytest.mark.parametrize("flag,value", [("--timeout", "-1"), ("--timeout", "nan"),
                                        ("--timeout", "0"), ("--kill-grace", "soon"),
                                        ("--timeout", "5 minutes"), ("--timeout", "0m"),
                                        ("--kill-grace", "-2"), ("--run-timeout", "inf")])
def test_bad_watchdog_flags(tmp_path, flag, value):
    res = harness("start", "no-such-suite", flag, value, cwd=tmp_path)
    assert res.returncode == 4
    assert f"argument {flag}: not a duration" in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()


def test_resume_takes_new_watchdog_limits(tmp_path):
    (tmp_path / "budget.py").write_text(BUDGET_SUITE.replace("timeout=8", "timeout=60"))
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "budget:tasks", "--kill-grace", "3", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.1)
            try:
                rows, _ = states(journal)
            except Exception:
                continue
            if "slow" in rows and rows["slow"].state == "running":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    res = harness("resume", "--run-timeout", "1", "--kill-grace", "0", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, run = states(journal)
    assert rows["slow"].state == "timeout" and "run timeout" in rows["slow"].reason
    assert run.config["kill_grace"] == 0 and run.config["run_deadline"] is not None
    no_process_left(journal)


def test_status_shows_heartbeat_and_when_it_goes_stale(tmp_path):
    (tmp_path / "budget.py").write_text(BUDGET_SUITE.replace("timeout=8", "timeout=60"))
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "budget:tasks", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            status = harness("status", cwd=tmp_path) if journal.exists() else None
            if status and "last heartbeat" in status.stdout:
                break
        assert "controller alive" in status.stdout and "stale" not in status.stdout
        os.kill(proc.pid, signal.SIGSTOP)  # a hung controller
        try:
            time.sleep(7)
            status = harness("status", cwd=tmp_path)
            assert "stale" in status.stdout, status.stdout
            data = harness("status", "--json", cwd=tmp_path).stdout
            assert '"heartbeat_stale": true' in data
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        end(proc)
    no_process_left(journal)


def test_watchdog_flags_take_durations():
    """--timeout 5m, --run-timeout '1h 30m' (as tmt and restraint write them)."""
    from pexen.harness.cli import build_parser

    args = build_parser("start").parse_args(
        ["start", "suite", "--timeout", "5m", "--run-timeout", "1h 30m", "--kill-grace", "2s",
         "--drain-timeout", "90"])
    assert (args.timeout, args.run_timeout, args.kill_grace, args.drain_timeout) == (
        300, 5400, 2, 90)

"""pexen-harness start / resume / status / list, as a user runs them: in a
subprocess, with real suites, killed at random moments, given bad input."""

import json
import os
import pathlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import pexen.journal as journal

from .suites import BAD_SUITES, CONTEXT_SUITE, CRASH_SUITE, SLOW_SUITE

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = ROOT / "examples" / "smoke"


def harness(*args, cwd, env=None, timeout=120, stdout=subprocess.PIPE):
    full_env = dict(os.environ)
    full_env.pop("PEXEN_JOURNAL", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "pexen.harness.cli", *args], cwd=cwd,
                          env=full_env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def spawn(*args, cwd, env=None):
    extra = env
    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    env.update(extra or {})
    return subprocess.Popen([sys.executable, "-m", "pexen.harness.cli", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def end(proc):
    """End a controller we started, and reap it. Its pipes are closed, not
    read to the end: a task's orphan may hold them open."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def resume_until_it_ends(cwd, env=None, tries=6):
    """`resume` (once the killed controller's processes are gone), again
    while a task keeps killing it: the last `resume`'s result."""
    for _ in range(tries):
        deadline = time.monotonic() + 10
        while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        res = harness("resume", cwd=cwd, env=env)
        if res.returncode in (0, 1, 4):
            break
    return res


def states(path):
    with journal.open(str(path), create=False) as j:
        run = j.runs()[-1]
        return {t.key: t for t in j.tasks(run.id)}, run


def has_run(path):
    """The journal exists and holds a run (the file is created, and its schema
    made, a moment before the run). Read-only: the controller may be making it."""
    if not path.exists():
        return False
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    except sqlite3.Error:
        return False
    finally:
        con.close()


def test_smoke_example(tmp_path):
    res = harness("start", str(SMOKE), cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "FAIL    fs/expected-failure: exit status 1" in res.stdout
    assert "SKIP    hw/needs-gpu" in res.stdout or "PASS    hw/needs-gpu" in res.stdout
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished" and run.exit_code == 1
    assert rows["fs/expected-failure"].state == "fail"
    assert rows["00-env"].state == "pass"
    assert oct(os.stat(tmp_path / "pexen-journal.sqlite").st_mode & 0o777) == "0o600"
    status = harness("status", "--json", cwd=tmp_path)
    data = json.loads(status.stdout)
    assert data["counts"]["fail"] == 1 and data["state"] == "finished"
    listing = harness("list", cwd=tmp_path)
    assert listing.returncode == 0 and "finished" in listing.stdout
    # nothing to resume
    again = harness("resume", cwd=tmp_path)
    assert again.returncode == 4
    assert "no unfinished run" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_context_and_environment(tmp_path, pool):
    (tmp_path / "ctxsuite.py").write_text(CONTEXT_SUITE)
    res = harness("start", "ctxsuite:tasks", "--pool", pool, cwd=tmp_path)
    assert res.returncode == 0, (res.stdout, res.stderr)
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    ret = json.loads(rows["check_context"].ret)
    assert ret["journal"] == str(tmp_path / "pexen-journal.sqlite")
    assert ret["task"] == "check_context"
    if pool == "process":
        assert ret["env_token"] == ret["token"]
        assert ret["env_run"] == str(ret["run"])
        assert ret["child"] == ["check_context", "1"]
    else:
        # threads share one process environment: only pexen.context() is per task
        assert ret["env_token"] is None


def test_journal_env_var_and_option(tmp_path):
    (tmp_path / "ctxsuite.py").write_text(CONTEXT_SUITE)
    res = harness("start", "ctxsuite:tasks", cwd=tmp_path,
                  env={"PEXEN_JOURNAL": str(tmp_path / "env.sqlite")})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "env.sqlite").exists()
    res = harness("start", "ctxsuite:tasks", "--journal", "opt.sqlite", cwd=tmp_path)
    assert (tmp_path / "opt.sqlite").exists()


def _journal_bytes(path):
    return pathlib.Path(path).read_bytes() if pathlib.Path(path).exists() else None


@pytest.mark.parametrize("case", [
    "no-such-suite", "empty-dir", "import-error", "not-tasks", "bad-task", "unmet",
    "duplicate-keys", "missing-journal-dir", "bad-workers",
])
def test_bad_start_input(tmp_path, case):
    for name, text in BAD_SUITES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("not executable")
    dup = tmp_path / "dup"
    dup.mkdir()
    for name in ("a.sh", "a.py"):
        (dup / name).write_text("#!/bin/sh\nexit 0\n")
        (dup / name).chmod(0o755)
    # a journal with history, which bad input must leave as it is
    good = harness("start", str(SMOKE), cwd=tmp_path)
    assert good.returncode == 1
    before = _journal_bytes(tmp_path / "pexen-journal.sqlite")
    args = {
        "no-such-suite": ["start", "no/such/dir"],
        "empty-dir": ["start", "empty"],
        "import-error": ["start", "broken:tasks"],
        "not-tasks": ["start", "notasks:tasks"],
        "bad-task": ["start", "badtask:tasks"],
        "unmet": ["start", "unmet:tasks"],
        "duplicate-keys": ["start", str(dup)],
        "missing-journal-dir": ["start", str(SMOKE), "--journal", "nodir/j.sqlite"],
        "bad-workers": ["start", str(SMOKE), "-j", "0"],
    }[case]
    res = harness(*args, cwd=tmp_path)
    assert res.returncode == 4, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pexen-harness: error: "), res.stderr
    assert "Traceback" not in res.stderr
    assert _journal_bytes(tmp_path / "pexen-journal.sqlite") == before


@pytest.mark.parametrize("case", ["not-sqlite", "other-sqlite", "truncated", "newer"])
def test_bad_journals_are_refused_and_left_alone(tmp_path, case):
    path = tmp_path / "j.sqlite"
    if case == "not-sqlite":
        path.write_text("hello\n")
    elif case == "other-sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE x (y)")
        con.commit()
        con.close()
    else:
        assert harness("start", str(SMOKE), "--journal", str(path),
                       cwd=tmp_path).returncode == 1
        if case == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            con = sqlite3.connect(path)
            con.execute("UPDATE alembic_version SET version_num = 'ffff'")
            con.commit()
            con.close()
    before = path.read_bytes()
    for verb in (["start", str(SMOKE)], ["resume"], ["status"], ["list"]):
        res = harness(*verb, "--journal", str(path), cwd=tmp_path)
        assert res.returncode == 3, (verb, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert path.read_bytes() == before


def test_resume_of_a_suite_that_no_longer_loads(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "1", cwd=tmp_path)
    try:
        _wait_for_runs(tmp_path, 1)
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    (tmp_path / "slow.py").write_text("raise ImportError('gone')\n")
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 4
    assert "no longer loads" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _wait_for_runs(tmp_path, n, timeout=30):
    """Wait until at least n task executions were logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(len(p.read_text().splitlines())
                    for p in tmp_path.glob("pexen-journal.sqlite.d/*/*/data/runs"))
        if total >= n:
            return total
        time.sleep(0.02)
    raise AssertionError("the tasks did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_interrupts_and_resume_finishes(tmp_path, sig):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "2", "--max-attempts", "1", cwd=tmp_path)
    try:
        _wait_for_runs(tmp_path, 2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        end(proc)
    assert proc.returncode == 2, err
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "interrupted"
    assert {r.state for r in rows.values()} <= {"pass", "interrupted", "pending"}
    assert any(r.state == "interrupted" for r in rows.values())
    # a stop on purpose is not a crash: --max-attempts 1 does not end them
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished"
    assert all(r.state == "pass" for r in rows.values())


def test_second_controller_is_refused(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "1", cwd=tmp_path)
    try:
        _wait_for_runs(tmp_path, 1)
        res = harness("resume", cwd=tmp_path)
        assert res.returncode == 4
        assert f"pid {proc.pid}" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        status = harness("status", cwd=tmp_path)
        assert "controller alive" in status.stdout
    finally:
        end(proc)


def _executions(tmp_path):
    out = {}
    for p in tmp_path.glob("pexen-journal.sqlite.d/*/*/data/runs"):
        out[p.parent.parent.name] = p.read_text().split()
    return out


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    """The fault-injection proof: kill the controller with SIGKILL at random
    moments, resume, repeat; every task ends exactly once, and no task that
    had completed before a kill runs again."""
    (tmp_path / "crash.py").write_text(CRASH_SUITE)
    rng = random.Random(1234)
    jpath = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "crash:tasks", "-j", "2", cwd=tmp_path)
    kills = 0
    try:
        while True:
            try:
                proc.wait(timeout=rng.uniform(0.2, 0.9))
                out, err = proc.communicate()
                break
            except subprocess.TimeoutExpired:
                pass
            if not has_run(jpath):
                continue  # not started yet: kill later
            completed_before = {k for k, r in states(jpath)[0].items() if r.state == "pass"}
            runs_before = _executions(tmp_path)
            proc.send_signal(signal.SIGKILL)
            end(proc)
            kills += 1
            # the workers of the dead controller die with it
            deadline = time.monotonic() + 10
            while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
                time.sleep(0.05)
            if states(jpath)[1].state == "finished":
                err = ""
                break  # killed after the run had ended: nothing to resume
            proc = spawn("resume", cwd=tmp_path)
            # a task that had completed never runs again
            time.sleep(0.3)
            runs_now = _executions(tmp_path)
            for key in completed_before:
                assert runs_now.get(key) == runs_before.get(key), key
            if kills >= 6:
                out, err = proc.communicate(timeout=120)
                break
    finally:
        end(proc)
    assert kills > 0
    assert proc.returncode in (0, 1, -signal.SIGKILL), err
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished", (run, err)
    assert len(rows) == 50
    for key, row in rows.items():
        # a task in flight at three kills ends in a crash loop, and what
        # needs it is skipped
        assert row.state in ("pass", "error", "skip"), (key, row.state, row.reason)
        if row.state == "error":
            assert "crash loop" in row.reason
        if row.state == "skip":
            assert "not met" in row.reason
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        terminal = [e for e in j.events(run.id) if e.key and e.to_state in
                    ("pass", "fail", "error", "skip", "timeout", "warn")]
    assert sorted(e.key for e in terminal) == sorted(rows), "a task ended twice or never"
    executions = _executions(tmp_path)
    for key, row in rows.items():
        if row.state == "pass":
            # the passing execution is the last one, and it knew its attempt
            assert executions[key][-1] == str(row.attempt), (key, executions[key])


def _start_and_kill(tmp_path, env, *extra):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    full_env = dict(os.environ)
    full_env.pop("PEXEN_JOURNAL", None)
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "pexen.harness.cli", "start", "slow:tasks",
                             "-j", "1", *extra], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_runs(tmp_path, 1)
        # the journal is written asynchronously: wait until it has the start
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows, _ = states(tmp_path / "pexen-journal.sqlite")
            if any(r.state == "running" for r in rows.values()):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    deadline = time.monotonic() + 10
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_changed_boot_id_ends_interrupted_tasks_in_error(tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("boot-A\n")
    env = {"PEXEN_BOOT_ID_FILE": str(boot)}
    _start_and_kill(tmp_path, env)
    before, _ = states(tmp_path / "pexen-journal.sqlite")
    boot.write_text("boot-B\n")
    res = harness("resume", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    errors = [r for r in rows.values() if r.state == "error"]
    assert errors and all(r.reason == "interrupted by reboot" for r in errors)
    assert all(r.state in ("pass", "error") for r in rows.values())
    # what was running when the machine went down ends `error`; what was
    # handed out and never recorded as started runs again, counted
    assert {r.state for r in before.values()} >= {"running", "queued"}
    for key, row in before.items():
        if row.state == "running":
            assert rows[key].state == "error", key
        elif row.state == "queued":
            assert (rows[key].state, rows[key].attempt) == ("pass", 2), key


def test_tasks_handed_out_behind_a_started_one_are_spared(tmp_path):
    """The controller SIGKILLed while a task ran (recorded as started) and
    others waited behind it in the pool: even with --max-attempts 1 none of
    them ends in a crash loop. The running one is finished by its worker;
    those behind it, never started, run again, not charged (doc/harness.md,
    "Attempts")."""
    _start_and_kill(tmp_path, {}, "--max-attempts", "1")
    before, _ = states(tmp_path / "pexen-journal.sqlite")
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert {r.state for r in rows.values()} == {"pass"}
    queued = {key for key, r in before.items() if r.state == "queued"}
    assert any(r.state == "running" for r in before.values()) and queued
    assert all((rows[key].attempt, rows[key].spared_count) == (2, 1) for key in queued)


def test_resume_options_and_named_run(tmp_path):
    _start_and_kill(tmp_path, {})   # started with -j 1
    res = harness("resume", "1", "--max-attempts", "5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    _, run = states(tmp_path / "pexen-journal.sqlite")
    # what was not given stays as the run started
    assert run.config == {"workers": 1, "pool": "process", "max_attempts": 5,
                          "timeout": None, "kill_grace": 10.0, "run_deadline": None,
                          "data_root": str(tmp_path / "pexen-journal.sqlite") + ".d",
                          "max_reboots": 10, "drain_timeout": 600.0, "reboot_command": None,
                          "allow_reboot": False, "max_output": 64 << 20}
    assert oct(os.stat(tmp_path / "pexen-journal.sqlite.d").st_mode & 0o777) == "0o700"
    res = harness("resume", "7", cwd=tmp_path)
    assert res.returncode == 4 and "no run 7" in res.stderr
    res = harness("resume", "--max-attempts", "0", cwd=tmp_path)
    assert res.returncode == 4


def test_usage_errors_exit_4(tmp_path):
    assert harness(cwd=tmp_path).returncode == 4
    assert harness("frobnicate", cwd=tmp_path).returncode == 4
    assert harness("start", cwd=tmp_path).returncode == 4
    assert harness("--help", cwd=tmp_path).returncode == 0
    res = harness("status", cwd=tmp_path)
    assert res.returncode == 4 and "no journal" in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()


def test_version(tmp_path):
    import pexen

    for flag in ("--version", "-V"):
        res = harness(flag, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"pexen-harness {pexen.__version__} (Python 3.")
    assert not (tmp_path / "pexen-journal.sqlite").exists()
    # a verb's own options do not take it
    assert harness("status", "--version", cwd=tmp_path).returncode == 4


def test_every_verb_has_help():
    from pexen.harness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for name, p in sub.choices.items():
        assert p.description, name
        for action in p._actions:
            if action.dest not in ("help",) and action.option_strings:
                assert action.help, (name, action.dest)


def _start_long_script(tmp_path, prelude="", args=()):
    """Start a directory suite of one script, `long`, that writes its pid
    into its data directory and sleeps; return (controller, pid file)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    script = suite / "long.sh"
    script.write_text('#!/bin/sh\n' + prelude
                      + 'echo $$ > "$PEXEN_TASK_DATA/pid"\nexec sleep 300\n')
    script.chmod(0o755)
    proc = spawn("start", str(suite), *args, cwd=tmp_path)
    return proc, tmp_path / "pexen-journal.sqlite.d" / "1" / "long" / "data" / "pid"


def _wait_for_pidfile(pidfile, timeout=20):
    """Wait until the script wrote its pid; return the deadline used."""
    deadline = time.monotonic() + timeout
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the script did not start"
        time.sleep(0.02)
    return deadline


def test_survivors_of_a_dead_controller_are_killed_on_resume(tmp_path):
    """A task outlives its controller when that is SIGKILLed; resume waits
    for it up to its deadline, then ends it and runs it again."""
    proc, pidfile = _start_long_script(
        tmp_path, '# pexen: timeout=2\n'
                  'if [ -e "$PEXEN_TASK_DATA/ran" ]; then exit 0; fi\n'
                  'touch "$PEXEN_TASK_DATA/ran"\n', args=("--kill-grace", "0.5"))
    try:
        deadline = _wait_for_pidfile(pidfile)
        while time.monotonic() < deadline:
            rows, _ = states(tmp_path / "pexen-journal.sqlite")
            if rows["long"].state == "running":
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    survivor = psutil.Process(int(pidfile.read_text()))
    try:
        time.sleep(0.3)
        assert survivor.is_running() and survivor.status() != psutil.STATUS_ZOMBIE
        res = harness("resume", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert not survivor.is_running() or survivor.status() == psutil.STATUS_ZOMBIE
        rows, _ = states(tmp_path / "pexen-journal.sqlite")
        assert rows["long"].state == "pass" and rows["long"].attempt == 2
    finally:
        if survivor.is_running():
            survivor.kill()


def test_read_only_journal_is_a_usage_error(tmp_path):
    from tests.journal.test_journal import read_only

    path = tmp_path / "j.sqlite"
    assert harness("start", str(SMOKE), "--journal", str(path), cwd=tmp_path).returncode == 1
    before = path.read_bytes()
    with read_only(path):
        res = harness("start", str(SMOKE), "--journal", str(path), cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert "read-only" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_sigterm_ends_the_executables_of_running_tasks(tmp_path):
    proc, pidfile = _start_long_script(tmp_path)
    try:
        _wait_for_pidfile(pidfile)
        script_proc = psutil.Process(int(pidfile.read_text()))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        end(proc)
    assert proc.returncode == 2
    assert not script_proc.is_running() or script_proc.status() == psutil.STATUS_ZOMBIE


def test_a_task_that_kills_its_controller_at_once_uses_up_its_attempts(tmp_path):
    """The crash-loop cap must hold even when the task kills the controller
    before anything else is written: the attempt is on disk before it runs."""
    from .suites import KILLER_SUITE

    (tmp_path / "killer.py").write_text(KILLER_SUITE)
    res = harness("start", "killer:tasks", cwd=tmp_path)
    assert res.returncode != 0
    res = resume_until_it_ends(tmp_path)
    assert res.returncode == 1, (res.returncode, res.stderr)
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    row = rows["kills_controller"]
    assert row.state == "error" and row.reason.startswith("crash loop: 3 attempts")
    runs = (tmp_path / "pexen-journal.sqlite.d" / "1" / "kills_controller" / "data" / "runs")
    assert runs.read_text().split() == ["1", "2", "3"]


BYSTANDERS = textwrap.dedent('''
    import os
    import signal
    import time

    import psutil

    import pexen


    def takes_the_machine_down():
        with open(os.path.join(pexen.context().data_dir, "runs"), "a") as f:
            f.write(f"{pexen.context().attempt}\\n")
        time.sleep(float(os.environ["DELAY"]))
        if os.environ.get("ONLY_FIRST") and pexen.context().attempt > 1:
            return
        # worker -> fork server -> controller: all go, as in a crash
        os.kill(psutil.Process().parent().parent().pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


    def behind_it_1():
        pass


    def behind_it_2():
        pass


    def tasks():
        return [takes_the_machine_down, behind_it_1, behind_it_2]
''')


def test_a_start_the_journal_lost_is_read_from_the_workers_spool(tmp_path):
    """The crashing task's start did not reach the journal (all three tasks
    `queued` at the crash): its worker's spool names it, so it alone is
    charged (--max-attempts 1: a crash loop) and the two behind it run."""
    import sqlite3

    (tmp_path / "bystanders.py").write_text(BYSTANDERS)
    env = {"DELAY": "0.5", "ONLY_FIRST": "1"}
    res = harness("start", "bystanders:tasks", "-j", "1", cwd=tmp_path, env=env)
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    deadline = time.monotonic() + 10
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    journal = tmp_path / "pexen-journal.sqlite"
    with sqlite3.connect(journal) as con:   # (as if the start had not been committed)
        assert con.execute("UPDATE tasks SET state = 'queued' "
                           "WHERE key = 'takes_the_machine_down' AND state = 'running'"
                           ).rowcount == 1
    res = harness("resume", "--max-attempts", "1", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(journal)
    assert rows["takes_the_machine_down"].state == "error"
    assert rows["takes_the_machine_down"].reason.startswith("crash loop: 1 attempt")
    for key in ("behind_it_1", "behind_it_2"):
        assert (rows[key].state, rows[key].spared_count) == ("pass", 1)


def test_tasks_queued_behind_a_crashing_task_are_not_charged_for_its_crashes(tmp_path):
    """-j 1: the two tasks handed out behind one that takes its controller
    down each time are spared each crash (never started): they pass; it ends
    its crash loop after --max-attempts runs."""
    (tmp_path / "bystanders.py").write_text(BYSTANDERS)
    env = {"DELAY": "0.5"}
    res = harness("start", "bystanders:tasks", "-j", "1", cwd=tmp_path, env=env)
    assert res.returncode != 0
    res = resume_until_it_ends(tmp_path, env)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    killer = rows["takes_the_machine_down"]
    assert (killer.state, killer.reason) == (
        "error", "crash loop: 3 attempts, interrupted (--max-attempts 3)")
    runs = tmp_path / "pexen-journal.sqlite.d" / "1" / "takes_the_machine_down" / "data" / "runs"
    assert runs.read_text().split() == ["1", "2", "3"]
    for key in ("behind_it_1", "behind_it_2"):
        assert (rows[key].state, rows[key].attempt, rows[key].spared_count) == ("pass", 4, 3)


def test_readme_example_suite(tmp_path):
    """The README's first command: examples.smoke_suite:tasks from the root."""
    res = harness("start", "examples.smoke_suite:tasks", "--journal",
                  str(tmp_path / "j.sqlite"), cwd=ROOT)
    assert res.returncode == 1, res.stderr
    assert "run 1: some failed" in res.stdout
    rows, run = states(tmp_path / "j.sqlite")
    assert rows["fs/expected-failure"].state == "fail"
    assert rows["after_failure"].state == "skip"
    assert "fs/expected-failure failed" in rows["after_failure"].reason
    for key in ("00-env", "python_version", "write_scratch", "read_scratch",
                "clean_scratch", "net/loopback", "sys/sqlite-roundtrip"):
        assert rows[key].state == "pass", (key, rows[key].reason)
    order = sorted(rows.values(), key=lambda r: r.started_at or 0)
    started = [r.key for r in order if r.started_at]
    assert started.index("00-env") < started.index("python_version")
    assert rows["read_scratch"].started_at >= rows["write_scratch"].finished_at


def test_the_program_ends_as_the_interpreter_would(tmp_path):
    """The CLI ends its process without tearing the interpreter down; the
    program's exit handlers still run (a suite module registered one in the
    controller) and everything printed reaches a pipe."""
    marker = tmp_path / "atexit-ran"
    n = 3000
    (tmp_path / "exitsuite.py").write_text(
        "import atexit\n"
        "from pexen.sched.meta import func_meta\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        f"for i in range({n}):\n"
        "    globals()[f'test_{i:05}'] = func_meta()(lambda: None)\n")
    res = harness("start", "exitsuite", "--journal", "j.sqlite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert marker.read_text() == "ran"
    assert res.stdout.count("PASS") == n
    assert res.stdout.rstrip().endswith("all passed (pexen-harness status 1 --journal j.sqlite)")
    marker.unlink()
    res = harness("list", "--tasks", "exitsuite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) >= n
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("when", ["at once", "after a line"])
def test_a_reader_that_goes_away_does_not_end_the_run(tmp_path, when):
    """`pexen-harness start ... | head -1`: the run goes on to its end, the
    --xunit file is written and the exit code is the run's (1: a test
    failed), though nobody reads the progress lines or the verdict."""
    n = 400
    (tmp_path / "piped.py").write_text(
        "from pexen.sched.meta import func_meta\n"
        f"for i in range({n}):\n"
        "    globals()[f'test_{i:05}'] = func_meta()(lambda: None)\n"
        "@func_meta\n"
        "def test_zz_fails():\n"
        "    assert False, 'on purpose'\n")
    proc = spawn("start", "piped", "--journal", "j.sqlite", "--xunit", "out.xml",
                 cwd=tmp_path)
    try:
        if when == "after a line":
            assert proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=120) == 1, proc.stderr.read()
        assert "Traceback" not in proc.stderr.read()
    finally:
        end(proc)
    tasks, run = states(tmp_path / "j.sqlite")
    assert run.state == "finished" and len(tasks) == n + 1
    assert sorted(t.state for t in tasks.values()).count("pass") == n
    assert 'tests="401"' in (tmp_path / "out.xml").read_text()


HOSTILE_SUITE = '''
from pexen.sched.meta import func_meta


@func_meta()
def shouts():
    raise RuntimeError("first line\\n\\x1b[2J\\x1b[31msecond\\x00 line")


@func_meta()
def quiet():
    pass
'''


def test_status_and_progress_print_what_tasks_say_as_one_safe_line(tmp_path):
    (tmp_path / "hostile.py").write_text(HOSTILE_SUITE)
    exe = tmp_path / "dir"
    exe.mkdir()
    (exe / "evil\x1b[2Jname").write_text("#!/bin/sh\necho 'x' >&2; exit 3\n")
    (exe / "evil\x1b[2Jname").chmod(0o755)
    printed = {}
    for suite, jpath in (("hostile", "h.sqlite"), (str(exe), "e.sqlite")):
        res = harness("start", suite, "--journal", jpath, cwd=tmp_path)
        assert res.returncode == 1, res.stderr
        status = harness("status", "--journal", jpath, cwd=tmp_path)
        for text in (res.stdout, status.stdout):
            assert "\x1b" not in text and "\x00" not in text, repr(text)
        printed[jpath] = (res.stdout.splitlines(), status.stdout.splitlines())
    said = "RuntimeError: first line\\nsecond\\x00 line"
    progress, status = printed["h.sqlite"]
    # (the progress line ends with the task's duration: " [15ms]")
    progress = [re.sub(r" \[[0-9.]+m?s\]$", "", line) for line in progress]
    assert f"ERROR   shouts: {said}" in progress, progress
    assert f"  ERROR   shouts: {said}" in status, status
    progress, status = printed["e.sqlite"]
    progress = [re.sub(r" \[[0-9.]+m?s\]$", "", line) for line in progress]
    assert "FAIL    evilname: exit status 3" in progress, progress
    assert "  FAIL    evilname: exit status 3" in status, status


STATUS_FIELDS = {"schema", "run", "state", "suite", "created_at", "finished_at", "exit_code",
                 "controller_pid", "controller", "heartbeat_age", "heartbeat_stale", "tasks",
                 "counts"}


def test_json_output_is_pinned(tmp_path):
    """The fields of status --json, list --json and list --tasks --json (as
    doc/harness.md lists them), with their schema number: scripts rely on
    them, so a change is made on purpose (and the number raised when one
    changes meaning or goes away)."""
    (tmp_path / "hostile.py").write_text(HOSTILE_SUITE)
    assert harness("start", "hostile", cwd=tmp_path).returncode == 1
    status = json.loads(harness("status", "--json", cwd=tmp_path).stdout)
    assert set(status) == STATUS_FIELDS | {"tasks_detail"} and status["schema"] == 1
    assert status["counts"] == {"error": 1, "pass": 1} and status["controller"] == "finished"
    assert [set(t) for t in status["tasks_detail"]] == [
        {"key", "state", "attempt", "reason", "time_used"}] * 2
    (listed,) = json.loads(harness("list", "--json", cwd=tmp_path).stdout)
    assert set(listed) == STATUS_FIELDS and listed["schema"] == 1
    tasks = json.loads(harness("list", "--tasks", "hostile", "--json", cwd=tmp_path).stdout)
    assert set(tasks) == {"schema", "tasks", "unmet"} and tasks["schema"] == 1
    # ("pulled_in" too, for a task only a selection's dependencies brought in)
    assert [set(t) for t in tasks["tasks"]] == [{"key", "meta", "group"}] * 2


def test_the_hints_name_the_journal_given_with_journal(tmp_path):
    """A command the user is told to run next names --journal when this one
    was given it (quoted for the shell); with the default journal, it does
    not."""
    (tmp_path / "hostile.py").write_text(HOSTILE_SUITE)
    (tmp_path / "my runs").mkdir()
    res = harness("start", "hostile", "--journal", "my runs/j.sqlite", cwd=tmp_path)
    assert res.stdout.splitlines()[-1] == (
        "run 1: some failed (pexen-harness status 1 --journal 'my runs/j.sqlite')")
    res = harness("log", "nosuch", "--journal", "my runs/j.sqlite", cwd=tmp_path)
    assert res.returncode == 4
    assert "(pexen-harness status 1 --journal 'my runs/j.sqlite' --json lists them)" in res.stderr
    res = harness("start", "hostile", cwd=tmp_path)
    assert res.stdout.splitlines()[-1] == "run 1: some failed (pexen-harness status 1)"

"""pexen.watchdog: ending process trees, and deadlines on a Sched run."""

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from pexen.sched import EventKind, ProcessWorkerPool, Sched, ThreadWorkerPool, meta
from pexen.watchdog import (
    RUN_TIMEOUT,
    TOKEN_VAR,
    TaskTimeout,
    Watchdog,
    end_processes,
    token_processes,
)


def carrying(token):
    """Processes (not zombies) whose environment carries `token`."""
    alive = []
    for proc in token_processes({token}):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


HOSTILE = r"""
trap '' TERM
sleep 60 &                                         # a child
setsid sh -c 'trap "" TERM HUP; exec sleep 61' &   # a daemon in a new session
sh -c 'kill -STOP $$; sleep 62' &                  # a stopped one
for i in 1 2 3 4 5; do sleep 63 & done
echo ready
wait
"""


def start_hostile(token):
    env = dict(os.environ, **{TOKEN_VAR: token})
    proc = subprocess.Popen(["sh", "-c", HOSTILE], env=env, stdout=subprocess.PIPE,
                            start_new_session=True, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_end_processes_ends_tree_daemon_and_stopped():
    token = uuid.uuid4().hex
    proc = start_hostile(token)
    try:
        wait_for(lambda: len(carrying(token)) >= 9)
        started = psutil.Process(proc.pid).create_time()
        ended, leaked = end_processes([(proc.pid, started)], [token], grace=0.3)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert leaked == []
    pids = {p["pid"] for p in ended}
    assert proc.pid in pids and len(pids) >= 9
    assert {p["name"] for p in ended} >= {"sh", "sleep"}
    wait_for(lambda: not carrying(token))


def test_end_processes_never_hits_a_reused_pid():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        started = psutil.Process(proc.pid).create_time()
        # the recorded start time is another process's: not this one
        ended, leaked = end_processes([(proc.pid, started - 100)], [], grace=0)
        assert (ended, leaked) == ([], [])
        assert proc.poll() is None
        # and never this process itself
        me = psutil.Process()
        assert end_processes([(me.pid, me.create_time())], [], grace=0) == ([], [])
    finally:
        proc.kill()
        proc.wait()


def test_nothing_found_returns_at_once():
    assert end_processes([], [uuid.uuid4().hex], grace=10) == ([], [])


def run_watched(tasks, pool, **kwargs):
    events = []
    sched = Sched(tasks, listeners=[lambda ev: events.append((ev.kind, ev.key, ev.reason))])
    wd = Watchdog(sched, pool, **kwargs)
    sched.add_listener(wd)
    wd.start()
    try:
        results = {res.task.__name__: res for res in sched.run(pool)}
    finally:
        wd.stop()
    skipped = {key: reason for kind, key, reason in events if kind is EventKind.SKIPPED}
    return results, skipped, wd


@pytest.mark.parametrize("pool_kind", ["process", "thread"])
def test_deadline_ends_task_releases_locks_skips_dependents(pool_kind, tmp_path):
    token = uuid.uuid4().hex
    marker = tmp_path / "daemon.pid"

    @meta.func_meta(timeout=0.5, claims=["disk"], provides=["formatted"])
    def hang():
        # a daemon that escapes to a new session and ignores SIGTERM, tagged
        # with the task's token as the harness tags every task's processes
        env = dict(os.environ, **{TOKEN_VAR: token})
        subprocess.Popen([sys.executable, "-c",
                          "import os, signal, time, sys\n"
                          "if os.fork(): os._exit(0)\n"
                          "os.setsid()\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                          f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
                          "time.sleep(60)\n"], env=env).wait()
        time.sleep(60 if pool_kind == "process" else 3)

    @meta.func_meta(requires=["formatted"])
    def dependent():
        pass

    @meta.func_meta(claims=["disk"])
    def same_lock():
        return "ran"

    pool = (ProcessWorkerPool(workers=2, spare=0) if pool_kind == "process"
            else ThreadWorkerPool(workers=2, spare=0))
    with pytest.warns(Warning, match="skipped due to unmet deps"):
        results, skipped, _ = run_watched([hang, dependent, same_lock], pool,
                                          grace=0.2, tokens={"hang": token})
    val = results["hang"].excinfo.val
    assert isinstance(val, TaskTimeout) and val.started
    assert "0.5 s limit" in str(val)
    daemon = int(marker.read_text())
    assert daemon in {p["pid"] for p in val.killed} and val.leaked == []
    assert not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == "zombie"
    assert results["same_lock"].ret == "ran"          # the lock was released
    assert "formatted" in skipped["dependent"]           # the dependent was not run
    if pool_kind == "thread":
        wait_for(lambda: not any(t.name.startswith("pexen-worker")
                                 for t in __import__("threading").enumerate()))


def test_default_timeout_and_time_used_count():
    def charged():
        time.sleep(30)

    @meta.func_meta(timeout=30)
    def own_limit():
        return "ok"

    pool = ProcessWorkerPool(workers=2, spare=0)
    t0 = time.monotonic()
    results, _, _ = run_watched([charged, own_limit], pool, default_timeout=25,
                                time_used={"charged": 24.7}, grace=0)
    # 25 s default, 24.7 s of it used before: ended well before its 30 s sleep
    assert time.monotonic() - t0 < 20
    assert isinstance(results["charged"].excinfo.val, TaskTimeout)
    assert results["own_limit"].ret == "ok"


def test_run_deadline_ends_running_and_skips_the_rest():
    @meta.func_meta(priority=1)
    def first():
        time.sleep(30)

    @meta.func_meta(priority=2)
    def second():
        time.sleep(30)

    @meta.func_meta(priority=4)
    def never():
        pass

    @meta.func_meta(priority=3)
    def third():
        pass

    pool = ProcessWorkerPool(workers=1, spare=1)
    results, skipped, wd = run_watched([first, second, third, never], pool,
                                       run_deadline=time.time() + 2, grace=0)
    assert wd.run_timed_out
    first_val = results["first"].excinfo.val
    assert isinstance(first_val, TaskTimeout) and first_val.started
    assert RUN_TIMEOUT in str(first_val)
    # handed to the pool but not started: ended before it started
    second_val = results["second"].excinfo.val
    assert isinstance(second_val, TaskTimeout) and not second_val.started
    assert skipped == {"third": RUN_TIMEOUT, "never": RUN_TIMEOUT}


def test_task_ending_by_itself_is_left_alone():
    @meta.func_meta(timeout=5)
    def quick():
        return os.getpid()

    pool = ProcessWorkerPool(workers=1, spare=0)
    results, _, _ = run_watched([quick], pool, grace=0)
    assert results["quick"].excinfo is None


def test_stop_signal_is_not_needed_to_end_a_stopped_task():
    @meta.func_meta(timeout=0.3)
    def stops_itself():
        os.kill(os.getpid(), signal.SIGSTOP)

    pool = ProcessWorkerPool(workers=1, spare=0)
    results, _, _ = run_watched([stops_itself], pool, grace=5)
    val = results["stops_itself"].excinfo.val
    assert isinstance(val, TaskTimeout) and val.leaked == []


def test_a_process_that_survives_sigkill_is_reported_leaked(monkeypatch):
    """(A process stuck in the kernel ignores SIGKILL; simulated here by a
    kill that never lands.) It is named as leaked, and the task still ends,
    its locks released, so the run goes on."""
    import pexen.watchdog as wd

    real_signal = wd._Victims.signal

    def no_sigkill(self, procs, sig):
        if sig != signal.SIGKILL:
            real_signal(self, procs, sig)

    monkeypatch.setattr(wd._Victims, "signal", no_sigkill)

    @meta.func_meta(timeout=0.3, claims=["disk"])
    def stuck():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(5)

    @meta.func_meta(claims=["disk"])
    def after():
        return "ran"

    pool = ProcessWorkerPool(workers=2, spare=0)
    results, _, _ = run_watched([stuck, after], pool, grace=0.1)
    val = results["stuck"].excinfo.val
    assert isinstance(val, TaskTimeout)
    assert [p["pid"] for p in val.leaked] and "LEAKED" in str(val)
    assert results["after"].ret == "ran"


def test_group_events_are_ignored():
    """A Sched with exclusivity groups also sends group_started and
    group_finished; the watchdog watches tasks only."""
    from pexen.sched import TaskGroup

    def quick():
        return "quick"

    def also():
        return "also"

    results, skipped, wd = run_watched([TaskGroup("A", [quick]), TaskGroup("B", [also])],
                                       ThreadWorkerPool(), default_timeout=30)
    assert results["quick"].ret == "quick" and results["also"].ret == "also"
    assert skipped == {} and not wd.run_timed_out

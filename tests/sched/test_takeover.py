"""A supervisor ends a task itself: pool.take_over() + pool.deliver(), and
Sched.cancel() (what the watchdog uses)."""

import os
import signal
import threading
import time

import psutil
import pytest

from pexen.sched import (
    EventKind,
    ExceptionInfo,
    ProcessWorkerPool,
    Sched,
    TaskKilledError,
    TaskRes,
    ThreadWorkerPool,
    meta,
)


def killed(task, msg="ended by its supervisor"):
    err = TaskKilledError(msg)
    return TaskRes(task, None, None, ExceptionInfo(TaskKilledError, err, None, msg))


class Recorder:
    def __init__(self):
        self.events = []
        self.started = threading.Event()
        self.pids = {}

    def __call__(self, ev):
        self.events.append((ev.kind, ev.key, ev.reason))
        if ev.kind is EventKind.STARTED:
            self.pids[ev.key] = ev.pid
            if ev.key == "hang":
                self.started.set()

    def skipped(self):
        return {key: reason for kind, key, reason in self.events if kind is EventKind.SKIPPED}


def supervise(sched, pool, rec, action):
    """Run `action` in a thread once the task 'hang' has started."""
    def go():
        assert rec.started.wait(30)
        action()

    t = threading.Thread(target=go)
    t.start()
    results = {res.task.__name__: res for res in sched.run(pool)}
    t.join()
    return results


def test_thread_pool_hung_task_is_taken_over_and_replaced():
    release = threading.Event()
    ran_after = []

    @meta.func_meta(claims=["lock"], provides=["p"])
    def hang():
        release.wait(30)
        return "late"

    @meta.func_meta(claims=["lock"])
    def after():
        ran_after.append(threading.current_thread().name)

    @meta.func_meta(requires=["p"])
    def child():
        pass

    rec = Recorder()
    sched = Sched([hang, after, child], listeners=[rec])
    pool = ThreadWorkerPool(workers=1, spare=0)

    def end_it():
        assert pool.take_over(hang) == "running"
        assert pool.take_over(hang) is None  # once only
        pool.deliver(killed(hang))

    try:
        with pytest.warns(Warning, match="skipped due to unmet deps"):
            results = supervise(sched, pool, rec, end_it)
        # the one worker was stuck: 'after' ran in the thread that replaced it
        assert ran_after and pool.statistics().replaced == 1
        assert isinstance(results["hang"].excinfo.val, TaskKilledError)
        assert "child" in rec.skipped() and "child" not in results
    finally:
        release.set()  # the abandoned thread ends; its result is dropped
    deadline = time.monotonic() + 10
    while any(t.name.startswith("pexen-worker") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_thread_pool_waiting_task_never_starts():
    gate = threading.Event()
    ran = []

    def hang():
        rec.started.set()
        gate.wait(30)

    def queued():
        ran.append(1)

    rec = Recorder()
    sched = Sched([hang, queued], listeners=[rec])
    pool = ThreadWorkerPool(workers=1, spare=1)

    def end_it():
        assert pool.take_over(queued) == "waiting"
        pool.deliver(killed(queued))
        gate.set()

    results = supervise(sched, pool, rec, end_it)
    assert ran == [] and set(results) == {"hang", "queued"}
    assert results["hang"].excinfo is None
    assert isinstance(results["queued"].excinfo.val, TaskKilledError)


def test_take_over_after_the_result_is_in_does_nothing():
    def quick():
        return 1

    pool = ThreadWorkerPool(workers=1, spare=0)
    results = list(Sched([quick]).run(pool))
    assert results[0].ret == 1
    assert pool.take_over(quick) is None


def test_process_pool_take_over_kill_by_pid_and_go_on():
    @meta.func_meta(claims=["lock"])
    def hang():
        time.sleep(60)

    @meta.func_meta(claims=["lock"])
    def after():
        return os.getpid()

    rec = Recorder()
    sched = Sched([hang, after], listeners=[rec])
    pool = ProcessWorkerPool(workers=1, spare=0)

    def end_it():
        pid = rec.pids["hang"]
        assert pool.take_over(hang) == "running"
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        pool.deliver(killed(hang))

    results = supervise(sched, pool, rec, end_it)
    assert isinstance(results["hang"].excinfo.val, TaskKilledError)
    # the killed worker was replaced, and its locks released (TaskKilledError)
    assert results["after"].excinfo is None
    assert results["after"].ret != rec.pids["hang"]
    assert pool.statistics().replaced == 1


def test_cancel_skips_what_has_not_started_and_later_adds():
    gate = threading.Event()

    @meta.func_meta(provides=["never-before"])
    def hang():
        rec.started.set()
        gate.wait(30)

    @meta.func_meta(requires=["never-before"])
    def waiting():
        pass

    def ready():
        pass

    def late():
        pass

    rec = Recorder()
    # 'waiting' needs what 'hang' gives, so it waits while hang runs
    sched = Sched([hang, waiting, ready], listeners=[rec])
    pool = ThreadWorkerPool(workers=1, spare=0)

    def end_it():
        sched.cancel("run timeout")
        sched.add_tasks([late])
        gate.set()

    results = supervise(sched, pool, rec, end_it)
    assert set(results) == {"hang"}
    assert rec.skipped() == {"waiting": "run timeout", "ready": "run timeout",
                             "late": "run timeout"}


def test_cancel_without_a_run_does_nothing():
    def task():
        return 1

    sched = Sched([task])
    sched.cancel("nothing runs")
    assert [r.ret for r in sched.run(ThreadWorkerPool())] == [1]

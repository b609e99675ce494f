"""The worker pools: protocol, misuse, dying workers, kill-and-replace, cleanup."""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from pexen import PexenWarning, sched
from pexen.sched import TaskRes
from pexen.sched.pool import PoolError, ProcessWorkerPool, ThreadWorkerPool

from .helpers import Recorder, both_pools, make


@both_pools()
def test_protocol_by_hand_and_reuse(pool):
    a, b = make("a", ret=1), make("b", ret=2)
    p = pool(workers=2)
    p.register([a, b])
    p.start()
    assert p.alive() and p.empty() and not p.full()
    p.submit(a)
    p.submit(b, {"k": 1})
    p.shutdown(wait=True)
    assert not p.alive()
    res = sorted(p.iter_results(), key=lambda r: r.ret)
    assert res == [TaskRes(a, ret=1), TaskRes(b, {"k": 1}, 2)]
    # the same instance starts again
    p.register([b])
    p.start()
    p.submit(b)
    p.shutdown(wait=True)
    assert list(p.iter_results()) == [TaskRes(b, ret=2)]


@both_pools()
def test_registrations_add_up_across_starts(pool):
    """As in pexen 0.0.x: a task registered for the first start can be
    submitted after a later register() + start() that does not name it."""
    a, b = make("a", ret=1), make("b", ret=2)
    p = pool(workers=2)
    p.register([a])
    p.start()
    p.submit(a)
    p.shutdown(wait=True)
    assert [r.ret for r in p.iter_results()] == [1]
    p.register([b])
    p.start()
    p.submit(a)
    p.submit(b)
    p.shutdown()
    assert sorted(r.ret for r in p.iter_results()) == [1, 2]
    assert not p.alive()


@both_pools()
@pytest.mark.parametrize("drained_first", [False, True])
def test_state_after_shutdown_and_drain(pool, drained_first):
    """Once shut down (without waiting) and iter_results() drained: not
    alive, empty, not full, and no worker left; submit and shutdown are
    refused; the pool starts again."""
    def b():
        time.sleep(0.2)   # (still running when the pool is shut down)
        return 2

    a = make("a", ret=1)
    p = pool(workers=2)
    p.register([a, b])
    p.start()
    p.submit(a)
    p.submit(b)
    if drained_first:   # every result taken, then shut down, then drained (of nothing)
        assert sorted(r.ret for r in p.iter_results()) == [1, 2]
        p.shutdown()
        assert list(p.iter_results()) == []
    else:
        p.shutdown()
        assert sorted(r.ret for r in p.iter_results()) == [1, 2]
    assert not p.alive()
    assert p.empty() and not p.full()
    if pool is ProcessWorkerPool:
        assert psutil.Process().children() == []
    else:
        assert not [t for t in threading.enumerate() if t.name.startswith("pexen-worker")]
    with pytest.raises(PoolError, match="The pool is shutting down"):
        p.submit(a)
    with pytest.raises(PoolError, match="The pool is already shutting down"):
        p.shutdown()
    p.start()
    assert p.alive() and p.empty()
    p.submit(b)
    p.shutdown(wait=True)
    assert [r.ret for r in p.iter_results()] == [2]
    assert not p.alive()


@both_pools()
def test_a_pool_runs_two_scheds_one_after_the_other(pool):
    """A pool instance can be passed to run() again later, with tasks of
    the first run among the second's."""
    a, b, c = make("a", ret=1), make("b", ret=2), make("c", ret=3)
    p = pool(workers=2)
    assert [r.ret for r in sched.Sched([a, b]).run(p)] != []
    assert not p.alive()
    assert sorted(r.ret for r in sched.Sched([a, c]).run(p)) == [1, 3]
    assert not p.alive()


@both_pools()
def test_misuse_is_a_pool_error(pool):
    a = make("a")
    p = pool()
    with pytest.raises(PoolError, match="The pool is not running"):
        p.submit(a)
    p.register([a])
    p.start()
    with pytest.raises(PoolError, match="Cannot re-start a running pool"):
        p.start()
    p.shutdown()
    with pytest.raises(PoolError, match="The pool is shutting down"):
        p.submit(a)
    with pytest.raises(PoolError, match="The pool is already shutting down"):
        p.shutdown()
    list(p.iter_results())
    deadline = time.monotonic() + 5
    while p.alive() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_process_pool_specific_misuse():
    a, b = make("a"), make("b")
    p = ProcessWorkerPool()
    p.register([a])
    p.start()
    try:
        with pytest.raises(PoolError, match="Cannot register tasks while the pool is running"):
            p.register([b])
        with pytest.raises(PoolError, match="Cannot submit unregistered task"):
            p.submit(b)
    finally:
        p.shutdown(wait=True)


@pytest.mark.parametrize("workers, spare", [(0, 1), (1, -1), ("2", 1), (True, 0)])
@both_pools()
def test_bad_sizes(pool, workers, spare):
    with pytest.raises(ValueError, match="workers|spare"):
        pool(workers=workers, spare=spare)


def _os_exit():
    os._exit(3)


def _segfault():
    ctypes.string_at(0)


def _sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("task, expect", [
    (_os_exit, "exited with status 3"),
    (_segfault, "killed by signal 11 (SIGSEGV)"),
    (_sigkill_self, "killed by signal 9 (SIGKILL)"),
])
def test_a_dying_worker_is_an_error_result_and_is_replaced(task, expect):
    dying = task

    def task():
        dying()
    after = [make(f"after{i}", ret=i) for i in range(4)]
    child = make("child", requires=["x"])
    sched.meta.assign_val(task, provides=["x"], priority=-1)
    rec = Recorder()
    s = sched.Sched([task, child, *after], listeners=[rec])
    pool = ProcessWorkerPool(workers=1)
    with pytest.warns(PexenWarning):
        res = list(s.run(pool))
    first = res[0]
    assert first.task is task
    assert first.excinfo.type is sched.WorkerDiedError
    assert expect in str(first.excinfo.val)
    assert sorted(r.ret for r in res[1:]) == [0, 1, 2, 3]
    assert [e.key for e in rec.of("skipped")] == ["child"]
    assert pool.statistics().replaced == 1


def make_hang(name):
    def hang(shared):
        time.sleep(60)

    hang.__name__ = hang.__qualname__ = name
    return hang


def test_kill_task_ends_only_that_task_and_the_run_goes_on():
    hung = make_hang("_hang")
    sched.meta.assign_val(hung, provides=["h"], claims=["box"], priority=-1)
    child = make("child", requires=["h"])
    boxed = make("boxed", claims=["box"], ret="boxed")
    others = [make(f"o{i}", ret=i) for i in range(3)]
    pool = ProcessWorkerPool(workers=2)
    started = threading.Event()
    pids = {}

    def on_event(ev):
        if ev.kind.value == "started" and ev.key == "_hang":
            pids["hung"] = ev.pid
            started.set()

    s = sched.Sched([hung, child, boxed, *others], listeners=[on_event])
    killer = threading.Thread(target=lambda: started.wait(10) and pool.kill_task(hung))
    killer.start()
    with pytest.warns(PexenWarning,
                      match="1 tasks skipped"):
        res = {r.task: r for r in s.run(pool)}
    killer.join()
    assert res[hung].excinfo.type is sched.TaskKilledError
    assert "killed on request" in str(res[hung].excinfo.val)
    assert child not in res              # dependents do not run
    assert res[boxed].ret == "boxed"     # its lock was released
    assert {res[o].ret for o in others} == {0, 1, 2}
    assert not psutil.pid_exists(pids["hung"]) or \
        psutil.Process(pids["hung"]).status() == psutil.STATUS_ZOMBIE


def test_kill_task_not_running_returns_false():
    pool = ProcessWorkerPool()
    a = make("a")
    pool.register([a])
    pool.start()
    try:
        assert pool.kill_task(a) is False
        assert pool.pid_of(a) is None
    finally:
        pool.shutdown(wait=True)


@both_pools()
def test_abandoned_run_leaves_nothing(pool):
    tasks = [make(f"t{i}") for i in range(20)]
    gen = sched.Sched(tasks).run(pool(workers=2))
    next(gen)
    gen.close()
    # the autouse fixture checks that no process or pool thread is left


def test_abandoned_run_with_a_hung_task_leaves_no_process():
    gen = sched.Sched([make_hang("hang"), make("b")]).run(ProcessWorkerPool(workers=2))
    next(gen)  # b finishes, _hang is running
    gen.close()


def _fork_daemon():
    # A child that keeps the worker's pipes open (fork without exec) and
    # outlives the task; the worker itself then dies.
    if os.fork() == 0:
        time.sleep(3)
        os._exit(0)
    os._exit(5)


def test_worker_death_is_seen_even_if_a_grandchild_holds_its_pipes():
    start = time.monotonic()
    (res,) = sched.Sched([_fork_daemon]).run(ProcessWorkerPool())
    assert res.excinfo.type is sched.WorkerDiedError
    assert "exited with status 5" in str(res.excinfo.val)
    assert time.monotonic() - start < 2.5
    # the grandchild is the zygote's orphan no more: wait for it to end
    deadline = time.monotonic() + 5
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_output_buffered_before_start_is_not_repeated_by_workers():
    code = (
        "import sys\n"
        "from pexen.sched import Sched, ProcessWorkerPool\n"
        "def t():\n"
        "    print('task ran')\n"
        "print('before', end='')\n"
        "list(Sched([t]).run(ProcessWorkerPool(workers=2)))\n"
        "print()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.count("before") == 1
    assert out.count("task ran") == 1


def test_pool_started_from_a_thread():
    out = []
    t = threading.Thread(target=lambda: out.extend(
        sched.Sched([make("a", ret=7)]).run(ProcessWorkerPool())))
    t.start()
    t.join(30)
    assert [r.ret for r in out] == [7]


def test_unpicklable_shared_preset_is_an_error_result():
    a = make("a")
    s = sched.Sched([a])
    s.add_shared(lock=threading.Lock())
    (res,) = s.run(ProcessWorkerPool())
    assert res.excinfo.type is AttributeError
    assert "Can't pickle the shared state given to task a" in str(res.excinfo.val)


def test_thread_pool_statistics():
    p = ThreadWorkerPool(workers=3)
    p.start()
    try:
        assert p.statistics().workers == 3
    finally:
        p.shutdown(wait=True)


def test_a_dead_fork_server_fails_the_tasks_not_the_run():
    """If the zygote dies, running and later tasks end with WorkerDiedError
    and run() ends normally (it used to raise a PoolError from shutdown)."""
    pool = ProcessWorkerPool(workers=1)
    hung = make_hang("hung")
    later = [make(f"later{i}") for i in range(3)]
    started = threading.Event()
    s = sched.Sched([hung, *later], listeners=[
        lambda ev: ev.key == "hung" and ev.kind == "started" and started.set()])
    killer = threading.Thread(
        target=lambda: started.wait(10) and os.kill(pool._zygote_pid, signal.SIGKILL))
    killer.start()
    res = list(s.run(pool))
    killer.join()
    assert len(res) == 4
    assert all(r.excinfo.type is sched.WorkerDiedError for r in res)
    assert "fork server ended" in str(res[0].excinfo.val)


def _touch(path):
    def touch():
        with open(path, "a") as f:
            f.write("ran\n")
        return "ran"

    touch.__name__ = touch.__qualname__ = os.path.basename(path)
    return touch


def test_a_barrier_holds_each_task_until_it_lets_it_go(tmp_path):
    """The process pool does not start a task its barrier holds: the journal
    uses it to have the attempt on disk before the task can run."""
    a, b = _touch(tmp_path / "a"), _touch(tmp_path / "b")
    held = []
    pool = ProcessWorkerPool(workers=2, spare=2)
    pool.barrier = lambda task, release: held.append((task, release))
    pool.register([a, b])
    pool.start()
    try:
        pool.submit(a)
        pool.submit(b)
        assert [t for t, _ in held] == [a, b]
        time.sleep(0.3)     # two idle workers: nothing may start meanwhile
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
        held[1][1](None)    # in any order
        assert next(pool.iter_results()) == TaskRes(b, ret="ran")
        assert not (tmp_path / "a").exists()
        held[0][1](None)
        held[0][1](None)    # a second call does nothing
        pool.shutdown(wait=True)
        assert list(pool.iter_results()) == [TaskRes(a, ret="ran")]
    finally:
        if pool.alive():
            pool.terminate()


def test_a_barrier_that_fails_ends_the_task_with_its_error_unrun(tmp_path):
    a = _touch(tmp_path / "a")
    pool = ProcessWorkerPool(workers=1)
    pool.barrier = lambda task, release: release(OSError("disk full"))
    pool.register([a])
    pool.start()
    try:
        pool.submit(a)
        res = next(pool.iter_results())
        pool.shutdown(wait=True)
    finally:
        if pool.alive():
            pool.terminate()
    assert res.task is a and res.excinfo.type is OSError
    assert "disk full" in str(res.excinfo.val)
    assert not (tmp_path / "a").exists()


def test_a_pool_with_an_idle_worker_hurries_its_barrier(tmp_path):
    """A barrier that batches (waits for several tasks) is told when a worker
    has nothing else to run, so the run never stalls on a batch."""
    tasks = [_touch(tmp_path / f"t{i}") for i in range(5)]

    class Batching:
        def __init__(self):
            self.waiting = []
            self.hurried = 0

        def __call__(self, task, release):
            self.waiting.append(release)

        def hurry(self):
            self.hurried += 1
            waiting, self.waiting = self.waiting, []
            for release in waiting:
                release(None)

    barrier = Batching()
    s = sched.Sched(tasks)
    s.dispatch_barrier = barrier
    pool = ProcessWorkerPool(workers=2, spare=2)
    res = list(s.run(pool))
    assert sorted(r.ret for r in res) == ["ran"] * 5
    assert barrier.hurried >= 1


def test_a_task_held_by_the_barrier_can_be_killed_or_taken_over(tmp_path):
    a, b = _touch(tmp_path / "a"), _touch(tmp_path / "b")
    held = []
    pool = ProcessWorkerPool(workers=1)
    pool.barrier = lambda task, release: held.append(release)
    pool.register([a, b])
    pool.start()
    try:
        pool.submit(a)
        pool.submit(b)
        assert pool.kill_task(a) is True
        assert pool.take_over(b) == "waiting"
        for release in held:
            release(None)    # too late: neither starts
        res = next(pool.iter_results())
        assert res.task is a and res.excinfo.type is sched.TaskKilledError
        pool.deliver(TaskRes(b, ret="elsewhere"))
        assert next(pool.iter_results()).ret == "elsewhere"
        pool.shutdown(wait=True)
    finally:
        if pool.alive():
            pool.terminate()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_replaced_worker_hurries_the_barrier(tmp_path):
    """Every worker killed and replaced: no task ends to say a worker is
    idle, so the replacement says it, or the held tasks would wait for ever."""
    hung, b = make_hang("_hang"), _touch(tmp_path / "b")
    waiting = []

    class OnlyWhenHurried:
        def __call__(self, task, release):
            waiting.append(release)

        def hurry(self):
            while waiting:
                waiting.pop()(None)

    pool = ProcessWorkerPool(workers=1, spare=1)
    pool.barrier = OnlyWhenHurried()
    pool.register([hung, b])
    pool.start()
    results = []
    try:
        pool.submit(hung)           # an idle worker: hurried, it starts
        deadline = time.monotonic() + 30
        while pool.pid_of(hung) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pool.submit(b)              # held: the only worker is busy
        assert pool.kill_task(hung)
        reader = threading.Thread(target=lambda: results.extend(pool.iter_results()))
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "the held task never started"
    finally:
        if pool.alive():
            pool.terminate()
    by_task = {r.task: r for r in results}
    assert by_task[hung].excinfo.type is sched.TaskKilledError
    assert by_task[b].ret == "ran"


# -- tasks handed to a worker ahead (its task socket) ---------------------------

def _stamp(name, sleep=0.0):
    """A task returning (name, pid, monotonic end)."""
    def task():
        if sleep:
            time.sleep(sleep)
        return (name, os.getpid(), time.monotonic())

    task.__name__ = task.__qualname__ = name
    return task


def test_tasks_queued_behind_a_slow_one_run_in_an_idle_worker():
    """Tasks handed to a worker behind one that turns out slow are taken back
    and run by a worker with nothing to do, not after the slow one."""
    slow = _stamp("slow", sleep=3.0)
    quick = [_stamp(f"q{i}") for i in range(6)]
    sched.meta.assign_val(slow, priority=-1)   # handed out first
    # 2 workers, 6 spare: each worker is sent up to 4 tasks ahead
    res = {r.task.__name__: r.ret for r in sched.Sched([slow, *quick]).run(
        ProcessWorkerPool(workers=2, spare=6))}
    slow_pid, slow_end = res["slow"][1], res["slow"][2]
    for i in range(6):
        name, pid, end = res[f"q{i}"]
        assert end < slow_end, name      # none waited for the slow one
        assert pid != slow_pid or end < slow_end - 2.0


def test_a_dying_worker_gives_back_what_it_had_not_started():
    """Only the task a worker died in fails; those queued behind it run."""
    def dies_now():
        os._exit(5)

    dies_now.__name__ = dies_now.__qualname__ = "dies"
    sched.meta.assign_val(dies_now, priority=-1)
    others = [make(f"o{i}", ret=i) for i in range(5)]
    pool = ProcessWorkerPool(workers=1, spare=5)   # all of them sent to the one worker
    res = {r.task.__name__: r for r in sched.Sched([dies_now, *others]).run(pool)}
    assert res["dies"].excinfo.type is sched.WorkerDiedError
    assert sorted(res[f"o{i}"].ret for i in range(5)) == [0, 1, 2, 3, 4]
    assert all(res[f"o{i}"].excinfo is None for i in range(5))
    assert pool.statistics().replaced == 1


def test_take_over_of_a_task_queued_in_a_worker_never_starts_it(tmp_path):
    hung = make_hang("_hang")
    queued = _touch(tmp_path / "queued")
    pool = ProcessWorkerPool(workers=1, spare=1)   # both go to the one worker
    pool.register([hung, queued])
    pool.start()
    try:
        pool.submit(hung)
        pool.submit(queued)
        deadline = time.monotonic() + 30
        while pool.pid_of(hung) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pool.take_over(queued) == "waiting"
        assert pool.kill_task(hung)
        pool.deliver(TaskRes(queued, ret="elsewhere"))
        results = {r.task: r for r in pool.iter_results()}
        pool.shutdown(wait=True)
    finally:
        if pool.alive():
            pool.terminate()
    assert results[queued].ret == "elsewhere"
    assert results[hung].excinfo.type is sched.TaskKilledError
    assert not (tmp_path / "queued").exists()


def test_big_shared_state_reaches_the_worker():
    """A task message too big for one socket message travels in a memfd."""
    big = {"blob": "x" * 500_000}

    def provider(shared):
        shared.update(big)

    def consumer(shared):
        return len(shared["blob"])

    sched.meta.assign_val(provider, provides=["blob"])
    sched.meta.assign_val(consumer, requires=["blob"])
    res = {r.task: r for r in sched.Sched([provider, consumer]).run(
        ProcessWorkerPool(workers=2))}
    assert res[consumer].excinfo is None and res[consumer].ret == 500_000


def test_ahead_hands_out_more_for_short_tasks_and_is_checked():
    tasks = [make(f"t{i}", ret=i) for i in range(400)]
    handed = []
    pending = set()

    def listener(ev):
        if ev.kind.value == "queued":
            pending.add(ev.key)
            handed.append(len(pending))
        elif ev.kind.value == "finished":
            pending.discard(ev.key)

    s = sched.Sched(tasks, listeners=[listener])
    res = list(s.run(ProcessWorkerPool(workers=2, spare=2, ahead=0.05)))
    assert sorted(r.ret for r in res) == list(range(400))
    assert max(handed) > 2 + 2          # more than workers + spare at some point
    assert max(handed) <= 2 * 2 * 513   # and never more than the cap
    for bad in (-1, "1", True):
        with pytest.raises(ValueError, match="ahead"):
            ProcessWorkerPool(ahead=bad)


def _sleeper(name, seconds):
    def task():
        time.sleep(seconds)
        return name

    task.__name__ = task.__qualname__ = name
    return task


def test_ahead_reads_results_in_batches(monkeypatch):
    """With tasks queued in every worker, the pool does not wake up for each
    task that ends: it lets results gather (up to QUIET_MAX), so the caller
    reads them in batches; without `ahead` it looks at every one."""
    import selectors

    from pexen.sched import _procpool

    looks = []
    real = selectors.DefaultSelector

    class Counting(real):
        def select(self, timeout=None):
            looks.append(timeout)
            return super().select(timeout)

    monkeypatch.setattr(_procpool.selectors, "DefaultSelector", Counting)
    tasks = [_sleeper(f"t{i}", 0.002) for i in range(300)]
    res = list(sched.Sched(tasks).run(ProcessWorkerPool(workers=2, spare=2, ahead=0.05)))
    assert sorted(r.ret for r in res) == sorted(t.__name__ for t in tasks)
    assert all(r.excinfo is None for r in res)
    assert len(looks) < len(tasks) / 2, len(looks)
    batched = len(looks)
    looks.clear()
    tasks = [_sleeper(f"u{i}", 0.002) for i in range(300)]
    res = list(sched.Sched(tasks).run(ProcessWorkerPool(workers=2, spare=2)))
    assert len(res) == 300
    assert len(looks) > batched


def test_an_ending_worker_is_not_polled_in_a_loop(monkeypatch):
    """A worker's result pipe is closed when it exits, and a closed pipe is
    always readable: the pool stops looking at it until the fork server
    reports the exit, instead of spinning on it meanwhile."""
    import selectors

    from pexen.sched import _procpool

    looks = []
    real = selectors.DefaultSelector

    class Counting(real):
        def select(self, timeout=None):
            found = super().select(timeout)
            looks.append(len(found))
            return found

    monkeypatch.setattr(_procpool.selectors, "DefaultSelector", Counting)
    from pexen.sched import _zygote
    real_main = _zygote._worker_main

    def slow_to_exit(wid, task_fd, result_fd, ack_fd, tasks):
        # (in the worker process) its result pipe closes 0.2 s before it exits
        real_exit = os._exit

        def exit_slowly(code):
            os.close(result_fd)
            time.sleep(0.2)
            real_exit(code)

        os._exit = exit_slowly
        real_main(wid, task_fd, result_fd, ack_fd, tasks)

    monkeypatch.setattr(_zygote, "_worker_main", slow_to_exit)
    tasks = [make(f"e{i}", ret=i) for i in range(4)]
    res = list(sched.Sched(tasks).run(ProcessWorkerPool(workers=2)))
    assert sorted(r.ret for r in res) == [0, 1, 2, 3]
    assert len(looks) < 40, len(looks)


def test_quiet_is_zero_when_a_worker_runs_out():
    """The pool leaves the workers alone only while each has a task queued
    behind the one it runs, and never longer than QUIET_MAX."""
    from pexen.sched import _procpool

    pool = ProcessWorkerPool(workers=2, ahead=0.02)
    a, b = _procpool._Worker(1, None, None, -1, -1), _procpool._Worker(2, None, None, -1, -1)
    pool._workers = {1: a, 2: b}
    pool._avg = 0.001
    a.queue.extend([1, 2, 3, 4])       # three behind the one it runs
    b.queue.extend([5, 6, 7])          # two behind
    assert pool._quiet() == pytest.approx(2 * 0.001 / 2)
    pool._avg = 1.0                    # long tasks: capped
    assert pool._quiet() == _procpool.QUIET_MAX
    b.queue.clear()
    b.queue.append(8)                  # down to the one it runs: look now
    assert pool._quiet() == 0
    b.kill_asked = True                # (one being killed does not count)
    assert pool._quiet() == pytest.approx(min(_procpool.QUIET_MAX, 3 * 1.0 / 2))
    assert ProcessWorkerPool(workers=2)._quiet() == 0   # no `ahead`


def test_no_more_workers_than_tasks():
    """-j 8 on a suite of 2 tasks forks 2 workers; more start when the run
    gets more tasks than workers."""
    pool = ProcessWorkerPool(workers=8)
    first = [_stamp(f"a{i}", sleep=0.2) for i in range(2)]
    s = sched.Sched(first)
    seen = []
    for res in s.run(pool):
        seen.append(pool.statistics().workers)
        if res.task is first[0]:
            from . import latetasks

            s.add_tasks(latetasks.SLEEPERS)
    assert seen[0] == 2                    # 2 tasks: 2 workers
    assert 2 < max(seen) <= 8              # the late tasks got more


FORK_WHILE_PRINTING = r'''
import os, sys, threading, time
r, w = os.pipe()
os.dup2(w, 1)   # a stdout nobody reads: a writer blocks in it, holding its lock
def spam():
    while True:
        sys.stdout.write("x" * 65536)
        sys.stdout.flush()
threading.Thread(target=spam, daemon=True).start()
time.sleep(0.5)
import pexen.sched._procpool as procpool
from pexen.sched import ProcessWorkerPool, Sched
procpool._flush_stdio = lambda: None   # (this process cannot flush: the pipe is full)
def task():
    sys.stdout.flush()   # (nothing of its own to write)
    return 7
res = list(Sched([task]).run(ProcessWorkerPool(1)))
os.write(2, b"ret %r\n" % (res[0].ret,))
os._exit(0)
'''


def test_a_pool_started_while_another_thread_prints():
    """The fork server is forked while another thread of the program holds
    stdout's lock (it prints, into a pipe that is full): its workers get
    streams of their own, so a task's flush does not wait for that lock."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FORK_WHILE_PRINTING], capture_output=True,
                         text=True, timeout=60)
    assert out.stderr.strip().endswith("ret 7"), out.stderr


def test_before_pool_end_is_called_while_the_workers_are_there(tmp_path):
    """`Sched.before_pool_end` runs after the last result, before the pool
    tells its workers to end (the harness commits the results there)."""
    tasks = [_touch(tmp_path / f"t{i}") for i in range(3)]
    seen = []

    class Recording(ProcessWorkerPool):
        def shutdown(self, *args, **kwargs):
            seen.append("shutdown")
            return super().shutdown(*args, **kwargs)

    s = sched.Sched(tasks)
    s.before_pool_end = lambda: seen.append(
        ("before", len(seen), bool(psutil.Process().children(recursive=True))))
    res = list(s.run(Recording(workers=2)))
    assert sorted(r.ret for r in res) == ["ran"] * 3
    assert seen[:2] == [("before", 0, True), "shutdown"]

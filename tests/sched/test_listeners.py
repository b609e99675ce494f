"""Lifecycle events: what the journal, watchdog and progress display will see."""

import json
import os
import threading

import pytest

from pexen import PexenWarning, sched
from pexen.sched import EventKind, TaskEvent

from .helpers import Recorder, both_pools, make


@both_pools()
def test_every_task_gets_queued_started_finished_in_order(pool):
    a = make("a", provides=["x"])
    b = make("b", requires=["x"], ret=2)
    c = make("c", exc=ValueError("boom"))
    rec = Recorder()
    s = sched.Sched([a, b, c], listeners=[rec])
    results = list(s.run(pool(workers=2)))
    assert len(results) == 3
    for key in ("a", "b", "c"):
        assert rec.kinds(key) == ["queued", "started", "finished"]
    finished = {e.key: e for e in rec.of("finished")}
    assert finished["b"].outcome == "pass" and finished["b"].result.ret == 2
    assert finished["c"].outcome == "error"
    # b cannot be queued before a finished
    order = [(e.kind.value, e.key) for e in rec.events]
    assert order.index(("finished", "a")) < order.index(("queued", "b"))


@both_pools()
def test_started_carries_the_pid_that_runs_the_task(pool):
    def whoami():
        return os.getpid()

    rec = Recorder()
    (res,) = sched.Sched([whoami], listeners=[rec]).run(pool())
    (started,) = rec.of("started")
    assert started.pid == res.ret
    if pool is sched.ProcessWorkerPool:
        assert started.pid != os.getpid()
    else:
        assert started.pid == os.getpid()


@both_pools()
def test_started_is_sent_while_the_task_runs(pool):
    """`started` must not wait for the task to finish (the watchdog needs it)."""
    release = threading.Event()
    seen = []

    def listener(ev):
        if ev.kind is EventKind.STARTED:
            seen.append(ev.key)
            release.set()

    def slow():
        import time
        time.sleep(0.5)

    s = sched.Sched([slow], listeners=[listener])
    gen = s.run(pool())
    t = threading.Thread(target=lambda: list(gen))
    t.start()
    assert release.wait(0.45), "started came only after the task ended"
    t.join()
    assert seen == ["slow"]


def test_skipped_events_say_why():
    bad = make("bad", exc=RuntimeError(), provides=["dep"])
    child = make("child", requires=["dep"])
    rec = Recorder()
    s = sched.Sched([bad, child], listeners=[rec])
    with pytest.warns(PexenWarning):
        list(s.run())
    (skip,) = rec.of("skipped")
    assert skip.key == "child"
    assert skip.reason == "dependency 'dep' not met: its provider bad failed"
    assert rec.kinds("child") == ["skipped"]


def test_add_listener_and_json():
    rec = Recorder()
    s = sched.Sched([make("a")])
    s.add_listener(rec)
    list(s.run())
    for ev in rec.events:
        data = ev.to_json()
        json.dumps(data)
        assert data["key"] == "a" and data["kind"] == ev.kind.value
    assert "pid" in rec.of("started")[0].to_json()


def test_listener_error_stops_the_run():
    def broken(ev):
        raise RuntimeError("listener bug")

    s = sched.Sched([make("a"), make("b")], listeners=[broken])
    with pytest.raises(RuntimeError, match="listener bug"):
        list(s.run())


def test_events_are_frozen():
    ev = TaskEvent(EventKind.QUEUED, "k", print)
    with pytest.raises(AttributeError):
        ev.key = "other"


class _Hooks:
    """A listener with the task-event methods (as the journal's and the
    watchdog's): records what it is called with."""

    task_events = True

    def __init__(self):
        self.calls = []

    def task_queued(self, key, task, at):
        self.calls.append(("queued", key, at))

    def task_started(self, key, task, pid, at):
        self.calls.append(("started", key, pid, at))

    def task_finished(self, key, task, result, at):
        self.calls.append(("finished", key, result.ret, at))

    def __call__(self, ev):
        self.calls.append((ev.kind.value, ev.key, ev.reason))


@both_pools()
def test_a_listener_with_task_methods_gets_them_and_a_plain_one_its_events(pool):
    a = make("a", ret=5)
    bad = make("bad", exc=RuntimeError(), provides=["dep"])
    child = make("child", requires=["dep"])
    hooks, rec = _Hooks(), Recorder()
    s = sched.Sched([a, bad, child], listeners=[hooks])
    s.add_listener(rec)
    with pytest.warns(PexenWarning):
        list(s.run(pool(workers=2)))
    by_key = {}
    for call in hooks.calls:
        by_key.setdefault(call[1], []).append(call)
    assert [c[0] for c in by_key["a"]] == ["queued", "started", "finished"]
    assert by_key["a"][2][2] == 5   # the result itself
    # the other kinds still come as events
    assert by_key["child"] == [("skipped", "child",
                                "dependency 'dep' not met: its provider bad failed")]
    # both listeners saw the same events, with the same times
    for key in ("a", "bad"):
        assert rec.kinds(key) == ["queued", "started", "finished"]
        assert [e.at for e in rec.events if e.key == key] == [c[-1] for c in by_key[key]]
    started = rec.of("started")[0]
    assert ("started", started.key, started.pid, started.at) in hooks.calls


def test_an_error_in_a_task_method_stops_the_run():
    class Broken(_Hooks):
        def task_started(self, key, task, pid, at):
            raise RuntimeError("hook bug")

    s = sched.Sched([make("a"), make("b")], listeners=[Broken()])
    with pytest.raises(RuntimeError, match="hook bug"):
        list(s.run())

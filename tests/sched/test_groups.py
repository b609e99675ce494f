"""Exclusivity groups: one group runs at a time, each with its own pool."""

import os
import threading
import time
import warnings

import psutil
import pytest

from pexen import PexenWarning
from pexen.sched import (
    DepcheckError,
    EventKind,
    ProcessWorkerPool,
    Sched,
    SchedulerError,
    TaskFailError,
    TaskGroup,
    TaskRes,
    ThreadWorkerPool,
)
from pexen.sched.meta import assign_val
from pexen.sched.pool import PoolError

from . import grouptasks
from .helpers import Recorder, make

KINDS = ("thread", "process")


def stamped(name, **meta):
    """A task returning (name, pid, start, end), monotonic clock (the same clock
    in every process); it sleeps a little so that overlaps could happen."""

    def task():
        start = time.monotonic()
        time.sleep(0.005)
        return (name, os.getpid(), start, time.monotonic())

    task.__name__ = task.__qualname__ = name
    if meta:
        assign_val(task, **meta)
    return task


def group_events(rec):
    return [(e.kind.value, e.key) for e in rec.events
            if e.kind in (EventKind.GROUP_STARTED, EventKind.GROUP_FINISHED)]


# -- order and pools ---------------------------------------------------------


@pytest.mark.parametrize("kinds", [("thread", "thread", "thread"),
                                   ("process", "thread", "process")],
                         ids=["threads", "mixed"])
def test_no_task_of_a_group_starts_before_the_previous_group_ended(kinds):
    groups = [TaskGroup(name, [stamped(f"{name}{i}") for i in range(5)], pool=kind,
                        workers=3)
              for name, kind in zip("ABC", kinds)]
    rec = Recorder()
    s = Sched(groups, listeners=[rec])
    results = list(s.run())
    assert len(results) == 15
    by_group = {name: [r.ret for r in results if r.ret[0].startswith(name)]
                for name in "ABC"}
    for earlier, later in (("A", "B"), ("B", "C")):
        assert max(end for *_, end in by_group[earlier]) <= \
            min(start for _, _, start, _ in by_group[later])
    # and the events say the same: every event of B between B's two group events
    order = [(e.kind.value, e.key) for e in rec.events]
    assert group_events(rec) == [("group_started", "A"), ("group_finished", "A"),
                                 ("group_started", "B"), ("group_finished", "B"),
                                 ("group_started", "C"), ("group_finished", "C")]
    for name in "ABC":
        lo = order.index(("group_started", name))
        hi = order.index(("group_finished", name))
        inside = {key for kind, key in order[lo + 1:hi]}
        assert inside == {f"{name}{i}" for i in range(5)}


def test_a_thread_group_with_one_worker_runs_serially():
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def counting(i):
        def task():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.002)
            with lock:
                running[0] -= 1
        task.__name__ = f"t{i}"
        return task

    s = Sched([TaskGroup("serial", [counting(i) for i in range(8)], workers=1, spare=3)])
    assert len(list(s.run(ThreadWorkerPool(workers=4)))) == 8
    assert peak[0] == 1


def test_a_group_with_three_workers_runs_three_at_a_time():
    barrier = threading.Barrier(3, timeout=30)
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def meet(i):
        def task():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            barrier.wait()  # breaks (an error) unless three run at once
            with lock:
                running[0] -= 1
        task.__name__ = f"m{i}"
        return task

    s = Sched([TaskGroup("three", [meet(i) for i in range(6)], workers=3, spare=3)])
    results = list(s.run())
    assert [r.excinfo for r in results] == [None] * 6
    assert peak[0] == 3


def test_a_process_group_runs_in_other_processes_with_its_worker_count():
    s = Sched([TaskGroup("in-threads", [stamped(f"t{i}") for i in range(4)],
                         pool="thread", workers=2),
               TaskGroup("in-procs", [stamped(f"p{i}") for i in range(6)],
                         pool="process", workers=2),
               TaskGroup("in-one-proc", [stamped(f"o{i}") for i in range(3)],
                         pool="process", workers=1)])
    pids = {}
    for res in s.run():
        assert res.excinfo is None
        pids.setdefault(s.group_of(res.task).name, set()).add(res.ret[1])
    me = os.getpid()
    assert pids["in-threads"] == {me}
    assert me not in pids["in-procs"] and 1 <= len(pids["in-procs"]) <= 2
    assert me not in pids["in-one-proc"] and len(pids["in-one-proc"]) == 1
    assert not pids["in-procs"] & pids["in-one-proc"]  # a new pool: new workers


def test_ungrouped_tasks_run_with_the_pool_given_to_run_at_their_place():
    first = stamped("first")
    then = stamped("then")
    g = TaskGroup("G", [stamped("g")], pool="thread")
    rec = Recorder()
    s = Sched([g], listeners=[rec])
    s.add_tasks([first, then])   # their group goes after G: the first plain task came later
    assert [grp.name for grp in s.groups] == ["G", ""]
    assert s.group_of(first) is s.groups[1] and s.group_of(g.tasks[0]) is g
    results = {r.ret[0]: r.ret for r in s.run(ProcessWorkerPool(workers=2))}
    assert results["g"][1] == os.getpid()
    assert results["first"][1] != os.getpid() and results["then"][1] != os.getpid()
    assert group_events(rec) == [("group_started", "G"), ("group_finished", "G"),
                                 ("group_started", ""), ("group_finished", "")]
    implicit = rec.of("group_started")[1].task
    assert implicit.name == "" and implicit.pool is None


def test_plain_tasks_before_a_group_run_first():
    s = Sched([make("a"), TaskGroup("G", [make("g")]), make("b")])
    assert [grp.name for grp in s.groups] == ["", "G"]
    keys = [s.key_of(r.task) for r in s.run()]
    assert keys.index("g") == 2


def test_a_sched_without_groups_sends_no_group_events_and_has_no_groups():
    rec = Recorder()
    s = Sched([make("a"), make("b")], listeners=[rec])
    list(s.run())
    assert group_events(rec) == []
    assert s.groups == [] and s.group_of(s.tasks[0]) is None


def test_a_custom_pool_factory_gets_workers_and_spare():
    made = []

    def factory(**kwargs):
        made.append(kwargs)
        return ThreadWorkerPool(**kwargs)

    s = Sched([TaskGroup("A", [make("a")], pool=factory, workers=3, spare=0),
               TaskGroup("B", [make("b")], pool=factory)])
    assert len(list(s.run())) == 2
    assert made == [{"workers": 3, "spare": 0}, {}]
    assert len(list(s.run())) == 2  # a new pool for each run of a group
    assert len(made) == 4


def test_a_group_with_nothing_to_run_gets_its_events_but_no_pool():
    made = []

    def factory():
        made.append(1)
        return ThreadWorkerPool()

    bad = make("bad", exc=OSError("down"), provides=["x"])
    doomed = make("doomed", requires=["x"])
    rec = Recorder()
    s = Sched([TaskGroup("A", [bad]), TaskGroup("B", [doomed], pool=factory),
               TaskGroup("empty", pool=factory)], listeners=[rec])
    with pytest.warns(PexenWarning, match="1 tasks skipped"):
        assert [r.task for r in s.run()] == [bad]
    assert made == []
    assert group_events(rec)[2:] == [("group_started", "B"), ("group_finished", "B"),
                                     ("group_started", "empty"),
                                     ("group_finished", "empty")]
    (skip,) = rec.of("skipped")
    assert skip.key == "doomed" and "its provider bad failed" in skip.reason


def test_run_again_runs_every_group_again_in_order():
    s = Sched([TaskGroup("A", [make("a")]), TaskGroup("B", [make("b")], pool="process")])
    for _ in range(2):
        assert [s.key_of(r.task) for r in s.run()] == ["a", "b"]


# -- dependencies across groups ----------------------------------------------


@pytest.mark.parametrize("kinds", [("thread", "process"), ("process", "thread")])
def test_an_earlier_group_provides_and_hands_its_shared_state_over(kinds):
    def build(shared):
        shared["image"] = "built"

    def boot(shared):
        return shared["image"]

    assign_val(build, provides=["image"])
    assign_val(boot, requires=["image"])
    s = Sched([TaskGroup("build", [build], pool=kinds[0]),
               TaskGroup("boot", [boot], pool=kinds[1])])
    s.add_shared(image="preset")
    results = list(s.run())
    assert results[-1] == TaskRes(boot, {"image": "built"}, "built", None)


def test_a_require_only_a_later_group_provides_is_refused_naming_both():
    late = make("late", provides=["x"])
    early = make("early", requires=["x"])
    with pytest.raises(DepcheckError) as info:
        Sched([TaskGroup("first", [early]), TaskGroup("second", [late])])
    msg = str(info.value)
    assert "task early (group 'first') requires 'x'" in msg
    assert "task late (group 'second')" in msg
    assert "\n" not in msg
    assert info.value.remain == {"x": ["early"]}


def test_a_later_provider_added_afterwards_or_to_ungrouped_tasks_is_refused():
    s = Sched([TaskGroup("first", [make("early", requires=["x"]),
                                   make("p", provides=["x"])])])
    # a second, later provider is fine: an earlier one exists
    s.add_tasks([TaskGroup("second", [make("p2", provides=["x"]),
                                      make("user", requires=["x"])])])
    # ungrouped tasks go after every group so far: 'x' is provided before them
    s.add_tasks([make("plain", requires=["x"])])
    with pytest.raises(DepcheckError, match=r"task need_y \(the ungrouped tasks\) "
                                            r"requires 'y'.*task give_y \(group 'third'\)"):
        s.add_tasks([make("need_y", requires=["y"]),
                     TaskGroup("third", [make("give_y", provides=["y"])])])
    assert [g.name for g in s.groups] == ["first", "second", ""]  # nothing added
    assert len(list(s.run())) == 5


def test_a_require_nobody_provides_is_worded_as_without_groups():
    with pytest.raises(DepcheckError, match=r"Unsatisfied requires remain: \['one'\]"):
        Sched([TaskGroup("A", [make("a", requires=["one"])])])


def test_a_provider_in_the_same_group_and_a_cycle():
    Sched([TaskGroup("A", [make("a", requires=["x"]), make("b", provides=["x"])])])
    with pytest.raises(DepcheckError, match="Unsatisfied requires remain"):
        Sched([TaskGroup("A", [make("a", requires=["x"], provides=["y"]),
                               make("b", requires=["y"], provides=["x"])])])


def test_a_failed_earlier_provider_skips_the_later_groups_dependents():
    bad = make("bad", exc=RuntimeError("no"), provides=["x"])
    child = make("child", requires=["x"], provides=["y"])
    grandchild = make("grandchild", requires=["y"])
    rec = Recorder()
    s = Sched([TaskGroup("A", [bad]), TaskGroup("B", [child]), TaskGroup("C", [grandchild])],
              listeners=[rec])
    with pytest.warns(PexenWarning, match="2 tasks skipped"):
        assert [r.task for r in s.run()] == [bad]
    reasons = {e.key: e.reason for e in rec.of("skipped")}
    assert reasons["child"] == "dependency 'x' not met: its provider bad failed"
    assert "its provider child was skipped" in reasons["grandchild"]


def test_the_other_provider_in_a_later_group_does_not_save_an_earlier_task():
    """With assertions off the order is not checked when tasks are added; a
    task whose earlier provider failed, waiting for a later one, is skipped at
    the end of its group (never a hang)."""
    bad = make("bad", exc=RuntimeError("no"), provides=["x"])
    needs = make("needs", requires=["x"])
    later = make("later", provides=["x"])
    rec = Recorder()
    s = Sched([TaskGroup("A", [bad, needs]), TaskGroup("B", [later])], listeners=[rec])
    with pytest.warns(PexenWarning):
        keys = [s.key_of(r.task) for r in s.run()]
    assert keys == ["bad", "later"]
    (skip,) = rec.of("skipped")
    assert skip.key == "needs"
    assert skip.reason == "dependencies ['x'] not provided by the end of group 'A'"


# -- locks across groups -----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_released_in_one_group_is_taken_in_the_next(kind):
    holder = make("holder", exc=TaskFailError("soft", locks_ok=True), claims=["disk"])
    user = make("user", ret="ran", claims=["disk"])
    s = Sched([TaskGroup("A", [holder], pool=kind), TaskGroup("B", [user], pool=kind)])
    results = {s.key_of(r.task): r for r in s.run()}
    assert results["user"].ret == "ran"


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_held_forever_skips_its_waiters_and_the_next_group_starts(kind):
    holder = make("holder", exc=RuntimeError("broken"), claims=["disk"])
    waiter = make("waiter", claims=["disk"], provides=["formatted"])
    sharer = make("sharer", uses=["disk"])
    free = make("free", ret="free")
    after = make("after", requires=["formatted"])
    last = make("last", ret="last")
    rec = Recorder()
    s = Sched([TaskGroup("A", [holder], pool=kind),
               TaskGroup("B", [waiter, sharer, free], pool=kind, workers=2),
               TaskGroup("C", [after, last], pool=kind)], listeners=[rec])
    with pytest.warns(PexenWarning) as caught:
        keys = [s.key_of(r.task) for r in s.run()]
    assert keys == ["holder", "free", "last"]
    reasons = {e.key: e.reason for e in rec.of("skipped")}
    assert reasons["waiter"] == "lock 'disk' still held by holder after a failure"
    assert reasons["sharer"] == "lock 'disk' still held by holder after a failure"
    assert "its provider waiter was skipped" in reasons["after"]
    assert "1 locks still held at exit" in " ".join(str(w.message) for w in caught)
    order = [(e.kind.value, e.key) for e in rec.events]
    assert order.index(("skipped", "waiter")) < order.index(("group_finished", "B"))


# -- pools are torn down between groups --------------------------------------


def test_no_process_of_a_group_is_left_when_the_next_starts():
    me = psutil.Process()
    seen = []

    def listener(ev):
        if ev.kind in (EventKind.GROUP_STARTED, EventKind.GROUP_FINISHED):
            seen.append((ev.kind.value, ev.key, me.children(recursive=True)))

    def children_now():
        return [p.pid for p in me.children(recursive=True)]

    s = Sched([TaskGroup("P1", [stamped(f"a{i}") for i in range(4)], pool="process",
                         workers=3),
               TaskGroup("P2", [stamped(f"b{i}") for i in range(4)], pool="process",
                         workers=2),
               TaskGroup("T", [children_now], pool="thread")], listeners=[listener])
    results = {s.key_of(r.task): r.ret for r in s.run()}
    assert [(kind, key) for kind, key, _ in seen] == [
        ("group_started", "P1"), ("group_finished", "P1"),
        ("group_started", "P2"), ("group_finished", "P2"),
        ("group_started", "T"), ("group_finished", "T")]
    assert all(children == [] for _, _, children in seen)
    assert results["children_now"] == []
    # and the process groups did run in processes, different ones each
    p1 = {results[f"a{i}"][1] for i in range(4)}
    p2 = {results[f"b{i}"][1] for i in range(4)}
    assert os.getpid() not in p1 | p2 and not p1 & p2


def test_closing_the_run_in_a_process_group_leaves_no_process():
    s = Sched([TaskGroup("T", [make("t")]),
               TaskGroup("P", [stamped(f"p{i}") for i in range(6)], pool="process",
                         workers=2)])
    gen = s.run()
    assert s.key_of(next(gen).task) == "t"
    next(gen)
    assert isinstance(s.pool, ProcessWorkerPool)
    gen.close()
    assert s.pool is None
    psutil.wait_procs(psutil.Process().children(recursive=True), timeout=10)
    assert psutil.Process().children(recursive=True) == []


# -- adding while running ----------------------------------------------------


def test_late_tasks_join_the_running_group_a_named_one_or_a_new_group():
    a = make("a")
    rec = Recorder()
    s = Sched([TaskGroup("A", [a]), TaskGroup("B", [make("b")], pool="process")],
              listeners=[rec])
    for res in s.run():
        if res.task is a:
            s.add_tasks([make("late_plain")])                 # joins A, running
            s.add_tasks([make("late_b")], group="B")          # a closure: B forks later
            s.add_tasks([TaskGroup("C", [make("c")])])        # queued after B
        elif s.key_of(res.task) == "b":
            with pytest.raises(SchedulerError, match="group 'A' has already run"):
                s.add_tasks([make("too_late")], group="A")
    assert group_events(rec) == [("group_started", "A"), ("group_finished", "A"),
                                 ("group_started", "B"), ("group_finished", "B"),
                                 ("group_started", "C"), ("group_finished", "C")]
    members = {s.key_of(t): s.group_of(t).name for t in s.tasks}
    assert members == {"a": "A", "b": "B", "late_plain": "A", "late_b": "B", "c": "C"}
    order = [(e.kind.value, e.key) for e in rec.events]
    assert order.index(("finished", "late_plain")) < order.index(("group_finished", "A"))
    assert order.index(("finished", "late_b")) < order.index(("group_finished", "B"))


def test_tasks_added_inside_a_process_worker_follow_the_same_rules():
    s = Sched([TaskGroup("A", [grouptasks.adder], pool="process"),
               TaskGroup("B", [make("b")], pool="process")])
    grouptasks.SCHED[:] = [s]
    try:
        results = list(s.run())
    finally:
        grouptasks.SCHED.clear()
    keys = [s.key_of(r.task) for r in results]
    assert set(keys[:2]) == {"adder", "late_plain"}
    assert set(keys[2:4]) == {"b", "late_in_b"}
    assert keys[4] == "late_grouped"
    assert [g.name for g in s.groups] == ["A", "B", "late"]
    assert s.group_of(grouptasks.late_plain).name == "A"


def test_the_first_group_added_during_a_run_of_a_sched_without_groups():
    a = make("a", provides=["d"])
    rec = Recorder()
    with pytest.warns(PexenWarning, match="Dep 'd'"):
        s = Sched([a, make("b")], listeners=[rec])
    for res in s.run(ProcessWorkerPool(workers=2)):
        if res.task is a:
            s.add_tasks([TaskGroup("G", [make("g", requires=["d"])])])
    assert [s.key_of(t) for t in s.tasks] == ["a", "b", "g"]
    # the ungrouped tasks were running without group events; G's come after them
    assert group_events(rec) == [("group_started", "G"), ("group_finished", "G")]
    assert [g.name for g in s.groups] == ["", "G"]
    assert rec.kinds("g") == ["queued", "started", "finished"]


def test_a_late_unpicklable_task_for_a_running_process_group_is_refused():
    b = make("b")
    s = Sched([TaskGroup("P", [b], pool="process"), TaskGroup("T", [make("t")])])
    for res in s.run():
        if res.task is b:
            with pytest.raises(PoolError, match="task late: .* cannot be pickled"):
                s.add_tasks([make("late")])
            s.add_tasks([make("for_t")], group="T")  # not running yet: no pickling
    assert s.group_of(s.tasks[-1]).name == "T"


def test_cancel_skips_the_groups_still_to_come():
    a = make("a")
    rec = Recorder()
    s = Sched([TaskGroup("A", [a]), TaskGroup("B", [make("b")])], listeners=[rec])
    for res in s.run():
        if res.task is a:
            s.cancel("stop")
    assert {e.key: e.reason for e in rec.of("skipped")} == {"b": "stop"}
    assert group_events(rec)[-2:] == [("group_started", "B"), ("group_finished", "B")]


# -- bad input ---------------------------------------------------------------


def one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_duplicate_group_names_are_refused():
    with pytest.raises(ValueError) as info:
        Sched([TaskGroup("vm", [make("a")]), TaskGroup("vm", [make("b")])])
    assert "'vm'" in one_line(info)
    s = Sched([TaskGroup("vm", [make("a")])])
    with pytest.raises(ValueError, match="a different group named 'vm'"):
        s.add_tasks([TaskGroup("vm", [make("b")])])
    g = s.groups[0]
    s.add_tasks([g])  # the same group again: nothing new
    assert len(s.tasks) == 1


def test_a_task_in_two_groups_is_refused_naming_the_task_and_both_groups():
    t = make("t")
    with pytest.raises(ValueError) as info:
        Sched([TaskGroup("A", [t]), TaskGroup("B", [t])])
    assert one_line(info).startswith("task ")
    assert "group 'A' and group 'B'" in str(info.value)
    s = Sched([t])
    with pytest.raises(ValueError, match="task t is in two groups: the ungrouped tasks "
                                         "and group 'B'"):
        s.add_tasks([TaskGroup("B", [t])])
    assert s.groups == []  # a rejected batch adds nothing
    # adding a grouped task again without a group leaves it where it is
    g = TaskGroup("G", [make("g")])
    s2 = Sched([g])
    s2.add_tasks([g.tasks[0]])
    assert s2.group_of(g.tasks[0]) is g


@pytest.mark.parametrize("build, exc, words", [
    (lambda: TaskGroup("A", [make("a"), 42]), TypeError, ["group 'A'", "42", "not callable"]),
    (lambda: TaskGroup("A", [TaskGroup("B")]), TypeError, ["group 'A'", "do not nest"]),
    (lambda: TaskGroup("A", "abc"), TypeError, ["group 'A'", "tasks"]),
    (lambda: TaskGroup("A", pool="fork"), ValueError, ["group 'A'", "'fork'"]),
    (lambda: TaskGroup("A", pool=5), TypeError, ["group 'A'", "pool", "5"]),
    (lambda: TaskGroup("A", pool=ThreadWorkerPool()), TypeError, ["group 'A'", "instance"]),
    (lambda: TaskGroup("A", workers=0), ValueError, ["group 'A'", "workers", "0"]),
    (lambda: TaskGroup("A", workers=2.5), TypeError, ["group 'A'", "workers"]),
    (lambda: TaskGroup("A", spare=-1), ValueError, ["group 'A'", "spare", "-1"]),
    (lambda: TaskGroup(""), ValueError, ["name"]),
    (lambda: TaskGroup(None), TypeError, ["name", "None"]),
    (lambda: Sched([TaskGroup("A")]).add_tasks([make("x")], group="Z"), ValueError,
     ["'Z'"]),
    (lambda: Sched([TaskGroup("A")]).add_tasks([make("x")], group=TaskGroup("A")),
     ValueError, ["not a group of this Sched"]),
    (lambda: Sched([TaskGroup("A")]).add_tasks([TaskGroup("B")], group="A"), TypeError,
     ["plain tasks"]),
    (lambda: Sched([TaskGroup("A")]).add_tasks([make("x")], group=3), TypeError,
     ["group", "3"]),
], ids=["non-callable", "nested", "str-tasks", "pool-kind", "pool-type", "pool-instance",
        "workers-0", "workers-float", "spare", "empty-name", "name-type", "no-such-group",
        "foreign-group", "group-in-group", "group-type"])
def test_bad_input_is_a_one_line_error_naming_the_thing(build, exc, words):
    with pytest.raises(exc) as info:
        build()
    msg = one_line(info)
    for word in words:
        assert word in msg


def test_a_pool_factory_returning_no_pool_is_an_error_naming_the_group():
    s = Sched([TaskGroup("odd", [make("a")], pool=lambda: "not a pool")])
    with pytest.raises(TypeError, match="group 'odd': its pool factory returned 'not a pool'"):
        list(s.run())
    assert s.pool is None
    assert len(list(Sched([make("b")]).run())) == 1


def test_group_repr_and_properties():
    g = TaskGroup("vm", [make("a")], pool="process", workers=5)
    assert repr(g) == "TaskGroup('vm', 1 tasks, pool='process', workers=5)"
    assert (g.name, g.pool, g.workers, g.spare) == ("vm", "process", 5, None)
    assert isinstance(g.tasks, tuple)


def test_group_events_are_json():
    rec = Recorder()
    list(Sched([TaskGroup("A", [make("a")])], listeners=[rec]).run())
    started = rec.of("group_started")[0]
    assert started.task.name == "A"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = started.to_json()
    assert data["kind"] == "group_started" and data["key"] == "A"

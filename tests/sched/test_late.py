"""Adding tasks while a run is in progress."""

import pytest

from pexen import PexenWarning, sched
from pexen.sched import TaskRes
from pexen.sched.pool import PoolError

from . import latetasks
from .helpers import Recorder, both_pools, make


@both_pools()
def test_add_from_the_consumer_loop(pool):
    first = make("first", provides=["late-dep"])
    seen = []
    with pytest.warns(PexenWarning, match="Dep 'late-dep' provided by"):
        s = sched.Sched([first])
    for res in s.run(pool()):
        seen.append(res.task)
        if res.task is first:
            # its provide is already satisfied: the child runs
            s.add_tasks([latetasks.late_child, latetasks.late_plain])
    assert seen[0] is first
    assert set(seen[1:]) == {latetasks.late_child, latetasks.late_plain}
    assert s.key_of(latetasks.late_child) == "late_child"


@both_pools()
def test_late_child_waits_for_a_running_provider(pool):
    with pytest.warns(PexenWarning):
        s = sched.Sched([latetasks.late_provider])
    gen = s.run(pool())
    s.add_tasks([latetasks.late_child])
    res = list(gen)
    assert [r.task for r in res] == [latetasks.late_provider, latetasks.late_child]


@both_pools()
def test_add_from_inside_a_task(pool):
    s = sched.Sched([latetasks.adder])
    latetasks.SCHED[:] = [s]
    try:
        res = list(s.run(pool()))
    finally:
        latetasks.SCHED.clear()
    assert TaskRes(latetasks.adder, ret="added") in res
    assert TaskRes(latetasks.late_plain, ret="plain") in res
    assert len(res) == 2
    assert latetasks.late_plain in s.tasks


@both_pools()
def test_late_task_whose_provider_failed_is_reported(pool):
    bad = make("bad", exc=OSError(), provides=["late-dep"])
    rec = Recorder()
    with pytest.warns(PexenWarning):
        s = sched.Sched([bad], listeners=[rec])
    with pytest.warns(PexenWarning):
        for res in s.run(pool()):
            s.add_tasks([latetasks.late_child])
    (skip,) = rec.of("skipped")
    assert skip.key == "late_child"
    assert "its provider bad failed" in skip.reason


def test_late_task_nobody_provides_is_refused_in_the_adder():
    s = sched.Sched([latetasks.adder_of_unmet])
    latetasks.SCHED[:] = [s]
    try:
        (res,) = list(s.run())
    finally:
        latetasks.SCHED.clear()
    assert res.excinfo.type is sched.DepcheckError
    assert "ghost" in str(res.excinfo.val)


def test_unpicklable_late_task_under_process_pool_names_the_task():
    local_counter = []

    def not_picklable():
        local_counter.append(1)

    s = sched.Sched([make("first")])
    gen = s.run(sched.ProcessWorkerPool())
    next(gen)
    with pytest.raises(PoolError) as exc:
        s.add_tasks([not_picklable])
    msg = str(exc.value)
    assert msg.startswith("task not_picklable: ")
    assert "cannot be pickled" in msg and "module level" in msg
    assert not_picklable not in s.tasks
    assert list(gen) == []


def test_unpicklable_task_added_inside_a_process_worker():
    s = sched.Sched([latetasks.adder_of_unpicklable])
    latetasks.SCHED[:] = [s]
    try:
        (res,) = list(s.run(sched.ProcessWorkerPool()))
    finally:
        latetasks.SCHED.clear()
    assert res.excinfo.type is PoolError
    assert "cannot be pickled" in str(res.excinfo.val)


def test_tasks_added_after_the_run_wait_for_the_next():
    s = sched.Sched([make("a")])
    assert len(list(s.run())) == 1
    b = make("b")
    s.add_tasks([b])
    assert {r.task for r in s.run()} == {s.tasks[0], b}


@both_pools()
def test_a_late_task_gets_the_shared_state_of_a_provider_that_already_ran(pool):
    with pytest.warns(PexenWarning):
        s = sched.Sched([latetasks.inventory])
    got = []
    for res in s.run(pool()):
        if res.task is latetasks.inventory:
            s.add_tasks([latetasks.reads_inventory])
        else:
            got.append((res.ret, res.excinfo))
    assert got == [(["alpha", "beta"], None)]

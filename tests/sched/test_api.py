"""The 0.0.x library API of Sched, under both pools."""

import multiprocessing as mp
import time
import warnings

import pytest

import pexen
from pexen import sched, util
from pexen.sched import TaskRes
from pexen.sched.meta import assign_val, func_meta

from .helpers import both_pools, make, make_shared


def test_top_level_names():
    assert pexen.sched is sched
    assert pexen.util.PexenError is pexen.PexenError
    assert pexen.util.PexenWarning is pexen.PexenWarning
    assert issubclass(sched.DepcheckError, sched.SchedulerError)
    assert issubclass(sched.MutexError, sched.SchedulerError)
    assert issubclass(sched.SchedulerError, pexen.PexenError)
    assert issubclass(sched.pool.PoolError, sched.SchedulerError)
    assert sched.pool.ThreadWorkerPool is sched.ThreadWorkerPool


def test_taskres_and_excinfo_defaults():
    def f():
        pass

    assert TaskRes(f) == TaskRes(f, {}, None, None)
    assert sched.ExceptionInfo() == (None, None, None)
    t, v, tb = sched.ExceptionInfo(ValueError, ValueError("x"), None)
    assert t is ValueError


def test_empty_sched_yields_nothing():
    assert list(sched.Sched([]).run()) == []
    assert list(sched.Sched().run()) == []


@both_pools()
def test_return_value_and_default_pool(pool):
    a = make("a", ret=1234)
    assert list(sched.Sched([a]).run(pool())) == [TaskRes(a, ret=1234)]
    assert list(sched.Sched([a]).run()) == [TaskRes(a, ret=1234)]


@both_pools()
def test_exception_is_reported_not_raised(pool):
    a = make("a", exc=NameError("nope"))
    (res,) = sched.Sched([a]).run(pool())
    assert res.task is a
    assert res.excinfo.type is NameError
    assert isinstance(res.excinfo.val, NameError)
    assert "NameError: nope" in res.excinfo.text


@both_pools()
def test_sys_exit_in_a_task_fails_the_task_only(pool):
    def bye():
        raise SystemExit(3)

    (res,) = sched.Sched([bye]).run(pool())
    assert res.excinfo.type is SystemExit


@both_pools()
def test_priority_lower_runs_first(pool):
    a = make("a", priority=3)
    b = make("b", priority=4)
    assert list(sched.Sched([b, a]).run(pool())) == [TaskRes(a), TaskRes(b)]
    assign_val(a, priority=4)
    assign_val(b, priority=3)
    assert list(sched.Sched([b, a]).run(pool())) == [TaskRes(b), TaskRes(a)]


@both_pools()
def test_float_and_negative_priorities(pool):
    tasks = [make(f"t{i}", ret=i, priority=p) for i, p in enumerate([2.5, -1, 0, 1e9])]
    res = list(sched.Sched(tasks).run(pool(workers=1, spare=0)))
    assert [r.ret for r in res] == [1, 2, 0, 3]


@both_pools()
def test_chain_comes_in_dependency_order(pool):
    a = make("a", provides=["one"])
    b = make("b", requires=["one"], provides=["two"])
    c = make("c", requires=["two"])
    res = list(sched.Sched([c, b, a]).run(pool(workers=4)))
    assert res == [TaskRes(a), TaskRes(b), TaskRes(c)]


@both_pools()
def test_requires_may_be_any_hashable(pool):
    token = ("disk", 1)
    a = make("a", provides=[token, 42])
    b = make("b", requires=[token, 42])
    assert list(sched.Sched([b, a]).run(pool())) == [TaskRes(a), TaskRes(b)]


@both_pools()
def test_first_of_several_providers_satisfies(pool):
    p1 = make("p1", provides=["x"])
    p2 = make("p2", provides=["x"], priority=5)
    c = make("c", requires=["x"])
    res = list(sched.Sched([p1, p2, c]).run(pool(workers=1, spare=0)))
    assert [r.task for r in res] == [p1, c, p2]


def test_required_not_provided():
    a = make("a", requires=["one"])
    with pytest.raises(sched.DepcheckError) as exc:
        sched.Sched([a])
    assert "Unsatisfied requires remain: ['one']" in str(exc.value)
    assert "a" in str(exc.value)
    assert exc.value.remain == {"one": ["a"]}


def test_dependency_cycle_is_unsatisfied():
    a = make("a", requires=["b"], provides=["a"])
    b = make("b", requires=["a"], provides=["b"])
    with pytest.raises(sched.DepcheckError):
        sched.Sched([a, b])


def test_rejected_batch_adds_nothing():
    ok = make("ok")
    bad = make("bad", requires=["never"])
    s = sched.Sched([ok])
    with pytest.raises(sched.DepcheckError):
        s.add_tasks([make("fine"), bad])
    assert s.tasks == [ok]


def test_provided_not_required_warns_once_per_provide():
    a = make("a", provides=["one", "two"])
    b = make("b", provides=["one"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.Sched([a, b])
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert all(w.category is util.PexenWarning for w in caught)
    assert messages[0].startswith("Dep 'one' provided by")
    assert "but not required by any task" in messages[0]


def test_claims_and_uses_overlap():
    a = make("a", uses=[1, 2, 3], claims=[4, 2, 3, 6])
    with pytest.raises(sched.MutexError) as exc:
        sched.Sched([a])
    assert "has {2, 3} in both claims and uses" in str(exc.value)
    assert exc.value.task is a


@both_pools()
def test_shared_flows_to_children_only(pool):
    parent = make_shared("parent", provides=["dep"])
    child = make_shared("child", requires=["dep"])
    other = make_shared("other")
    s = sched.Sched([parent, child, other])
    s.add_shared(preset=1)
    res = {r.task: r for r in s.run(pool())}
    assert res[parent].shared == {"preset": 1, "parent": True}
    assert res[child].ret == {"preset": 1, "parent": True}
    assert res[child].shared == {"preset": 1, "parent": True, "child": True}
    assert res[other].ret == {"preset": 1}


@both_pools()
def test_preset_shared_is_a_copy_per_task(pool):
    a = make_shared("a")
    b = make_shared("b")
    s = sched.Sched([a, b])
    s.add_shared(x=1, a=0)
    s.add_shared(y=2)
    res = {r.task: r for r in s.run(pool())}
    assert res[a].shared == {"x": 1, "y": 2, "a": True}
    assert res[b].shared == {"x": 1, "y": 2, "a": 0, "b": True}
    assert s.default_shared == {"x": 1, "y": 2, "a": 0}


@both_pools()
def test_calling_conventions(pool):
    def no_args():
        return "none"

    def shared_only(shared):
        return ("shared", dict(shared))

    def kw_only(*, wtype, build=123):
        return ("kw", wtype, build)

    def both(shared, wtype, build=123):
        return ("both", dict(shared), wtype, build)

    def var_kw(**kwargs):
        return ("varkw", kwargs)

    class Callable:
        def __call__(self, shared):
            return ("obj", dict(shared))

    obj = Callable()
    for t in (kw_only, both, var_kw):
        assign_val(t, kwargs={"wtype": "T"})
    s = sched.Sched([no_args, shared_only, kw_only, both, var_kw, obj])
    s.add_shared(k=1)
    res = {r.task: r.ret for r in s.run(pool())}
    assert res[no_args] == "none"
    assert res[shared_only] == ("shared", {"k": 1})
    assert res[kw_only] == ("kw", "T", 123)
    assert res[both] == ("both", {"k": 1}, "T", 123)
    assert res[var_kw] == ("varkw", {"wtype": "T"})
    assert res[obj] == ("obj", {"k": 1})


@both_pools()
def test_kwargs_not_accepted_is_a_type_error(pool):
    a = make("a", kwargs={"testargs": 1})
    (res,) = sched.Sched([a]).run(pool())
    assert res.excinfo.type is TypeError
    assert "unexpected keyword argument" in str(res.excinfo.val)


@both_pools()
def test_rerun_after_finish_runs_everything_again(pool):
    counter = mp.Value("i", 0)

    def count():
        with counter.get_lock():
            counter.value += 1

    a, b = make("a"), make("b")
    s = sched.Sched([a, count])
    p = pool()
    assert len(list(s.run(p))) == 2
    s.add_tasks([b])
    assert {r.task for r in s.run(p)} == {a, b, count}
    assert counter.value == 2


def test_same_task_twice_is_one_task():
    a = make("a")
    s = sched.Sched([a, a])
    s.add_tasks([a])
    assert s.tasks == [a]
    assert list(s.run()) == [TaskRes(a)]


def test_run_while_running_is_refused():
    s = sched.Sched([make("a"), make("b")])
    gen = s.run()
    next(gen)
    with pytest.raises(sched.SchedulerError, match="in progress"):
        next(s.run())
    gen.close()


@both_pools()
def test_caller_throttles_the_run(pool):
    """While the caller holds a result, no new task is handed to the pool."""
    started = mp.Queue()

    def mk(i):
        def t():
            started.put(i)
        t.__name__ = f"t{i}"
        return t

    tasks = [mk(i) for i in range(10)]
    p = pool(workers=1, spare=1)
    gen = sched.Sched(tasks).run(p)
    next(gen)
    time.sleep(0.3)
    seen = []
    while not started.empty():
        seen.append(started.get())
    # one finished, at most workers+spare more handed out meanwhile
    assert len(seen) <= 3
    rest = list(gen)
    assert len(rest) == 9


def test_non_callable_task_is_refused():
    with pytest.raises(TypeError, match="42 is not callable"):
        sched.Sched([42])


@pytest.mark.parametrize("field, value, exc", [
    ("requires", "dep", TypeError),
    ("claims", ("ok", ["unhashable"]), TypeError),
    ("priority", "high", TypeError),
    ("kwargs", ["a"], TypeError),
    ("timeout", -1, ValueError),
    ("timeout", "10", TypeError),
])
def test_bad_metadata_mutated_in_place_names_the_task(field, value, exc):
    a = make("badtask")
    func_meta(a)
    object.__setattr__(sched.meta.retrieve_meta(a), field, value)  # bypasses the checks
    with pytest.raises(exc, match="task .*badtask.*" + field):
        sched.Sched([a])


def test_bad_metadata_object_names_the_task():
    a = make("weird")
    a.pexen_sched_meta_ = {"requires": []}
    with pytest.raises(TypeError, match="weird.*not a SchedMeta"):
        sched.Sched([a])


def test_keys_from_callpath_and_names():
    a, b, c = make("dummy"), make("dummy"), make("x")
    c.pexen_factory_callpath_ = ["kernel", "fs", "ext4"]
    s = sched.Sched([a, b, c])
    assert [s.key_of(t) for t in (a, b, c)] == ["dummy", "dummy#2", "kernel/fs/ext4"]


def test_duplicate_keys_name_both_tasks():
    a, b = make("first"), make("second")
    a.pexen_factory_callpath_ = ["suite", "t"]
    b.pexen_factory_callpath_ = ["suite", "t"]
    with pytest.raises(sched.TaskKeyError) as exc:
        sched.Sched([a, b])
    msg = str(exc.value)
    assert "'suite/t'" in msg and "first" in msg and "second" in msg
    s = sched.Sched([a])
    with pytest.raises(sched.TaskKeyError):
        s.add_tasks([b])
    assert s.tasks == [a]


def test_timeout_is_stored():
    @func_meta(timeout=2.5)
    def t():
        pass

    assert sched.meta.get_timeout(t) == 2.5
    assert sched.meta.get_timeout(make("none")) is None
    list(sched.Sched([t]).run())


def test_rerun_on_interrupt_is_stored_and_checked():
    @func_meta(rerun_on_interrupt=True)
    def t():
        pass

    assert sched.meta.get_rerun_on_interrupt(t) is True
    assert sched.meta.get_rerun_on_interrupt(make("none")) is False
    with pytest.raises(TypeError, match="rerun_on_interrupt"):
        sched.meta.assign_val(make("bad"), rerun_on_interrupt="yes")


@both_pools()
def test_assume_provided_lets_children_run_with_the_stored_shared(pool):
    child = make_shared("child", requires=["built"])
    other = make_shared("other", requires=["built", "fresh"])
    fresh = make("fresh", provides=["fresh"])
    s = sched.Sched()
    s.assume_provided(["built"], {"image": "vmlinuz"})
    s.add_tasks([child, other, fresh])
    res = {r.task: r for r in s.run(pool())}
    assert res[child].ret == {"image": "vmlinuz"}
    assert res[other].ret == {"image": "vmlinuz"}
    assert fresh in res


def test_assume_provided_is_refused_during_a_run():
    s = sched.Sched([make("a"), make("b")])
    gen = s.run()
    next(gen)
    with pytest.raises(sched.SchedulerError):
        s.assume_provided(["x"])
    gen.close()


def test_set_fields_given_as_lists_read_as_sets_and_mutations_stick():
    import pickle

    from pexen.sched import meta

    a = make("packed")
    assign_val(a, requires=["x", "y", "x"], provides=("p",), claims=frozenset({1}))
    m = meta.retrieve_meta(a)
    assert m == meta.SchedMeta(requires={"x", "y"}, provides={"p"}, claims={1})
    assert pickle.loads(pickle.dumps(m)) == m
    assert "{'p'}" in repr(m)
    assert m.data["requires"] == {"x", "y"}
    req = meta.get_requires(a)
    assert type(req) is set and req == {"x", "y"}
    req.add("z")
    assert m.requires == {"x", "y", "z"} and m.requires is req
    m.provides.discard("p")
    assert meta.get_provides(a) == set()
    mine = {"q"}
    m.uses = mine
    assert m.uses is mine  # a set given is kept as it is
    with pytest.raises(TypeError, match="unhashable"):
        assign_val(a, claims=[["no"]])


def test_unset_fields_read_as_defaults_and_stay_unset_for_readers():
    import copy

    from pexen.sched import meta

    m = meta.SchedMeta(priority=3)
    assert m.set_fields() == {"priority": 3}
    assert m.get("requires") == frozenset() and m.get("kwargs") == {}
    assert m.set_fields() == {"priority": 3}  # get() stores nothing
    m.kwargs["x"] = 1  # a default read through the attribute is stored
    assert m.set_fields() == {"priority": 3, "kwargs": {"x": 1}}
    del m.priority
    assert m.priority == 0 and meta.SchedMeta(kwargs={"x": 1}) == m
    assert copy.copy(m) == m and copy.deepcopy(m).set_fields() == m.set_fields()
    bare = meta.SchedMeta.__new__(meta.SchedMeta)  # as unpickling may make it
    assert bare.get("claims") == frozenset() and bare.set_fields() == {}
    assert bare.uses == set() and bare == meta.SchedMeta()
    half = meta.SchedMeta.__new__(meta.SchedMeta)   # some slots set, the others never
    half.priority = 3
    assert half.set_fields() == {"priority": 3}


def test_a_decorated_task_gets_the_shared_dict_as_its_own_signature_says():
    """functools.wraps hides the task's own parameters behind the wrapper's
    *args: whether it takes the shared dict is read from the task itself."""
    import functools

    from pexen.sched._call import takes_shared

    def logged(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)
        return wrapper

    @logged
    def without_shared():
        return "plain"

    @logged
    def with_shared(shared):
        shared["seen"] = True
        return "shared"

    def bare(*args):
        return args

    assert not takes_shared(without_shared)
    assert takes_shared(with_shared)
    assert takes_shared(bare)
    res = {r.task: r for r in sched.Sched([without_shared, with_shared]).run()}
    assert res[without_shared].excinfo is None and res[without_shared].ret == "plain"
    assert res[with_shared].ret == "shared" and res[with_shared].shared == {"seen": True}


def test_resources_metadata():
    from pexen.sched import meta as m

    def f():
        pass

    m.assign_val(f, resources="gpu:1, mem:4")
    assert m.retrieve_meta(f).resources == {"gpu": 1.0, "mem": 4.0}
    m.assign_val(f, resources={"gpu": 2})
    assert m.retrieve_meta(f).resources == {"gpu": 2.0}
    m.assign_val(f, resources="fpga")
    assert m.retrieve_meta(f).resources == {"fpga": 1.0}
    for bad, kind in (("gpu:x", ValueError), ({"gpu": 0}, ValueError), ({"gpu": True}, TypeError),
                      (["gpu"], TypeError), (":1", ValueError)):
        with pytest.raises(kind, match="resources"):
            m.assign_val(f, resources=bad)

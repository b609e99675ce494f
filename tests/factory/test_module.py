"""ModuleFactory: the tasks of one module."""

import types

from pexen.factory import ModuleFactory, get_callpath
from pexen.sched.meta import assign_val, func_meta, has_meta


def make_module(name="fake", **members):
    mod = types.ModuleType(name)
    for key, val in members.items():
        setattr(mod, key, val)
    return mod


def fresh(name):
    """A new function object called `name` (no metadata, no callpath)."""
    def func():
        return name
    func.__name__ = func.__qualname__ = name
    return func


def with_meta(name):
    return func_meta(fresh(name))


def test_picks_callables_with_metadata_only():
    tagged, plain = with_meta("tagged"), fresh("plain")
    mod = make_module(tagged=tagged, plain=plain)
    assert list(ModuleFactory()(mod)) == [tagged]
    assert not has_meta(plain)  # looking did not attach metadata


def test_match_adds_metadata_less_callables_by_name():
    tagged = with_meta("tagged")
    test_one, test_two, other = fresh("test_one"), fresh("test_two"), fresh("other")
    mod = make_module(tagged=tagged, test_one=test_one, test_two=test_two,
                      other=other)
    assert list(ModuleFactory(match="test_*")(mod)) == [tagged, test_one, test_two]
    assert list(ModuleFactory(match="test_?ne")(mod)) == [tagged, test_one]
    # fnmatch on the name in the module (not the function's __name__)
    assert list(ModuleFactory(match="oth*")(make_module(other=test_one))) == [test_one]


def test_match_is_case_sensitive():
    func = fresh("Test_upper")
    assert list(ModuleFactory(match="test_*")(make_module(Test_upper=func))) == []


def test_metadata_task_does_not_need_to_match():
    tagged = with_meta("tagged")
    assert list(ModuleFactory(match="nothing*")(make_module(tagged=tagged))) == [tagged]


def test_skips_non_callables_even_with_metadata_or_matching():
    data = types.SimpleNamespace()
    assign_val(data, priority=1)
    mod = make_module(data=data, test_value=42, test_str="x")
    assert list(ModuleFactory(match="*")(mod)) == []


def test_skips_modules_even_callable_ones():
    class CallableModule(types.ModuleType):
        def __call__(self):
            return "called"

    sub = CallableModule("sub")
    assign_val(sub, priority=1)
    assert callable(sub) and has_meta(sub)
    mod = make_module(sub=sub, test_sub=sub, os=types)
    assert list(ModuleFactory(match="*")(mod)) == []


def test_other_callables_with_metadata():
    class Task:
        def __call__(self):
            return "instance"

    inst = Task()
    assign_val(inst, priority=3)
    func_meta(Task)
    mod = make_module(inst=inst, Task=Task)
    found = list(ModuleFactory()(mod))
    assert found == [Task, inst]
    assert get_callpath(inst) == ["inst"]
    assert get_callpath(Task) == ["Task"]


def test_callpath_is_current_path_plus_name():
    tagged = with_meta("tagged")
    mod = make_module(alias=tagged)  # the name in the module counts
    f = ModuleFactory()
    assert list(f(mod)) == [tagged]
    assert get_callpath(tagged) == ["alias"]
    f.callpath_push("outer")
    f.callpath_push("mod")
    assert list(f(mod)) == [tagged]
    assert get_callpath(tagged) == ["outer", "mod", "alias"]
    assert f.callpath == ["outer", "mod"]


def test_name_order():
    names = ["zeta", "alpha", "mid", "Beta", "_under"]
    funcs = {n: with_meta(n) for n in names}
    mod = make_module(**funcs)  # inserted in this (unsorted) order
    found = list(ModuleFactory()(mod))
    assert [get_callpath(t)[-1] for t in found] == sorted(names)
    assert found == [funcs[n] for n in sorted(names)]


def test_called_again():
    tagged = with_meta("tagged")
    mod = make_module(tagged=tagged)
    f = ModuleFactory()
    assert list(f(mod)) == list(f(mod)) == [tagged]
    assert get_callpath(tagged) == ["tagged"]


def test_real_module(unimported):
    from tests.factory.data.sample import alpha

    found = list(ModuleFactory(match="test_*")(alpha))
    assert found == [alpha.task_a, alpha.task_kw, alpha.test_plain]
    assert [get_callpath(t) for t in found] == [["task_a"], ["task_kw"],
                                                ["test_plain"]]

"""BaseFactory: the callpath a factory keeps and burns onto what it makes."""

import pytest

from pexen.factory import BaseFactory, get_callpath


def target():
    pass


def test_push_pop():
    f = BaseFactory()
    assert f.callpath == []
    f.callpath_push("pkg")
    f.callpath_push("mod")
    assert f.callpath == ["pkg", "mod"]
    f.callpath_pop()
    assert f.callpath == ["pkg"]
    f.callpath_pop()
    assert f.callpath == []


def test_instances_do_not_share_a_callpath():
    one, two = BaseFactory(), BaseFactory()
    one.callpath_push("x")
    assert two.callpath == []


def test_transfer_continues_from_the_parent_path():
    parent, sub = BaseFactory(), BaseFactory()
    parent.callpath_push("pkg")
    parent.callpath_transfer(sub)
    sub.callpath_burn(target, "func")
    assert get_callpath(target) == ["pkg", "func"]
    # The path is shared: what the sub-factory pushes, the parent sees, and
    # the other way round.
    sub.callpath_push("mod")
    assert parent.callpath == ["pkg", "mod"]
    parent.callpath_pop()
    parent.callpath_pop()
    assert sub.callpath == []


def test_burn_current_path():
    f = BaseFactory()
    f.callpath_push("a")
    f.callpath_push("b")
    f.callpath_burn(target)
    assert get_callpath(target) == ["a", "b"]


def test_burn_with_objname():
    f = BaseFactory()
    f.callpath_push("a")
    f.callpath_burn(target, "name")
    assert get_callpath(target) == ["a", "name"]
    assert f.callpath == ["a"]  # the name is not pushed


def test_burn_stores_a_copy_not_the_live_list():
    f = BaseFactory()
    f.callpath_push("a")
    f.callpath_burn(target)
    f.callpath_push("later")
    assert get_callpath(target) == ["a"]
    f.callpath_pop()
    f.callpath_pop()
    assert get_callpath(target) == ["a"]
    get_callpath(target).append("mutated")
    assert f.callpath == []


def test_burn_with_path_ignores_the_current_path():
    f = BaseFactory()
    f.callpath_push("ignored")
    given = ["x", "y"]
    f.callpath_burn(target, "name", path=given)
    assert get_callpath(target) == ["x", "y", "name"]
    assert given == ["x", "y"]  # not modified
    assert get_callpath(target) is not given
    f.callpath_burn(target, path=given)
    assert get_callpath(target) == ["x", "y"]
    assert get_callpath(target) is not given


def test_burn_with_empty_path_uses_the_current_path():
    # path=[] is the default of the 0.0.x signature: "no path given".
    f = BaseFactory()
    f.callpath_push("cur")
    f.callpath_burn(target, "name", path=[])
    assert get_callpath(target) == ["cur", "name"]


def test_get_callpath_without_one():
    def fresh():
        pass

    with pytest.raises(AttributeError):
        get_callpath(fresh)


def test_base_call_yields_nothing():
    f = BaseFactory()
    assert list(f()) == []
    assert list(f()) == []


def test_subclass_factory():
    class Numbers(BaseFactory):
        def __call__(self, count):
            self.callpath_push("numbers")
            try:
                for n in range(count):
                    def task(n=n):
                        return n
                    self.callpath_burn(task, f"n{n}")
                    yield task
            finally:
                self.callpath_pop()

    f = Numbers()
    tasks = list(f(3))
    assert [get_callpath(t) for t in tasks] == [["numbers", "n0"], ["numbers", "n1"],
                                               ["numbers", "n2"]]
    assert [t() for t in tasks] == [0, 1, 2]
    assert f.callpath == []
    assert [get_callpath(t) for t in f(1)] == [["numbers", "n0"]]

"""ModTreeFactory: the tasks of a package, its subpackages and modules."""

import importlib
import pickle
import sys

import pytest

from pexen.factory import ModTreeFactory, get_callpath

SAMPLE = "tests.factory.data.sample"

# Package first, then its modules and subpackages in name order.
EXPECTED = [
    ["pkg_task"],
    ["alpha", "task_a"],
    ["alpha", "task_kw"],
    ["sub", "sub_task"],
    ["sub", "beta", "task_b"],
]


def paths(tasks):
    return [get_callpath(t) for t in tasks]


def test_walks_package_and_subpackages(unimported):
    tasks = list(ModTreeFactory()(SAMPLE))
    assert paths(tasks) == EXPECTED
    assert [t.__module__ for t in tasks] == [
        SAMPLE, f"{SAMPLE}.alpha", f"{SAMPLE}.alpha", f"{SAMPLE}.sub",
        f"{SAMPLE}.sub.beta"]
    assert [t.__name__ for t in tasks] == ["pkg_task", "task_a", "task_kw",
                                           "sub_task", "task_b"]


def test_match(unimported):
    tasks = list(ModTreeFactory(match="test_*")(SAMPLE))
    assert paths(tasks) == [
        ["pkg_task"],
        ["alpha", "task_a"],
        ["alpha", "task_kw"],
        ["alpha", "test_plain"],
        ["sub", "sub_task"],
        ["sub", "beta", "task_b"],
        ["sub", "beta", "test_beta"],
    ]
    assert [t() for t in tasks if t.__name__.startswith("test_")] == ["plain", "beta"]


def test_accepts_a_module_object(unimported):
    pkg = importlib.import_module(SAMPLE)
    tasks = list(ModTreeFactory()(pkg))
    assert paths(tasks) == EXPECTED
    assert tasks[0] is pkg.pkg_task


def test_accepts_a_subpackage_as_start(unimported):
    tasks = list(ModTreeFactory()(f"{SAMPLE}.sub"))
    assert paths(tasks) == [["sub_task"], ["beta", "task_b"]]


def test_imports_under_full_dotted_names(unimported):
    assert f"{SAMPLE}.sub.beta" not in sys.modules
    tasks = list(ModTreeFactory()(SAMPLE))
    for name in (SAMPLE, f"{SAMPLE}.alpha", f"{SAMPLE}.sub", f"{SAMPLE}.sub.beta"):
        assert name in sys.modules
    for short in ("alpha", "sub", "beta", "sub.beta"):
        assert short not in sys.modules
    task_b = tasks[-1]
    assert sys.modules[f"{SAMPLE}.sub.beta"].task_b is task_b
    # Importing it the normal way gives the same module, not a second copy.
    from tests.factory.data.sample.sub import beta
    assert beta.task_b is task_b


def test_functions_pickle_by_reference(unimported):
    for task in ModTreeFactory()(SAMPLE):
        blob = pickle.dumps(task)
        assert task.__name__.encode() in blob
        assert pickle.loads(blob) is task


def test_plain_module_not_a_package(unimported):
    tasks = list(ModTreeFactory(match="test_*")(f"{SAMPLE}.alpha"))
    assert paths(tasks) == [["task_a"], ["task_kw"], ["test_plain"]]


def test_called_twice(unimported):
    f = ModTreeFactory()
    first = list(f(SAMPLE))
    second = list(f(SAMPLE))
    assert first == second  # the same function objects
    assert paths(second) == EXPECTED
    assert f.callpath == []


def test_current_path_is_a_prefix(unimported):
    f = ModTreeFactory()
    f.callpath_push("tests")
    assert paths(f(SAMPLE)) == [["tests"] + p for p in EXPECTED]
    assert f.callpath == ["tests"]


def test_abandoned_walk_restores_the_path(unimported):
    f = ModTreeFactory()
    gen = f(SAMPLE)
    for task in gen:
        if task.__name__ == "sub_task":
            break
    assert f.callpath == ["sub"]
    gen.close()
    assert f.callpath == []
    assert paths(f(SAMPLE)) == EXPECTED


def test_missing_module():
    with pytest.raises(ModuleNotFoundError):
        list(ModTreeFactory()("tests.factory.data.no_such_package"))

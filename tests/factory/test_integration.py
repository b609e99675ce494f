"""Factory output fed into Sched: keys from callpaths, runs on both pools."""

import subprocess
import types

import pytest

from pexen.factory import (
    BaseFactory,
    FilesystemFactory,
    ModTreeFactory,
    ModuleFactory,
    get_callpath,
)
from pexen.sched import ProcessWorkerPool, Sched, TaskKeyError, ThreadWorkerPool
from pexen.sched.meta import func_meta
from tests.factory.conftest import make_exec

pools = pytest.mark.parametrize("pool", [ThreadWorkerPool, ProcessWorkerPool],
                                ids=["thread", "process"])


def check_keys(sched, tasks):
    for task in tasks:
        assert sched.key_of(task) == "/".join(get_callpath(task))


@pools
def test_modtree_tasks_run(unimported, pool):
    tasks = list(ModTreeFactory(match="test_*")("tests.factory.data.sample"))
    s = Sched(tasks)
    check_keys(s, tasks)
    assert s.key_of(tasks[-1]) == "sub/beta/test_beta"
    results = list(s.run(pool(workers=2)))
    assert all(r.excinfo is None for r in results)
    by_key = {s.key_of(r.task): r.ret for r in results}
    assert by_key == {
        "pkg_task": "pkg",
        "alpha/task_a": "a",
        "alpha/task_kw": "hello",  # metadata kwargs reach the task
        "alpha/test_plain": "plain",
        "sub/sub_task": "sub",
        "sub/beta/task_b": "b",
        "sub/beta/test_beta": "beta",
    }
    # results carry the very task objects the factory made
    assert {id(r.task) for r in results} == {id(t) for t in tasks}


@pools
def test_filesystem_tasks_run(tmp_path, monkeypatch, pool):
    make_exec(tmp_path / "suite" / "ok", "echo fine")
    make_exec(tmp_path / "suite" / "sub" / "bad", "echo broken; exit 2")
    make_exec(tmp_path / "suite" / "sub" / "where", "pwd -P")
    monkeypatch.chdir(tmp_path)
    tasks = list(FilesystemFactory(stdout=subprocess.PIPE)("suite"))
    s = Sched(tasks)
    check_keys(s, tasks)
    results = {s.key_of(r.task): r for r in s.run(pool(workers=2))}
    assert sorted(results) == ["suite/ok", "suite/sub/bad", "suite/sub/where"]
    ok = results["suite/ok"]
    assert ok.excinfo is None
    assert isinstance(ok.ret, subprocess.CompletedProcess)
    assert ok.ret.stdout == b"fine\n"
    assert results["suite/sub/where"].ret.stdout.decode().strip() == str(
        (tmp_path / "suite" / "sub").resolve())
    bad = results["suite/sub/bad"]
    assert bad.ret is None
    assert bad.excinfo.type is subprocess.CalledProcessError
    assert bad.excinfo.val.returncode == 2


def test_same_callpath_different_tasks_is_an_error(unimported):
    from tests.factory.data.clash import one, two

    first = list(ModuleFactory()(one))
    second = list(ModuleFactory()(two))
    assert get_callpath(first[0]) == get_callpath(second[0]) == ["check"]
    with pytest.raises(TaskKeyError) as info:
        Sched(first + second)
    msg = str(info.value)
    assert "'check'" in msg
    assert "tests.factory.data.clash.one:check" in msg
    assert "tests.factory.data.clash.two:check" in msg
    # also when the second one comes in a later batch; the set stays as it was
    s = Sched(first)
    with pytest.raises(TaskKeyError, match="clash.two:check"):
        s.add_tasks(second)
    assert s.tasks == first
    assert [r.ret for r in s.run()] == ["one"]


def test_modtree_keeps_same_named_tasks_apart(unimported):
    tasks = list(ModTreeFactory()("tests.factory.data.clash"))
    s = Sched(tasks)
    assert sorted(s.key_of(t) for t in tasks) == ["one/check", "two/check"]
    assert sorted(r.ret for r in s.run()) == ["one", "two"]


def test_filesystem_factory_called_twice_makes_new_tasks(tmp_path):
    make_exec(tmp_path / "t" / "x")
    f = FilesystemFactory()
    first, second = list(f(str(tmp_path / "t"))), list(f(str(tmp_path / "t")))
    assert first[0] is not second[0]
    assert get_callpath(first[0]) == get_callpath(second[0])
    with pytest.raises(TaskKeyError):
        Sched(first + second)


def test_same_tasks_twice_is_not_an_error(unimported):
    f = ModTreeFactory()
    first = list(f("tests.factory.data.sample"))
    s = Sched(first)
    s.add_tasks(f("tests.factory.data.sample"))  # the same function objects
    assert s.tasks == first
    assert len(list(s.run())) == len(first)


def test_custom_factory(tmp_path):
    class Greetings(BaseFactory):
        def __call__(self, *names):
            self.callpath_push("greet")
            try:
                for name in names:
                    @func_meta(kwargs={"name": name})
                    def task(*, name):
                        return f"hello {name}"
                    self.callpath_burn(task, name)
                    yield task
            finally:
                self.callpath_pop()

    tasks = list(Greetings()("ann", "bob"))
    s = Sched(tasks)
    assert [s.key_of(t) for t in tasks] == ["greet/ann", "greet/bob"]
    results = {s.key_of(r.task): r.ret for r in s.run(ProcessWorkerPool())}
    assert results == {"greet/ann": "hello ann", "greet/bob": "hello bob"}


def test_callpath_wins_over_the_name():
    @func_meta
    def named():
        return 1

    @func_meta
    def unnamed():
        return 2

    mod = types.ModuleType("m")
    mod.other = named
    (task,) = ModuleFactory()(mod)
    s = Sched([task, unnamed])
    assert s.key_of(task) == "other"  # the name in the module, not __name__
    assert s.key_of(unnamed) == "unnamed"  # no factory: its __name__

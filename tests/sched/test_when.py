"""The `when` metadata field: a condition evaluated right before the task, in
its worker; a false one ends the task skipped, and its dependents with it."""

import os
import pickle
import warnings

import pytest

from pexen import sched
from pexen.sched import TaskFailError, TaskSkipError, meta
from pexen.sched._when import check_when, describe_when

from .helpers import Recorder, both_pools, make


def run(tasks, pool):
    rec = Recorder()
    s = sched.Sched(tasks, listeners=[rec])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = {r.task.__name__: r for r in s.run(pool())}
    return res, rec


def always():
    return True


def never():
    return 0


def broken():
    raise RuntimeError("cannot tell")


@both_pools()
def test_callable_conditions(pool):
    tasks = [make("yes", ret=1, when=always), make("no", ret=2, when=never),
             make("raises", ret=3, when=broken), make("plain", ret=4)]
    res, rec = run(tasks, pool)
    assert res["yes"].ret == 1 and res["yes"].excinfo is None
    assert res["plain"].ret == 4
    no = res["no"]
    assert no.ret is None and no.excinfo.type is TaskSkipError
    assert str(no.excinfo.val) == f"condition not met: {__name__}.never() returned 0"
    assert res["raises"].excinfo.type is RuntimeError
    assert "cannot tell" in res["raises"].excinfo.text
    outcomes = {e.key: e.outcome for e in rec.of("finished")}
    assert outcomes == {"yes": "pass", "no": "skip", "raises": "error", "plain": "pass"}
    # the condition ran in the task's worker, after it started
    assert rec.kinds("no") == ["queued", "started", "finished"]


@both_pools()
def test_command_conditions(pool, tmp_path):
    marker = tmp_path / "ran"
    tasks = [make("yes", ret=1, when=f"echo $$ > {marker}; test -d /"),
             make("no", ret=2, when="test -e /no/such/file"),
             make("killed", ret=3, when="kill -9 $$")]
    res, _ = run(tasks, pool)
    assert res["yes"].ret == 1
    assert int(marker.read_text()) != os.getpid()
    assert str(res["no"].excinfo.val) == \
        "condition not met: `test -e /no/such/file` exited 1"
    assert str(res["killed"].excinfo.val) == \
        "condition not met: `kill -9 $$` was killed by signal 9 (SIGKILL)"


@both_pools()
def test_dependents_of_a_skipped_task_are_skipped_and_its_locks_freed(pool):
    skipped = make("skipped", when=never, provides=["db"], claims=["disk"], priority=-1)
    child = make("child", requires=["db"])
    grandchild = make("grandchild", requires=["child-done"])
    meta.assign_val(child, provides=["child-done"])
    locker = make("locker", claims=["disk"])
    res, rec = run([skipped, child, grandchild, locker], pool)
    assert set(res) == {"skipped", "locker"}
    reasons = {e.key: e.reason for e in rec.of("skipped")}
    assert reasons["child"] == "dependency 'db' not met: its provider skipped was skipped"
    assert "its provider child was skipped" in reasons["grandchild"]


@both_pools()
def test_a_condition_may_skip_with_its_own_reason(pool):
    def no_gpu():
        raise TaskSkipError("no GPU here")

    res, rec = run([make("gpu", when=no_gpu)], pool)
    assert str(res["gpu"].excinfo.val) == "no GPU here"
    assert rec.of("finished")[0].outcome == "skip"


def test_kwargs_and_shared_are_not_passed_to_the_condition():
    seen = []

    def cond(*args, **kwargs):
        seen.append((args, kwargs))
        return True

    def task(shared, greeting):
        return greeting

    meta.assign_val(task, kwargs={"greeting": "hi"}, when=cond)
    res, _ = run([task], sched.ThreadWorkerPool)
    assert res["task"].ret == "hi" and seen == [((), {})]


def test_a_task_that_checks_its_own_condition_is_left_to_it():
    class Own:
        pexen_checks_when_ = True
        __name__ = "own"

        def __call__(self):
            return "mine"

    task = Own()
    meta.assign_val(task, when=never)
    res, _ = run([task], sched.ThreadWorkerPool)
    assert res["own"].ret == "mine"


def test_values_are_checked():
    def f():
        pass

    assert meta.get_when(f) is None
    meta.assign_val(f, when="true")
    assert meta.get_when(f) == "true"
    meta.assign_val(f, when=always)
    assert meta.get_when(f) is always
    meta.assign_val(f, when=None)
    assert meta.get_when(f) is None
    with pytest.raises(TypeError, match="cannot be used for when"):
        meta.assign_val(f, when=True)
    with pytest.raises(TypeError, match="cannot be used for when"):
        meta.assign_val(f, when=b"true")
    with pytest.raises(ValueError, match="not an empty string"):
        meta.assign_val(f, when="  ")


def test_a_bad_value_set_around_the_checks_names_the_task():
    task = make("bad")
    m = meta.assign_meta(task)
    object.__setattr__(m, "when", 42)  # bypassing the check at set time
    with pytest.raises(TypeError, match=r"task \S*bad: <class 'int'> cannot be used for when"):
        sched.Sched([task])


def test_skip_error_is_a_controlled_failure_that_pickles():
    exc = TaskSkipError("why")
    assert isinstance(exc, TaskFailError)
    assert (exc.deps_ok, exc.locks_ok) == (False, True)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is TaskSkipError and str(back) == "why"
    assert (back.deps_ok, back.locks_ok) == (False, True)


def test_describe_when():
    assert describe_when(None) is None
    assert describe_when("uname -s") == "uname -s"
    assert describe_when(always) == f"{__name__}.always()"
    assert describe_when(TestHolder.method) == f"{__name__}.TestHolder.method()"


class TestHolder:
    @staticmethod
    def method():
        return True


def test_check_when_directly(tmp_path):
    check_when(None)
    check_when(always)
    out = tmp_path / "out"
    with open(out, "w") as f:
        check_when("pwd; echo $X; read line || echo no-stdin", cwd=str(tmp_path),
                   env={"X": "from-env", "PATH": os.environ["PATH"]}, stdout=f.fileno())
    assert out.read_text().split() == [str(tmp_path), "from-env", "no-stdin"]
    with pytest.raises(TaskSkipError, match="`exit 3` exited 3"):
        check_when("exit 3")
    with pytest.raises(TaskSkipError, match=r"\.\.\.` exited 1$"):
        check_when(": " + "x" * 300 + "; false")

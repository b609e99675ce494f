"""Failures: what a failed task does to its dependents and its locks."""

import warnings

import pytest

from pexen import sched, util
from pexen.sched import TaskFailError, task_fail_wrap

from .helpers import Recorder, both_pools, make


def run(tasks, pool, **kw):
    rec = Recorder()
    s = sched.Sched(tasks, listeners=[rec])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = list(s.run(pool(**kw)))
    return res, rec, [str(w.message) for w in caught if w.category is util.PexenWarning]


@both_pools()
@pytest.mark.parametrize("deps_ok", [True, False])
@pytest.mark.parametrize("locks_ok", [True, False])
def test_taskfailerror_combinations(pool, deps_ok, locks_ok):
    failing = make("failing", exc=TaskFailError("no", deps_ok=deps_ok, locks_ok=locks_ok),
                   provides=["dep"], claims=["res"], priority=-1)
    child = make("child", requires=["dep"])
    locker = make("locker", claims=["res"])
    res, rec, warns = run([failing, child, locker], pool)
    ran = {r.task for r in res}
    assert failing in ran
    assert (child in ran) is deps_ok
    assert (locker in ran) is locks_ok
    val = next(r for r in res if r.task is failing).excinfo.val
    assert (val.deps_ok, val.locks_ok) == (deps_ok, locks_ok)
    assert rec.kinds("failing") == ["queued", "started", "finished"]
    assert rec.of("finished")[0].outcome == "fail"
    if not deps_ok:
        (skip,) = [e for e in rec.of("skipped") if e.key == "child"]
        assert "dependency 'dep' not met: its provider failing failed" == skip.reason
        assert any("1 tasks skipped due to unmet deps" in w for w in warns)
    if not locks_ok:
        (skip,) = [e for e in rec.of("skipped") if e.key == "locker"]
        assert "lock 'res' still held by failing" in skip.reason
        assert any("1 locks still held at exit" in w for w in warns)
    if deps_ok and locks_ok:
        assert warns == []


@both_pools()
def test_locks_ok_releases_and_waiters_start(pool):
    """The 0.0.x bug: waiters on a lock freed by a controlled failure could
    wait forever. Here many waiters of both kinds all run."""
    failing = make("failing", exc=TaskFailError("x", deps_ok=False, locks_ok=True),
                   claims=["db"], priority=-10)
    claimers = [make(f"c{i}", claims=["db"]) for i in range(5)]
    users = [make(f"u{i}", uses=["db"]) for i in range(5)]
    res, rec, warns = run([failing, *claimers, *users], pool, workers=3)
    assert len(res) == 11
    assert rec.of("skipped") == []
    assert warns == []


@both_pools()
def test_uncontrolled_failure_keeps_locks_and_skips_dependents(pool):
    bad = make("bad", exc=NameError("x"), provides=["dep"], claims=["res"], priority=-1)
    child = make("child", requires=["dep"], provides=["grand"])
    grandchild = make("grandchild", requires=["grand"])
    waiter = make("waiter", claims=["res"])
    bystander = make("bystander")
    res, rec, warns = run([bad, child, grandchild, waiter, bystander], pool)
    assert {r.task for r in res} == {bad, bystander}
    reasons = {e.key: e.reason for e in rec.of("skipped")}
    assert reasons["child"] == "dependency 'dep' not met: its provider bad failed"
    assert reasons["grandchild"] == ("dependency 'grand' not met: its provider child "
                                     "was skipped")
    assert reasons["waiter"].startswith("lock 'res' still held by bad")
    assert any("2 tasks skipped due to unmet deps" in w for w in warns)
    assert any("1 locks still held at exit" in w for w in warns)
    assert rec.of("finished")[0].outcome in ("error", "pass")


@both_pools()
def test_other_provider_can_still_satisfy(pool):
    bad = make("bad", exc=NameError("x"), provides=["dep"], priority=-1)
    good = make("good", provides=["dep"], priority=5)
    child = make("child", requires=["dep"])
    res, rec, warns = run([bad, good, child], pool, workers=1, spare=0)
    assert [r.task for r in res] == [bad, good, child]
    assert warns == []


@both_pools()
def test_task_fail_wrap(pool):
    class MyError(TaskFailError):
        pass

    @task_fail_wrap
    def plain():
        raise KeyError("k")

    @task_fail_wrap(deps_ok=False)
    def nodeps(shared):
        raise OSError("o")

    @task_fail_wrap(reraise=MyError)
    def mine(**kw):
        raise ValueError(kw["v"])

    @task_fail_wrap
    def fine():
        return 5

    sched.meta.assign_val(nodeps, provides=["n"])
    sched.meta.assign_val(mine, kwargs={"v": "value"})
    child = make("child", requires=["n"])
    res, rec, warns = run([plain, nodeps, mine, fine, child], pool)
    by = {r.task: r for r in res}
    assert by[plain].excinfo.type is TaskFailError
    assert "KeyError" in str(by[plain].excinfo.val)
    assert by[nodeps].excinfo.val.deps_ok is False
    if pool is sched.ThreadWorkerPool:
        assert by[mine].excinfo.type is MyError
    else:  # a local class cannot be pickled: a TaskFailError stands in for it
        assert by[mine].excinfo.type is TaskFailError
        assert "MyError" in str(by[mine].excinfo.val)
    assert "value" in str(by[mine].excinfo.val)
    assert by[fine].ret == 5
    assert child not in by


def test_task_fail_wrap_rejects_a_non_taskfailerror():
    with pytest.raises(TypeError, match="reraise"):
        task_fail_wrap(reraise=ValueError)


def test_unmet_at_end_with_assertions_off_is_skipped(monkeypatch):
    """With python -O there is no check at add time; the task is skipped at
    the end with the reason, not lost."""
    a = make("a", requires=["ghost"])
    monkeypatch.setattr(sched.Sched, "_depcheck", lambda self, *batch: None)
    rec = Recorder()
    s = sched.Sched([a], listeners=[rec])
    with pytest.warns(util.PexenWarning, match="1 tasks skipped"):
        assert list(s.run()) == []
    (skip,) = rec.of("skipped")
    assert skip.key == "a" and "'ghost'" in skip.reason

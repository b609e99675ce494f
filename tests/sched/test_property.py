"""Property test of the planner: random DAGs with random locks, priorities
and outcomes. Checks, from a log the tasks write as they run:

- every task runs at most once;
- never before its requirements were met by a provider that ended well;
- never while a conflicting lock is held;
- every task that did not run was reported skipped with a reason that holds
  (an unmet dependency, or a lock still held at the end by a failed task),
  and every task ran or was skipped, exactly once.

The same suites split into exclusivity groups (requires pointing to the same
group or an earlier one, each group a thread pool of its own size) keep those
invariants, and no task starts while a task of another group runs or after a
task of a later group started.
"""

import random
import threading
import time
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pexen import PexenWarning, sched
from pexen.sched import TaskFailError
from pexen.sched.meta import assign_val

LOCKS = ["L0", "L1", "L2"]
OUTCOMES = ["pass", "pass", "pass", "error", "fail-deps-locks", "fail-deps",
            "fail-locks", "fail-none"]


@st.composite
def suites(draw):
    n = draw(st.integers(1, 14))
    specs = []
    for i in range(n):
        earlier = [f"p{j}" for j in range(i)]
        requires = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) \
            if earlier else []
        provides = [f"p{i}"] if draw(st.booleans()) or i < n - 1 else []
        locks = draw(st.lists(st.sampled_from(LOCKS), max_size=2, unique=True))
        split = draw(st.integers(0, len(locks)))
        specs.append({
            "requires": requires,
            "provides": provides,
            "claims": locks[:split],
            "uses": locks[split:],
            "priority": draw(st.integers(-3, 3)),
            "outcome": draw(st.sampled_from(OUTCOMES)),
        })
    # drop requires nobody provides (a provider without 'provides')
    provided = {p for s in specs for p in s["provides"]}
    for s in specs:
        s["requires"] = [r for r in s["requires"] if r in provided]
    workers = draw(st.integers(1, 4))
    return specs, workers


def build(specs, log, log_lock):
    tasks = []
    for i, spec in enumerate(specs):
        def task(*, i=i, outcome=spec["outcome"]):
            with log_lock:
                log.append(("start", i))
            time.sleep(random.random() / 2000)
            with log_lock:
                log.append(("end", i))
            if outcome == "error":
                raise RuntimeError("uncontrolled")
            if outcome.startswith("fail"):
                raise TaskFailError(outcome, deps_ok="deps" in outcome,
                                    locks_ok="locks" in outcome)
        task.__name__ = f"t{i}"
        assign_val(task, requires=spec["requires"], provides=spec["provides"],
                   claims=spec["claims"], uses=spec["uses"], priority=spec["priority"])
        tasks.append(task)
    return tasks


def deps_ok(outcome):
    return outcome == "pass" or (outcome.startswith("fail") and "deps" in outcome)


def locks_ok(outcome):
    return outcome == "pass" or (outcome.startswith("fail") and "locks" in outcome)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(suites())
def test_random_suites(suite):
    specs, workers = suite
    log, log_lock = [], threading.Lock()
    events = []
    tasks = build(specs, log, log_lock)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PexenWarning)
        s = sched.Sched(tasks, listeners=[events.append])
        results = list(s.run(sched.ThreadWorkerPool(workers=workers)))
    check(specs, tasks, log, results, events)


@st.composite
def grouped_suites(draw):
    """A suite, and the group of each task: groups follow the task order (so
    requires, which point to earlier tasks, point to the same group or an
    earlier one), each with a thread pool of 1 to 3 workers."""
    specs, _ = draw(suites())
    n = len(specs)
    count = draw(st.integers(1, min(4, n)))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), min_size=count - 1,
                                max_size=count - 1, unique=True))) if n > 1 else []
    group_of = [sum(1 for c in cuts if c <= i) for i in range(n)]
    sizes = [draw(st.integers(1, 3)) for _ in range(len(cuts) + 1)]
    return specs, group_of, sizes


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(grouped_suites())
def test_random_suites_in_groups(suite):
    specs, group_of, sizes = suite
    log, log_lock = [], threading.Lock()
    events = []
    tasks = build(specs, log, log_lock)
    groups = [sched.TaskGroup(f"g{g}", [t for t, tg in zip(tasks, group_of) if tg == g],
                              workers=workers)
              for g, workers in enumerate(sizes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PexenWarning)
        s = sched.Sched(groups, listeners=[events.append])
        results = list(s.run())
    check(specs, tasks, log, results, events)

    # group order: a start never overlaps another group's task, nor comes
    # after a later group's start
    running, latest = set(), 0
    for kind, i in log:
        g = group_of[i]
        if kind == "start":
            assert g >= latest, f"t{i} of g{g} started after a task of g{latest}"
            assert all(group_of[j] == g for j in running), \
                f"t{i} of g{g} started while {sorted(running)} ran"
            latest = g
            running.add(i)
        else:
            running.discard(i)
    # and the events: each task's events between its group's two group events
    where = {}
    for n, ev in enumerate(events):
        if ev.kind.value.startswith("group_"):
            where.setdefault(ev.key, []).append(n)
    assert list(where) == [f"g{g}" for g in range(len(sizes))]
    for n, ev in enumerate(events):
        if not ev.kind.value.startswith("group_") and ev.kind.value != "skipped":
            lo, hi = where[f"g{group_of[int(ev.key[1:])]}"]
            assert lo < n < hi, f"{ev.kind.value} of {ev.key} outside its group"


def check(specs, tasks, log, results, events):
    """The invariants of the module docstring, from the log and the events."""
    index = {t: i for i, t in enumerate(tasks)}
    ran = [index[r.task] for r in results]
    assert len(ran) == len(set(ran)), "a task ran twice"
    starts = [i for kind, i in log if kind == "start"]
    assert sorted(starts) == sorted(ran)

    # replay the log
    ended_well = set()     # provides satisfied so far
    excl, shared = {}, {}
    position = {}
    for pos, (kind, i) in enumerate(log):
        spec = specs[i]
        if kind == "start":
            position[i] = pos
            for r in spec["requires"]:
                assert r in ended_well, f"t{i} started before {r} was provided"
            for c in spec["claims"]:
                assert c not in excl and not shared.get(c), f"t{i} claimed held {c}"
                excl[c] = i
            for u in spec["uses"]:
                assert u not in excl, f"t{i} used {u}, claimed by t{excl.get(u)}"
                shared[u] = shared.get(u, 0) + 1
        else:
            if locks_ok(spec["outcome"]):
                for c in spec["claims"]:
                    del excl[c]
                for u in spec["uses"]:
                    shared[u] -= 1
            if deps_ok(spec["outcome"]):
                ended_well.update(spec["provides"])

    # every task: exactly one finished or skipped event
    final = {}
    for ev in events:
        if ev.kind.value.startswith("group_"):
            continue
        if ev.kind.value in ("finished", "skipped"):
            assert ev.key not in final, f"{ev.key} ended twice"
            final[ev.key] = ev
    assert set(final) == {f"t{i}" for i in range(len(specs))}

    held_at_end = {lock for lock, n in shared.items() if n} | set(excl)
    for i, spec in enumerate(specs):
        if i in ran:
            assert final[f"t{i}"].kind.value == "finished"
            continue
        ev = final[f"t{i}"]
        assert ev.kind.value == "skipped" and ev.reason
        unmet = [r for r in spec["requires"] if r not in ended_well]
        blocked = [lk for lk in spec["claims"] + spec["uses"] if lk in held_at_end]
        assert unmet or blocked, f"t{i} did not run, yet could have: {ev.reason}"

"""The plan hands out ready tasks in (priority, insertion order), whichever
way they became ready (at once, through a dependency, woken from a lock)."""

import random

import pytest

from pexen.sched import TaskRes
from pexen.sched._plan import READY, Plan
from pexen.sched.meta import assign_val


def _suite(rng, n):
    tasks = []
    for i in range(n):
        def task():
            return None

        task.__name__ = f"t{i}"
        earlier = [f"p{j}" for j in range(i)]
        assign_val(task, priority=rng.choice([0, 0, 0, 1, -1, 2.5]),
                   provides=[f"p{i}"],
                   requires=rng.sample(earlier, min(len(earlier), rng.randint(0, 2))),
                   claims=rng.sample(["L0", "L1"], rng.randint(0, 1)))
        tasks.append(task)
    return tasks


@pytest.mark.parametrize("seed", range(30))
def test_ready_tasks_go_in_priority_then_insertion_order(seed):
    rng = random.Random(seed)
    tasks = _suite(rng, rng.randint(1, 60))
    plan = Plan({})
    assert plan.add((t, t.__name__) for t in tasks) == []
    running = []
    order = []
    while True:
        while not running or rng.random() < 0.7:
            ready = [node for node in plan.nodes.values() if plan.state[node] == READY]
            node = plan.pop_dispatchable()
            if node is None:
                break
            # the first ready one in (priority, insertion order) that can take
            # its locks
            assert node in ready
            takeable = [r for r in ready if r == node or not any(
                c in plan.excl for c in plan.claims[r])]
            assert (plan.prio[node], node) == min((plan.prio[r], r) for r in takeable)
            running.append(node)
            order.append(plan.key[node])
        if not running:
            if plan.unstick():
                continue
            break
        node = running.pop(rng.randrange(len(running)))
        plan.finish(TaskRes(plan.task[node]))
    assert sorted(order) == sorted(t.__name__ for t in tasks)
    assert plan.nodes == {}

"""Task makers and pool parametrisation shared by the engine tests."""

import functools

import pytest

from pexen.sched import ProcessWorkerPool, ThreadWorkerPool

POOLS = (ThreadWorkerPool, ProcessWorkerPool)
both_pools = functools.partial(pytest.mark.parametrize, "pool", POOLS,
                               ids=["thread", "process"])


def make(name, ret=None, exc=None, **meta):
    """A distinct no-argument task named `name` returning `ret` or raising `exc`."""
    from pexen.sched.meta import assign_val

    def task():
        if exc is not None:
            raise exc
        return ret

    task.__name__ = task.__qualname__ = name
    if meta:
        assign_val(task, **meta)
    return task


def make_shared(name, **meta):
    """A task that records its name in the shared dict and returns a copy of it."""
    from pexen.sched.meta import assign_val

    def task(shared):
        seen = dict(shared)
        shared[name] = True
        return seen

    task.__name__ = task.__qualname__ = name
    if meta:
        assign_val(task, **meta)
    return task


class Recorder:
    """A listener that records every event."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def kinds(self, key):
        return [e.kind.value for e in self.events if e.key == key]

    def of(self, kind):
        return [e for e in self.events if e.kind.value == kind]

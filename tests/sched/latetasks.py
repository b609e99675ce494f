"""Module-level tasks (picklable by reference) for the on-the-fly tests."""

import os

from pexen.sched.meta import func_meta

# Set by the test before the run: the Sched a task adds to.
SCHED = []


@func_meta(provides=["late-dep"])
def late_provider():
    return "provider"


@func_meta(requires=["late-dep"])
def late_child(shared):
    return ("child", os.getpid())


def late_plain():
    return "plain"


def adder():
    SCHED[0].add_tasks([late_plain])
    return "added"


def adder_of_unpicklable():
    def local():
        pass

    SCHED[0].add_tasks([local])


def adder_of_unmet():
    SCHED[0].add_tasks([late_needs_ghost])


@func_meta(requires=["ghost"])
def late_needs_ghost():
    pass


@func_meta(provides=["inventory"])
def inventory(shared):
    shared["hosts"] = ["alpha", "beta"]


@func_meta(requires=["inventory"])
def reads_inventory(shared):
    return list(shared["hosts"])


def _sleeper(n):
    def sleeper():
        import time

        time.sleep(0.2)
        return n
    return sleeper


# Five distinct module-level tasks (picklable by name): added to a run late.
for _n in range(5):
    globals()[f"sleeper{_n}"] = _s = _sleeper(_n)
    _s.__name__ = _s.__qualname__ = f"sleeper{_n}"
SLEEPERS = [globals()[f"sleeper{_n}"] for _n in range(5)]

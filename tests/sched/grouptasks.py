"""Module-level tasks (picklable by reference) for the exclusivity group tests."""

import os

from pexen.sched import TaskGroup

# Set by the test before the run: the Sched a task adds to.
SCHED = []


def late_plain():
    return ("late_plain", os.getpid())


def late_in_b():
    return ("late_in_b", os.getpid())


def late_grouped():
    return ("late_grouped", os.getpid())


def adder():
    """Adds a plain task (it joins the running group), one to group 'B', and
    a new group 'late'."""
    SCHED[0].add_tasks([late_plain])
    SCHED[0].add_tasks([late_in_b], group="B")
    SCHED[0].add_tasks([TaskGroup("late", [late_grouped], pool="process")])
    return "added"

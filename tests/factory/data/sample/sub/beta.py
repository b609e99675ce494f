"""A module inside the subpackage."""

from pexen.sched.meta import func_meta


@func_meta
def task_b():
    return "b"


def test_beta():
    return "beta"

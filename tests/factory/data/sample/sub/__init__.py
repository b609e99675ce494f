"""A subpackage with a task of its own."""

from pexen.sched.meta import func_meta


@func_meta
def sub_task():
    return "sub"

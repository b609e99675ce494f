"""A module with tasks (metadata), a matchable function and non-tasks."""

from pexen.sched.meta import func_meta


@func_meta
def task_a():
    return "a"


@func_meta(kwargs={"word": "hello"})
def task_kw(*, word):
    return word


def test_plain():
    return "plain"


def helper():
    return "helper"


NOT_A_TASK = 42

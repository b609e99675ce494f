"""One vocabulary of task states and outcomes, and the one table of moves.

Non-terminal: pending -> queued -> running, plus `rebooting` (the task asked
for a reboot) and `interrupted` (it was running when the controller died).
Terminal outcomes, worst last: pass < warn < skip < fail < timeout < error.
Nothing assigns a state but `advance()`.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Dict, FrozenSet


class TaskState(str, enum.Enum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    REBOOTING = "rebooting"
    INTERRUPTED = "interrupted"
    PASS = "pass"
    WARN = "warn"
    SKIP = "skip"
    FAIL = "fail"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    def __str__(self) -> str:
        return self.value


TERMINAL: FrozenSet[TaskState] = frozenset({
    TaskState.PASS, TaskState.WARN, TaskState.SKIP, TaskState.FAIL,
    TaskState.TIMEOUT, TaskState.ERROR})

# Worst last: the final outcome of a task with several results is the worst.
SEVERITY: Dict[TaskState, int] = {
    TaskState.PASS: 0, TaskState.WARN: 1, TaskState.SKIP: 2, TaskState.FAIL: 3,
    TaskState.TIMEOUT: 4, TaskState.ERROR: 5}

_S = TaskState
TRANSITIONS: Dict[TaskState, FrozenSet[TaskState]] = {
    _S.PENDING: frozenset({_S.QUEUED, _S.SKIP, _S.ERROR, _S.INTERRUPTED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.SKIP, _S.ERROR, _S.INTERRUPTED, _S.PENDING}
                         | TERMINAL),
    _S.RUNNING: frozenset({_S.REBOOTING, _S.INTERRUPTED} | TERMINAL),
    _S.REBOOTING: frozenset({_S.QUEUED, _S.PENDING, _S.INTERRUPTED} | TERMINAL),
    # (interrupted -> rebooting: it had asked for a reboot when it was cut short)
    _S.INTERRUPTED: frozenset({_S.PENDING, _S.QUEUED, _S.REBOOTING} | TERMINAL),
}
for _t in TERMINAL:
    TRANSITIONS[_t] = frozenset()


class IllegalTransition(ValueError):
    """A state change the table does not allow (a bug in pexen)."""


def advance(current: TaskState, new: TaskState, key: str = "?") -> TaskState:
    """Return `new` if moving there from `current` is allowed, else raise."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"task {key}: {current.value} -> {new.value} is not an allowed move "
            "(this is a bug in pexen)")
    return new


def worst(a: TaskState, b: TaskState) -> TaskState:
    """The worse of two outcomes."""
    return a if SEVERITY[a] >= SEVERITY[b] else b

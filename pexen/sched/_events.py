"""Lifecycle events the engine sends to its listeners.

A listener is any callable taking one `TaskEvent`. The journal, the watchdog
and the progress display are listeners. `queued`, `finished` and `skipped` are
sent from the thread iterating `Sched.run()`; `started` is sent by the pool as
soon as a worker picks the task up, from a pool thread, so a listener must be
quick and thread-safe (hand the event to a queue, say).

A Sched with exclusivity groups also sends `group_started` and
`group_finished` (key: the group's name, task: the `TaskGroup`); a listener
that only knows task events should ignore kinds it does not know.
"""

from __future__ import annotations

import enum
import time
from collections import abc, namedtuple

from .common import TaskRes, TaskSkipError, is_controlled_fail

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Optional


class EventKind(str, enum.Enum):
    QUEUED = "queued"      # handed to the pool, waiting for a worker
    STARTED = "started"    # a worker (pid) runs it
    FINISHED = "finished"  # it ran; `result` and `outcome` say how
    SKIPPED = "skipped"    # it will not run; `reason` says why
    # Exclusivity groups (only a Sched that has groups sends these): `key` is
    # the group's name, `task` the TaskGroup.
    GROUP_STARTED = "group_started"    # before its pool is made
    GROUP_FINISHED = "group_finished"  # its tasks ended, its pool is gone


_EventFields = namedtuple("_EventFields", "kind key task at pid result outcome reason")
_now = time.time


class TaskEvent(_EventFields):
    """One lifecycle event of one task (or of one group: see EventKind):
    `kind`, `key`, `task` (a callable, or a TaskGroup), `at` (time.time() when
    made, unless given), `pid`, `result`, `outcome`, `reason`.

    Immutable (a named tuple: several are made per task, so they are cheap to
    make). Two events are equal when all but their `task` and `result` are."""

    __slots__ = ()

    def __new__(cls, kind: EventKind, key: str, task: Any, at: Optional[float] = None,
                pid: Optional[int] = None, result: Optional[TaskRes] = None,
                outcome: Optional[str] = None, reason: Optional[str] = None) -> TaskEvent:
        return tuple.__new__(cls, (kind, key, task, _now() if at is None else at, pid,
                                   result, outcome, reason))

    def _compared(self) -> tuple:
        return (self[0], self[1], self[3], self[4], self[6], self[7])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskEvent):
            return NotImplemented
        return self._compared() == other._compared()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        return (f"TaskEvent(kind={self.kind!r}, key={self.key!r}, at={self.at!r}, "
                f"pid={self.pid!r}, outcome={self.outcome!r}, reason={self.reason!r})")

    def to_json(self) -> Dict[str, Any]:
        """The event as plain JSON values (the task and its result objects left out)."""
        out: Dict[str, Any] = {"kind": self.kind.value, "key": self.key, "at": self.at}
        for name in ("pid", "outcome", "reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


#: What a listener is: called with each event (collections.abc's Callable:
#: typing is not loaded at run time).
Listener = abc.Callable[[TaskEvent], None]


def outcome_of(res: TaskRes) -> str:
    """'pass', 'skip' (a TaskSkipError: its `when` condition was false, say),
    'fail' (another controlled TaskFailError) or 'error' (anything else)."""
    excinfo = res.excinfo
    if excinfo is None:
        return "pass"
    if not is_controlled_fail(excinfo):
        return "error"
    return "skip" if issubclass(excinfo.type, TaskSkipError) else "fail"

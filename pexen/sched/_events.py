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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from .common import TaskRes, TaskSkipError, is_controlled_fail


class EventKind(str, enum.Enum):
    QUEUED = "queued"      # handed to the pool, waiting for a worker
    STARTED = "started"    # a worker (pid) runs it
    FINISHED = "finished"  # it ran; `result` and `outcome` say how
    SKIPPED = "skipped"    # it will not run; `reason` says why
    # Exclusivity groups (only a Sched that has groups sends these): `key` is
    # the group's name, `task` the TaskGroup.
    GROUP_STARTED = "group_started"    # before its pool is made
    GROUP_FINISHED = "group_finished"  # its tasks ended, its pool is gone


@dataclass(frozen=True)
class TaskEvent:
    """One lifecycle event of one task (or of one group: see EventKind)."""

    kind: EventKind
    key: str
    task: Any = field(repr=False, compare=False)  # a callable, or a TaskGroup
    at: float = field(default_factory=time.time)
    pid: Optional[int] = None
    result: Optional[TaskRes] = field(default=None, repr=False, compare=False)
    outcome: Optional[str] = None
    reason: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The event as plain JSON values (the task and its result objects left out)."""
        out: Dict[str, Any] = {"kind": self.kind.value, "key": self.key, "at": self.at}
        for name in ("pid", "outcome", "reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


Listener = Callable[[TaskEvent], None]


def outcome_of(res: TaskRes) -> str:
    """'pass', 'skip' (a TaskSkipError: its `when` condition was false, say),
    'fail' (another controlled TaskFailError) or 'error' (anything else)."""
    excinfo = res.excinfo
    if excinfo is None:
        return "pass"
    if not is_controlled_fail(excinfo):
        return "error"
    return "skip" if issubclass(excinfo.type, TaskSkipError) else "fail"

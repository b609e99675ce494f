"""Outcomes other than pass and fail, raised by a task (or its wrapper)."""

from __future__ import annotations

from ..sched.common import TaskFailError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any

from ._words import OUTCOMES  # noqa: E402  (here as it always was)


class TaskOutcome(TaskFailError):
    """End the task with `outcome` ('skip', 'fail', 'error', ...) and a message.

    Its dependents run only for 'warn'; its locks are released (the task
    ended cleanly, whatever it found).
    """

    def __init__(self, outcome: str, message: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        self.outcome = outcome
        super().__init__(message, deps_ok=outcome in ("pass", "warn"), locks_ok=True)

    def __reduce__(self) -> Any:
        return (type(self), (self.outcome, str(self)))


# The Automake convention for executables.
EXIT_SKIP = 77
EXIT_ERROR = 99

"""Small things the light verbs share (`pexen-harness report` and the
restraint and tmt commands run once per reported result): nothing here
imports the engine or the journal."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Optional

#: A task's outcomes, from the best to the worst.
OUTCOMES = ("pass", "warn", "skip", "fail", "timeout", "error")


def storable(text: Optional[str]) -> Optional[str]:
    """`text` as UTF-8 can hold it: a lone surrogate (from a task's message,
    or bytes decoded with surrogateescape) becomes a backslash escape."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def exc_summary(exc: BaseException) -> str:
    """'Type: first line of the message' of an exception."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # a broken __str__
        lines = []
    first = lines[0].strip() if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

"""The journal's errors. Each message names the file and says what to do.

    PexenError
     +-- JournalError                 a journal cannot be used (exit 3)
          +-- JournalLocationError    missing directory, read-only, not there (exit 4)
          +-- NotAJournalError        another file, or another SQLite database
          +-- JournalCorruptError     truncated or damaged
          +-- JournalTooNewError      written by a newer pexen
"""

from __future__ import annotations

from ..util import PexenError


class JournalError(PexenError):
    """A journal cannot be used as asked."""


class JournalLocationError(JournalError):
    """The journal's path cannot be used (a usage error)."""


class NotAJournalError(JournalError):
    """The file exists and is not a pexen journal; it is left untouched."""


class JournalCorruptError(JournalError):
    """The journal file is damaged; it is left untouched."""


class JournalTooNewError(JournalError):
    """The journal was written by a newer pexen; it is left untouched."""


def write_failed(where: str, error: BaseException) -> JournalError:
    """The error of a journal at `where` that could not be written: one line,
    naming a full disk as such (SQLite says "database or disk is full")."""
    text = str(error)
    if text.startswith(f"{where}: "):   # (said once is enough)
        text = text[len(where) + 2:]
    if ("database or disk is full" in text or "No space left" in text) and \
            "no space left" not in text:
        text = f"no space left on its disk ({text})"
    return JournalError(f"{where}: writing failed: {text}")


__all__ = ["JournalCorruptError", "JournalError", "JournalLocationError",
           "JournalTooNewError", "NotAJournalError", "write_failed"]

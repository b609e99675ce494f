"""The durable store: every task state transition of every run.

    journal = pexen.journal.open("pexen-journal.sqlite")
    for run in journal.runs(): ...

SQLite by default (one file, WAL, synchronous=FULL, mode 0600), schema
through Alembic migrations (opening upgrades it), values as JSON, never
pickle. See doc/journal.md.

Importing this loads the standard library's `sqlite3` and nothing of
SQLAlchemy or Alembic: `models` (the SQLAlchemy tables) is imported when
it is first used, and the migrations only to upgrade an old journal.
"""

from __future__ import annotations

from . import states
from ._store import EventInfo, Journal, ResultInfo, RunInfo, open_journal, task_meta
from ._values import to_json_value
from .errors import (
    JournalCorruptError,
    JournalError,
    JournalLocationError,
    JournalTooNewError,
    NotAJournalError,
)
from .states import TaskState

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any

open = open_journal  # noqa: A001  (pexen.journal.open(...), as the docs say)


# Imported on first use: `models` loads SQLAlchemy (a third of a second),
# which no everyday path of the journal needs; the writer (threads, pipes, a
# process) is needed by `start` and `resume`, not by the verbs that read.
_LAZY = {"models": ("models", None), "JournalWriter": ("_writer", "JournalWriter"),
         "Transition": ("_transition", "Transition")}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    value = importlib.import_module(f"{__name__}.{module}")
    return value if attr is None else getattr(value, attr)


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "EventInfo",
    "Journal",
    "JournalCorruptError",
    "JournalError",
    "JournalLocationError",
    "JournalTooNewError",
    "JournalWriter",
    "NotAJournalError",
    "ResultInfo",
    "RunInfo",
    "TaskState",
    "Transition",
    "models",
    "open",
    "open_journal",
    "states",
    "task_meta",
    "to_json_value",
]

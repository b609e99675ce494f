"""The durable store: every task state transition of every run.

    journal = pexen.journal.open("pexen-journal.sqlite")
    for run in journal.runs(): ...

SQLite by default (one file, WAL, synchronous=FULL, mode 0600), schema
through Alembic migrations (opening upgrades it), values as JSON, never
pickle. See doc/journal.md.
"""

from . import models, states
from ._store import EventInfo, Journal, ResultInfo, RunInfo, open_journal, task_meta
from ._values import to_json_value
from ._writer import JournalWriter, Transition
from .errors import (
    JournalCorruptError,
    JournalError,
    JournalLocationError,
    JournalTooNewError,
    NotAJournalError,
)
from .states import TaskState

open = open_journal  # noqa: A001  (pexen.journal.open(...), as the docs say)

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

"""The journal's tables (SQLAlchemy 2.x models).

The schema is created and changed only by the Alembic migrations in
`migrations/` (shipped as `pexen.migrations`); these classes describe it to
the code. `events` is append-only history; `tasks` is its projection, updated
in the same transaction as the events that change it.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One run of a suite: what it was, who drives it, how it ended."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[Optional[float]] = mapped_column(Float)
    # running | interrupted | finished
    state: Mapped[str] = mapped_column(String(16))
    suite: Mapped[str] = mapped_column(Text)          # JSON: how to rebuild the tasks
    config: Mapped[str] = mapped_column(Text)         # JSON: options of start
    host: Mapped[str] = mapped_column(String(255))
    boot_id: Mapped[str] = mapped_column(String(64))
    controller_pid: Mapped[Optional[int]] = mapped_column(Integer)
    controller_started: Mapped[Optional[float]] = mapped_column(Float)
    heartbeat_at: Mapped[Optional[float]] = mapped_column(Float)
    exit_code: Mapped[Optional[int]] = mapped_column(Integer)


class Task(Base):
    """The current state of one task of a run (a projection of its events)."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reboot_count: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[Optional[float]] = mapped_column(Float)
    started_at: Mapped[Optional[float]] = mapped_column(Float)
    finished_at: Mapped[Optional[float]] = mapped_column(Float)
    time_used: Mapped[float] = mapped_column(Float, default=0.0)
    pid: Mapped[Optional[int]] = mapped_column(Integer)
    pid_started: Mapped[Optional[float]] = mapped_column(Float)
    boot_id: Mapped[Optional[str]] = mapped_column(String(64))
    token: Mapped[Optional[str]] = mapped_column(String(64))
    ret: Mapped[Optional[str]] = mapped_column(Text)              # JSON
    ret_restorable: Mapped[Optional[bool]] = mapped_column(Boolean)
    shared: Mapped[Optional[str]] = mapped_column(Text)           # JSON
    shared_restorable: Mapped[Optional[bool]] = mapped_column(Boolean)
    exc_type: Mapped[Optional[str]] = mapped_column(String(255))
    exc_text: Mapped[Optional[str]] = mapped_column(Text)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    meta: Mapped[Optional[str]] = mapped_column(Text)             # JSON
    # written by the task itself when it asks for a reboot (migration 0003)
    reboot_requested_at: Mapped[Optional[float]] = mapped_column(Float)
    reboot_boot_id: Mapped[Optional[str]] = mapped_column(String(64))
    # unplanned reboots the task was run again after (migration 0004)
    interrupt_count: Mapped[int] = mapped_column(Integer, default=0)
    # crashes of its controller it was handed out in, not started, while
    # another task ran: not charged as attempts (migration 0005)
    spared_count: Mapped[int] = mapped_column(Integer, default=0)


class Event(Base):
    """One state transition (append-only)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[Optional[str]] = mapped_column(Text)   # None: an event of the run
    from_state: Mapped[Optional[str]] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    detail: Mapped[Optional[str]] = mapped_column(Text)  # JSON


class Result(Base):
    """A result a task reported besides its own (migration 0002)."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_run_id_key", "run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    message: Mapped[Optional[str]] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


runs = Run.__table__
tasks = Task.__table__
events = Event.__table__
results = Result.__table__

"""Opening a journal: refuse what is not ours, upgrade what is, create with 0600."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Optional

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import (
    JournalCorruptError,
    JournalError,
    JournalLocationError,
    JournalTooNewError,
    NotAJournalError,
)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000


def _script_location() -> str:
    import pexen.migrations

    return os.path.dirname(os.path.abspath(pexen.migrations.__file__))


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.attributes["connection"] = connection
    return cfg


def _known_revisions() -> tuple:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(_script_location())
    return {rev.revision for rev in script.walk_revisions()}, script.get_current_head()


def sqlite_engine(path: str, *, immediate: bool) -> Engine:
    """An engine on a SQLite file: WAL, synchronous=FULL, a busy timeout.

    Transactions begin IMMEDIATE when `immediate` (a writer takes the write
    lock up front, so it never fails upgrading a read lock mid-transaction);
    readers begin DEFERRED.
    """
    engine = create_engine(f"sqlite:///{path}",
                           connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                         "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we say BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def check_file(path: str, create: bool) -> bool:
    """Check the journal's location and file; create it (0600) if asked.

    Returns True if the file was created.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise JournalLocationError(f"journal directory {directory} does not exist")
    if os.path.isdir(path):
        raise JournalLocationError(f"journal path {path} is a directory")
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise JournalLocationError(f"cannot read the journal {path}: "
                                       f"{exc.strerror}") from None
        if head and head != SQLITE_MAGIC:
            raise NotAJournalError(f"{path} is not a pexen journal (not an SQLite "
                                   "database); refusing to touch it")
        if not os.access(path, os.W_OK) or not os.access(directory, os.W_OK):
            raise JournalLocationError(f"journal {path} is read-only (the file or its "
                                       "directory cannot be written)")
        return False
    if not create:
        raise JournalLocationError(f"no journal at {path}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise JournalLocationError(f"cannot create the journal {path}: "
                                   f"{exc.strerror}") from None
    os.close(fd)
    return True


def inspect_file(path: str) -> None:
    """Look at an existing SQLite file without changing a byte of it (the
    engine would switch it to WAL): refuse a foreign, newer or damaged one."""
    if os.path.getsize(path) == 0:
        return
    known, _ = _known_revisions()
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise corrupt_or_io(exc, path) from None
    try:
        tables = {row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        current = None
        if "alembic_version" in tables:
            current = con.execute("SELECT version_num FROM alembic_version").fetchone()
            current = current[0] if current else None
        if current is not None and current not in known:
            raise JournalTooNewError(f"{path} was written by a newer pexen (schema "
                                     f"{current}); upgrade pexen to read it")
        if tables and (current is None or not {"runs", "tasks", "events"} <= tables):
            raise NotAJournalError(f"{path} is an SQLite database but not a pexen "
                                   "journal; refusing to touch it")
        con.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        raise corrupt_or_io(exc, path) from None
    finally:
        con.close()


def migrate(engine: Engine, where: str) -> Optional[str]:
    """Upgrade the journal to the newest schema; refuse a foreign or newer one.

    Returns the revision it is at.
    """
    from alembic import command

    known, head = _known_revisions()
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            current = None
            if "alembic_version" in tables:
                current = conn.execute(text("SELECT version_num FROM alembic_version")
                                       ).scalar()
            if tables and (current is None or not {"runs", "tasks", "events"} <= tables):
                if current is not None and current not in known:
                    raise JournalTooNewError(
                        f"{where} was written by a newer pexen (schema {current}); "
                        "upgrade pexen to read it")
                raise NotAJournalError(f"{where} is an SQLite database but not a pexen "
                                       "journal; refusing to touch it")
            if current is not None and current not in known:
                raise JournalTooNewError(f"{where} was written by a newer pexen (schema "
                                         f"{current}); upgrade pexen to read it")
            if current != head:
                command.upgrade(_alembic_config(conn), "head")
            return head
    except JournalError:
        raise
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        raise corrupt_or_io(exc, where) from None


def corrupt_or_io(exc: BaseException, where: str) -> JournalError:
    """Turn a database error into the journal error a user can act on."""
    orig = getattr(exc, "orig", exc)
    msg = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
    lowered = msg.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return JournalCorruptError(f"{where} is corrupt ({msg}); it was left as it is")
    if "readonly" in lowered or "read-only" in lowered:
        return JournalLocationError(f"journal {where} is read-only ({msg})")
    if isinstance(exc, OperationalError) and "locked" in lowered:
        return JournalError(f"journal {where} is locked by another process ({msg})")
    return JournalError(f"journal {where}: {msg}")

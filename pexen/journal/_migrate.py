"""Upgrading a journal through Alembic: the one module that loads SQLAlchemy
and Alembic, and only when a journal is not at head (or is at a URL).

A journal file at head is opened with `sqlite3` alone (`_open`), and a new
one is given the head schema as `_schema` holds it; this runs the
migrations of `migrations/` (shipped as `pexen.migrations`) on an older
journal, in one transaction, with the same refusals as `_open`.
"""

from __future__ import annotations

import os
import sqlite3

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ._db import BUSY_TIMEOUT_MS
from ._open import corrupt_or_io, refuse
from .errors import JournalError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Optional, Set, Tuple


#: The advisory lock (PostgreSQL) held while a journal's schema is looked at
#: and upgraded: b"pexen-jr" as a number.
_LOCK_KEY = int.from_bytes(b"pexen-jr", "big") - (1 << 63)


def script_location() -> str:
    import pexen.migrations

    return os.path.dirname(os.path.abspath(pexen.migrations.__file__))


def alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.attributes["connection"] = connection
    return cfg


def known_revisions() -> Tuple[Set[str], Optional[str]]:
    """The revisions of the migrations Alembic finds, and its head."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(script_location())
    return {rev.revision for rev in script.walk_revisions()}, script.get_current_head()


def sqlite_engine(path: str) -> Engine:
    """An engine on a SQLite file as the journal's connections are (WAL,
    synchronous=FULL, a busy timeout), its transactions begun IMMEDIATE."""
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
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade_file(path: str, where: str) -> None:
    """Upgrade the journal file at `path` to head (Alembic)."""
    engine = sqlite_engine(path)
    try:
        upgrade(engine, where)
    finally:
        engine.dispose()


def upgrade(engine: Engine, where: str) -> Optional[str]:
    """Upgrade the journal on `engine` to the newest schema; refuse a foreign
    or newer one. Returns the revision it is at."""
    from alembic import command

    known, head = known_revisions()
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Controllers of a lab starting at once on a new database:
                # one makes the schema, the others then find it at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            tables = set(inspect(conn).get_table_names())
            current = None
            if "alembic_version" in tables:
                current = conn.execute(text("SELECT version_num FROM alembic_version")
                                       ).scalar()
            refuse(where, tables, current, known,
                   "an SQLite database" if conn.dialect.name == "sqlite" else
                   f"a {conn.dialect.name} database")
            if current != head:
                command.upgrade(alembic_config(conn), "head")
            return head
    except JournalError:
        raise
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        raise corrupt_or_io(exc, where) from None

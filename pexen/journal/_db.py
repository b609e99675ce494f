"""Where the journal's connections come from: the one place that knows the driver.

Everything else in `pexen.journal` speaks plain DB-API 2 with SQL text,
written with ``?`` placeholders and portable SQL; a `Database` turns the
placeholders into its driver's paramstyle, opens connections, and says how
a transaction begins and ends.

- `SqliteDatabase`: a journal file, through the standard library's
  `sqlite3` (WAL, synchronous=FULL, a busy timeout; writing transactions
  begin IMMEDIATE). What `status`, `start` and every everyday path use: no
  SQLAlchemy, no Alembic.
- `UrlDatabase`: any other SQLAlchemy URL, through the driver connections
  of an SQLAlchemy engine (SQLAlchemy is loaded for it, and only for it).
  A later, direct driver (psycopg) would be one more class here.
"""

from __future__ import annotations

import re
import sqlite3
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, List, Optional, Sequence, Tuple, Type

#: How long a connection waits for another's lock before giving up.
BUSY_TIMEOUT_MS = 30_000

_QMARK = re.compile(r"\?")

#: The PostgreSQL advisory lock a writing transaction holds (b"pexen-wr").
WRITE_LOCK_KEY = int.from_bytes(b"pexen-wr", "big") - (1 << 63)


class Database:
    """DB-API connections to one journal, and the driver's ways."""

    #: "sqlite", "postgresql", ...: for the few statements that differ
    dialect = "sqlite"
    #: the driver's DB-API paramstyle ("qmark", "format", "pyformat", "numeric")
    paramstyle = "qmark"
    #: the driver's exceptions (all of them: a DB-API ``Error``)
    errors: Tuple[Type[BaseException], ...] = (sqlite3.Error,)
    #: the SQLite file, when it is one (the writer's process opens it itself)
    path: Optional[str] = None

    def __init__(self) -> None:
        self._idle: List[Any] = []
        self._lock = threading.Lock()
        self._sql: dict = {}

    def connect(self) -> Any:
        """A new connection (in autocommit mode where the driver has one)."""
        raise NotImplementedError

    def begin(self, cur: Any, write: bool) -> None:
        """Begin a transaction on `cur` (`write`: one that will write)."""

    def commit(self, con: Any) -> None:
        con.commit()

    def rollback(self, con: Any) -> None:
        con.rollback()

    def sql(self, text: str) -> str:
        """`text`, written with ``?`` placeholders, in the driver's paramstyle."""
        done = self._sql.get(text)
        if done is None:
            if self.paramstyle == "qmark":
                done = text
            elif self.paramstyle in ("format", "pyformat"):
                done = _QMARK.sub("%s", text.replace("%", "%%"))
            elif self.paramstyle == "numeric":
                count = iter(range(1, 1 << 30))
                done = _QMARK.sub(lambda _: f":{next(count)}", text)
            else:
                raise ValueError(f"paramstyle {self.paramstyle!r} is not supported")
            self._sql[text] = done
        return done

    def insert(self, cur: Any, text: str, params: Sequence[Any]) -> int:
        """Run an INSERT of one row; the new row's id."""
        cur.execute(self.sql(text + " RETURNING id"), params)
        return int(cur.fetchone()[0])

    # -- a pool of idle connections (a Journal is used from several threads) --

    def take(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def give(self, con: Any) -> None:
        with self._lock:
            self._idle.append(con)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for con in idle:
            try:
                con.close()
            except Exception:  # noqa: S110  (closing: nothing left to do with it)
                pass


class SqliteDatabase(Database):
    """A journal file through `sqlite3`."""

    def __init__(self, path: str, busy_ms: int = BUSY_TIMEOUT_MS) -> None:
        super().__init__()
        self.path: str = path   # (never None here)
        self.busy_ms = busy_ms

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.busy_ms / 1000, isolation_level=None,
                              check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_ms)}")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            con.close()
            raise
        return con

    def begin(self, cur: Any, write: bool) -> None:
        # IMMEDIATE: a writer takes the write lock up front, so it never
        # fails upgrading a read lock half-way; a reader begins deferred
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def commit(self, con: Any) -> None:
        if con.in_transaction:
            con.execute("COMMIT")

    def rollback(self, con: Any) -> None:
        if con.in_transaction:
            con.execute("ROLLBACK")

    def insert(self, cur: Any, text: str, params: Sequence[Any]) -> int:
        cur.execute(text, params)
        return int(cur.lastrowid)


class UrlDatabase(Database):
    """A journal at an SQLAlchemy URL: the driver connections of its engine."""

    def __init__(self, url: str) -> None:
        super().__init__()
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from ._open import shown
        from .errors import JournalLocationError

        try:
            self.engine = create_engine(url)
        except NoSuchModuleError:
            raise JournalLocationError(
                f"journal {shown(url)}: no database of that kind is known (a "
                "PostgreSQL journal is postgresql+psycopg://USER@HOST/DB)") from None
        except (ArgumentError, ValueError) as exc:
            raise JournalLocationError(f"journal {shown(url)}: not a database URL "
                                       f"({exc})") from None
        except ImportError as exc:
            extra = " (pip install 'pexen[postgres]')" if "psycopg" in str(exc) else ""
            raise JournalLocationError(
                f"journal {shown(url)}: its driver is not installed: "
                f"{getattr(exc, 'name', None) or exc}{extra}") from None
        dialect = self.engine.dialect
        self.dialect = dialect.name
        self.paramstyle = dialect.paramstyle
        dbapi = getattr(dialect, "dbapi", None) or getattr(dialect, "loaded_dbapi", None)
        self.errors = (dbapi.Error,) if dbapi is not None else (Exception,)
        if self.dialect == "sqlite":
            self.path = None   # (the writer commits in its thread)

    def connect(self) -> Any:
        # (the pool's proxy of a driver connection: closing it gives it back)
        return self.engine.raw_connection()

    def begin(self, cur: Any, write: bool) -> None:
        if write and self.dialect == "postgresql":
            # Writing transactions one at a time, as on SQLite (BEGIN
            # IMMEDIATE): what one reads before it writes (who controls a
            # run, in claim_run and the survivors' records) stays so until it
            # commits. The lock ends with the transaction.
            cur.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    def insert(self, cur: Any, text: str, params: Sequence[Any]) -> int:
        if self.dialect == "sqlite":
            cur.execute(self.sql(text), params)
            return int(cur.lastrowid)
        return super().insert(cur, text, params)

    def close(self) -> None:
        super().close()
        self.engine.dispose()

"""Opening a journal: refuse what is not ours, bring what is to head, create
with 0600.

Only the standard library: a journal file at head (every journal but a new
or an old one) is opened with `sqlite3` alone. A new (empty) file is given
the head schema from `_schema`; an older journal is upgraded by Alembic
(`_migrate`, which loads SQLAlchemy and Alembic for it).
"""

from __future__ import annotations

import os
import sqlite3

from . import _schema
from ._db import BUSY_TIMEOUT_MS, Database
from .errors import (
    JournalCorruptError,
    JournalError,
    JournalLocationError,
    JournalTooNewError,
    NotAJournalError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Collection, Optional

SQLITE_MAGIC = b"SQLite format 3\x00"
HEAD = _schema.HEAD
_OURS = frozenset({"runs", "tasks", "events"})

__all__ = ["BUSY_TIMEOUT_MS", "HEAD", "bring_to_head", "check_file", "corrupt_or_io",
           "inspect_file", "refuse", "shown"]


def shown(where: str) -> str:
    """`where` as messages show it: a URL's password replaced by ``***`` (a
    console log is no place for it; libpq also reads it from ~/.pgpass or
    PGPASSWORD, see doc/lab.md)."""
    if "://" not in where:
        return where
    scheme, _, rest = where.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return where
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


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


def refuse(where: str, tables: Collection[str], current: Optional[str],
           known: Collection[str] = _schema.REVISIONS,
           what: str = "an SQLite database") -> None:
    """Raise if a database with `tables`, at schema revision `current`, is not
    a journal this pexen may use: one from a newer pexen, another program's."""
    if current is not None and current not in known:
        raise JournalTooNewError(f"{where} was written by a newer pexen (schema "
                                 f"{current}); upgrade pexen to read it")
    if tables and (current is None or not _OURS <= set(tables)):
        raise NotAJournalError(f"{where} is {what} but not a pexen journal; "
                               "refusing to touch it")


def _revision(cur: Any) -> tuple:
    """(the tables, the schema revision or None) of the database of `cur`."""
    tables = {row[0] for row in cur.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    current = None
    if "alembic_version" in tables:
        row = cur.execute("SELECT version_num FROM alembic_version").fetchone()
        current = row[0] if row else None
    return tables, current


def inspect_file(path: str) -> None:
    """Look at an existing SQLite file without changing a byte of it (opening
    it for writing would switch it to WAL): refuse a foreign, newer or
    damaged one."""
    if os.path.getsize(path) == 0:
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise corrupt_or_io(exc, path) from None
    try:
        refuse(path, *_revision(con))
        if not _whole_by_its_header(path):
            # (the header does not say how long the file is: read it all)
            con.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        raise corrupt_or_io(exc, path) from None
    finally:
        con.close()


def _whole_by_its_header(path: str) -> bool:
    """Whether the file is as long as its header says (True), or the header
    does not say (False); JournalCorruptError if it is shorter: truncated.

    Not PRAGMA quick_check, which reads the whole file: every verb opens the
    journal, and an executable's `pexen-harness report` too, and a journal
    of 100k tasks is tens of megabytes. A page damaged in place is found when
    it is read (SQLite checks each page it reads), and a transaction that
    meets one is rolled back: nothing is written over it."""
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100:
        raise JournalCorruptError(f"{path} is corrupt (shorter than an SQLite header); "
                                  "it was left as it is")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    changes, pages, valid_for = (int.from_bytes(head[n:n + 4], "big") for n in (24, 28, 92))
    if pages == 0 or valid_for != changes:
        return False
    if os.path.getsize(path) < pages * page_size:
        try:
            wal = os.path.getsize(path + "-wal")
        except OSError:
            wal = 0
        if wal:
            # A checkpoint cut short (its disk filled, say) may leave the
            # header counting pages the write-ahead log still holds: SQLite
            # finishes it from there. (A page it cannot find is still found
            # when read.)
            return True
        raise JournalCorruptError(f"{path} is corrupt (database disk image is malformed: "
                                  f"shorter than the {pages} pages its header counts); "
                                  "it was left as it is")
    return True


def bring_to_head(db: Database, where: str) -> None:
    """Make the journal file of `db` one at head: nothing to do for one at
    head (a read); a new one gets the head schema (one transaction); an
    older one is upgraded by Alembic. Refuse a foreign or newer one."""
    con = db.take()
    try:
        cur = con.cursor()
        try:
            db.begin(cur, write=False)
            tables, current = _revision(cur)
            db.commit(con)
            refuse(where, tables, current)
            if current == HEAD:
                return
            # Take the write lock, and look again: another process may have
            # made it a journal (or upgraded it) meanwhile.
            db.begin(cur, write=True)
            tables, current = _revision(cur)
            refuse(where, tables, current)
            if not tables:
                for statement in _schema.SQLITE_SCHEMA:
                    cur.execute(statement)
                cur.execute(_schema.SQLITE_HEAD_ROW, (HEAD,))
            db.commit(con)
        except sqlite3.Error as exc:
            db.rollback(con)
            raise corrupt_or_io(exc, where) from None
        except BaseException:
            db.rollback(con)
            raise
        finally:
            cur.close()
    finally:
        db.give(con)
    if tables and current != HEAD:
        from . import _migrate

        _migrate.upgrade_file(db.path or where, where)


def corrupt_or_io(exc: BaseException, where: str) -> JournalError:
    """Turn a database error into the journal error a user can act on."""
    orig = getattr(exc, "orig", exc)
    msg = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
    lowered = msg.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return JournalCorruptError(f"{where} is corrupt ({msg}); it was left as it is")
    if "readonly" in lowered or "read-only" in lowered:
        return JournalLocationError(f"journal {where} is read-only ({msg})")
    if "locked" in lowered and type(orig).__name__ == "OperationalError":
        return JournalError(f"journal {where} is locked by another process ({msg})")
    return JournalError(f"journal {where}: {msg}")

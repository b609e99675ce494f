"""The journal: open it, create runs, read runs, tasks and events back.

Plain DB-API with SQL text (``?`` placeholders, portable SQL), through the
connections of a `Database` (`_db`): on a SQLite file nothing here loads
SQLAlchemy.
"""

from __future__ import annotations

import json
import time
from collections import namedtuple
from contextlib import contextmanager

from ..util import Record
from . import _open
from ._db import Database, SqliteDatabase, UrlDatabase
from .errors import JournalError
from .states import TERMINAL

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import (
        Any,
        Callable,
        Dict,
        Iterable,
        Iterator,
        List,
        Optional,
        Sequence,
        Tuple,
    )

    from ._writer import JournalWriter


class RunInfo(Record, frozen=True):
    """One run as the journal has it."""

    id: int
    created_at: float
    finished_at: Optional[float]
    state: str
    suite: Dict[str, Any]
    config: Dict[str, Any]
    host: str
    boot_id: str
    controller_pid: Optional[int]
    controller_started: Optional[float]
    heartbeat_at: Optional[float]
    exit_code: Optional[int]


class EventInfo(Record, frozen=True):
    """One transition as the journal has it."""

    id: int
    run_id: int
    key: Optional[str]
    from_state: Optional[str]
    to_state: str
    at: float
    detail: Optional[Dict[str, Any]]


class ResultInfo(Record, frozen=True):
    """A result a task reported (`pexen.report`), as the journal has it."""

    key: str
    attempt: int
    name: str
    outcome: str
    message: Optional[str]
    at: float


class ResumeRow(namedtuple("ResumeRow", (
        "key", "id", "state", "attempt", "reason", "pid", "pid_started", "token",
        "time_used", "shared", "shared_restorable", "started_at"),
        defaults=(None, None, None, None, None, None, None, None))):
    """A task as resume sees it (a row of `resume_rows` with its extras):
    key (str), id (int), state (str), attempt (int), and, None where the
    journal has none: reason (str), pid (int), pid_started (float), token
    (str), time_used (float), shared (str), shared_restorable (bool),
    started_at (float)."""

    __slots__ = ()


_ENDED = "(" + ", ".join(f"'{s.value}'" for s in sorted(TERMINAL)) + ")"
_EXTRAS_SQL = (
    "SELECT key, reason, pid, pid_started, token, time_used, shared, shared_restorable, "
    "started_at "
    "FROM tasks WHERE run_id = ? AND ("
    "state IN ('queued', 'running', 'rebooting', 'interrupted') "
    f"OR (state NOT IN {_ENDED} AND time_used <> 0) "
    "OR (state IN ('pass', 'warn') AND shared_restorable AND shared IS NOT NULL "
    "AND shared <> '{}'))")


RUN_COLUMNS = ("id", "created_at", "finished_at", "state", "suite", "config", "host",
               "boot_id", "controller_pid", "controller_started", "heartbeat_at",
               "exit_code")
#: The columns of `tasks`, in the order the table has them.
TASK_COLUMNS = ("id", "run_id", "key", "state", "attempt", "reboot_count", "queued_at",
                "started_at", "finished_at", "time_used", "pid", "pid_started", "boot_id",
                "token", "ret", "ret_restorable", "shared", "shared_restorable", "exc_type",
                "exc_text", "reason", "meta", "reboot_requested_at", "reboot_boot_id",
                "interrupt_count", "spared_count")
EVENT_COLUMNS = ("id", "run_id", "key", "from_state", "to_state", "at", "detail")

_RUNS_SQL = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_TASKS_SQL = f"SELECT {', '.join(TASK_COLUMNS)} FROM tasks WHERE run_id = ? ORDER BY id"
_EVENTS_SQL = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE run_id = ?"
_INSERT_EVENT = ("INSERT INTO events (run_id, key, from_state, to_state, at, detail) "
                 "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_TASK = ("INSERT INTO tasks (run_id, key, state, attempt, reboot_count, time_used, "
                "meta) VALUES (?, ?, 'pending', 0, 0, 0.0, ?)")
#: Keys looked up by one statement (SQLite allowed 999 parameters before 3.32).
_KEYS_PER_STATEMENT = 500

#: A row of `tasks`, with attribute access (`t.key`, `t.state`, ...).
TaskRow = namedtuple("TaskRow", TASK_COLUMNS)  # type: ignore[misc]
_RESTORABLE = (TASK_COLUMNS.index("ret_restorable"), TASK_COLUMNS.index("shared_restorable"))


def _run_info(row: Sequence[Any]) -> RunInfo:
    (id_, created_at, finished_at, state, suite, config, host, boot, pid, started,
     heartbeat, exit_code) = row
    return RunInfo(id_, created_at, finished_at, state, json.loads(suite), json.loads(config),
                   host, boot, pid, started, heartbeat, exit_code)


def _task_row(row: Sequence[Any]) -> Any:
    values = list(row)
    for i in _RESTORABLE:   # stored as 0/1: read back as the booleans written
        if values[i] is not None:
            values[i] = bool(values[i])
    return TaskRow._make(values)


def _event_info(r: Sequence[Any]) -> EventInfo:
    return EventInfo(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None)


class Journal:
    """An open journal (use `pexen.journal.open`)."""

    def __init__(self, where: str, db: Database) -> None:
        self.where = where
        self.db = db   # where the connections come from (see _db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Any]:
        """A cursor in a transaction: committed at the end (a writing one
        began IMMEDIATE on SQLite), rolled back on an error; database errors
        become the journal errors a user can act on."""
        db = self.db
        con = db.take()
        try:
            cur = con.cursor()
            try:
                db.begin(cur, write)
                yield _Cursor(cur, db)
                db.commit(con)
            except BaseException as exc:
                try:
                    db.rollback(con)
                except db.errors:
                    pass
                if isinstance(exc, db.errors):
                    raise _open.corrupt_or_io(exc, self.where) from None
                raise
            finally:
                cur.close()
        finally:
            db.give(con)

    # -- runs ------------------------------------------------------------------

    def create_run(self, suite: Dict[str, Any], config: Dict[str, Any],
                   tasks: Sequence[Tuple[str, Dict[str, Any]]], *, host: str,
                   boot_id: str, controller_pid: int, controller_started: float) -> int:
        """Create a run with its tasks (all `pending`), in one transaction."""
        now = time.time()
        with self._transaction(write=True) as cur:
            run_id = cur.insert(
                "INSERT INTO runs (created_at, state, suite, config, host, boot_id, "
                "controller_pid, controller_started, heartbeat_at) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (now, json.dumps(suite), json.dumps(config), host, boot_id, controller_pid,
                 controller_started, now))
            if tasks:
                # a tuple per row: a run may have a hundred thousand tasks
                cur.executemany(_INSERT_TASK, [(run_id, key, _meta_json(meta))
                                               for key, meta in tasks])
            cur.execute(_INSERT_EVENT, (run_id, None, None, "running", now,
                                        json.dumps({"tasks": len(tasks),
                                                    "pid": controller_pid})))
        return int(run_id)

    def add_tasks(self, run_id: int, tasks: Sequence[Tuple[str, Dict[str, Any]]]
                  ) -> Dict[str, int]:
        """Add task rows (pending) to a run; returns their ids."""
        keys = [k for k, _ in tasks]
        ids: Dict[str, int] = {}
        with self._transaction(write=True) as cur:
            cur.executemany(_INSERT_TASK, [(run_id, key, _meta_json(meta))
                                           for key, meta in tasks])
            for i in range(0, len(keys), _KEYS_PER_STATEMENT):
                part = keys[i:i + _KEYS_PER_STATEMENT]
                cur.execute("SELECT key, id FROM tasks WHERE run_id = ? AND key IN ("
                            + ", ".join("?" * len(part)) + ")", (run_id, *part))
                ids.update(cur.fetchall())
        return ids

    def claim_run(self, run_id: int, *, is_alive: Callable[[RunInfo], bool],
                  pid: int, pid_started: float, boot_id: str,
                  config: Optional[Dict[str, Any]] = None) -> RunInfo:
        """Make this process the run's controller, atomically; refuse (and
        return the run as found) if its controller is alive."""
        with self._transaction(write=True) as cur:
            cur.execute(_RUNS_SQL + " WHERE id = ?", (run_id,))
            row = cur.fetchone()
            if row is None:
                raise JournalError(f"{self.where} has no run {run_id}")
            run = _run_info(row)
            if is_alive(run):
                return run
            sets = ("controller_pid = ?, controller_started = ?, boot_id = ?, "
                    "state = 'running', heartbeat_at = ?, finished_at = NULL, "
                    "exit_code = NULL")
            values: List[Any] = [pid, pid_started, boot_id, time.time()]
            if config:
                sets += ", config = ?"
                values.append(json.dumps(config))
            cur.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values, run_id))
            cur.execute(_INSERT_EVENT, (run_id, None, run.state, "running", time.time(),
                                        json.dumps({"resumed_by": pid})))
        return run

    def finish_survivor(self, run_id: int, key: str, attempt: int, token: str,
                        to_state: str, at: float, fields: Dict[str, Any], used: float,
                        started: float, detail: Optional[Dict[str, Any]], *,
                        is_alive: Callable[[RunInfo], bool]) -> bool:
        """Record the finish of attempt `attempt` (token `token`) of task
        `key`, from the process that saw it end after the run's controller
        died: only while no controller has claimed the run since, and the
        task's row is still that attempt, queued or running. `fields`: task
        columns to set; `used`: seconds added to its time used. Whether it
        was recorded (atomically with the checks)."""
        with self._transaction(write=True) as cur:
            cur.execute(_RUNS_SQL + " WHERE id = ?", (run_id,))
            row = cur.fetchone()
            if row is None:
                return False
            run = _run_info(row)
            if run.state == "finished" or is_alive(run):
                return False
            cur.execute("SELECT id, state FROM tasks WHERE run_id = ? AND key = ? AND "
                        "attempt = ? AND token = ?", (run_id, key, attempt, token))
            task = cur.fetchone()
            if task is None or task[1] not in ("queued", "running"):
                return False
            sets = "".join(f", {column} = ?" for column in fields)
            cur.execute(f"UPDATE tasks SET state = ?{sets}, time_used = time_used + ?, "
                        "started_at = COALESCE(started_at, ?) WHERE id = ?",
                        (to_state, *fields.values(), used, started, task[0]))
            cur.execute(_INSERT_EVENT, (run_id, key, task[1], to_state, at,
                                        json.dumps(detail) if detail else None))
        return True

    def interrupt_live(self, run_id: int, pid: int, reason: str,
                       detail: Optional[Dict[str, Any]] = None) -> List[str]:
        """Mark the run's queued and running tasks `interrupted` with `reason`,
        and the run `interrupted` (exit code 3), in one transaction, without a
        writer (its writer failed): only while process `pid` is the run's
        controller. The keys marked."""
        now = time.time()
        with self._transaction(write=True) as cur:
            cur.execute("SELECT controller_pid, state FROM runs WHERE id = ?", (run_id,))
            row = cur.fetchone()
            if row is None or row[0] != pid or row[1] == "finished":
                return []
            cur.execute("SELECT id, key, state FROM tasks WHERE run_id = ? AND state IN "
                        "('queued', 'running') ORDER BY id", (run_id,))
            live = [tuple(r) for r in cur.fetchall()]
            text = json.dumps(detail) if detail else None
            for task_id, key, state in live:
                cur.execute("UPDATE tasks SET state = 'interrupted', reason = ? WHERE id = ?",
                            (reason, task_id))
                cur.execute(_INSERT_EVENT, (run_id, key, state, "interrupted", now, text))
            cur.execute("UPDATE runs SET state = 'interrupted', exit_code = 3 WHERE id = ?",
                        (run_id,))
            cur.execute(_INSERT_EVENT, (run_id, None, row[1], "interrupted", now, text))
        return [key for _, key, _ in live]

    def runs(self) -> List[RunInfo]:
        with self._transaction() as cur:
            cur.execute(_RUNS_SQL + " ORDER BY id")
            rows = cur.fetchall()
        return [_run_info(r) for r in rows]

    def run(self, run_id: int) -> RunInfo:
        with self._transaction() as cur:
            cur.execute(_RUNS_SQL + " WHERE id = ?", (run_id,))
            row = cur.fetchone()
        if row is None:
            raise JournalError(f"{self.where} has no run {run_id}")
        return _run_info(row)

    def newest_unfinished(self) -> Optional[RunInfo]:
        with self._transaction() as cur:
            cur.execute(_RUNS_SQL + " WHERE state <> 'finished' ORDER BY id DESC LIMIT 1")
            row = cur.fetchone()
        return _run_info(row) if row is not None else None

    def newest(self) -> Optional[RunInfo]:
        with self._transaction() as cur:
            cur.execute(_RUNS_SQL + " ORDER BY id DESC LIMIT 1")
            row = cur.fetchone()
        return _run_info(row) if row is not None else None

    # -- tasks and events ----------------------------------------------------

    def tasks(self, run_id: int) -> List[Any]:
        """The task rows of a run (attribute access: .key, .state, ...), by id."""
        with self._transaction() as cur:
            cur.execute(_TASKS_SQL, (run_id,))
            return [_task_row(r) for r in cur.fetchall()]

    def counts(self, run_id: int) -> Dict[str, int]:
        """How many tasks of the run are in each state."""
        with self._transaction() as cur:
            cur.execute("SELECT state, count(*) FROM tasks WHERE run_id = ? GROUP BY state",
                        (run_id,))
            return {state: n for state, n in cur.fetchall()}

    def events(self, run_id: int, after: int = 0, limit: Optional[int] = None
               ) -> List[EventInfo]:
        """The run's events with an id above `after`, oldest first."""
        sql = _EVENTS_SQL + " AND id > ? ORDER BY id"
        params: Tuple[Any, ...] = (run_id, after)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        with self._transaction() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        return [_event_info(r) for r in rows]

    def add_result(self, run_id: int, key: str, attempt: int, name: str, outcome: str,
                   message: Optional[str] = None) -> None:
        """Record a result task `key` reported in its attempt `attempt`
        (committed before this returns; the controller is not involved)."""
        with self._transaction(write=True) as cur:
            cur.execute("INSERT INTO results (run_id, key, attempt, name, outcome, message, "
                        "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (run_id, key, attempt, name, outcome, message, time.time()))

    def results(self, run_id: int, key: Optional[str] = None,
                attempt: Optional[int] = None) -> List[ResultInfo]:
        """The results tasks of a run reported (of one task, of one attempt),
        oldest first."""
        sql = ("SELECT key, attempt, name, outcome, message, at FROM results "
               "WHERE run_id = ?")
        params: Tuple[Any, ...] = (run_id,)
        if key is not None:
            sql += " AND key = ?"
            params += (key,)
        if attempt is not None:
            sql += " AND attempt = ?"
            params += (attempt,)
        with self._transaction() as cur:
            cur.execute(sql + " ORDER BY id", params)
            return [ResultInfo(*row) for row in cur.fetchall()]

    def request_reboot(self, run_id: int, key: str, boot_id: str) -> None:
        """Record that task `key` asks for a reboot (committed, with a full
        sync, before this returns)."""
        with self._transaction(write=True) as cur:
            cur.execute("UPDATE tasks SET reboot_requested_at = ?, reboot_boot_id = ? "
                        "WHERE run_id = ? AND key = ?", (time.time(), boot_id, run_id, key))

    def interrupt_counts(self, run_id: int) -> Dict[str, int]:
        """Task key -> unplanned reboots it was run again after (non-zero only)."""
        return self._nonzero(run_id, "interrupt_count")

    def spared_counts(self, run_id: int) -> Dict[str, int]:
        """Task key -> crashes of its controller it was handed out in but not
        started while another task ran, so not charged (non-zero only)."""
        return self._nonzero(run_id, "spared_count")

    def reboot_counts(self, run_id: int) -> Dict[str, int]:
        """Task key -> planned reboots it has been through (non-zero only)."""
        return self._nonzero(run_id, "reboot_count")

    def _nonzero(self, run_id: int, column: str) -> Dict[str, int]:
        with self._transaction() as cur:
            cur.execute(f"SELECT key, {column} FROM tasks WHERE run_id = ? AND {column} > 0",
                        (run_id,))
            return {k: n for k, n in cur.fetchall()}

    def add_run_event(self, run_id: int, to_state: str,
                      detail: Optional[Dict[str, Any]] = None) -> None:
        """An event of the run written directly (committed when this returns),
        without changing the run's state: e.g. "reboot-issued"."""
        with self._transaction(write=True) as cur:
            cur.execute(_INSERT_EVENT, (run_id, None, None, to_state, time.time(),
                                        json.dumps(detail) if detail else None))

    def reboot_issued(self, run_id: int) -> bool:
        """Whether the reboot command was run since the run was last marked
        `rebooting` (a "reboot-issued" event after the last "rebooting" one)."""
        with self._transaction() as cur:
            cur.execute("SELECT to_state, max(id) FROM events WHERE run_id = ? AND key IS NULL "
                        "AND to_state IN ('rebooting', 'reboot-issued') GROUP BY to_state",
                        (run_id,))
            last = {state: i for state, i in cur.fetchall()}
        return last.get("reboot-issued", -1) > last.get("rebooting", -1)

    def reboot_requests(self, run_id: int) -> List[Tuple[str, float, Optional[str], int]]:
        """(key, requested at, boot id then, reboot count) of the tasks of a run whose reboot
        request is not dealt with yet (the request is cleared when the task
        runs again)."""
        with self._transaction() as cur:
            cur.execute("SELECT key, reboot_requested_at, reboot_boot_id, reboot_count "
                        "FROM tasks WHERE run_id = ? AND reboot_requested_at IS NOT NULL",
                        (run_id,))
            return [tuple(r) for r in cur.fetchall()]

    def events_to(self, run_id: int, to_state: str) -> List[EventInfo]:
        """The run's transitions into `to_state`, oldest first (e.g. every
        attempt cut short: "interrupted")."""
        with self._transaction() as cur:
            cur.execute(_EVENTS_SQL + " AND to_state = ? ORDER BY id", (run_id, to_state))
            rows = cur.fetchall()
        return [_event_info(r) for r in rows]

    def follow(self, run_id: int, after: int = 0, poll: float = 0.2,
               stop: Optional[Callable[[], bool]] = None) -> Iterator[EventInfo]:
        """Yield the run's events as they are committed, until `stop()` is true
        (checked when there is nothing new)."""
        while True:
            batch = self.events(run_id, after)
            for ev in batch:
                after = ev.id
                yield ev
            if not batch:
                if stop is not None and stop():
                    return
                time.sleep(poll)

    def writer(self, run_id: int,
               states: Optional[Dict[str, Tuple[int, str]]] = None,
               separate: bool = False) -> JournalWriter:
        """A writer for the run's transitions (one per controller); `states`
        (key -> (task id, state)) saves reading them again. `separate`: commit
        from a process of its own (a SQLite file; see JournalWriter): what
        the controller of a run uses."""
        if states is None:
            with self._transaction() as cur:
                cur.execute("SELECT key, id, state FROM tasks WHERE run_id = ?", (run_id,))
                states = {k: (i, s) for k, i, s in cur.fetchall()}
        from ._writer import JournalWriter

        return JournalWriter(self.db, run_id, states, self.where, separate=separate)

    def resume_rows(self, run_id: int) -> Tuple[List[Tuple[str, int, str, int]],
                                                Dict[str, Tuple[Any, ...]]]:
        """What resume needs of the tasks of a run, in two quick reads:
        `(key, id, state, attempt)` of every task, by id; and, by task key,
        `(reason, pid, pid_started, token, time_used, shared,
        shared_restorable, started_at)` of the few tasks whose other columns matter: those
        left queued, running, rebooting or interrupted, those not ended with
        time used, and those that passed (or warned) with a restorable,
        non-empty shared dict. (Every column read costs: resume reads every
        task of the run, most of them ended.)"""
        with self._transaction() as cur:
            cur.execute("SELECT key, id, state, attempt FROM tasks WHERE run_id = ? "
                        "ORDER BY id", (run_id,))
            rows = [tuple(r) for r in cur.fetchall()]
            cur.execute(_EXTRAS_SQL, (run_id,))
            extras = {row[0]: tuple(row[1:]) for row in cur.fetchall()}
        return rows, extras

    def export_rows(self, run_id: int) -> List[Any]:
        """(key, state, attempt, reason, time_used, exc_type, exc_text) of every
        task of a run, by id: what an exporter needs, read in one go."""
        with self._transaction() as cur:
            cur.execute("SELECT key, state, attempt, reason, time_used, exc_type, exc_text "
                        "FROM tasks WHERE run_id = ? ORDER BY id", (run_id,))
            return [tuple(r) for r in cur.fetchall()]

    def report_rows(self, run_id: int) -> List[Any]:
        """(key, state, attempt, reboot_count, reason, time_used, exc_type,
        exc_text, meta) of every task of a run, by id: what the HTML report
        needs, read in one go (`meta` as stored: JSON text)."""
        with self._transaction() as cur:
            cur.execute("SELECT key, state, attempt, reboot_count, reason, time_used, "
                        "exc_type, exc_text, meta FROM tasks WHERE run_id = ? ORDER BY id",
                        (run_id,))
            return [tuple(r) for r in cur.fetchall()]

    def event_rows(self, run_id: int) -> List[Any]:
        """(key, from_state, to_state, at, detail) of every event of a run,
        oldest first, `detail` as stored (JSON text or None): a whole run's
        history without making an `EventInfo` of each."""
        with self._transaction() as cur:
            cur.execute("SELECT key, from_state, to_state, at, detail FROM events "
                        "WHERE run_id = ? ORDER BY id", (run_id,))
            return [tuple(r) for r in cur.fetchall()]

    def set_heartbeat(self, run_id: int, at: Optional[float] = None) -> None:
        with self._transaction(write=True) as cur:
            cur.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?",
                        (time.time() if at is None else at, run_id))


class _Cursor:
    """A DB-API cursor that takes SQL written with ``?`` placeholders, whatever
    the driver's paramstyle (see `Database.sql`)."""

    __slots__ = ("_cur", "_db", "_plain")

    def __init__(self, cur: Any, db: Database) -> None:
        self._cur = cur
        self._db = db
        self._plain = db.paramstyle == "qmark"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql if self._plain else self._db.sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._cur.executemany(sql if self._plain else self._db.sql(sql), rows)

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        return self._db.insert(self._cur, sql, params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> List[Any]:
        return self._cur.fetchall()


def open_journal(where: str, *, create: bool = True) -> Journal:
    """Open (creating if asked, and upgrading) a journal.

    `where` is a file path (SQLite) or an SQLAlchemy URL (`postgresql://...`).
    A file that is not a journal, a corrupt one, or one from a newer pexen is
    refused with a JournalError and left as it is. A file at head is opened
    with the standard library only; SQLAlchemy and Alembic are loaded to
    upgrade an older one. A URL loads SQLAlchemy; Alembic only if the
    database is not at head.
    """
    db: Database
    if "://" in where:
        db = UrlDatabase(where)
        try:
            if not _url_at_head(db):
                from . import _migrate

                _migrate.upgrade(db.engine, _open.shown(where))
        except BaseException:
            db.close()
            raise
        return Journal(_open.shown(where), db)
    if not _open.check_file(where, create):
        _open.inspect_file(where)
    db = SqliteDatabase(where)
    try:
        _open.bring_to_head(db, where)
    except BaseException:
        db.close()
        raise
    return Journal(where, db)


def _url_at_head(db: UrlDatabase) -> bool:
    """Whether the database of `db` holds a journal at head: one query, no
    Alembic (which costs a second to load and check, paid by every verb and
    by a worker recording its result after its controller died). Anything
    else (no journal yet, an older or foreign one, no connection) goes the
    way of `_migrate.upgrade`, which makes, upgrades, refuses or explains."""
    try:
        con = db.connect()
    except Exception:
        return False
    try:
        cur = con.cursor()
        cur.execute("SELECT version_num FROM alembic_version")
        rows = cur.fetchall()
        return len(rows) == 1 and rows[0][0] == _open.HEAD
    except db.errors:
        return False
    finally:
        try:
            con.rollback()
        finally:
            con.close()


_NO_META: Dict[str, Any] = {"requires": [], "provides": [], "claims": [], "uses": [],
                            "priority": 0, "timeout": None, "rerun_on_interrupt": False,
                            "when": None}
_NO_META_JSON = json.dumps(_NO_META)


def task_meta(task: Any) -> Dict[str, Any]:
    """The metadata of a task as JSON (for the journal's `meta` column). Only
    the fields set are read (and nothing is stored on the task, as reading a
    field through its attribute would: the engine's checks then have less to
    look at)."""
    meta, describe_when = _sched_parts or _load_sched_parts()
    found = getattr(task, meta.SCHED_ATTR_NAME, None)
    if found is None:
        return dict(_NO_META)  # the usual case: no metadata at all
    fields = found.set_fields() if isinstance(found, meta.SchedMeta) else {
        name: found.get(name) for name in _NO_META}
    out = dict(_NO_META)
    for name, value in fields.items():
        if name in _LIST_FIELDS:
            out[name] = sorted((v if isinstance(v, (str, int, float)) else repr(v)
                                for v in value), key=str)
        elif name == "when":
            # a command as it is, a callable by name ("module.qualname()")
            out[name] = describe_when(value)
        elif name == "resources" and value:
            out[name] = dict(value)
        elif name in out:
            out[name] = value
    return out


#: (pexen.sched.meta, describe_when) once a task's metadata was read (the
#: journal does not load the engine for the verbs that only read it).
_sched_parts: Tuple[Any, ...] = ()


def _load_sched_parts() -> Tuple[Any, ...]:
    global _sched_parts
    from ..sched import meta
    from ..sched._when import describe_when

    _sched_parts = (meta, describe_when)
    return _sched_parts


_LIST_FIELDS = ("requires", "provides", "claims", "uses")


def _meta_json(meta: Dict[str, Any]) -> str:
    if meta == _NO_META and type(meta["priority"]) is int:
        return _NO_META_JSON
    return json.dumps(meta)

"""The journal writer: one ordered thread, group commit.

Transitions are checked against the state table when they are handed over
(in the caller's thread, so an illegal move is raised where it happens) and
queued as plain tuples; the writer thread takes everything queued at that
moment and commits it in one transaction: the events appended, the task rows
updated (all of a task's changes in the batch folded into one row update).
Commits happen in order, so a committed event implies every earlier one is
committed. `flush()` waits until everything handed over so far is on disk
(synchronous=FULL): the sync points DESIGN.md names use it.

The caller's side does as little as it can (the harness calls it for every
event of every task): `move()` takes the columns as a tuple of names and a
tuple of values, and queues one tuple.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from typing import Any, Dict, Iterator, List, Optional, Tuple

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine

from . import models
from .errors import JournalError
from .states import TRANSITIONS, TaskState, advance

#: The from-state of a run note (an event that leaves the run state alone).
_NOTE: Any = object()


@dataclass(frozen=True)
class Transition:
    """One state change of one task (key) or of the run (key None)."""

    run_id: int
    key: Optional[str]
    from_state: Optional[str]
    to_state: str
    at: float
    fields: Dict[str, Any] = field(default_factory=dict)
    detail: Optional[Dict[str, Any]] = None

    def to_json(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "key": self.key, "from": self.from_state,
                "to": self.to_state, "at": self.at, "fields": self.fields,
                "detail": self.detail}


# The queued items are tuples:
#   (key, from_state, to_state, at, columns, values, detail JSON)
# key None: the run's row; to_state None: columns only, no event.
_Item = Tuple[Optional[str], Optional[str], Optional[str], float, Tuple[str, ...],
              Tuple[Any, ...], Optional[str]]

_STOP = object()
_VALUE: Dict[TaskState, str] = {s: s.value for s in TaskState}
_MEMBER: Dict[str, TaskState] = {s.value: s for s in TaskState}


class _Marker:
    """Put in the queue by flush(): set once everything before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class JournalWriter:
    """Writes the transitions of one run, in order, from one thread."""

    def __init__(self, engine: Engine, run_id: int, tasks: Dict[str, Tuple[int, str]],
                 where: str = "journal") -> None:
        self._engine = engine
        self.run_id = run_id
        self.where = where
        self._ids = {key: tid for key, (tid, _) in tasks.items()}
        member = _MEMBER
        self._state = {key: member.get(state) or TaskState(state)
                       for key, (_, state) in tasks.items()}
        self.last_reason: Dict[str, Optional[str]] = {}
        self._queue: Any = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self._closed = False
        self.commits = 0
        self.events_written = 0
        self._sql: Dict[Tuple[str, ...], str] = {}
        # Started on the first transition, not here: a process pool forks its
        # fork server when the run starts, and should find no other thread.
        self._thread: Optional[threading.Thread] = None

    # -- the caller's side -----------------------------------------------------

    def state_of(self, key: str) -> TaskState:
        return self._state[key]

    def add_task(self, key: str, task_id: int, state: str = "pending") -> None:
        """Know a task row created after the writer started."""
        self._ids[key] = task_id
        self._state[key] = TaskState(state)

    def move(self, key: str, to_state: TaskState, at: float, columns: Tuple[str, ...],
             values: Tuple[Any, ...]) -> None:
        """Move task `key` to `to_state` at `at`, setting `columns` of its row
        to `values` (no detail): the quick form of `transition()`, for the
        harness's events."""
        current = self._state[key]
        if to_state not in TRANSITIONS[current]:
            advance(current, to_state, key)  # raises
        self._state[key] = to_state
        if self._thread is None or self._error is not None or self._closed:
            self._check_open()
        self._queue.put((key, _VALUE[current], _VALUE[to_state], at, columns, values,
                         None))

    def transition(self, key: str, to_state: TaskState, at: Optional[float] = None,
                   detail: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        """Move task `key` to `to_state`, setting the given task columns."""
        current = self._state[key]
        advance(current, to_state, key)
        self._state[key] = to_state
        if "reason" in fields:
            self.last_reason[key] = fields["reason"]
        self._put((key, _VALUE[current], _VALUE[to_state],
                   time.time() if at is None else at, tuple(fields),
                   tuple(fields.values()), json.dumps(detail) if detail else None))

    def update_task(self, key: str, **fields: Any) -> None:
        """Set task columns without a state change (no event row)."""
        if key not in self._state:
            raise KeyError(key)
        self._put((key, None, None, time.time(), tuple(fields), tuple(fields.values()),
                   None))

    def run_event(self, to_state: str, detail: Optional[Dict[str, Any]] = None,
                  **fields: Any) -> None:
        """A state change of the run itself (fields go to the runs row)."""
        self._put((None, None, to_state, time.time(), tuple(fields),
                   tuple(fields.values()), json.dumps(detail) if detail else None))

    def run_note(self, what: str, detail: Optional[Dict[str, Any]] = None) -> None:
        """An event of the run (`what`: "group-started", say), in order with
        the tasks' events, that does not change the run's state."""
        self._put((None, _NOTE, what, time.time(), (), (), json.dumps(detail) if detail
                   else None))

    def update_run(self, **fields: Any) -> None:
        """Set columns of the runs row (the heartbeat), without an event and
        without touching the run's state."""
        self._put((None, None, None, time.time(), tuple(fields), tuple(fields.values()),
                   None))

    def _check_open(self) -> None:
        if self._error is not None:
            raise JournalError(f"the journal writer failed earlier: {self._error}")
        if self._closed:
            raise JournalError("the journal writer is closed")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._loop,
                                              name="pexen-journal-writer", daemon=True)
                    thread.start()
                    self._thread = thread

    def _put(self, item: _Item) -> None:
        self._check_open()
        self._queue.put(item)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until everything handed over so far is committed."""
        if self._thread is not None and self._thread.is_alive():
            marker = _Marker()
            self._queue.put(marker)
            if not marker.done.wait(timeout):
                raise JournalError(f"{self.where}: the writer did not commit within "
                                   f"{timeout} s")
        if self._error is not None:
            raise JournalError(f"{self.where}: writing failed: {self._error}")

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            # a flush() that raced with close() must not wait for ever
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if type(item) is _Marker:
                    item.done.set()
        if self._error is not None:
            raise JournalError(f"{self.where}: writing failed: {self._error}")

    # -- the writer thread -----------------------------------------------------

    def _loop(self) -> None:
        q = self._queue
        raw = None
        try:
            while True:
                item = q.get()
                batch: List[Any] = []
                markers: List[_Marker] = []
                stop = False
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    if type(item) is _Marker:
                        markers.append(item)
                    else:
                        batch.append(item)
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                if batch and self._error is None:
                    try:
                        if raw is None and self._engine.dialect.paramstyle == "qmark":
                            raw = self._engine.raw_connection()
                        self._commit(batch, raw)
                    except BaseException as exc:
                        self._error = exc
                for marker in markers:
                    marker.done.set()
                if stop:
                    return
        finally:
            if raw is not None:
                raw.close()

    def _commit(self, batch: List[_Item], raw: Any) -> None:
        run_id = self.run_id
        event_rows = []
        final: Dict[str, Dict[str, Any]] = {}   # key -> the task row's new values
        run_fields: Dict[str, Any] = {}
        for key, frm, to, at, cols, values, detail in batch:
            if to is not None:
                event_rows.append((run_id, key, None if frm is _NOTE else frm, to, at,
                                   detail))
            if key is None:
                if frm is _NOTE:
                    continue
                run_fields.update(zip(cols, values))
                if to is not None:  # a heartbeat updates columns, never the state
                    run_fields["state"] = to
                continue
            # Fold all of a task's changes in this batch into one row update
            # (later values win), so the order of updates cannot matter.
            values_of = final.get(key)
            if values_of is None:
                values_of = final[key] = dict(zip(cols, values))
            else:
                values_of.update(zip(cols, values))
            if to is not None:
                values_of["state"] = to
        ids = self._ids
        updates: Dict[Tuple[str, ...], List[Tuple[Any, ...]]] = {}
        for key, values_of in final.items():
            row = (*values_of.values(), ids[key])
            rows = updates.get(tuple(values_of))
            if rows is None:
                updates[tuple(values_of)] = [row]
            else:
                rows.append(row)
        if raw is None:  # a driver with another paramstyle: the Core path
            with self._engine.begin() as conn:
                self._commit_core(conn, event_rows, updates, run_fields)
        else:
            self._commit_sqlite(raw.driver_connection, event_rows, updates, run_fields)
        self.commits += 1
        self.events_written += len(event_rows)

    def _sql_update(self, table: str, cols: Tuple[str, ...]) -> str:
        sql = self._sql.get(cols) if table == "tasks" else None
        if sql is None:
            sets = ", ".join(f"{c} = ?" for c in cols)
            sql = f"UPDATE {table} SET {sets} WHERE id = ?"
            if table == "tasks":
                self._sql[cols] = sql
        return sql

    def _commit_sqlite(self, con: Any, event_rows: List[Tuple[Any, ...]],
                       updates: Dict[Tuple[str, ...], List[Tuple[Any, ...]]],
                       run_fields: Dict[str, Any]) -> None:
        # Plain SQL on the driver's connection, one transaction (BEGIN
        # IMMEDIATE, as the engine's writing transactions): building
        # SQLAlchemy statements, or even checking a connection out of the
        # pool, for every commit cost more than the commit.
        #
        # Rows go in by many to a statement (see _chunks): the driver lets
        # the other threads run while SQLite works on a statement, and takes
        # the interpreter lock back after it; one statement per row made
        # every row two lock hand-overs between this thread and the tasks'.
        cur = con.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                if event_rows:
                    for size, params in _chunks(event_rows, _EVENT_ROWS):
                        cur.execute(_insert_events_sql(size), params)
                for cols, rows in updates.items():
                    if _UPDATE_FROM and len(rows) > 1:
                        for size, params in _chunks(rows, _update_rows(len(cols))):
                            cur.execute(_update_tasks_sql(cols, size), params)
                    else:
                        cur.executemany(self._sql_update("tasks", cols), rows)
                if run_fields:
                    cur.execute(self._sql_update("runs", tuple(run_fields)),
                                (*run_fields.values(), self.run_id))
                cur.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        finally:
            cur.close()

    def _commit_core(self, conn: Any, event_rows: List[Tuple[Any, ...]],
                     updates: Dict[Tuple[str, ...], List[Tuple[Any, ...]]],
                     run_fields: Dict[str, Any]) -> None:
        names = ("run_id", "key", "from_state", "to_state", "at", "detail")
        if event_rows:
            conn.execute(models.events.insert(), [dict(zip(names, r)) for r in event_rows])
        for cols, rows in updates.items():
            stmt = (update(models.tasks).where(models.tasks.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in cols}))
            conn.execute(stmt, [dict(zip(cols + ("_id",), r)) for r in rows])
        if run_fields:
            conn.execute(update(models.runs).where(models.runs.c.id == self.run_id)
                         .values(**run_fields))


# -- statements of many rows (SQLite) ------------------------------------------

# SQLite takes up to 999 parameters in a statement before 3.32, 32766 since;
# UPDATE ... FROM is there since 3.33.
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)
_EVENT_COLUMNS = 6
_EVENT_ROWS = min(256, _MAX_PARAMS // _EVENT_COLUMNS)


def _update_rows(columns: int) -> int:
    """Rows of an UPDATE ... FROM (VALUES ...) with `columns` set per row."""
    return min(256, _MAX_PARAMS // (columns + 1))


def _chunks(rows: List[Tuple[Any, ...]], most: int) -> Iterator[Tuple[int, List[Any]]]:
    """`rows` as (row count, flat parameters) pieces of `most` rows, then of
    descending powers of two: few distinct statements, each prepared once
    (the driver keeps a cache of them)."""
    start, left = 0, len(rows)
    size = most
    while left:
        while size > left:
            size = 1 << (left.bit_length() - 1) if left < most else most
        yield size, list(chain.from_iterable(rows[start:start + size]))
        start += size
        left -= size


@cache
def _insert_events_sql(rows: int) -> str:
    return ("INSERT INTO events (run_id, key, from_state, to_state, at, detail) VALUES "
            + ",".join(("(?,?,?,?,?,?)",) * rows))


@cache
def _update_tasks_sql(cols: Tuple[str, ...], rows: int) -> str:
    """Set `cols` of `rows` task rows, from rows of (*values, id): one
    statement (the ids are distinct: a batch folds a task's changes)."""
    row = "(" + ",".join("?" * (len(cols) + 1)) + ")"
    sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(cols, 1))
    return (f"UPDATE tasks SET {sets} FROM (VALUES {','.join((row,) * rows)}) AS v "
            f"WHERE tasks.id = v.column{len(cols) + 1}")

"""The journal writer: one ordered thread, group commit.

Transitions are checked against the state table when they are handed over
(in the caller's thread, so an illegal move is raised where it happens) and
queued; the writer thread takes everything queued at that moment and commits
it in one transaction: the events appended, the task rows updated. Commits
happen in order, so a committed event implies every earlier one is
committed. `flush()` waits until everything handed over so far is on disk
(synchronous=FULL): the sync points DESIGN.md names use it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine

from . import models
from .errors import JournalError
from .states import TaskState, advance


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


_STOP = object()


class JournalWriter:
    """Writes the transitions of one run, in order, from one thread."""

    def __init__(self, engine: Engine, run_id: int, tasks: Dict[str, Tuple[int, str]],
                 where: str = "journal") -> None:
        self._engine = engine
        self.run_id = run_id
        self.where = where
        self._ids = {key: tid for key, (tid, _) in tasks.items()}
        self._state = {key: TaskState(state) for key, (_, state) in tasks.items()}
        self.last_reason: Dict[str, Optional[str]] = {}
        self._queue: Any = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._put_seq = 0
        self._done_seq = 0
        self._error: Optional[BaseException] = None
        self._closed = False
        self.commits = 0
        self.events_written = 0
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

    def transition(self, key: str, to_state: TaskState, at: Optional[float] = None,
                   detail: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        """Move task `key` to `to_state`, setting the given task columns."""
        current = self._state[key]
        advance(current, to_state, key)
        self._state[key] = to_state
        if "reason" in fields:
            self.last_reason[key] = fields["reason"]
        self._put(Transition(self.run_id, key, current.value, to_state.value,
                             time.time() if at is None else at, fields, detail))

    def update_task(self, key: str, **fields: Any) -> None:
        """Set task columns without a state change (no event row)."""
        state = self._state[key].value
        self._put(Transition(self.run_id, key, state, state, time.time(), fields,
                             {"update": True}))

    def run_event(self, to_state: str, detail: Optional[Dict[str, Any]] = None,
                  **fields: Any) -> None:
        """A state change of the run itself (fields go to the runs row)."""
        self._put(Transition(self.run_id, None, None, to_state, time.time(), fields,
                             detail))

    def update_run(self, **fields: Any) -> None:
        """Set columns of the runs row (the heartbeat), without an event and
        without touching the run's state."""
        self._put(Transition(self.run_id, None, None, "", time.time(), fields,
                             {"update": True}))

    def _put(self, item: Transition) -> None:
        if self._error is not None:
            raise JournalError(f"the journal writer failed earlier: {self._error}")
        if self._closed:
            raise JournalError("the journal writer is closed")
        with self._lock:
            self._put_seq += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop,
                                                name="pexen-journal-writer", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until everything handed over so far is committed."""
        with self._lock:
            target = self._put_seq
            if not self._lock.wait_for(
                    lambda: self._done_seq >= target or self._error is not None,
                    timeout):
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
        if self._error is not None:
            raise JournalError(f"{self.where}: writing failed: {self._error}")

    # -- the writer thread -----------------------------------------------------

    def _loop(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            batch: List[Transition] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)
            while not stop:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            if batch and self._error is None:
                try:
                    self._commit(batch)
                except BaseException as exc:
                    self._error = exc
            with self._lock:
                self._done_seq += len(batch)
                self._lock.notify_all()
            if stop:
                return

    _sql: Dict[Any, str]

    @staticmethod
    def _placeholder(conn: Any) -> Optional[str]:
        style = conn.dialect.paramstyle
        if style == "qmark":
            return "?"
        if style in ("format", "pyformat"):
            return "%s"
        return None

    def _sql_insert(self, mark: str) -> str:
        return ("INSERT INTO events (run_id, key, from_state, to_state, at, detail) "
                f"VALUES ({', '.join([mark] * 6)})")

    def _sql_update(self, cols: Tuple[str, ...], mark: str) -> str:
        cache = self.__dict__.setdefault("_sql", {})
        sql = cache.get((cols, mark))
        if sql is None:
            sets = ", ".join(f"{c} = {mark}" for c in cols)
            sql = cache[(cols, mark)] = f"UPDATE tasks SET {sets} WHERE id = {mark}"
        return sql

    def _commit_core(self, conn: Any, event_rows: List[Dict[str, Any]],
                     updates: Dict[Tuple[str, ...], List[Dict[str, Any]]],
                     run_fields: Dict[str, Any]) -> None:
        if event_rows:
            conn.execute(models.events.insert(), event_rows)
        for cols, rows in updates.items():
            stmt = (update(models.tasks).where(models.tasks.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in cols}))
            conn.execute(stmt, rows)
        if run_fields:
            conn.execute(update(models.runs).where(models.runs.c.id == self.run_id)
                         .values(**run_fields))

    def _commit(self, batch: List[Transition]) -> None:
        event_rows = []
        final: Dict[str, Dict[str, Any]] = {}   # key -> the task row's new values
        run_fields: Dict[str, Any] = {}
        ids = self._ids
        for tr in batch:
            is_update = tr.detail is not None and tr.detail.get("update")
            if not is_update:
                event_rows.append({
                    "run_id": tr.run_id, "key": tr.key, "from_state": tr.from_state,
                    "to_state": tr.to_state, "at": tr.at,
                    "detail": json.dumps(tr.detail) if tr.detail else None})
            if tr.key is None:
                run_fields.update(tr.fields)
                if not is_update:  # a heartbeat updates columns, never the state
                    run_fields["state"] = tr.to_state
                continue
            # Fold all of a task's changes in this batch into one row update
            # (later values win), so the order of updates cannot matter.
            values = final.get(tr.key)
            if values is None:
                values = final[tr.key] = {"_id": ids[tr.key]}
            values.update(tr.fields)
            values["state"] = tr.to_state
        updates: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
        for values in final.values():
            updates.setdefault(tuple(sorted(k for k in values if k != "_id")),
                               []).append(values)
        with self._engine.begin() as conn:
            mark = self._placeholder(conn)
            if mark is None:  # a driver with another paramstyle: the Core path
                self._commit_core(conn, event_rows, updates, run_fields)
            else:
                # Plain SQL, built once per column set: building SQLAlchemy
                # statements for every commit cost more than the commit.
                if event_rows:
                    conn.exec_driver_sql(self._sql_insert(mark), [
                        (r["run_id"], r["key"], r["from_state"], r["to_state"], r["at"],
                         r["detail"]) for r in event_rows])
                for cols, rows in updates.items():
                    conn.exec_driver_sql(self._sql_update(cols, mark), [
                        tuple(r[c] for c in cols) + (r["_id"],) for r in rows])
                if run_fields:
                    cols = tuple(sorted(run_fields))
                    conn.exec_driver_sql(
                        f"UPDATE runs SET {', '.join(f'{c} = {mark}' for c in cols)} "
                        f"WHERE id = {mark}",
                        tuple(run_fields[c] for c in cols) + (self.run_id,))
        self.commits += 1
        self.events_written += len(event_rows)

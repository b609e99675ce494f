"""The journal: open it, create runs, read runs, tasks and events back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

from sqlalchemy import create_engine, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from . import _open, models
from ._writer import JournalWriter
from .errors import JournalError
from .states import TERMINAL


@dataclass(frozen=True)
class RunInfo:
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


@dataclass(frozen=True)
class EventInfo:
    """One transition as the journal has it."""

    id: int
    run_id: int
    key: Optional[str]
    from_state: Optional[str]
    to_state: str
    at: float
    detail: Optional[Dict[str, Any]]


@dataclass(frozen=True)
class ResultInfo:
    """A result a task reported (`pexen.report`), as the journal has it."""

    key: str
    attempt: int
    name: str
    outcome: str
    message: Optional[str]
    at: float


class ResumeRow(NamedTuple):
    """A task as resume sees it (a row of `resume_rows` with its extras)."""

    key: str
    id: int
    state: str
    attempt: int
    reason: Optional[str] = None
    pid: Optional[int] = None
    pid_started: Optional[float] = None
    token: Optional[str] = None
    time_used: Optional[float] = None
    shared: Optional[str] = None
    shared_restorable: Optional[bool] = None
    started_at: Optional[float] = None


_ENDED = "(" + ", ".join(f"'{s.value}'" for s in sorted(TERMINAL)) + ")"
_EXTRAS_SQL = (
    "SELECT key, reason, pid, pid_started, token, time_used, shared, shared_restorable, "
    "started_at "
    "FROM tasks WHERE run_id = ? AND ("
    "state IN ('queued', 'running', 'rebooting', 'interrupted') "
    f"OR (state NOT IN {_ENDED} AND time_used <> 0) "
    "OR (state IN ('pass', 'warn') AND shared_restorable AND shared IS NOT NULL "
    "AND shared <> '{}'))")


def _run_info(row: Any) -> RunInfo:
    m = row._mapping
    return RunInfo(m["id"], m["created_at"], m["finished_at"], m["state"],
                   json.loads(m["suite"]), json.loads(m["config"]), m["host"],
                   m["boot_id"], m["controller_pid"], m["controller_started"],
                   m["heartbeat_at"], m["exit_code"])


class Journal:
    """An open journal (use `pexen.journal.open`)."""

    def __init__(self, where: str, engine: Engine, reader: Engine) -> None:
        self.where = where
        self.engine = engine      # transactions begin IMMEDIATE: for writing
        self.reader = reader      # transactions begin DEFERRED: for reading

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _guard(self) -> Any:
        return _Guard(self.where)

    # -- runs ------------------------------------------------------------------

    def create_run(self, suite: Dict[str, Any], config: Dict[str, Any],
                   tasks: Sequence[Tuple[str, Dict[str, Any]]], *, host: str,
                   boot_id: str, controller_pid: int, controller_started: float) -> int:
        """Create a run with its tasks (all `pending`), in one transaction."""
        now = time.time()
        with self._guard(), self.engine.begin() as conn:
            run_id = conn.execute(models.runs.insert().values(
                created_at=now, state="running", suite=json.dumps(suite),
                config=json.dumps(config), host=host, boot_id=boot_id,
                controller_pid=controller_pid, controller_started=controller_started,
                heartbeat_at=now)).inserted_primary_key[0]
            if tasks:
                self._insert_tasks(conn, run_id, tasks)
            conn.execute(models.events.insert().values(
                run_id=run_id, key=None, from_state=None, to_state="running", at=now,
                detail=json.dumps({"tasks": len(tasks)})))
        return int(run_id)

    @staticmethod
    def _insert_tasks(conn: Any, run_id: int,
                      tasks: Sequence[Tuple[str, Dict[str, Any]]]) -> None:
        if conn.dialect.paramstyle == "qmark":
            # the plain driver, in the transaction of `conn`: a tuple per row
            # (a run may have a hundred thousand tasks)
            conn.exec_driver_sql(
                "INSERT INTO tasks (run_id, key, state, attempt, reboot_count, time_used, "
                "meta) VALUES (?, ?, 'pending', 0, 0, 0.0, ?)",
                [(run_id, key, _meta_json(meta)) for key, meta in tasks])
            return
        conn.execute(models.tasks.insert(), [
            {"run_id": run_id, "key": key, "state": "pending", "attempt": 0,
             "reboot_count": 0, "time_used": 0.0, "meta": json.dumps(meta)}
            for key, meta in tasks])

    def add_tasks(self, run_id: int, tasks: Sequence[Tuple[str, Dict[str, Any]]]
                  ) -> Dict[str, int]:
        """Add task rows (pending) to a run; returns their ids."""
        with self._guard(), self.engine.begin() as conn:
            self._insert_tasks(conn, run_id, tasks)
            rows = conn.execute(select(models.tasks.c.key, models.tasks.c.id).where(
                models.tasks.c.run_id == run_id,
                models.tasks.c.key.in_([k for k, _ in tasks]))).all()
        return {k: i for k, i in rows}

    def claim_run(self, run_id: int, *, is_alive: Callable[[RunInfo], bool],
                  pid: int, pid_started: float, boot_id: str,
                  config: Optional[Dict[str, Any]] = None) -> RunInfo:
        """Make this process the run's controller, atomically; refuse (and
        return the run as found) if its controller is alive."""
        with self._guard(), self.engine.begin() as conn:
            row = conn.execute(select(models.runs).where(models.runs.c.id == run_id)
                               ).first()
            if row is None:
                raise JournalError(f"{self.where} has no run {run_id}")
            run = _run_info(row)
            if is_alive(run):
                return run
            conn.execute(update(models.runs).where(models.runs.c.id == run_id).values(
                controller_pid=pid, controller_started=pid_started, boot_id=boot_id,
                state="running", heartbeat_at=time.time(), finished_at=None,
                exit_code=None, **({"config": json.dumps(config)} if config else {})))
            conn.execute(models.events.insert().values(
                run_id=run_id, key=None, from_state=run.state, to_state="running",
                at=time.time(), detail=json.dumps({"resumed_by": pid})))
        return run

    def runs(self) -> List[RunInfo]:
        with self._guard(), self.reader.connect() as conn:
            rows = conn.execute(select(models.runs).order_by(models.runs.c.id)).all()
        return [_run_info(r) for r in rows]

    def run(self, run_id: int) -> RunInfo:
        with self._guard(), self.reader.connect() as conn:
            row = conn.execute(select(models.runs).where(models.runs.c.id == run_id)
                               ).first()
        if row is None:
            raise JournalError(f"{self.where} has no run {run_id}")
        return _run_info(row)

    def newest_unfinished(self) -> Optional[RunInfo]:
        with self._guard(), self.reader.connect() as conn:
            row = conn.execute(select(models.runs).where(models.runs.c.state != "finished")
                               .order_by(models.runs.c.id.desc()).limit(1)).first()
        return _run_info(row) if row is not None else None

    def newest(self) -> Optional[RunInfo]:
        with self._guard(), self.reader.connect() as conn:
            row = conn.execute(select(models.runs).order_by(models.runs.c.id.desc())
                               .limit(1)).first()
        return _run_info(row) if row is not None else None

    # -- tasks and events ----------------------------------------------------

    def tasks(self, run_id: int) -> List[Any]:
        """The task rows of a run (attribute access: .key, .state, ...), by id."""
        with self._guard(), self.reader.connect() as conn:
            return list(conn.execute(select(models.tasks).where(
                models.tasks.c.run_id == run_id).order_by(models.tasks.c.id)).all())

    def counts(self, run_id: int) -> Dict[str, int]:
        """How many tasks of the run are in each state."""
        with self._guard(), self.reader.connect() as conn:
            rows = conn.execute(select(models.tasks.c.state, func.count()).where(
                models.tasks.c.run_id == run_id).group_by(models.tasks.c.state)).all()
        return {state: n for state, n in rows}

    def events(self, run_id: int, after: int = 0, limit: Optional[int] = None
               ) -> List[EventInfo]:
        """The run's events with an id above `after`, oldest first."""
        stmt = (select(models.events).where(models.events.c.run_id == run_id,
                                            models.events.c.id > after)
                .order_by(models.events.c.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._guard(), self.reader.connect() as conn:
            rows = conn.execute(stmt).all()
        return [EventInfo(r.id, r.run_id, r.key, r.from_state, r.to_state, r.at,
                          json.loads(r.detail) if r.detail else None) for r in rows]

    def add_result(self, run_id: int, key: str, attempt: int, name: str, outcome: str,
                   message: Optional[str] = None) -> None:
        """Record a result task `key` reported in its attempt `attempt`
        (committed before this returns; the controller is not involved)."""
        with self._guard(), self.engine.begin() as conn:
            conn.execute(models.results.insert().values(
                run_id=run_id, key=key, attempt=attempt, name=name, outcome=outcome,
                message=message, at=time.time()))

    def results(self, run_id: int, key: Optional[str] = None,
                attempt: Optional[int] = None) -> List[ResultInfo]:
        """The results tasks of a run reported (of one task, of one attempt),
        oldest first."""
        r = models.results.c
        stmt = select(r.key, r.attempt, r.name, r.outcome, r.message, r.at).where(
            r.run_id == run_id)
        if key is not None:
            stmt = stmt.where(r.key == key)
        if attempt is not None:
            stmt = stmt.where(r.attempt == attempt)
        with self._guard(), self.reader.connect() as conn:
            return [ResultInfo(*row) for row in conn.execute(stmt.order_by(r.id)).all()]

    def request_reboot(self, run_id: int, key: str, boot_id: str) -> None:
        """Record that task `key` asks for a reboot (committed, with a full
        sync, before this returns)."""
        t = models.tasks.c
        with self._guard(), self.engine.begin() as conn:
            conn.execute(update(models.tasks).where(t.run_id == run_id, t.key == key)
                         .values(reboot_requested_at=time.time(), reboot_boot_id=boot_id))

    def interrupt_counts(self, run_id: int) -> Dict[str, int]:
        """Task key -> unplanned reboots it was run again after (non-zero only)."""
        return self._nonzero(run_id, models.tasks.c.interrupt_count)

    def reboot_counts(self, run_id: int) -> Dict[str, int]:
        """Task key -> planned reboots it has been through (non-zero only)."""
        return self._nonzero(run_id, models.tasks.c.reboot_count)

    def _nonzero(self, run_id: int, column: Any) -> Dict[str, int]:
        t = models.tasks.c
        with self._guard(), self.reader.connect() as conn:
            return {k: n for k, n in conn.execute(
                select(t.key, column).where(t.run_id == run_id, column > 0)).all()}

    def add_run_event(self, run_id: int, to_state: str,
                      detail: Optional[Dict[str, Any]] = None) -> None:
        """An event of the run written directly (committed when this returns),
        without changing the run's state: e.g. "reboot-issued"."""
        with self._guard(), self.engine.begin() as conn:
            conn.execute(models.events.insert().values(
                run_id=run_id, key=None, from_state=None, to_state=to_state, at=time.time(),
                detail=json.dumps(detail) if detail else None))

    def reboot_issued(self, run_id: int) -> bool:
        """Whether the reboot command was run since the run was last marked
        `rebooting` (a "reboot-issued" event after the last "rebooting" one)."""
        e = models.events.c
        with self._guard(), self.reader.connect() as conn:
            last = {state: i for state, i in conn.execute(
                select(e.to_state, func.max(e.id)).where(
                    e.run_id == run_id, e.key.is_(None),
                    e.to_state.in_(("rebooting", "reboot-issued")))
                .group_by(e.to_state)).all()}
        return last.get("reboot-issued", -1) > last.get("rebooting", -1)

    def reboot_requests(self, run_id: int) -> List[Tuple[str, float, Optional[str], int]]:
        """(key, requested at, boot id then, reboot count) of the tasks of a run whose reboot
        request is not dealt with yet (the request is cleared when the task
        runs again)."""
        t = models.tasks.c
        with self._guard(), self.reader.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(t.key, t.reboot_requested_at, t.reboot_boot_id, t.reboot_count)
                .where(t.run_id == run_id, t.reboot_requested_at.is_not(None))).all()]

    def events_to(self, run_id: int, to_state: str) -> List[EventInfo]:
        """The run's transitions into `to_state`, oldest first (e.g. every
        attempt cut short: "interrupted")."""
        stmt = (select(models.events).where(models.events.c.run_id == run_id,
                                            models.events.c.to_state == to_state)
                .order_by(models.events.c.id))
        with self._guard(), self.reader.connect() as conn:
            rows = conn.execute(stmt).all()
        return [EventInfo(r.id, r.run_id, r.key, r.from_state, r.to_state, r.at,
                          json.loads(r.detail) if r.detail else None) for r in rows]

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
            with self._guard(), self.reader.connect() as conn:
                rows = conn.execute(select(models.tasks.c.key, models.tasks.c.id,
                                           models.tasks.c.state).where(
                    models.tasks.c.run_id == run_id)).all()
            states = {k: (i, s) for k, i, s in rows}
        return JournalWriter(self.engine, run_id, states, self.where, separate=separate)

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
        t = models.tasks.c
        with self._guard(), self.reader.connect() as conn:
            if conn.dialect.paramstyle == "qmark":
                # the plain driver: a tuple per row, no Row objects
                cur = conn.connection.driver_connection.cursor()
                try:
                    cur.execute("SELECT key, id, state, attempt FROM tasks "
                                "WHERE run_id = ? ORDER BY id", (run_id,))
                    rows = cur.fetchall()
                    cur.execute(_EXTRAS_SQL, (run_id,))
                    extras = {row[0]: row[1:] for row in cur.fetchall()}
                finally:
                    cur.close()
                return rows, extras
            found = conn.execute(
                select(t.key, t.id, t.state, t.attempt, t.reason, t.pid, t.pid_started,
                       t.token, t.time_used, t.shared, t.shared_restorable, t.started_at)
                .where(t.run_id == run_id).order_by(t.id)).all()
        ended = {s.value for s in TERMINAL}
        rows, extras = [], {}
        for row in found:
            rows.append(tuple(row[:4]))
            if row.state not in ended or (row.state in ("pass", "warn")
                                          and row.shared_restorable and row.shared
                                          and row.shared != "{}"):
                extras[row.key] = tuple(row[4:])
        return rows, extras

    def export_rows(self, run_id: int) -> List[Any]:
        """(key, state, attempt, reason, time_used, exc_type, exc_text) of every
        task of a run, by id: what an exporter needs, read in one go."""
        t = models.tasks.c
        cols = (t.key, t.state, t.attempt, t.reason, t.time_used, t.exc_type, t.exc_text)
        with self._guard(), self.reader.connect() as conn:
            if conn.dialect.paramstyle == "qmark":
                cur = conn.connection.driver_connection.cursor()
                try:
                    cur.execute("SELECT key, state, attempt, reason, time_used, exc_type, "
                                "exc_text FROM tasks WHERE run_id = ? ORDER BY id", (run_id,))
                    return cur.fetchall()
                finally:
                    cur.close()
            return [tuple(row) for row in conn.execute(
                select(*cols).where(t.run_id == run_id).order_by(t.id)).all()]

    def set_heartbeat(self, run_id: int, at: Optional[float] = None) -> None:
        with self._guard(), self.engine.begin() as conn:
            conn.execute(update(models.runs).where(models.runs.c.id == run_id)
                         .values(heartbeat_at=time.time() if at is None else at))


class _Guard:
    """Turn database errors into journal errors a user can act on."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, etype: Any, exc: Any, tb: Any) -> bool:
        if exc is not None and isinstance(exc, DBAPIError):
            raise _open.corrupt_or_io(exc, self.where) from None
        return False


def open_journal(where: str, *, create: bool = True) -> Journal:
    """Open (creating if asked, and upgrading) a journal.

    `where` is a file path (SQLite) or an SQLAlchemy URL (`postgresql://...`).
    A file that is not a journal, a corrupt one, or one from a newer pexen is
    refused with a JournalError and left as it is.
    """
    if "://" in where:
        engine = create_engine(where)
        reader = engine
    else:
        if not _open.check_file(where, create):
            _open.inspect_file(where)
        engine = _open.sqlite_engine(where, immediate=True)
        reader = _open.sqlite_engine(where, immediate=False)
    try:
        _open.migrate(engine, where)
    except BaseException:
        engine.dispose()
        reader.dispose()
        raise
    return Journal(where, engine, reader)


_NO_META: Dict[str, Any] = {"requires": [], "provides": [], "claims": [], "uses": [],
                            "priority": 0, "timeout": None, "rerun_on_interrupt": False,
                            "when": None}
_NO_META_JSON = json.dumps(_NO_META)


def task_meta(task: Any) -> Dict[str, Any]:
    """The metadata of a task as JSON (for the journal's `meta` column)."""
    from ..sched import meta
    from ..sched._when import describe_when

    if getattr(task, meta.SCHED_ATTR_NAME, None) is None:
        return dict(_NO_META)  # the usual case: no metadata at all

    def items(values: Iterable[Any]) -> List[Any]:
        return sorted((v if isinstance(v, (str, int, float)) else repr(v) for v in values),
                      key=str)

    return {
        "requires": items(meta.get_requires(task)),
        "provides": items(meta.get_provides(task)),
        "claims": items(meta.get_claims(task)),
        "uses": items(meta.get_uses(task)),
        "priority": meta.get_priority(task),
        "timeout": meta.get_timeout(task),
        "rerun_on_interrupt": meta.get_rerun_on_interrupt(task),
        # a command as it is, a callable by name ("module.qualname()")
        "when": describe_when(meta.get_when(task)),
    }


def _meta_json(meta: Dict[str, Any]) -> str:
    if meta == _NO_META and type(meta["priority"]) is int:
        return _NO_META_JSON
    return json.dumps(meta)

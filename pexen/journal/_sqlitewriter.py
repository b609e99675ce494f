"""What the journal writer commits, and how, on a SQLite journal; also run
as a program: the writer's own process.

Batches of transitions are folded into rows (`fold`) and committed with a
few statements of many rows each (`commit`). The writer thread does this
itself, or hands the batches to a process running this file
(`python -I -S _sqlitewriter.py`): then the folding and the statements
no longer take turns with the tasks' threads for the interpreter lock,
which made the writer the largest cost of a run of small Python tasks.

This file imports only the standard library and nothing of pexen, and
not even `typing` or `functools` (they pull in `re` and `enum`): run as a
program it starts in a few milliseconds, and the controller's first
commit waits for that start.

The protocol on the pipes (see `JournalWriter`): frames of a 4-byte length
(little endian) and a `marshal`led value, in order:

- first ``("init", path, run_id, busy_ms, owner)``: the process reads the
  run's task ids (key -> row id) itself, while the controller goes on;
  `owner` is the run's (controller_pid, controller_started) the writer works
  for (None: as the run has it when the process starts);
- ``("batch", items)``: commit `items` (tuples as `JournalWriter` queues
  them) in one transaction, then answer;
- ``("ids", {key: id})``: task rows made after the start.

The process says ``ready`` on the other pipe once it has opened the journal,
then answers each batch with one line: ``ok N`` once committed (N: the event
rows written), or ``error <message>`` (and the process ends). The process ends
when its input ends, or when the process that started it is gone, and never
commits for a controller that lost the run: each transaction first checks
that the run's controller (pid and start time) is `owner`, so a `resume`
that claimed the run after the controller died reads no commit of the old
writer after its claim.
"""

from __future__ import annotations

import marshal
import os
import select
import sqlite3
import struct
import sys
from itertools import chain

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: see above)
    from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

    Updates = Dict[Tuple[str, ...], List[Tuple[Any, ...]]]
    _F = TypeVar("_F", bound=Callable[..., str])

#: The from-state of a run note (an event that leaves the run state alone).
NOTE = "\x00note"

_LENGTH = struct.Struct("<I")

# SQLite takes up to 999 parameters in a statement before 3.32, 32766 since;
# UPDATE ... FROM is there since 3.33.
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)
_EVENT_COLUMNS = 6
_EVENT_ROWS = min(256, _MAX_PARAMS // _EVENT_COLUMNS)


def cache(func: _F) -> _F:
    """`functools.cache`, for the few SQL texts built here."""
    memo: dict = {}

    def cached(*args: Any) -> str:
        text = memo.get(args)
        if text is None:
            text = memo[args] = func(*args)
        return text

    return cached  # type: ignore[return-value]


class LostRun(Exception):
    """The run has another controller now: this writer must not commit."""


def fold(batch: List[Tuple[Any, ...]], run_id: int, ids: Dict[str, int]
         ) -> Tuple[List[Tuple[Any, ...]], Updates, Dict[str, Any]]:
    """The event rows of a batch, the task rows' updates (all of a task's
    changes in the batch folded into one, later values winning, grouped by
    the columns they set) and the run row's new values."""
    event_rows = []
    final: Dict[str, Dict[str, Any]] = {}   # key -> the task row's new values
    run_fields: Dict[str, Any] = {}
    for key, frm, to, at, cols, values, detail in batch:
        if to is not None:
            event_rows.append((run_id, key, None if frm == NOTE else frm, to, at, detail))
        if key is None:
            if frm == NOTE:
                continue
            run_fields.update(zip(cols, values))
            if to is not None:  # a heartbeat updates columns, never the state
                run_fields["state"] = to
            continue
        values_of = final.get(key)
        if values_of is None:
            values_of = final[key] = dict(zip(cols, values))
        else:
            values_of.update(zip(cols, values))
        if to is not None:
            values_of["state"] = to
    updates: Updates = {}
    for key, values_of in final.items():
        row = (*values_of.values(), ids[key])
        rows = updates.get(tuple(values_of))
        if rows is None:
            updates[tuple(values_of)] = [row]
        else:
            rows.append(row)
    return event_rows, updates, run_fields


def commit(con: sqlite3.Connection, run_id: int, event_rows: List[Tuple[Any, ...]],
           updates: Updates, run_fields: Dict[str, Any],
           owner: Optional[Tuple[Any, Any]] = None) -> None:
    """One transaction (BEGIN IMMEDIATE) on a connection in autocommit mode.

    Rows go in by many to a statement (see `_chunks`): the driver lets other
    threads run while SQLite works on a statement and takes the interpreter
    lock back after it, so one statement per row made every row two lock
    hand-overs. `owner`: the run's (controller_pid, controller_started)
    this writer works for; LostRun if the run has another now.
    """
    cur = con.cursor()
    try:
        cur.execute("BEGIN IMMEDIATE")
        try:
            if owner is not None:
                now = cur.execute("SELECT controller_pid, controller_started FROM runs "
                                  "WHERE id = ?", (run_id,)).fetchone()
                if now is None or tuple(now) != tuple(owner):
                    raise LostRun(f"run {run_id} has another controller now")
            for size, params in _chunks(event_rows, _EVENT_ROWS):
                cur.execute(_insert_events_sql(size), params)
            for cols, rows in updates.items():
                if _UPDATE_FROM and len(rows) > 1:
                    for size, params in _chunks(rows, _update_rows(len(cols))):
                        cur.execute(_update_tasks_sql(cols, size), params)
                else:
                    cur.executemany(update_sql("tasks", cols), rows)
            if run_fields:
                cur.execute(update_sql("runs", tuple(run_fields)),
                            (*run_fields.values(), run_id))
            cur.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                cur.execute("ROLLBACK")
            raise
    finally:
        cur.close()


@cache
def update_sql(table: str, cols: Tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = ?" for c in cols)
    return f"UPDATE {table} SET {sets} WHERE id = ?"


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


def connect(path: str, busy_ms: int) -> sqlite3.Connection:
    """A connection as the journal's engine makes them (WAL is the file's)."""
    con = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None,
                          check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    return con


# -- the writer's process -------------------------------------------------------


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return _LENGTH.pack(len(data)) + data


class _Input:
    """Frames from a pipe; None when it ends or the parent is gone."""

    def __init__(self, fd: int, parent: int) -> None:
        self.fd = fd
        self.parent = parent
        self.buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            ready, _, _ = select.select([self.fd], [], [], 1.0)
            if not ready:
                if os.getppid() != self.parent:
                    return False
                continue
            chunk = os.read(self.fd, max(1 << 16, n - len(self.buf)))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def next(self) -> Any:
        if not self._fill(_LENGTH.size):
            return None
        (size,) = _LENGTH.unpack_from(self.buf)
        if not self._fill(_LENGTH.size + size):
            return None
        value = marshal.loads(bytes(self.buf[_LENGTH.size:_LENGTH.size + size]))
        del self.buf[:_LENGTH.size + size]
        return value


def quick_binds() -> None:
    """Have the driver bind None and bools without asking for an adapter.

    The driver binds an int, a float or a str as it is, but for any other
    value (None and bools among them) it first looks for an adapter, and
    the look that finds none formats an AttributeError it then drops: some
    two thousand instructions per value, and a task's rows carry a dozen
    Nones (`bench/harness_overhead.py`). Registered adapters are found
    first: None stays None (a C function returning its default), a bool
    becomes the int SQLite stores for it anyway. Process-wide: called in the
    writer's own process only."""
    none_for_none: dict[None, None] = {}   # (its .get is that C function)
    sqlite3.register_adapter(type(None), none_for_none.get)
    sqlite3.register_adapter(bool, int)


def serve(in_fd: int, out_fd: int, parent: int) -> int:
    """The writer's process: commit each batch that comes in, answer."""
    quick_binds()
    frames = _Input(in_fd, parent)
    first = frames.next()
    if first is None:
        return 0
    _, path, run_id, busy_ms, owner = first
    try:
        con = connect(path, busy_ms)
        if owner is None:
            owner = con.execute("SELECT controller_pid, controller_started FROM runs "
                                "WHERE id = ?", (run_id,)).fetchone()
        ids = dict(con.execute("SELECT key, id FROM tasks WHERE run_id = ?", (run_id,)))
    except Exception as exc:
        _say(out_fd, _answer(exc))
        return 1
    try:
        return _serve(frames, out_fd, con, run_id, ids, owner)
    finally:
        con.close()


def _serve(frames: _Input, out_fd: int, con: sqlite3.Connection, run_id: int,
           ids: Dict[str, int], owner: Any) -> int:
    if not _say(out_fd, b"ready\n"):   # (before it, the writer may still commit itself)
        return 0
    while True:
        msg = frames.next()
        if msg is None:
            return 0
        kind = msg[0]
        if kind == "ids":
            ids.update(msg[1])
            continue
        try:
            event_rows, updates, run_fields = fold(msg[1], run_id, ids)
            commit(con, run_id, event_rows, updates, run_fields, owner=owner)
        except Exception as exc:
            _say(out_fd, _answer(exc))
            return 1
        if not _say(out_fd, b"ok %d\n" % len(event_rows)):
            return 0


def _say(fd: int, line: bytes) -> bool:
    """Write an answer; False if the writer is gone (closed before it read it)."""
    try:
        os.write(fd, line)
    except OSError:   # (a broken pipe: nobody is listening)
        return False
    return True


def _answer(exc: BaseException) -> bytes:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"error {text}\n".encode("utf-8", "backslashreplace")


if __name__ == "__main__":
    # The connection is closed, nothing is buffered: end now, not after the
    # interpreter has torn itself down (the controller waits for this exit).
    os._exit(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))

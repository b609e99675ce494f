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

With `separate=True` (what the controller asks for, on a SQLite journal) the
thread only carries the batches to a process of its own that folds and
commits them (`_sqlitewriter`), and waits for each commit there: the same
order and group commit, without the writer's work competing with the tasks'
threads for the interpreter lock. If that process cannot be started, the
thread commits itself; and it does until the process says it is ready
(a batch handed over in its first milliseconds, the first task's attempt
among it, is not kept waiting for an interpreter to start). Either way
every commit first checks that the run's controller is still the one the
writer was made for.
"""

from __future__ import annotations

import json
import os
import queue
import select
import sys
import threading
import time

from ..util import LazyModule, wait_exit
from . import _sqlitewriter
from ._db import BUSY_TIMEOUT_MS, Database
from ._sqlitewriter import NOTE as _NOTE
from ._sqlitewriter import commit, fold, frame, update_sql
from .errors import JournalError, write_failed
from .states import TRANSITIONS, TaskState, advance

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

    # The queued items are tuples:
    #   (key, from_state, to_state, at, columns, values, detail JSON)
    # key None: the run's row; to_state None: columns only, no event.
    _Item = Tuple[Optional[str], Optional[str], Optional[str], float, Tuple[str, ...],
                  Tuple[Any, ...], Optional[str]]

# (imported when a program is first run: not for a suite of Python tasks)
subprocess: Any = LazyModule("subprocess", globals())

#: How long the writer's thread lets transitions nobody waits for gather
#: before it commits them (seconds): at most this much of a run's last
#: transitions is lost to a crash, and every task still has its attempt on
#: disk before it starts (the process pool's barrier waits for that commit;
#: the pool hands out enough ahead that its workers run meanwhile, and says
#: so when one is about to run dry: `hurry`). At most a hundred commits (and
#: syncs) a second, whatever the number of tasks.
LINGER = 0.01

#: How long close() waits for the writer's process to end.
PROCESS_EXIT_SECONDS = 30.0


_STOP = object()
_END = object()   # put by the writer's thread itself: what was queued before it is taken
_VALUE: Dict[TaskState, str] = {s: s.value for s in TaskState}
_MEMBER: Dict[str, TaskState] = {s.value: s for s in TaskState}


class _Marker:
    """Put in the queue by flush(): set once everything before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Callback:
    """Put in the queue by after_commit(): called once everything before it
    is committed."""

    __slots__ = ("fn", "urgent")

    def __init__(self, fn: Callable[[Optional[BaseException]], None], urgent: bool) -> None:
        self.fn = fn
        self.urgent = urgent


def _urgent(markers: List[Any]) -> bool:
    """Whether someone waits for the commit of these markers now."""
    return any(type(m) is _Marker or m.urgent for m in markers)


class _NotStarted(Exception):
    """The writer's process ended before it was ready: it committed nothing."""


class _NewIds:
    """Put in the queue by add_task() for the writer's process."""

    __slots__ = ("ids",)

    def __init__(self, ids: Dict[str, int]) -> None:
        self.ids = ids


class JournalWriter:
    """Writes the transitions of one run, in order, from one thread."""

    def __init__(self, db: Database, run_id: int, tasks: Dict[str, Tuple[int, str]],
                 where: str = "journal", separate: bool = False,
                 busy_ms: int = BUSY_TIMEOUT_MS) -> None:
        self._db = db
        # a process of its own for the commits (SQLite files only)
        path = db.path
        self._separate = bool(separate and path and path != ":memory:")
        self._path = path
        self._busy_ms = busy_ms
        self.process_pid: Optional[int] = None
        self.run_id = run_id
        self.where = where
        self._ids = {key: tid for key, (tid, _) in tasks.items()}
        member = _MEMBER
        self._state = {key: member.get(state) or TaskState(state)
                       for key, (_, state) in tasks.items()}
        self.last_reason: Dict[str, Optional[str]] = {}
        self._queue: Any = queue.SimpleQueue()
        # set by flush() and close(): a lingering batch is committed at once
        self._waited_for = threading.Event()
        self._hurried = False   # hurry() came: the next linger is cut short
        self._hurry_lock = threading.Lock()
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self._closed = False
        # Items other than transitions (flush markers, callbacks, new ids, the
        # stop) put, and found by the writer's thread: while the two agree, a
        # batch is all transitions and goes to the commit as it was taken.
        self._specials = 0      # (counted under _lock, before the put)
        self._specials_found = 0
        self._ids_taken = False   # (the writer's thread) a _NewIds is among what it took
        self._own: Any = None   # the thread's connection, when it commits itself
        #: Something to tell what is committed (the console's progress): its
        #: `taken()` is called before each batch is taken from the queue and
        #: returns a mark, and `committed(mark)` once that batch is
        #: committed. Whatever it was handed before the mark was made
        #: (after the transitions it concerns were handed here) is committed
        #: then.
        self.watch: Any = None
        self._mark = 0
        self.commits = 0
        self.events_written = 0
        # Started on the first transition, not here: a process pool forks its
        # fork server when the run starts, and should find no other thread.
        self._thread: Optional[threading.Thread] = None
        # The writer's process, though, is started here, in the caller's
        # thread: a fork server forked while another thread is starting a
        # program would keep that start waiting (it holds a copy of the pipe
        # the start waits on) for as long as it lives.
        self._child: Optional[_Child] = None
        #: the run's (controller_pid, controller_started) this writer commits
        #: for (a controller's writer): no commit lands once it has another
        self._owner: Optional[Tuple[Any, Any]] = None
        if self._separate:
            con = db.take()
            try:
                row = con.execute("SELECT controller_pid, controller_started FROM runs "
                                  "WHERE id = ?", (run_id,)).fetchone()
            finally:
                db.give(con)
            self._owner = tuple(row) if row is not None else None
            try:
                self._child = _Child.start(self)
                self.process_pid = self._child.proc.pid
            except (OSError, subprocess.SubprocessError, ValueError):
                pass   # (no interpreter to run it with, say): the thread commits

    # -- the caller's side -----------------------------------------------------

    def state_of(self, key: str) -> TaskState:
        return self._state[key]

    def add_task(self, key: str, task_id: int, state: str = "pending") -> None:
        """Know a task row created after the writer started."""
        self._ids[key] = task_id
        self._state[key] = TaskState(state)
        if self._child is not None:
            self._check_open()
            self._put_special(_NewIds({key: task_id}))

    def move(self, key: str, to_state: TaskState, at: float, columns: Tuple[str, ...],
             values: Tuple[Any, ...], detail: Optional[str] = None) -> None:
        """Move task `key` to `to_state` at `at`, setting `columns` of its row
        to `values`: the quick form of `transition()`, for the harness's
        events (`detail`: the event's detail as JSON text, made by the
        caller)."""
        current = self._state[key]
        if to_state not in TRANSITIONS[current]:
            advance(current, to_state, key)  # raises
        self._state[key] = to_state
        if self._thread is None or self._error is not None or self._closed:
            self._check_open()
        self._queue.put((key, _VALUE[current], _VALUE[to_state], at, columns, values,
                         detail))

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

    def _put(self, item: Any) -> None:
        self._check_open()
        self._queue.put(item)

    def _put_special(self, item: Any) -> None:
        """Queue an item that is not a transition (counted first: see _take)."""
        with self._lock:
            self._specials += 1
        self._queue.put(item)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until everything handed over so far is committed."""
        if self._thread is not None and self._thread.is_alive():
            marker = _Marker()
            self._put_special(marker)
            self._waited_for.set()
            if not marker.done.wait(timeout):
                raise JournalError(f"{self.where}: the writer did not commit within "
                                   f"{timeout} s")
        if self._error is not None:
            raise write_failed(self.where, self._error)

    def after_commit(self, fn: Callable[[Optional[BaseException]], None],
                     urgent: bool = True) -> None:
        """Call `fn(None)` once everything handed over so far is committed
        (`fn(error)` if that commit failed), from the writer's thread, without
        waiting for it here; the calls made while one commit is under way
        share the next (group commit). `urgent`: the commit is made at once;
        else it may wait, like any transition, up to LINGER for more to
        gather, unless `hurry()` is called meanwhile."""
        self._check_open()
        self._put_special(_Callback(fn, urgent))

    def hurry(self) -> None:
        """Commit what is queued now, without lingering (someone waits for it)."""
        with self._hurry_lock:
            self._hurried = True
            self._waited_for.set()

    def failure(self) -> Optional[BaseException]:
        """What stopped this writer, if anything: the error it met committing,
        or (a writer with a process, once that is ready) that its process
        ended; None while it works. A look for a watcher: commits nothing."""
        if self._error is not None:
            return self._error
        child = self._child
        if child is not None and child.ready and not self._closed:
            code = child.proc.poll()
            if code is not None:
                return JournalError(f"the writer's process: its process ended "
                                    f"(exit code {code})")
        return None

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._put_special(_STOP)
            self._waited_for.set()
            self._thread.join()
            # a flush() that raced with close() must not wait for ever
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if type(item) is _Marker:
                    item.done.set()
                elif type(item) is _Callback:
                    item.fn(self._error or JournalError("the journal writer is closed"))
        elif self._child is not None:
            self._child.close()
        if self._error is not None:
            raise write_failed(self.where, self._error)

    # -- the writer thread -----------------------------------------------------

    def _loop(self) -> None:
        q = self._queue
        taken = None
        if self._child is not None:
            taken = self._loop_with(self._child)
            if taken is None:
                if self._own is not None:
                    self._own.close()
                    self._own = None
                return
            # It ended before it was ready (it committed nothing): commit here.
            self._child = None
            self.process_pid = None
        con = self._own
        self._own = None
        try:
            while True:
                batch, markers, stop = taken or self._take(q.get())
                taken = None
                if self._separate:   # (queued for the process)
                    batch = [item for item in batch if type(item) is not _NewIds]
                if batch and self._error is None:
                    try:
                        if con is None:
                            con = self._db.connect()
                        self._commit(batch, con)
                    except BaseException as exc:
                        self._error = exc
                self._settle(markers)
                self._tell_watch()
                if stop:
                    return
        finally:
            if con is not None:
                con.close()

    def _tell_watch(self) -> None:
        """The batch taken last is committed: tell the watcher (see `watch`)."""
        watch = self.watch
        if watch is not None and self._error is None and self._mark:
            mark, self._mark = self._mark, 0
            try:
                watch.committed(mark)
            except Exception:   # (a watcher's own trouble must not stop the writer)
                pass

    def _settle(self, markers: List[Any]) -> None:
        """What waited for the commit just made (or failed) goes on."""
        error = self._error
        for marker in markers:
            if type(marker) is _Marker:
                marker.done.set()
            else:
                try:
                    marker.fn(error)
                except Exception:   # (a callback's own bug must not stop the writer)
                    pass

    def _take(self, item: Any) -> Tuple[List[Any], List[Any], bool]:
        """`item` and everything queued after it: (the items, the flush
        markers and callbacks, whether close() asked to stop)."""
        q = self._queue
        batch: List[Any] = [item]
        watch = self.watch
        if watch is not None:   # (before the batch is taken: see `watch`)
            self._mark = watch.taken()
        # Everything queued now, taken without a turn of Python per item: the
        # items queued after _END wait for the next batch.
        q.put(_END)
        batch.extend(iter(q.get, _END))
        if self._specials == self._specials_found:
            return batch, [], False   # transitions only (the usual batch)
        items: List[Any] = []
        markers: List[Any] = []
        found = 0
        stop = False
        for n, item in enumerate(batch):
            kind = type(item)
            if kind is tuple:
                items.append(item)
                continue
            found += 1
            if item is _STOP:
                # (close() puts nothing after it: what follows is a flush
                # that raced with it, settled by close())
                stop = True
                for rest in batch[n + 1:]:
                    q.put(rest)
                break
            if kind is _Marker or kind is _Callback:
                markers.append(item)
            else:
                items.append(item)   # (_NewIds: in order with the transitions)
                self._ids_taken = True
        self._specials_found += found
        return items, markers, stop

    def _loop_with(self, child: _Child) -> Optional[Tuple[List[Any], List[Any], bool]]:
        """The thread's loop when a process commits: hand each batch over,
        wait until it is committed; until the process is ready, commit here
        instead. If the process ended before it was ready, the batch it was
        given (for the thread to commit)."""
        q = self._queue
        try:
            while True:
                batch, markers, stop = self._linger(*self._take(q.get()))
                if batch and self._error is None:
                    try:
                        if child.ready or child.poll_ready():
                            if self._ids_taken:
                                self._ids_taken = False
                                self.events_written += child.commit(batch)
                            else:   # (transitions only: as they are)
                                self.events_written += child._commit(batch)
                            self.commits += 1
                        else:
                            self._commit_here(batch, child)
                    except _NotStarted:
                        return batch, markers, stop
                    except BaseException as exc:
                        self._error = exc
                self._settle(markers)
                self._tell_watch()
                if stop:
                    return None
        finally:
            child.close()

    def _linger(self, batch: List[Any], markers: List[Any], stop: bool
                ) -> Tuple[List[Any], List[Any], bool]:
        """A batch nobody waits for (no flush, no close) waits up to LINGER
        seconds for more, so that a run of short tasks commits (and syncs)
        once per many of them, not once per transition; a flush or close
        that arrives meanwhile ends the wait at once. What is committed is
        still in order: a commit holds every transition handed over before
        its last one."""
        if stop or not batch or LINGER <= 0 or _urgent(markers):
            return batch, markers, stop
        # (sleeping, not waiting on the queue: a wake-up per transition put
        # would cost the threads that put them more than the sync saved)
        waited = self._waited_for
        with self._hurry_lock:
            if self._hurried:
                self._hurried = False
                return batch, markers, stop
            waited.clear()
        for wait in (False, True):
            if wait:
                waited.wait(LINGER)
                with self._hurry_lock:
                    self._hurried = False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                continue
            more, more_markers, stop = self._take(item)   # (takes all that is queued)
            batch.extend(more)
            markers.extend(more_markers)
            if stop or _urgent(more_markers):
                break
        return batch, markers, stop

    def _commit_here(self, batch: List[Any], child: _Child) -> None:
        """Commit `batch` in this thread while the process starts (the ids of
        tasks added meanwhile go on to it)."""
        items = []
        for item in batch:
            if type(item) is _NewIds:
                try:
                    child.send(("ids", item.ids))
                except OSError:
                    pass   # it ended: its next answer says so
            else:
                items.append(item)
        if items:
            if self._own is None:
                self._own = self._db.connect()
            self._commit(items, self._own)

    def _commit(self, batch: List[_Item], con: Any) -> None:
        """Commit `batch` on `con`, a connection of this writer's own."""
        event_rows, updates, run_fields = fold(batch, self.run_id, self._ids)
        if self._db.path is not None:
            # a SQLite file: statements of many rows each (see _sqlitewriter.commit)
            commit(con, self.run_id, event_rows, updates, run_fields, owner=self._owner)
        else:
            self._commit_portable(con, event_rows, updates, run_fields)
        self.commits += 1
        self.events_written += len(event_rows)

    def _commit_portable(self, con: Any, event_rows: List[Tuple[Any, ...]],
                         updates: Dict[Tuple[str, ...], List[Tuple[Any, ...]]],
                         run_fields: Dict[str, Any]) -> None:
        """The same rows, a statement per row, in plain SQL any driver takes."""
        db = self._db
        cur = con.cursor()
        try:
            db.begin(cur, write=True)
            if event_rows:
                cur.executemany(db.sql("INSERT INTO events (run_id, key, from_state, "
                                       "to_state, at, detail) VALUES (?, ?, ?, ?, ?, ?)"),
                                event_rows)
            for cols, rows in updates.items():
                cur.executemany(db.sql(update_sql("tasks", cols)), rows)
            if run_fields:
                cur.execute(db.sql(update_sql("runs", tuple(run_fields))),
                            (*run_fields.values(), self.run_id))
            db.commit(con)
        except BaseException:
            db.rollback(con)
            raise
        finally:
            cur.close()


class _Child:
    """The writer's process (`_sqlitewriter` run as a program) and its pipes."""

    def __init__(self, proc: subprocess.Popen, out: int, answers: int, where: str) -> None:
        self.proc = proc
        self.out = out
        self.answers = answers
        self.where = where
        self._buf = b""
        self.ready = False   # it said it opened the journal
        _OPEN_FDS.update((out, answers))

    @classmethod
    def start(cls, writer: JournalWriter) -> _Child:
        script = _sqlitewriter.__file__
        if not script or not os.path.isfile(script):
            raise ValueError("the writer's program is not a file")
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:
            # its own session: a ^C to the controller's terminal must leave it
            # to commit what the controller journals as it stops
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", script, str(to_child), str(from_child),
                 str(os.getpid())],
                pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            for fd in (from_parent, to_parent):
                os.close(fd)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        child = cls(proc, from_parent, to_parent, writer.where)
        try:
            child.send(("init", writer._path, writer.run_id, writer._busy_ms,
                        writer._owner))
        except OSError:
            child.close()
            raise
        return child

    def send(self, value: Any) -> None:
        try:
            data = frame(value)
        except ValueError:   # a value of a type marshal does not know
            data = frame(_plain(value))
        view = memoryview(data)
        while view:
            view = view[os.write(self.out, view):]

    def commit(self, batch: List[Any]) -> int:
        """Have `batch` committed; the number of event rows written."""
        items: List[Any] = []
        events = 0
        for item in batch:
            if type(item) is _NewIds:
                if items:
                    events += self._commit(items)
                    items = []
                self.send(("ids", item.ids))
            else:
                items.append(item)
        if items:
            events += self._commit(items)
        return events

    def _answer(self) -> bytes:
        """The next line the process wrote (b"" if it ended)."""
        while b"\n" not in self._buf:
            chunk = os.read(self.answers, 4096)
            if not chunk:
                return b""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def poll_ready(self) -> bool:
        """Whether the process has said it is ready, without waiting for it;
        _NotStarted if it ended before."""
        if not self.ready and select.select([self.answers], [], [], 0)[0]:
            chunk = os.read(self.answers, 4096)
            if not chunk:
                raise _NotStarted()
            self._buf += chunk
            if self._buf.startswith(b"ready\n"):
                self._buf = self._buf[len(b"ready\n"):]
                self.ready = True
        return self.ready

    def _commit(self, items: List[Any]) -> int:
        try:
            self.send(("batch", items))
        except OSError:
            pass   # it ended: the answer says why
        answer = self._answer()
        if not self.ready:
            if answer == b"":
                raise _NotStarted()   # (a Python that cannot run it, say)
            if answer == b"ready":
                self.ready = True
                answer = self._answer()
        if answer.startswith(b"ok "):
            return int(answer[3:])
        if answer.startswith(b"error "):
            text = answer[6:].decode("utf-8", "replace").strip()
        else:
            code = self.proc.wait(PROCESS_EXIT_SECONDS)
            text = f"its process ended (exit code {code})"
        raise JournalError(f"{self.where}: the writer's process: {text}")

    def close(self) -> None:
        if not self.ready:
            try:
                self.poll_ready()
            except (_NotStarted, OSError):
                pass
        for fd in (self.out, self.answers):   # its input ends: it ends
            if fd in _OPEN_FDS:
                _OPEN_FDS.discard(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        if not self.ready:
            # Still starting: it has committed nothing (the thread did), and
            # a short run need not wait for an interpreter to start and end.
            self.proc.kill()
        # (woken when it exits: Popen.wait with a timeout polls, by sleeps
        # that grow to 50 ms)
        wait_exit(self.proc.pid, PROCESS_EXIT_SECONDS)
        try:
            self.proc.wait(PROCESS_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: The controller's ends of the pipes to writers' processes. A process forked
#: from the controller (the process pool's fork server and its workers) closes
#: them, so that when the controller dies the writer's process sees its input
#: end at once (it would notice its parent gone within a second anyway).
_OPEN_FDS: Set[int] = set()


def _close_in_child() -> None:
    for fd in _OPEN_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _OPEN_FDS.clear()


os.register_at_fork(after_in_child=_close_in_child)


def _plain(value: Any) -> Any:
    """`value` with what marshal does not know made plain: subclasses of
    str, int and float (enums, say) as their base type, anything else as
    its repr (the driver would refuse it too)."""
    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return repr(value)

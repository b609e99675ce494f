"""The process pool: a fork server ("zygote") and the workers it forks.

Why a zygote: tasks are closures and local functions (as in pexen 0.0.x), so
workers must be forked, not spawned. Forking a process that runs other
threads (journal writer, watchdog, this pool's own reader) can leave the child
stuck on a lock some thread held at fork time. So `start()` forks one small
process while the pool has no threads of its own yet; it holds the registered
tasks and forks every worker, the first ones and each replacement, from a
process that has exactly one thread.

Channels (all created here, nothing from multiprocessing):
- controller <-> zygote: a SOCK_SEQPACKET socketpair. The controller asks for
  a worker by sending the ends the worker will use (SCM_RIGHTS), or for a
  worker to be killed; the zygote reports each worker's exit status.
- controller -> worker: a SOCK_SEQPACKET socketpair, one message per task
  (its seq, then the pickled task). A worker takes a message only to run it
  at once; the controller keeps the worker's end open too, so it can take
  back what the worker has not taken yet (a whole message or nothing: the
  kernel hands each to one reader). So tasks are handed to a worker ahead,
  run back to back without a round trip to the controller, and those queued
  behind a task that turns out slow (or a worker that died) go to another
  worker: nothing started twice, nothing lost.
- worker -> controller: a pipe of length-prefixed pickles (started, done, ...);
  a task's `done` and the next one's `start` go in one write.
- controller -> worker: a pipe for the answers to a task that adds tasks.

Each worker has its own channels, so one can be killed (the watchdog ends a
hung Python task this way) without harming a queue the others share. A
worker's death is learnt from the zygote's waitpid(), never from EOF on its
pipe (a daemon the task forked may hold the pipe open).
"""

from __future__ import annotations

import _socket
import collections
import errno
import math
import os
import pickle
import queue
import select
import selectors
import signal
import threading
import time

from ..util import wait_exit
from . import _cgroup
from ._call import exc_info_of
from ._keys import describe
from ._zygote import (
    BIG,
    BIG_AFTER,
    SEQ,
    _dumps,
    _flush_stdio,
    _fork,
    _FrameBuffer,
    _loads_or_none,
    _write_frame,
    _zygote_main,
    describe_status,
    recv_message,
    send_fds,
)
from .common import (
    ExceptionInfo,
    TaskKilledError,
    TaskRes,
    WorkerDiedError,
)
from .pool import _WAKE_SECONDS, PoolError, PoolStatistics, _check_size, _Pool

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

#: With `ahead`, at most this many tasks are handed to one worker beside the
#: one it runs (its socket holds about 160 small messages: the others wait
#: in the pool, released, until it has taken some).
MAX_QUEUED_PER_WORKER = 512
#: A worker with nothing to do takes back the tasks queued behind a task that
#: has run this long (seconds) in another worker.
STEAL_AFTER = 0.005
_STOP = SEQ.pack(0)
#: A worker with this many tasks left (the one it runs) and tasks held by the
#: barrier hurries it: the commit starts before the worker is idle.
_HURRY_AT = 1
#: With `ahead`, while every worker has tasks queued behind the one it runs,
#: the pool reads what they send at most this often (seconds): a look per
#: task ended costs a wake-up of the calling thread, as much as the rest of
#: what the controller does for a short task.
QUIET_MAX = 0.005
#: (shorter quiet spells than this are not worth a sleep)
_QUIET_MIN = 0.0005


class _Worker:
    __slots__ = ("wid", "pid", "sock", "steal", "ack_w", "result_r", "frames", "queue",
                 "running", "since", "kill_asked", "full", "stopped", "gone", "eof")

    def __init__(self, wid: int, sock: _socket.socket, steal: _socket.socket, ack_w: int,
                 result_r: int) -> None:
        self.wid = wid
        self.pid: Optional[int] = None
        self.sock = sock            # the controller's end of the task socket
        self.steal = steal          # the worker's end, to take back what it has not taken
        self.ack_w = ack_w
        self.result_r = result_r
        self.frames = _FrameBuffer()
        self.queue: Deque[int] = collections.deque()   # seqs sent, not done, in order
        self.running: Optional[int] = None   # the seq it said it started
        self.since = 0.0            # time.monotonic() it started that one
        self.kill_asked = False
        self.full = False           # its socket took no more (rare: send again later)
        self.stopped = False        # it was told to stop
        self.gone = False           # it exited and its channels are closed
        self.eof = False            # its result pipe is closed (it is ending)


class ProcessWorkerPool(_Pool):
    """Runs tasks in forked worker processes (see the module docstring).

    Tasks registered before `start()` may be anything (closures included);
    tasks added while it runs (`register_late`) must be picklable. Return
    values and shared state cross a process boundary, so must be picklable.

    `ahead` (seconds, keyword only; 0 by default): hand out, beyond `spare`,
    as many tasks as the workers are expected to run in that time, from the
    durations of the tasks that ended (at most 2 x 513 per worker). Short tasks
    then run back to back in each worker, while what the controller does per
    task (a journal's commit, say) happens beside them.
    """

    def __init__(self, workers: int = 1, spare: int = 1, *, ahead: float = 0.0) -> None:
        _check_size(workers, spare)
        if not isinstance(ahead, (int, float)) or isinstance(ahead, bool) or ahead < 0:
            raise ValueError(f"ahead must be a number of seconds >= 0, not {ahead!r}")
        self.wanted_workers = workers
        self.wanted_spare = spare
        self.ahead = float(ahead)
        self.max_tasks = workers + spare
        # tasks queued in one worker (besides the one it runs) while the
        # durations are not known, or without `ahead`
        self._base_depth = 1 + math.ceil(spare / workers)
        self._depth = self._base_depth
        self._avg: Optional[float] = None      # mean duration of a task (seconds)
        self.on_start: Optional[Callable[[Any, int], None]] = None
        self.on_add_tasks: Optional[Callable[..., None]] = None
        self.key_of: Callable[[Any], str] = describe
        # Called with each task submitted and a function that lets it start:
        # the task waits (in this pool's queue) until that function is called
        # (with None; with an exception, the task ends with that error
        # instead). A journal uses it to have a task's attempt on disk before
        # the task can start, without making the caller wait for the disk.
        self.barrier: Optional[Callable[[Any, Callable[[Optional[BaseException]], None]],
                                        None]] = None
        self.taskmap: Dict[int, Any] = {}      # id(task) -> task (0.0.x name)
        self._index: Dict[int, int] = {}       # id(task) -> index in the zygote
        self._late: Dict[int, bytes] = {}      # id(task) -> pickled task
        self._late_tasks: Dict[int, Any] = {}
        self._lock = threading.Lock()
        self._results: Any = None
        self._active = 0
        self._running = False
        self._shutting_down = False
        self._zygote_pid: Optional[int] = None
        self._ctl: Optional[_socket.socket] = None
        # The pool has no thread of its own: whoever waits for results (or for
        # the workers to end) reads the workers' frames (`_pump`).
        self._live = False                     # started, not yet torn down
        self._sel: Optional[selectors.BaseSelector] = None
        self._poll_lock = threading.Lock()     # one thread reads at a time
        self._watched: Dict[int, _Worker] = {}  # result fd -> worker
        self._wake_r: Optional[int] = None
        self._wake_w: Optional[int] = None
        self._workers: Dict[int, _Worker] = {}
        # not sent yet: free to go, in order; and held by the barrier
        self._pending: Deque[Tuple[int, bytes]] = collections.deque()
        self._held: Dict[int, bytes] = {}      # seq -> its message
        self._inflight: Dict[int, Any] = {}    # seq -> task
        self._msgs: Dict[int, bytes] = {}      # seq -> its message, while sent
        self._seq = 0
        self._next_wid = 0
        self._replaced = 0
        self._broken = False   # the zygote died: tasks end with an error at once

    # -- the protocol ---------------------------------------------------------

    def register(self, tasks: Iterable[Any]) -> None:
        """Know `tasks` (before `start()`: the fork server gets them when it
        is forked). Registrations add up, across start cycles too, as in
        pexen 0.0.x: a task registered for an earlier start can be submitted
        after the next one."""
        if self.alive():
            raise PoolError("Cannot register tasks while the pool is running")
        index, taskmap = self._index, self.taskmap
        for task in tasks:
            tid = id(task)
            if tid not in index:
                index[tid] = len(taskmap)
                taskmap[tid] = task
                # (one added while an earlier start ran is forked with the next)
                self._late.pop(tid, None)
                self._late_tasks.pop(tid, None)

    def register_late(self, tasks: Iterable[Any]) -> None:
        """Take tasks while running; they are sent pickled with each submit."""
        blobs = {}
        for task in tasks:
            if id(task) in self._index or id(task) in self._late:
                continue
            try:
                blobs[id(task)] = (_dumps(task), task)
            except Exception as exc:
                raise PoolError(
                    f"{describe(task)} cannot be sent to the process pool: it was "
                    f"added after the pool started, and it cannot be pickled ({exc}); "
                    "define it at module level, or add it before run()", task) from None
        for tid, (blob, task) in blobs.items():
            self._late[tid] = blob
            self._late_tasks[tid] = task

    def start(self) -> None:
        if self.alive():
            raise PoolError("Cannot re-start a running pool")
        self._results = queue.SimpleQueue()
        self._active = 0
        self._inflight = {}
        self._msgs = {}
        self._pending.clear()
        self._held.clear()
        self._workers = {}
        self._broken = False
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        tasks = list(self.taskmap.values())
        _flush_stdio()  # or the zygote inherits unwritten output and repeats it
        pid = _fork()
        if pid == 0:
            try:
                parent_sock.close()
                _zygote_main(child_sock, tasks)
            finally:
                os._exit(70)
        child_sock.close()
        self._zygote_pid = pid
        self._ctl = parent_sock
        self._shutting_down = False
        with self._lock:
            # No more workers than tasks to run (more start if tasks are
            # added while it runs: `_dispatch`).
            for _ in range(min(self.wanted_workers, max(1, len(self.taskmap)))):
                self._spawn(dispatch=False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        sel = selectors.DefaultSelector()
        sel.register(parent_sock, selectors.EVENT_READ, "ctl")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._sel = sel
        self._watched = {}
        self._running = True
        self._live = True

    def iter_results(self) -> Any:
        """TaskRes of submitted tasks as they end, until none is left (the
        calling thread reads what the workers send meanwhile). Once shut down
        and drained, the workers and the fork server are gone."""
        results = self._results
        while self._active > 0:
            try:
                res = results.get_nowait()
            except queue.Empty:
                self._pump(_WAKE_SECONDS)
                continue
            self._active -= 1
            yield res
        if self._shutting_down:
            self._finish()

    def deliver(self, res: TaskRes) -> None:
        self._results.put(res)
        self._poke()

    def full(self) -> bool:
        if self.ahead and self._avg is not None:
            return self._active >= max(self.max_tasks,
                                       2 * self.wanted_workers * self._depth)
        return self._active >= self.max_tasks

    def submit(self, task: Any, shared: Optional[Dict[str, Any]] = None) -> None:
        if self._shutting_down:
            raise PoolError("The pool is shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        tid = id(task)
        idx = self._index.get(tid)
        blob = None
        if idx is None:
            blob = self._late.get(tid)
            if blob is None:
                raise PoolError(f"Cannot submit unregistered task {task}", task)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._inflight[seq] = task
            self._active += 1
        key = self.key_of(task)
        if self._broken:
            err = WorkerDiedError(f"task {key} cannot run: the process pool's fork "
                                  "server ended")
            self._put_result(seq, TaskRes(task, None, None, ExceptionInfo(
                WorkerDiedError, err, None, f"WorkerDiedError: {err}\n")))
            return
        try:
            shared_blob = _dumps({} if shared is None else shared)
        except Exception as exc:
            pickling = AttributeError(f"Can't pickle the shared state given to task {key}: "
                                      f"{exc}")
            self._put_result(seq, TaskRes(task, shared, None, ExceptionInfo(
                AttributeError, pickling, None, f"AttributeError: {pickling}\n")))
            return
        msg = _dumps(("run", key, idx, blob, shared_blob))
        barrier = self.barrier
        with self._lock:
            if barrier is not None:
                self._held[seq] = msg
            else:
                self._pending.append((seq, msg))
                self._dispatch()
            idle = barrier is not None and self._an_idle_worker()
        if barrier is not None:
            def release(error: Optional[BaseException] = None) -> None:
                self._release(seq, error)

            barrier(task, release)
            if idle:
                self._hurry()

    def _hurry(self) -> None:
        """A worker waits for a task the barrier holds: tell the barrier."""
        hurry = getattr(self.barrier, "hurry", None)
        if hurry is not None:
            hurry()

    def _release(self, seq: int, error: Optional[BaseException]) -> None:
        """The barrier lets task `seq` start (or, with `error`, end with it)."""
        with self._lock:
            msg = self._held.pop(seq, None)
            if msg is None:
                return   # taken out meanwhile (killed, taken over, the pool ended)
            if error is None:
                self._pending.append((seq, msg))
                self._dispatch()
                return
            task = self._inflight.get(seq)
        if task is not None:
            self._put_result(seq, TaskRes(task, None, None, exc_info_of(error)))

    def shutdown(self, wait: bool = False) -> None:
        if self._shutting_down:
            raise PoolError("The pool is already shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        with self._lock:
            self._shutting_down = True
            self._stop_idle()
        self._poke()
        if wait or self._active <= 0:
            # (nothing left to wait for: the workers go now, not on a later
            # call that may never come)
            self._finish()

    def terminate(self) -> None:
        """Kill every worker and the zygote now; wait until they are reaped.

        Tasks still queued or running get no result.
        """
        with self._lock:
            self._shutting_down = True
            self._pending.clear()
            self._held.clear()
        with self._poll_lock:
            self._teardown()   # the zygote SIGKILLs its workers and exits on EOF

    def kill_task(self, task: Any) -> bool:
        """Kill the worker running `task` (SIGKILL) and start a replacement.

        The task's result is a `TaskKilledError` failure (dependents do not
        run, locks are released). Returns False if the task is not running
        here. A task still waiting for a worker is taken out of the queue and
        gets the same result.
        """
        with self._lock:
            seq = self._seq_of(task)
            if seq is None:
                return False
            where = self._take_back(seq)
            if where == "running":
                worker = self._holder(seq)
                if worker is not None:
                    worker.kill_asked = True
                    self._steal_all(worker)   # what it queued runs elsewhere
                    self._ctl_send(("kill", worker.wid, signal.SIGKILL))
                    self._dispatch()
                    return True
                return False
        self._put_result(seq, TaskRes(task, None, None, _killed_info(
            f"task {self.key_of(task)} was killed before it started")))
        return True

    def take_over(self, task: Any) -> Optional[str]:
        """Drop the result `task` still gives (its caller will `deliver()`
        one). Returns "waiting" if it had not started (it never will),
        "running" if a worker has it, None (nothing done) if it is not
        submitted here or its result is already in.

        A task still waiting (in this pool, or queued in a worker that has not
        taken it yet) never starts. The worker running it gets no other task:
        whoever took the task over kills it (by the pid the `on_start` hook
        gave), and the pool replaces it when it is gone.
        """
        with self._lock:
            seq = self._seq_of(task)
            if seq is None:
                return None
            where = self._take_back(seq)
            del self._inflight[seq]
            if where == "running":
                worker = self._holder(seq)
                if worker is not None:
                    worker.kill_asked = True
                    self._steal_all(worker)
                    self._dispatch()
        return where

    def pid_of(self, task: Any) -> Optional[int]:
        """The pid of the worker running `task`, or None (what the workers
        sent is read first)."""
        if self._live and not self._poll_lock.locked():
            self._pump(0)
        with self._lock:
            seq = self._seq_of(task)
            for worker in self._workers.values():
                if seq is not None and worker.running == seq:
                    return worker.pid
        return None

    def alive(self) -> bool:
        return self._live

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(workers=len(self._workers), active=self._active,
                                  replaced=self._replaced)

    # -- internals (callers hold self._lock where it says so) ---------------

    def _seq_of(self, task: Any) -> Optional[int]:
        return next((s for s, t in self._inflight.items() if t is task), None)

    def _holder(self, seq: int) -> Optional[_Worker]:
        """(Holding the lock.) The worker task `seq` was sent to."""
        for worker in self._workers.values():
            if seq in worker.queue:
                return worker
        return None

    def _take_back(self, seq: int) -> str:
        """(Holding the lock.) Make sure task `seq` never starts, if it has
        not: "waiting" if so (it is out of every queue), "running" if a
        worker has taken it."""
        if self._held.pop(seq, None) is not None:
            return "waiting"
        for n, (s, _) in enumerate(self._pending):
            if s == seq:
                del self._pending[n]
                return "waiting"
        worker = self._holder(seq)
        if worker is None or worker.running == seq:
            return "running"
        self._steal_all(worker)
        for n, (s, _) in enumerate(self._pending):
            if s == seq:
                del self._pending[n]
                self._msgs.pop(seq, None)
                self._dispatch()
                return "waiting"
        return "running"   # it took it meanwhile

    def _steal_all(self, worker: _Worker) -> None:
        """(Holding the lock.) Take back every task message `worker` has not
        taken, to the front of the queue, in their order."""
        stolen: List[int] = []
        while True:
            try:
                data, fds = recv_message(worker.steal, _socket.MSG_DONTWAIT)
            except InterruptedError:
                continue
            except OSError:   # (BlockingIOError: nothing left)
                break
            for fd in fds:
                os.close(fd)
            if not data:
                break
            (seq,) = SEQ.unpack_from(data)
            if seq:
                stolen.append(seq)
        if not stolen:
            return
        taken = set(stolen)
        worker.queue = collections.deque(s for s in worker.queue if s not in taken)
        worker.full = False
        for seq in reversed(stolen):
            msg = self._msgs.pop(seq, None)
            if msg is not None and seq in self._inflight:
                self._pending.appendleft((seq, msg))

    def _an_idle_worker(self) -> bool:
        return any(not w.queue and not w.kill_asked for w in self._workers.values())

    def _ctl_send(self, msg: Any, fds: Iterable[int] = ()) -> None:
        if self._ctl is None:
            return
        try:
            if fds:
                send_fds(self._ctl, _dumps(msg), list(fds))
            else:
                self._ctl.send(_dumps(msg))
        except OSError:
            pass

    def _spawn(self, dispatch: bool = True) -> _Worker:
        """Ask the zygote for a new worker (holding self._lock)."""
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        # (left blocking: it shares the worker's file description; it is read
        # with MSG_DONTWAIT)
        steal = _socket.socket(fileno=os.dup(theirs.fileno()))
        result_r, result_w = os.pipe()
        ack_r, ack_w = os.pipe()
        os.set_blocking(result_r, False)
        self._next_wid += 1
        worker = _Worker(self._next_wid, mine, steal, ack_w, result_r)
        self._ctl_send(("spawn", worker.wid), (theirs.fileno(), result_w, ack_r))
        theirs.close()
        os.close(result_w)
        os.close(ack_r)
        self._workers[worker.wid] = worker
        if dispatch:
            self._dispatch()
        return worker

    def _dispatch(self) -> None:
        """(Holding the lock.) Send the tasks the barrier does not hold to the
        workers with the fewest queued, each up to its depth."""
        if not self._pending:
            return
        depth = self._depth
        workers = [w for w in self._workers.values() if not w.kill_asked and not w.full]
        if (len(self._workers) < self.wanted_workers and all(w.queue for w in workers)
                and not self._shutting_down and self._ctl is not None):
            # every worker busy, fewer than asked for: one more
            workers.append(self._spawn(dispatch=False))
        if not workers:
            return
        pending = self._pending
        while pending:
            worker = min(workers, key=_queued) if len(workers) > 1 else workers[0]
            if len(worker.queue) >= depth:
                break
            seq, msg = pending.popleft()
            if not self._send(worker, seq, msg):
                pending.appendleft((seq, msg))
                workers.remove(worker)
                if not workers:
                    break

    def _send(self, worker: _Worker, seq: int, msg: bytes) -> bool:
        """(Holding the lock.) Send one task to `worker`; False if its socket
        is full (it takes more once it has taken some)."""
        try:
            if len(msg) > BIG_AFTER:
                fd = os.memfd_create("pexen-task", os.MFD_CLOEXEC)
                try:
                    os.write(fd, msg)
                    os.lseek(fd, 0, os.SEEK_SET)
                    send_fds(worker.sock, SEQ.pack(seq) + BIG, [fd])
                finally:
                    os.close(fd)
            else:
                worker.sock.send(SEQ.pack(seq) + msg)
        except (BlockingIOError, InterruptedError):
            worker.full = True
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise
            # The worker is dead; its exit report ends what it had.
        if not worker.queue:
            worker.since = time.monotonic()
        worker.queue.append(seq)
        self._msgs[seq] = msg
        return True

    def _stop_idle(self) -> None:
        """(Holding the lock, shutting down.) Stop the workers with nothing
        left to run."""
        if self._pending or self._held:
            return
        for worker in self._workers.values():
            if not worker.queue:
                self._send_stop(worker)

    def _send_stop(self, worker: _Worker) -> None:
        if worker.stopped:
            return
        worker.stopped = True
        try:
            worker.sock.send(_STOP)
        except OSError:
            pass

    def _put_result(self, seq: int, res: TaskRes) -> None:
        with self._lock:
            self._inflight.pop(seq, None)
            self._msgs.pop(seq, None)
        self._results.put(res)
        self._poke()

    def _poke(self) -> None:
        """Wake whoever waits in `_pump`."""
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _finish(self) -> None:
        """Read until the workers have ended and the pool is torn down."""
        while self._live:
            self._pump(_WAKE_SECONDS)

    def _pump(self, timeout: float) -> None:
        """Wait up to `timeout` for what the workers and the fork server send,
        and handle it (one thread at a time; another just waits its turn)."""
        if not self._poll_lock.acquire(timeout=timeout):
            return
        try:
            if self._live:
                self._poll(timeout)
            else:
                time.sleep(min(timeout, 0.01))
        finally:
            self._poll_lock.release()

    def _poll(self, timeout: float) -> None:
        """(Holding the poll lock.) One look at the channels."""
        sel = self._sel
        assert sel is not None
        watched = self._watched
        with self._lock:
            for worker in self._workers.values():
                if worker.result_r not in watched and not (worker.gone or worker.eof):
                    watched[worker.result_r] = worker
                    sel.register(worker.result_r, selectors.EVENT_READ, worker)
            if self._done():
                self._teardown()
                return
            wait = self._balance()
            quiet = 0.0
            if not self._results.empty():
                timeout = 0
            elif wait is None:
                quiet = min(self._quiet(), timeout)
        if wait is not None:
            timeout = min(timeout, wait)
        if quiet >= _QUIET_MIN:
            # Let the results gather (a poke, a result given from another
            # thread, ends the wait at once).
            wake = self._wake_r
            try:
                select.select([wake] if wake is not None else [], [], [], quiet)
            except InterruptedError:
                return
            timeout -= quiet
        try:
            events = sel.select(max(timeout, 0))
        except InterruptedError:
            return
        for key, _ in events:
            data = key.data
            if data == "wake":
                try:
                    while os.read(key.fd, 512):
                        pass
                except OSError:
                    pass
            elif data == "ctl":
                ctl = self._ctl
                try:
                    msg = ctl.recv(1 << 16) if ctl is not None else b""
                except OSError:
                    msg = b""
                if not msg:
                    self._zygote_gone()
                    self._teardown()
                    return
                _, wid, pid, status = pickle.loads(msg)
                exited = self._workers.get(wid)
                if exited is not None:
                    if exited.pid is None:
                        exited.pid = pid
                    if exited.result_r in watched and watched[exited.result_r] is exited:
                        sel.unregister(exited.result_r)
                        del watched[exited.result_r]
                    self._worker_exited(exited, status)
            elif not data.gone:   # (its fds may be another's by now)
                self._drain(data)
        with self._lock:
            done = self._done()
        if done:
            self._teardown()

    def _quiet(self) -> float:
        """(Holding the lock.) How long the workers can be left alone: half
        the expected run time of the fewest tasks any worker has queued
        behind the one it runs, at most QUIET_MAX; 0 if a worker is down to
        that one (or idle), or without `ahead`."""
        avg = self._avg
        if not self.ahead or avg is None:
            return 0.0
        least = None
        for worker in self._workers.values():
            if worker.kill_asked or worker.gone:
                continue
            behind = len(worker.queue) - 1
            if behind < 1:
                return 0.0
            if least is None or behind < least:
                least = behind
        if least is None:
            return 0.0
        return min(QUIET_MAX, least * avg / 2)

    def _done(self) -> bool:
        """(Holding the lock.) Nothing of the pool is left to run."""
        return self._ctl is None or self._broken or (self._shutting_down and not self._workers)

    def _teardown(self) -> None:
        """(Holding the poll lock.) Close every channel, let the fork server go
        (it kills any worker left and exits), reap it."""
        if not self._live:
            return
        self._live = False
        if self._shutting_down:   # (a broken pool still takes tasks: they fail at once)
            self._running = False
        sel, self._sel = self._sel, None
        if sel is not None:
            sel.close()
        self._watched = {}
        for name in ("_wake_r", "_wake_w"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                os.close(fd)
        self._end_zygote()

    def _balance(self) -> Optional[float]:
        """(Holding the lock.) An idle worker, nothing to send it: take back
        what waits behind a task that has run STEAL_AFTER in another worker,
        and send it out again. Returns how long until that could be worth a
        look again (None: nothing waits)."""
        if self._shutting_down or self._pending:
            return None
        if not self._an_idle_worker():
            return None
        now = time.monotonic()
        wait: Optional[float] = None
        for worker in self._workers.values():
            if len(worker.queue) < 2 or worker.kill_asked:
                continue
            ran = now - worker.since
            if ran >= STEAL_AFTER:
                self._steal_all(worker)
            else:
                left = STEAL_AFTER - ran
                wait = left if wait is None else min(wait, left)
        self._dispatch()
        return wait

    def _drain(self, worker: _Worker) -> None:
        frames, eof = worker.frames.feed(worker.result_r)
        if eof and not worker.eof:
            # It is ending: the fork server's report of its exit follows. A
            # closed pipe stays readable, so stop looking at it meanwhile.
            worker.eof = True
            fd = worker.result_r
            if self._watched.get(fd) is worker and self._sel is not None:
                self._sel.unregister(fd)
                del self._watched[fd]
        for frame in frames:
            self._handle(worker, pickle.loads(frame))

    def _handle(self, worker: _Worker, msg: Tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start":
            seq = msg[1]
            with self._lock:
                worker.running = seq
                worker.since = time.monotonic()
                task = self._inflight.get(seq)
            on_start = self.on_start
            if on_start is not None and task is not None and worker.pid is not None:
                on_start(task, worker.pid)
        elif kind == "done":
            _, seq, ret_blob, shared_blob, exc_parts, duration = msg
            task = self._inflight.get(seq)
            res = (self._decode(task, ret_blob, shared_blob, exc_parts)
                   if task is not None else None)
            starved = False
            with self._lock:
                self._learn(duration)
                if worker.queue and worker.queue[0] == seq:
                    worker.queue.popleft()
                else:
                    try:
                        worker.queue.remove(seq)
                    except ValueError:
                        pass
                worker.running = None
                worker.full = False
                if worker.queue:
                    worker.since = time.monotonic()
                self._msgs.pop(seq, None)
                taken = self._inflight.pop(seq, None) is None
                if worker.kill_asked:
                    # It is being killed: no new task for it (a stop, should
                    # the killer fail, so the pool can still end).
                    if self._shutting_down and not worker.queue:
                        self._send_stop(worker)
                else:
                    self._dispatch()
                    if self._shutting_down:
                        self._stop_idle()
                    elif len(worker.queue) <= _HURRY_AT and self._held:
                        starved = True
            if starved:
                self._hurry()
            if res is not None and not taken:
                self._results.put(res)
        elif kind == "hello":
            worker.pid = msg[1]
        elif kind == "add":
            self._add_from_worker(worker, msg[1], msg[2])

    def _learn(self, duration: float) -> None:
        """(Holding the lock.) A task took `duration` seconds: with `ahead`,
        queue in each worker about as many as it runs in that time."""
        if not self.ahead:
            return
        avg = self._avg
        avg = duration if avg is None else 0.8 * avg + 0.2 * duration
        self._avg = avg
        ahead = self.ahead / max(avg, 1e-6)
        self._depth = max(self._base_depth, 1 + min(MAX_QUEUED_PER_WORKER, math.ceil(ahead)))

    def _decode(self, task: Any, ret_blob: Optional[bytes], shared_blob: Optional[bytes],
                exc_parts: Any) -> TaskRes:
        excinfo = None
        if exc_parts is not None:
            type_blob, val_blob, text, type_name = exc_parts
            excinfo = ExceptionInfo(_loads_or_none(type_blob), _loads_or_none(val_blob),
                                    None, text)
        try:
            ret = pickle.loads(ret_blob) if ret_blob is not None else None
            shared = pickle.loads(shared_blob) if shared_blob is not None else None
        except Exception as exc:
            err = AttributeError(f"Can't unpickle the result of task "
                                 f"{self.key_of(task)}: {exc}")
            return TaskRes(task, None, None, ExceptionInfo(AttributeError, err, None,
                                                           f"AttributeError: {err}\n"))
        return TaskRes(task, shared, ret, excinfo)

    def _add_from_worker(self, worker: _Worker, blobs: List[bytes],
                         group: Optional[str]) -> None:
        error: Optional[BaseException] = None
        try:
            tasks = [pickle.loads(blob) for blob in blobs]
            if self.on_add_tasks is None:
                raise PoolError("this pool is not run by a Sched: tasks cannot be "
                                "added from inside a task")
            if group is None:
                self.on_add_tasks(tasks)
            else:
                self.on_add_tasks(tasks, group=group)
        except Exception as exc:
            error = exc
        try:
            payload = _dumps(("addack", error))
        except Exception:
            payload = _dumps(("addack", PoolError(f"{type(error).__name__}: {error}")))
        try:
            _write_frame(worker.ack_w, payload)
        except OSError:
            pass

    def _worker_exited(self, worker: _Worker, status: int) -> None:
        self._drain(worker)  # what it wrote before it died
        with self._lock:
            self._steal_all(worker)   # what it never took runs elsewhere
            worker.gone = True
            _close_worker(worker)
            self._workers.pop(worker.wid, None)
            lost = [(seq, self._inflight.pop(seq)) for seq in worker.queue
                    if seq in self._inflight]
            for seq, _ in lost:
                self._msgs.pop(seq, None)
            worker.queue.clear()
            if not self._shutting_down and self._ctl is not None:
                self._replaced += 1
                self._spawn()
            elif self._shutting_down:
                self._stop_idle()
            starved = bool(self._held) and self._an_idle_worker()
        if starved:
            # the replacement is idle: with every worker replaced, no other
            # end of a task would tell the barrier
            self._hurry()
        if _cgroup.session is not None and worker.pid:
            # what its tasks left there, escaped from it or not, ends before
            # a task of it is said to have ended
            _cgroup.remove(_cgroup.path_of(_cgroup.worker_name(worker.wid, worker.pid))
                           or "", wait=2.0)
        for _seq, task in lost:
            key = self.key_of(task)
            if worker.kill_asked:
                excinfo = _killed_info(f"task {key} was killed on request "
                                       f"(worker pid {worker.pid})")
            else:
                err = WorkerDiedError(f"the worker (pid {worker.pid}) running task {key} "
                                      f"died: {describe_status(status)}")
                excinfo = ExceptionInfo(WorkerDiedError, err, None,
                                        f"WorkerDiedError: {err}\n")
            self._results.put(TaskRes(task, None, None, excinfo))

    def _zygote_gone(self) -> None:
        """The zygote died (or terminate() closed its socket): every worker
        dies with it; what they ran ends with an error."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers = {}
            lost = [(seq, self._inflight.pop(seq)) for seq in list(self._inflight)]
            self._pending.clear()
            self._held.clear()
            self._msgs.clear()
            self._broken = True
        for worker in workers:
            _close_worker(worker)
        for _seq, task in lost:
            err = WorkerDiedError(f"task {self.key_of(task)} was lost: the process "
                                  "pool's fork server ended")
            self._results.put(TaskRes(task, None, None, ExceptionInfo(
                WorkerDiedError, err, None, f"WorkerDiedError: {err}\n")))

    def _end_zygote(self) -> None:
        with self._lock:
            ctl, self._ctl = self._ctl, None
            workers = list(self._workers.values())
            self._workers = {}
        for worker in workers:
            _close_worker(worker)
        if ctl is not None:
            try:   # (a closed channel alone says the controller died)
                ctl.send(_dumps(("die",)))
            except OSError:
                pass
            ctl.close()
        pid, self._zygote_pid = self._zygote_pid, None
        if pid is None:
            return
        wait_exit(pid, 10.0)
        deadline = time.monotonic() + 10
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)


def _queued(worker: _Worker) -> int:
    return len(worker.queue)


def _close_worker(worker: _Worker) -> None:
    worker.gone = True
    for sock in (worker.sock, worker.steal):
        try:
            sock.close()
        except OSError:
            pass
    for fd in (worker.result_r, worker.ack_w):
        try:
            os.close(fd)
        except OSError:
            pass


def _killed_info(message: str) -> ExceptionInfo:
    err = TaskKilledError(message)
    return ExceptionInfo(TaskKilledError, err, None, f"TaskKilledError: {err}\n")


__all__ = ["ProcessWorkerPool"]

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
  a worker by sending the two pipe ends the worker will use (SCM_RIGHTS), or
  for a worker to be killed; the zygote reports each worker's exit status.
- controller -> worker: a pipe of length-prefixed pickles (tasks to run);
- worker -> controller: a pipe of length-prefixed pickles (started, done, ...).

Each worker has its own pipes, so one can be killed (the watchdog ends a hung
Python task this way) without harming a queue the others share. A worker's
death is learnt from the zygote's waitpid(), never from EOF on its pipe (a
daemon the task forked may hold the pipe open).
"""

from __future__ import annotations

import collections
import errno
import os
import pickle
import selectors
import signal
import socket
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from ._call import exc_info_of
from ._keys import describe
from ._zygote import (
    _dumps,
    _flush_stdio,
    _fork,
    _FrameBuffer,
    _loads_or_none,
    _write_frame,
    _zygote_main,
    describe_status,
)
from .common import (
    ExceptionInfo,
    TaskKilledError,
    TaskRes,
    WorkerDiedError,
)
from .pool import PoolError, PoolStatistics, _check_size, _Pool

# -- the controller's side ---------------------------------------------------

class _Worker:
    __slots__ = ("wid", "pid", "task_w", "result_r", "frames", "busy", "kill_asked")

    def __init__(self, wid: int, task_w: int, result_r: int) -> None:
        self.wid = wid
        self.pid: Optional[int] = None
        self.task_w = task_w
        self.result_r = result_r
        self.frames = _FrameBuffer()
        self.busy: Optional[int] = None   # seq of the task it runs
        self.kill_asked = False


class ProcessWorkerPool(_Pool):
    """Runs tasks in forked worker processes (see the module docstring).

    Tasks registered before `start()` may be anything (closures included);
    tasks added while it runs (`register_late`) must be picklable. Return
    values and shared state cross a process boundary, so must be picklable.
    """

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        _check_size(workers, spare)
        self.wanted_workers = workers
        self.wanted_spare = spare
        self.max_tasks = workers + spare
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
        self._ctl: Optional[socket.socket] = None
        self._reader: Optional[threading.Thread] = None
        self._wake_w: Optional[int] = None
        self._workers: Dict[int, _Worker] = {}
        self._idle: Deque[_Worker] = collections.deque()
        self._pending: Deque[Tuple[int, bytes]] = collections.deque()
        self._held: Set[int] = set()           # seqs in _pending the barrier holds
        self._inflight: Dict[int, Any] = {}    # seq -> task
        self._seq = 0
        self._next_wid = 0
        self._replaced = 0
        self._broken = False   # the zygote died: tasks end with an error at once

    # -- the protocol ---------------------------------------------------------

    def register(self, tasks: Iterable[Any]) -> None:
        if self.alive():
            raise PoolError("Cannot register tasks while the pool is running")
        self.taskmap = {}
        self._index = {}
        self._late = {}
        self._late_tasks = {}
        for task in tasks:
            self._index[id(task)] = len(self.taskmap)
            self.taskmap[id(task)] = task

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
        import queue

        self._results = queue.SimpleQueue()
        self._active = 0
        self._inflight = {}
        self._pending.clear()
        self._held.clear()
        self._idle.clear()
        self._workers = {}
        self._broken = False
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
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
        for _ in range(self.wanted_workers):
            self._spawn()
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        self._running = True
        self._reader = threading.Thread(target=self._read_loop, args=(wake_r,),
                                        name="pexen-procpool-reader", daemon=True)
        self._reader.start()

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
            err = AttributeError(f"Can't pickle the shared state given to task {key}: "
                                 f"{exc}")
            self._put_result(seq, TaskRes(task, shared, None, ExceptionInfo(
                AttributeError, err, None, f"AttributeError: {err}\n")))
            return
        msg = _dumps(("run", seq, key, idx, blob, shared_blob))
        barrier = self.barrier
        with self._lock:
            idle = bool(self._idle)
            if barrier is not None:
                self._held.add(seq)
                self._pending.append((seq, msg))
            elif idle:
                self._send_run(self._idle.popleft(), seq, msg)
            else:
                self._pending.append((seq, msg))
        if barrier is not None:
            barrier(task, lambda error=None: self._release(seq, error))
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
            if seq not in self._held:
                return   # taken out meanwhile (killed, taken over, the pool ended)
            self._held.discard(seq)
            if error is None:
                self._pending_to_idle()
                return
            for n, (s, _) in enumerate(self._pending):
                if s == seq:
                    del self._pending[n]
                    break
            task = self._inflight.get(seq)
        if task is not None:
            self._put_result(seq, TaskRes(task, None, None, exc_info_of(error)))

    def _pop_ready(self) -> Optional[Tuple[int, bytes]]:
        """(Holding self._lock.) The first queued task the barrier does not
        hold, taken out of the queue; None if there is none."""
        pending = self._pending
        if not self._held:
            return pending.popleft() if pending else None
        held = self._held
        for n, item in enumerate(pending):
            if item[0] not in held:
                del pending[n]
                return item
        return None

    def shutdown(self, wait: bool = False) -> None:
        if self._shutting_down:
            raise PoolError("The pool is already shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        with self._lock:
            self._shutting_down = True
            for worker in list(self._idle):
                self._send_stop(worker)
            self._idle.clear()
            for worker in self._workers.values():
                if worker.kill_asked and worker.busy is None:
                    self._send_stop(worker)
        self._poke()
        if wait:
            self._join()

    def terminate(self) -> None:
        """Kill every worker and the zygote now; wait until they are reaped.

        Tasks still queued or running get no result.
        """
        with self._lock:
            self._shutting_down = True
            self._pending.clear()
            self._held.clear()
            ctl, self._ctl = self._ctl, None
        if ctl is not None:
            ctl.close()  # the zygote SIGKILLs its workers and exits on EOF
        self._poke()
        self._join()

    def kill_task(self, task: Any) -> bool:
        """Kill the worker running `task` (SIGKILL) and start a replacement.

        The task's result is a `TaskKilledError` failure (dependents do not
        run, locks are released). Returns False if the task is not running
        here. A task still waiting for a worker is taken out of the queue and
        gets the same result.
        """
        with self._lock:
            for worker in self._workers.values():
                if worker.busy is not None and self._inflight.get(worker.busy) is task:
                    worker.kill_asked = True
                    self._ctl_send(("kill", worker.wid, signal.SIGKILL))
                    return True
            for n, (seq, _) in enumerate(self._pending):
                if self._inflight.get(seq) is task:
                    del self._pending[n]
                    self._held.discard(seq)
                    break
            else:
                return False
        self._put_result(seq, TaskRes(task, None, None, _killed_info(
            f"task {self.key_of(task)} was killed before it started")))
        return True

    def take_over(self, task: Any) -> Optional[str]:
        """Drop the result `task` still gives (its caller will `deliver()`
        one). Returns "waiting" if it had not started (it never will),
        "running" if a worker has it, None (nothing done) if it is not
        submitted here or its result is already in.

        A task still waiting for a worker never starts. The worker running it
        gets no other task: whoever took the task over kills it (by the pid the
        `on_start` hook gave), and the pool replaces it when it is gone.
        """
        with self._lock:
            seq = next((s for s, t in self._inflight.items() if t is task), None)
            if seq is None:
                return None
            del self._inflight[seq]
            for n, (s, _) in enumerate(self._pending):
                if s == seq:
                    del self._pending[n]
                    self._held.discard(seq)
                    return "waiting"
            for worker in self._workers.values():
                if worker.busy == seq:
                    worker.kill_asked = True
        return "running"

    def pid_of(self, task: Any) -> Optional[int]:
        """The pid of the worker running `task`, or None."""
        with self._lock:
            for worker in self._workers.values():
                if worker.busy is not None and self._inflight.get(worker.busy) is task:
                    return worker.pid
        return None

    def alive(self) -> bool:
        reader = self._reader
        return reader is not None and reader.is_alive()

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(workers=len(self._workers), active=self._active,
                                  replaced=self._replaced)

    # -- internals (callers hold self._lock where it says so) ---------------

    def _ctl_send(self, msg: Any, fds: Iterable[int] = ()) -> None:
        if self._ctl is None:
            return
        try:
            if fds:
                socket.send_fds(self._ctl, [_dumps(msg)], list(fds))
            else:
                self._ctl.send(_dumps(msg))
        except OSError:
            pass

    def _spawn(self) -> _Worker:
        """Ask the zygote for a new worker (holding self._lock or before start)."""
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        os.set_blocking(result_r, False)
        self._next_wid += 1
        worker = _Worker(self._next_wid, task_w, result_r)
        self._ctl_send(("spawn", worker.wid), (task_r, result_w))
        os.close(task_r)
        os.close(result_w)
        self._workers[worker.wid] = worker
        self._idle.append(worker)
        self._pending_to_idle()
        return worker

    def _pending_to_idle(self) -> None:
        while self._idle:
            item = self._pop_ready()
            if item is None:
                return
            self._send_run(self._idle.popleft(), *item)

    def _send_run(self, worker: _Worker, seq: int, msg: bytes) -> None:
        worker.busy = seq
        try:
            _write_frame(worker.task_w, msg)
        except OSError:
            pass  # the worker is dead; its exit report ends the task

    def _send_stop(self, worker: _Worker) -> None:
        try:
            _write_frame(worker.task_w, _dumps(("stop",)))
        except OSError:
            pass

    def _put_result(self, seq: int, res: TaskRes) -> None:
        with self._lock:
            self._inflight.pop(seq, None)
        self._results.put(res)

    def _poke(self) -> None:
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _join(self) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join()
        self._running = False

    def _read_loop(self, wake_r: int) -> None:
        sel = selectors.DefaultSelector()
        ctl = self._ctl
        assert ctl is not None
        sel.register(ctl, selectors.EVENT_READ, "ctl")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        watched: Dict[int, _Worker] = {}
        try:
            while True:
                with self._lock:
                    for worker in self._workers.values():
                        if worker.result_r not in watched:
                            watched[worker.result_r] = worker
                            sel.register(worker.result_r, selectors.EVENT_READ, worker)
                    if (self._ctl is None or self._broken
                            or (self._shutting_down and not self._workers)):
                        break
                for key, _ in sel.select():
                    if key.data == "wake":
                        try:
                            while os.read(wake_r, 512):
                                pass
                        except OSError:
                            pass
                    elif key.data == "ctl":
                        try:
                            msg = ctl.recv(1 << 16)
                        except OSError:
                            msg = b""
                        if not msg:
                            self._zygote_gone()
                            break
                        _, wid, pid, status = pickle.loads(msg)
                        worker = self._workers.get(wid)
                        if worker is not None:
                            if worker.result_r in watched:
                                sel.unregister(worker.result_r)
                                del watched[worker.result_r]
                            self._worker_exited(worker, status)
                    else:
                        self._drain(key.data)
        finally:
            sel.close()
            os.close(wake_r)
            wake_w, self._wake_w = self._wake_w, None
            if wake_w is not None:
                os.close(wake_w)
            self._end_zygote()

    def _drain(self, worker: _Worker) -> None:
        frames, _ = worker.frames.feed(worker.result_r)
        for frame in frames:
            self._handle(worker, pickle.loads(frame))

    def _handle(self, worker: _Worker, msg: Tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start":
            _, seq, pid = msg
            on_start = self.on_start
            task = self._inflight.get(seq)
            if on_start is not None and task is not None:
                on_start(task, pid)
        elif kind == "done":
            _, seq, ret_blob, shared_blob, exc_parts = msg
            task = self._inflight.get(seq)
            res = (self._decode(task, ret_blob, shared_blob, exc_parts)
                   if task is not None else None)
            starved = False
            with self._lock:
                worker.busy = None
                taken = self._inflight.pop(seq, None) is None
                if worker.kill_asked:
                    # It is being killed: no new task for it (a stop, should
                    # the killer fail, so the pool can still end).
                    if self._shutting_down:
                        self._send_stop(worker)
                else:
                    item = self._pop_ready()
                    if item is not None:
                        self._send_run(worker, *item)
                    elif self._shutting_down and not self._pending:
                        self._send_stop(worker)
                    else:
                        self._idle.append(worker)
                        starved = bool(self._held)
            if starved:
                self._hurry()
            if res is not None and not taken:
                self._results.put(res)
        elif kind == "hello":
            worker.pid = msg[1]
        elif kind == "add":
            self._add_from_worker(worker, msg[1], msg[2])

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
            _write_frame(worker.task_w, payload)
        except OSError:
            pass

    def _worker_exited(self, worker: _Worker, status: int) -> None:
        self._drain(worker)  # what it wrote before it died
        os.close(worker.result_r)
        os.close(worker.task_w)
        with self._lock:
            self._workers.pop(worker.wid, None)
            try:
                self._idle.remove(worker)
            except ValueError:
                pass
            seq = worker.busy
            task = self._inflight.pop(seq, None) if seq is not None else None
            if not self._shutting_down and self._ctl is not None:
                self._replaced += 1
                self._spawn()
            starved = bool(self._held) and bool(self._idle)
        if starved:
            # the replacement is idle: with every worker replaced, no other
            # end of a task would tell the barrier
            self._hurry()
        if task is None:
            return
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
            self._idle.clear()
            lost = [(seq, self._inflight.pop(seq)) for seq in list(self._inflight)]
            self._pending.clear()
            self._held.clear()
            self._broken = True
        for worker in workers:
            for fd in (worker.result_r, worker.task_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
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
            self._idle.clear()
        for worker in workers:
            for fd in (worker.result_r, worker.task_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if ctl is not None:
            ctl.close()
        pid, self._zygote_pid = self._zygote_pid, None
        if pid is None:
            return
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


def _killed_info(message: str) -> ExceptionInfo:
    err = TaskKilledError(message)
    return ExceptionInfo(TaskKilledError, err, None, f"TaskKilledError: {err}\n")


__all__ = ["ProcessWorkerPool"]

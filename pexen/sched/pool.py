"""Worker pools: run submitted tasks, report when each starts and finishes.

The protocol `Sched` drives (a custom pool implements it too)::

    register(tasks)        before start(): the tasks the pool may be given
    start()
    submit(task, shared)   hand a task over; never lost: it yields a result
    iter_results()         a generator of TaskRes until every submitted task
                           has one (also after shutdown)
    shutdown(wait=False)   no new submissions; with wait, block until the
                           workers have ended
    empty(), full(), alive()

Optional, used when present: `register_late(tasks)` (take tasks while
running), `terminate()` (stop now, leaving no process), `on_start` (called
with (task, pid) as a worker picks a task up), `on_add_tasks` and `key_of`.

Both pools here also let a supervisor (the watchdog) end a task itself:
`take_over(task)` makes the pool drop whatever result the task still gives,
and the supervisor hands the task's one result in with `deliver(res)`.
"""

from __future__ import annotations

import os
import queue
import threading

from ..util import Record
from ._call import call_task
from .common import ExceptionInfo, SchedulerError, TaskRes

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Iterable, List, Optional

_WAKE_SECONDS = 0.2


class PoolError(SchedulerError):
    """A worker pool was used the wrong way; the message says how."""

    def __init__(self, msg: str, task: Any = None) -> None:
        self.task = task
        super().__init__(msg)

    def __reduce__(self) -> Any:
        return (type(self), (str(self),))  # the task may not cross a process boundary


def _check_size(workers: int, spare: int) -> None:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, not {workers!r}")
    if not isinstance(spare, int) or isinstance(spare, bool) or spare < 0:
        raise ValueError(f"spare must be an int >= 0, not {spare!r}")


class _Pool:
    """What both pools share: results come through `self._results`, and
    `self._active` counts the tasks submitted and not yet yielded."""

    max_tasks: int
    _active: int
    _results: Any

    def iter_results(self) -> Any:
        """TaskRes of submitted tasks as they end, until none is left."""
        results = self._results
        empty = queue.Empty
        while self._active > 0:
            try:
                # Never block for good: a signal that the kernel hands to
                # another thread must still reach the main thread's handler
                # (^C, SIGTERM) while it waits here.
                res = results.get(True, _WAKE_SECONDS)
            except empty:
                continue
            self._active -= 1
            yield res

    def empty(self) -> bool:
        return self._active <= 0

    def deliver(self, res: TaskRes) -> None:
        """Hand in the result of a task taken over with `take_over()` (exactly
        one per task taken over); it is yielded like any other."""
        self._results.put(res)

    def full(self) -> bool:
        return self._active >= self.max_tasks


class ThreadWorkerPool(_Pool):
    """Runs tasks in threads of this process.

    `workers` run in parallel; up to `workers + spare` tasks are handed out
    ahead, so workers do not starve while the caller processes a result.
    """

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        _check_size(workers, spare)
        self.wanted_workers = workers
        self.wanted_spare = spare
        self.max_tasks = workers + spare
        self.on_start: Optional[Callable[[Any, int], None]] = None
        self._threads: List[threading.Thread] = []
        self._inq: Any = None
        self._results: Any = queue.SimpleQueue()
        self._active = 0
        self._running = False
        self._shutting_down = False
        self._lock = threading.Lock()
        self._inflight: Dict[int, Any] = {}                 # id(task) -> task
        self._running_in: Dict[int, threading.Thread] = {}  # id(task) -> its thread
        self._replaced = 0

    def register(self, tasks: Iterable[Any]) -> None:
        """Nothing to do: threads can run any callable."""

    def register_late(self, tasks: Iterable[Any]) -> None:
        """Nothing to do: threads can run any callable."""

    def start(self) -> None:
        if self.alive():
            raise PoolError("Cannot re-start a running pool")
        self._inq = queue.SimpleQueue()
        self._inflight = {}
        self._running_in = {}
        self._threads = [self._new_thread(n) for n in range(self.wanted_workers)]
        for thread in self._threads:
            thread.start()
        self._running = True
        self._shutting_down = False

    def _new_thread(self, n: int) -> threading.Thread:
        return threading.Thread(target=self._work, args=(self._inq,),
                                name=f"pexen-worker-{n}", daemon=True)

    def _work(self, inq: Any) -> None:
        pid = os.getpid()
        results = self._results
        lock = self._lock
        inflight = self._inflight
        running_in = self._running_in
        me = threading.current_thread()
        while True:
            item = inq.get()
            if item is None:
                return
            task, shared = item
            tid = id(task)
            with lock:
                if tid not in inflight:
                    continue  # taken over before it started
                running_in[tid] = me
            on_start = self.on_start
            if on_start is not None:
                on_start(task, pid)
            res = call_task(task, shared)
            with lock:
                del running_in[tid]
                taken = inflight.pop(tid, None) is None
            if taken:
                return  # a new thread has taken this one's place
            results.put(res)

    def take_over(self, task: Any) -> Optional[str]:
        """Drop the result `task` still gives (its caller will `deliver()`
        one). Returns "waiting" if it had not started (it never will),
        "running" if a worker has it, None (nothing done) if it is not
        submitted here or its result is already in.

        A thread cannot be killed: if the task is running, its thread is left
        to it (a daemon thread, ending when the task ends, its result dropped)
        and a new worker thread takes its place.
        """
        tid = id(task)
        with self._lock:
            if self._inflight.pop(tid, None) is None:
                return None
            thread = self._running_in.get(tid)
            if thread is not None and thread in self._threads:
                self._threads.remove(thread)  # never joined: it may hang for good
                self._replaced += 1
                if not self._shutting_down:
                    spare = self._new_thread(len(self._threads))
                    self._threads.append(spare)
                    spare.start()
        return "waiting" if thread is None else "running"

    def iter_results(self) -> Any:
        """TaskRes of submitted tasks as they end, until none is left; once
        shut down and drained, its threads have ended (`alive()` is False)."""
        yield from super().iter_results()
        if self._shutting_down and self._active <= 0:
            # every task has its result: each thread is taking its stop, or
            # has (one a hung task kept was replaced and is not among them)
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def submit(self, task: Any, shared: Optional[Dict[str, Any]] = None) -> None:
        if self._shutting_down:
            raise PoolError("The pool is shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        self._active += 1
        self._inflight[id(task)] = task
        self._inq.put((task, {} if shared is None else shared))

    def shutdown(self, wait: bool = False) -> None:
        if self._shutting_down:
            raise PoolError("The pool is already shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        self._shutting_down = True
        for _ in self._threads:
            self._inq.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
        self._running = False

    def terminate(self) -> None:
        """Stop handing out tasks; workers end after the task they run.

        A thread cannot be killed: a hung task keeps its thread (a daemon
        thread, so it does not keep the process alive). Use the process pool
        for tasks that may hang.
        """
        if self._inq is not None:
            try:
                while True:
                    item = self._inq.get_nowait()
                    if item is not None:
                        self._active -= 1
            except queue.Empty:
                pass
            for _ in self._threads:
                self._inq.put(None)
        self._running = False
        self._shutting_down = True

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(workers=sum(t.is_alive() for t in self._threads),
                              active=self._active, replaced=self._replaced)


class PoolStatistics(Record, frozen=True):
    """Counters of a pool at one moment."""

    workers: int
    active: int
    replaced: int


from ._procpool import ProcessWorkerPool  # noqa: E402  (it uses PoolError)

__all__ = ["PoolError", "PoolStatistics", "ProcessWorkerPool", "ThreadWorkerPool",
           "TaskRes", "ExceptionInfo"]

"""A worker pool on a Dask cluster: tasks run on other hosts.

`DaskWorkerPool` speaks the pool protocol of the other pools (`pool.py`), so
`Sched`, its planner (dependencies, locks, priorities stay here, in the
controller) and the watchdog use it unchanged. Each submitted task becomes
one Dask task, a call of the runner of `pexen.remote` on a worker, which
runs the task in a process of its own there (its deadline, its leftovers and
its output handled there; see that module). The pool hands out `spare`
tasks more than the cluster has threads, so that Dask's own cost per task
(a round trip through the scheduler) overlaps the work.

A task may say how to run it remotely: `pexen_remote_(shared)` returns the
runner's payload (the harness gives its executables and suite tasks one, so
that a worker loads them by name), and `pexen_remote_done_(reply)` turns the
runner's reply into the task's result; without them, the callable itself is
sent (pickled by Dask: by name, or by value where it cannot be imported) and
its return value or exception comes back.

Dask is imported when the pool starts (`pip install 'pexen[dask]'`).
"""

from __future__ import annotations

import importlib
import itertools
import os
import pickle
import queue
import threading

from .common import ExceptionInfo, TaskRes, WorkerDiedError
from .meta import SCHED_ATTR_NAME
from .pool import PoolError, PoolStatistics, _check_size, _Pool

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Iterable, Optional, Tuple

#: The module the workers run tasks with (by name: the engine does not import
#: what runs on the workers).
RUNNER = "pexen.remote"

_ids = itertools.count(1)


def _run_on_worker(payload: Dict[str, Any], topic: str, key: str) -> Dict[str, Any]:
    """What each Dask task calls (on the worker)."""
    return importlib.import_module(RUNNER).run(payload, topic, key)  # type: ignore[no-any-return]


def _end_on_worker(token: str, grace: float) -> Any:
    return importlib.import_module(RUNNER).end_token(token, grace)


def _no_requeue(dask_scheduler: Any = None) -> None:
    # A task whose worker died is not started again by Dask: the pool says
    # so (WorkerDiedError), and whoever runs the pool decides (the harness
    # runs it again as its next attempt).
    dask_scheduler.allowed_failures = 0


def import_distributed() -> Any:
    """Dask's distributed, or a PoolError naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise PoolError("the Dask pool needs dask.distributed: pip install "
                        "'pexen[dask]'") from None
    return distributed


class DaskWorkerPool(_Pool):
    """Runs tasks on the workers of a Dask cluster.

    `address_or_client`: the scheduler's address (``tcp://host:8786``) or a
    `distributed.Client`. `workers`: how many tasks run at once (default:
    the cluster's threads, when the pool starts); `spare`: how many more are
    handed out ahead. `grace`: seconds from SIGTERM to SIGKILL when a task is
    ended on its worker.
    """

    def __init__(self, address_or_client: Any, workers: Optional[int] = None,
                 spare: int = 2, *, grace: float = 10.0, connect_timeout: float = 30.0
                 ) -> None:
        if workers is not None:
            _check_size(workers, spare)
        else:
            _check_size(1, spare)
        if isinstance(address_or_client, str) and not address_or_client.strip():
            raise ValueError("the Dask scheduler's address is empty")
        self.address_or_client = address_or_client
        self.wanted_workers = workers
        self.wanted_spare = spare
        self.grace = grace
        self.connect_timeout = connect_timeout
        self.max_tasks = (workers or 1) + spare
        self.on_start: Optional[Any] = None
        self.key_of: Any = lambda task: getattr(task, "__name__", repr(task))
        self._client: Any = None
        self._own_client = False
        self._results: Any = queue.SimpleQueue()
        self._active = 0
        self._lock = threading.Lock()
        self._id = f"{os.getpid()}-{next(_ids)}-{os.urandom(3).hex()}"
        self._topic = f"pexen-started-{self._id}"
        self._seq = itertools.count(1)
        # Dask key -> (task, future, token or None, payload); started: key -> host
        self._inflight: Dict[str, Tuple[Any, Any, Optional[str], Dict[str, Any]]] = {}
        self._by_task: Dict[int, str] = {}
        self._started: Dict[str, str] = {}
        self._running = False
        self._shutting_down = False
        self._lost = 0

    # -- the protocol ----------------------------------------------------------

    def register(self, tasks: Iterable[Any]) -> None:
        """Nothing to do: tasks are sent with each submission."""

    def register_late(self, tasks: Iterable[Any]) -> None:
        """Nothing to do: tasks are sent with each submission."""

    def start(self) -> None:
        if self._running:
            raise PoolError("Cannot re-start a running pool")
        distributed = import_distributed()
        target = self.address_or_client
        if isinstance(target, distributed.Client):
            self._client, self._own_client = target, False
        else:
            try:
                self._client = distributed.Client(target, timeout=self.connect_timeout,
                                                  set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise PoolError(f"cannot reach the Dask scheduler at {target}: "
                                f"{exc}") from None
            self._own_client = True
        client = self._client
        if self.wanted_workers is None:
            info = client.scheduler_info()
            threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
            self.max_tasks = max(1, threads) + self.wanted_spare
        try:
            client.run_on_scheduler(_no_requeue)
        except Exception:   # (a scheduler that refuses it: Dask then retries by itself)
            pass
        client.subscribe_topic(self._topic, self._on_event)
        self._running = True
        self._shutting_down = False

    def submit(self, task: Any, shared: Optional[Dict[str, Any]] = None) -> None:
        if self._shutting_down:
            raise PoolError("The pool is shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        shared = {} if shared is None else shared
        remote = getattr(task, "pexen_remote_", None)
        if remote is not None:
            payload = remote(shared)
        else:
            meta = getattr(task, SCHED_ATTR_NAME, None)
            payload = {"kind": "call", "task": task, "shared": shared,
                       "timeout": meta.get("timeout") if meta is not None else None,
                       "grace": self.grace,
                       "resources": meta.get("resources") if meta is not None else None}
        self._active += 1
        self._send(task, payload)

    def _send(self, task: Any, payload: Dict[str, Any]) -> None:
        resources = payload.get("resources") or None
        key = f"pexen-{self._id}-{next(self._seq)}"
        with self._lock:
            future = self._client.submit(_run_on_worker, payload, self._topic, key, key=key,
                                         pure=False, resources=resources)
            self._inflight[key] = (task, future, payload.get("token"), payload)
            self._by_task[id(task)] = key
        future.add_done_callback(lambda fut, key=key: self._done(key, fut))

    def take_over(self, task: Any) -> Optional[str]:
        """Drop the result `task` still gives; end it on its worker (by its
        token) if it started. "running", "waiting", or None (not here, or its
        result is in)."""
        with self._lock:
            found = self._by_task.pop(id(task), None)
            entry = self._inflight.pop(found, None) if found is not None else None
            if entry is None:
                return None
            host = self._started.pop(found, None) if found is not None else None
        _, future, token, _ = entry
        future.cancel()
        if host is not None and token:
            try:
                self._client.run(_end_on_worker, token, self.grace)
            except Exception:
                pass
        return "running" if host is not None else "waiting"

    def shutdown(self, wait: bool = False) -> None:
        if self._shutting_down:
            raise PoolError("The pool is already shutting down")
        if not self._running:
            raise PoolError("The pool is not running")
        self._shutting_down = True
        if wait or self._active <= 0:
            self._close()

    def iter_results(self) -> Any:
        yield from super().iter_results()
        if self._shutting_down and self._active <= 0:
            self._close()

    def terminate(self) -> None:
        """Cancel what has not run; end what runs on the workers."""
        with self._lock:
            entries = list(self._inflight.values())
            self._inflight.clear()
            self._by_task.clear()
        tokens = [token for _, _, token, _ in entries if token]
        for _, future, _, _ in entries:
            future.cancel()
        if self._client is not None and tokens:
            for token in tokens:
                try:
                    self._client.run(_end_on_worker, token, 0.0)
                except Exception:
                    pass
        self._shutting_down = True
        self._close()

    def alive(self) -> bool:
        return self._running

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(workers=self.max_tasks - self.wanted_spare, active=self._active,
                              replaced=self._lost)

    def pid_of(self, task: Any) -> Optional[int]:
        return None   # (a process of another host)

    # -- inside ------------------------------------------------------------------

    def _close(self) -> None:
        client, self._client = self._client, None
        self._running = False
        if client is not None:
            try:
                client.unsubscribe_topic(self._topic)
            except Exception:
                pass
            if self._own_client:
                client.close()

    def _on_event(self, event: Any) -> None:
        """(In the client's thread.) A task started on a worker."""
        msg = event[1] if isinstance(event, tuple) else event
        key = msg.get("key")
        with self._lock:
            entry = self._inflight.get(key)
            if entry is None:
                return
            self._started[key] = msg.get("host", "?")
        on_start = self.on_start
        if on_start is not None:
            # pid 0: the task's process is another host's (no local process
            # must ever be taken for it)
            on_start(entry[0], 0)

    def _done(self, key: str, future: Any) -> None:
        with self._lock:
            entry = self._inflight.pop(key, None)
            self._started.pop(key, None)
            if entry is None:
                return   # taken over, or terminated
            task = entry[0]
            self._by_task.pop(id(task), None)
        try:
            res = self._result(task, future, entry[2])
            if getattr(res.excinfo.val if res.excinfo else None, "worker_lost", False):
                # its next attempt, if it has one left (the harness says)
                retry = getattr(task, "pexen_remote_retry_", None)
                payload = retry(str(res.excinfo.val)) if retry is not None else None
                if payload is not None and self._client is not None:
                    if "shared" in entry[3]:
                        payload["shared"] = entry[3]["shared"]
                    self._send(task, payload)
                    return
        except BaseException as exc:   # (never lose a task's one result)
            res = _failed(task, exc)
        self._results.put(res)

    def _result(self, task: Any, future: Any, token: Optional[str] = None) -> TaskRes:
        if future.status == "finished":
            reply = future.result()
            done = getattr(task, "pexen_remote_done_", None)
            if done is not None:
                return done(reply)   # type: ignore[no-any-return]
            return _plain_result(task, reply)
        distributed = import_distributed()
        try:
            exc = future.exception()
        except Exception as caught:   # (cancelled: the client went away)
            exc = caught
        if isinstance(exc, distributed.KilledWorker) or "KilledWorker" in type(exc).__name__:
            self._lost += 1
            if token and self._client is not None:
                # What the task started on that host outlived its worker:
                # its token finds it (the host's new worker, or another one
                # of it, ends it).
                try:
                    self._client.run(_end_on_worker, token, 0.0)
                except Exception:
                    pass
            lost = WorkerDiedError(f"task {self.key_of(task)}: its Dask worker was lost "
                                   "(worker lost)")
            lost.worker_lost = True   # type: ignore[attr-defined]
            return TaskRes(task, None, None, ExceptionInfo(WorkerDiedError, lost, None,
                                                           f"WorkerDiedError: {lost}\n"))
        return _failed(task, exc)


def _failed(task: Any, exc: BaseException) -> TaskRes:
    return TaskRes(task, None, None, ExceptionInfo(type(exc), exc, None,
                                                   f"{type(exc).__name__}: {exc}\n"))


def _plain_result(task: Any, reply: Dict[str, Any]) -> TaskRes:
    """A library task's result from the runner's reply."""
    from .common import TaskKilledError

    if reply.get("status") == "timeout":
        err = TaskKilledError(f"timeout: ended on {reply.get('host')}")
        return TaskRes(task, None, None, ExceptionInfo(type(err), err, None, f"{err}\n"))
    if reply.get("status") == "error":
        err2 = RuntimeError(reply.get("error") or "the task could not run")
        return _failed(task, err2)
    blob = reply.get("result")
    if blob is None:
        err3 = WorkerDiedError(f"the task's process on {reply.get('host')} ended with "
                               f"status {reply.get('returncode')} and gave no result")
        return TaskRes(task, None, None, ExceptionInfo(WorkerDiedError, err3, None,
                                                       f"WorkerDiedError: {err3}\n"))
    ret, shared, exc, text = pickle.loads(blob)
    if text is not None:
        if exc is None:
            exc = RuntimeError(text.strip().splitlines()[-1] if text.strip() else "failed")
        return TaskRes(task, shared, None, ExceptionInfo(type(exc), exc, None, text))
    return TaskRes(task, shared, ret, None)


__all__ = ["DaskWorkerPool", "import_distributed"]

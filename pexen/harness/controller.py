"""The controller: drives one session of a run through the engine, journaling
every transition, until the run ends or the controller is told to stop."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager

from ..journal import Journal, JournalError, JournalWriter, TaskState, to_json_value
from ..journal.errors import write_failed
from ..sched import EventKind, ProcessWorkerPool, Sched, TaskEvent, ThreadWorkerPool, _cgroup
from ..sched._call import takes_shared
from ..sched._keys import CALLPATH_ATTR_NAME
from ..sched._when import CHECKS_WHEN_ATTR, check_when
from ..sched.common import (
    TaskFailError,
    TaskKilledError,
    TaskSkipError,
    WorkerDiedError,
    is_controlled_fail,
)
from ..sched.meta import SCHED_ATTR_NAME
from ..util import Factory, PexenWarning, Record, process_start_time
from ..watchdog import (
    RUN_TIMEOUT,
    TaskTimeout,
    Watchdog,
    describe_procs,
    end_children,
    end_processes,
    forget_process,
    remembered_start,
    task_timeout,
)
from ._lazydata import owe as owe_data_dir
from ._lazydata import settle as settle_data_dir
from ._outcap import DEFAULT_MAX_OUTPUT, settle
from ._spawner import start as start_spawner
from ._spawner import stop as stop_spawner
from ._words import storable
from .capture import (
    FD_LOCK,
    FdCapture,
    ThreadCapture,
    install,
    key_path,
    log_paths,
    salvage,
    spool_dir,
    spool_tag,
    worker_spool,
)
from .capture import _local as captures
from .context import TaskContext, set_context
from .context import _local as contexts
from .outcome import TaskOutcome
from .reaper import kill_leftovers
from .report import (
    count_at,
    counter_path,
    make_counter,
    outranks,
    reported_worst,
    use_journal,
)
from .suite import ExecutableTask, SuiteGroup, default_spare, grouped

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2, 3, 4
FAILED_STATES = {"fail", "timeout", "error"}
STOPPED_BY_SIGNAL = "stopped by a signal to the controller"
REQUEUED_FOR_REBOOT = "requeued: the machine was rebooted for another task"
REBOOT_POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 2.0
#: The process pool hands out about this much work (seconds, from the
#: durations of the tasks that ended) ahead of what runs: short tasks run back
#: to back while their attempts are committed, a commit every LINGER (10 ms)
#: at most (see doc/harness.md, "Attempts").
HAND_OUT_AHEAD = 0.05
#: The journal writer commits in a process of its own for a run of at least
#: this many tasks; a smaller run commits from the writer's thread, and does
#: not wait for an interpreter to start and to end (tens of milliseconds, on
#: a machine whose cores the workers share).
SEPARATE_WRITER_AT = 100
#: The interpreter's switch interval while a session runs (seconds).
SWITCH_INTERVAL = 0.001


def boot_id() -> str:
    """This boot's id (PEXEN_BOOT_ID_FILE names a file to read it from instead,
    so tests can simulate a reboot)."""
    path = os.environ.get("PEXEN_BOOT_ID_FILE", "/proc/sys/kernel/random/boot_id")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def process_started(pid: int) -> Optional[float]:
    """When process `pid` started, or None if it is gone (a liveness check)."""
    return process_start_time(pid)


class WrapperSide(Record, frozen=True):
    """What the task wrappers of one run share (per kind of pool): whether
    they run in a worker process (`set_env`: which sets the task's
    environment, and is a child subreaper), SIGTERM..SIGKILL grace, whether
    output is captured at the fd level (one task at a time in the
    controller), the run's report counter, its workers' spool directory and
    the cap on what each stream of an attempt keeps (--max-output; 0: none)."""

    set_env: bool
    kill_grace: float = 10.0
    fd_capture: bool = False
    counter: Optional[str] = None
    spools: Optional[str] = None
    max_output: int = DEFAULT_MAX_OUTPUT
    #: on a Dask cluster: {"suite": the suite's JSON, "timeout": --timeout,
    #: "time_used": {key: seconds}} (see TaskWrapper.pexen_remote_)
    remote: Optional[Dict[str, Any]] = None


class TaskWrapper:
    """What the engine runs for one task: sets the task's context (and, in a
    worker process, its environment), evaluates the task's `when` condition,
    then calls the task.

    A run makes one per task before it starts: what they share is in `side`,
    and what a call needs is worked out when it is called (in the worker)."""

    __slots__ = ("inner", "ctx", "side", "exe", "when", "quick", "reports_before",
                 "__name__", CALLPATH_ATTR_NAME, SCHED_ATTR_NAME)

    # The engine calls a wrapper with the shared dict (saves inspect.signature
    # on an object without __code__ for every call).
    pexen_takes_shared_ = True
    # The condition is evaluated here, not by the engine: inside the task's
    # context and output capture, so a command sees the PEXEN_* variables
    # and its output lands in the attempt's files.
    pexen_checks_when_ = True

    def __init__(self, inner: Callable[..., Any], ctx: TaskContext,
                 side: WrapperSide) -> None:
        self.inner = inner
        self.ctx = ctx
        self.side = side
        self.exe = exe = isinstance(inner, ExecutableTask)
        self.__name__ = ctx.task
        # the engine keys a task by its callpath joined with "/": the key itself
        setattr(self, CALLPATH_ATTR_NAME, (ctx.task,))
        self.reports_before: Optional[int] = None  # the run's report count at the start
        when = None
        meta = getattr(inner, SCHED_ATTR_NAME, None)
        # (set even when None: the engine, the watchdog and the journal look
        # for it with getattr(task, SCHED_ATTR_NAME, None) several times per
        # task, and an empty slot costs each look an AttributeError)
        setattr(self, SCHED_ATTR_NAME, meta)
        if meta is not None:
            # (an executable evaluates its own, in its directory)
            if not getattr(inner, CHECKS_WHEN_ATTR, False):
                when = meta.get("when")
        self.when = when
        # In the controller (thread pool), an executable's leftovers are found
        # by the token its processes carry (a scan: only for executables).
        self.quick = not (side.set_env or side.fd_capture or exe or when is not None)
        if self.quick:
            self.__class__ = _QuickWrapper   # (one call less per task)

    @property
    def set_env(self) -> bool:
        return self.side.set_env

    @property
    def scan_token(self) -> bool:
        return not self.side.set_env and self.exe

    @property
    def kill_grace(self) -> float:
        return self.side.kill_grace

    @property
    def counter(self) -> Optional[str]:
        counter = self.side.counter
        return counter if counter is not None else counter_path(self.ctx)

    @property
    def logs(self) -> Tuple[str, str]:
        """The attempt's stdout and stderr files."""
        return self._logs()

    def _logs(self) -> Tuple[str, str]:
        ctx = self.ctx
        data_path = ctx.data_path
        if data_path.endswith("/data"):   # as execute() makes it: the quick way
            base = f"{data_path[:-5]}/{ctx.attempt}"
            return base + ".out", base + ".err"
        return log_paths(os.path.dirname(data_path), ctx.attempt)

    @property
    def spools(self) -> str:
        """Where the workers' spools are: beside the run's directory."""
        spools = self.side.spools
        return (spools if spools is not None
                else spool_dir(os.path.dirname(os.path.dirname(self.ctx.data_path))))

    def __call__(self, shared: Dict[str, Any], **kwargs: Any) -> Any:
        ctx = self.ctx
        set_context(ctx)
        if self.set_env:
            # The variables. The run's directory is made once per worker; the
            # task's when a Python task first needs it (_lazydata), for an
            # executable before it starts if it can use it (doc/harness.md,
            # "The task's environment").
            _set_env(ctx.variables())
            _ = ctx.run_data_dir
            if not self.exe:
                owe_data_dir(ctx)
            elif self.inner.wants_data_dir():  # type: ignore[attr-defined]
                _ = ctx.data_dir
            capture: Any = worker_spool(self.spools, self.side.max_output).task(
                *self.logs, ctx.task, ctx.attempt)
        elif self.side.fd_capture and FD_LOCK.acquire(blocking=False):
            capture = FdCapture(*self.logs, lock=FD_LOCK, limit=self.side.max_output)
        else:
            capture = ThreadCapture(*self.logs, limit=self.side.max_output)
        began = time.time()
        self.reports_before = count_at(self.counter)
        try:
            with capture:
                try:
                    if self.when is not None:
                        self._check_when(capture)
                    if takes_shared(self.inner):
                        ret = self.inner(shared, **kwargs)
                    else:
                        ret = self.inner(**kwargs)
                except BaseException as exc:
                    self._ended(began, exc)
                    full = (_full_disk(self.logs[0]) if isinstance(exc, TaskFailError)
                            and getattr(exc, "outcome", "fail") in ("fail", "error") else None)
                    if full is not None:
                        raise TaskOutcome(getattr(exc, "outcome", "fail"),
                                          f"{exc}; {full}") from exc
                    raise
                ended, leaked = self._end_leftovers(began)
        finally:
            set_context(None)
            if self.set_env:
                settle_data_dir()
        if ended or leaked:
            own = TaskOutcome("warn", leftovers_message(ended, leaked))
            self._reported("warn", own)
            raise own
        self._reported("pass", None)
        return ret

    def _ended(self, began: float, exc: BaseException) -> None:
        """After the task raised `exc`: end what it left running; a worse
        result it reported wins over its own outcome."""
        self._end_leftovers(began)
        if isinstance(exc, TaskOutcome):
            self._reported(exc.outcome, exc)
        elif isinstance(exc, TaskSkipError):
            self._reported("skip", exc)
        elif isinstance(exc, TaskFailError):
            self._reported("fail", exc)

    def _check_when(self, capture: Any) -> None:
        """Evaluate the task's `when` condition (TaskSkipError if false)."""
        when = self.when
        if not isinstance(when, str):
            check_when(when)
            return
        # A command: in a worker process fds 1 and 2 and the environment are
        # the task's already; in the controller, they are given to it.
        out = err = env = None
        if not self.set_env:
            env = dict(os.environ)
            env.update(self.ctx.env())
            if isinstance(capture, ThreadCapture):
                out, err = capture.fds()
        check_when(when, env=env, stdout=out, stderr=err)

    def _reported(self, own: str, exc: Optional[BaseException]) -> None:
        """The worst of its own outcome and what the task reported wins:
        raise it if a reported result is worse than `own`."""
        found = reported_worst(self.ctx, self.reports_before, self.counter)
        if found is not None and outranks(found[0], own):
            raise TaskOutcome(*found) from exc

    def _end_leftovers(self, began: float) -> Tuple[List[Dict[str, Any]],
                                                    List[Dict[str, Any]]]:
        """Nothing of a task outlives it. In a worker process (a child
        subreaper) whatever the task left running, daemons too, is a child of
        the worker; in the controller, an executable's processes carry its token."""
        if self.set_env:
            return end_children(self.kill_grace)
        if self.scan_token:
            return end_task_processes(self.ctx.token, self.kill_grace, began)
        return [], []

    # -- on a Dask worker (pexen.sched.DaskWorkerPool, pexen.remote) --------------

    def pexen_remote_(self, shared: Dict[str, Any]) -> Dict[str, Any]:
        """What a Dask worker's runner needs to run this task (pexen.remote):
        the executable's path, or the suite and key to load it by; the
        task's variables; its deadline (what is left of it); its resources."""
        ctx, side = self.ctx, self.side
        remote = side.remote or {}
        meta = getattr(self.inner, SCHED_ATTR_NAME, None)
        limit = meta.get("timeout") if meta is not None else None
        if limit is None:
            limit = remote.get("timeout")
        if limit is not None:
            limit = max(0.001, limit - (remote.get("time_used") or {}).get(ctx.task, 0.0))
        env = ctx.variables()
        env.pop("PATH", None)   # (the worker's own, with its own pexen's commands)
        payload: Dict[str, Any] = {"env": env, "token": ctx.token, "timeout": limit,
                                   "grace": side.kill_grace, "max_output": side.max_output}
        if self.exe:
            payload.update(kind="exe", path=self.inner.path)  # type: ignore[attr-defined]
        else:
            payload.update(kind="suite", suite=remote.get("suite"), key=ctx.task,
                           shared=shared)
        resources = meta.get("resources") if meta is not None else None
        if resources:
            payload["resources"] = dict(resources)
        return payload

    def pexen_remote_retry_(self, reason: str) -> Optional[Dict[str, Any]]:
        """(Its Dask worker was lost.) The payload of the task's next
        attempt, journaled as queued; None once --max-attempts are used."""
        remote = self.side.remote or {}
        requeue = remote.get("requeue")
        if requeue is None:
            return None
        attempt = requeue(self.ctx.task, reason)
        if attempt is None:
            return None
        self.ctx = self.ctx.replace(attempt=attempt)
        return self.pexen_remote_({})   # (the pool keeps the shared dict it sent)

    def pexen_remote_done_(self, reply: Dict[str, Any]) -> Any:
        """The task's result (a TaskRes) from what its worker's runner
        replied: its output written to the attempt's files, its reported
        results journaled, its outcome as the controller's wrapper decides."""
        from ..sched.common import ExceptionInfo, TaskRes

        try:
            ret, shared = self._remote_outcome(reply)
        except BaseException as exc:
            return TaskRes(self, None, None, ExceptionInfo(
                type(exc), exc, None, getattr(exc, "pexen_text_", None)
                or f"{type(exc).__name__}: {exc}\n"))
        return TaskRes(self, shared, ret, None)

    def _remote_outcome(self, reply: Dict[str, Any]) -> Tuple[Any, Any]:
        import pickle

        from .suite import exit_outcome

        ctx = self.ctx
        host = reply.get("host", "?")
        out, err = self.logs
        os.makedirs(os.path.dirname(out), exist_ok=True)
        for path, data in ((out, reply.get("stdout") or b""), (err, reply.get("stderr") or b"")):
            with open(path, "wb") as f:
                f.write(data)
        self.reports_before = None
        if reply.get("reports"):
            from .report import _journal, _marker

            journal = _journal(ctx.journal)
            for item in reply["reports"]:
                journal.add_result(ctx.run_id, ctx.task, ctx.attempt,
                                   storable(item.get("name")) or "", item.get("outcome"),
                                   storable(item.get("message")))
            marker = _marker(ctx)   # (what reported_worst looks for first)
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "a"):
                pass
        status = reply.get("status")
        if status == "timeout":
            killed, leaked = reply.get("killed") or [], reply.get("leaked") or []
            limit = reply.get("timeout")
            message = f"timeout: still running after its limit on {host}"
            if limit:
                message = f"timeout: still running after its {limit:g} s limit on {host}"
            if killed:
                message += f"; ended {describe_procs(killed)}"
            if leaked:
                message += f"; LEAKED (still running after SIGKILL): {describe_procs(leaked)}"
            raise TaskTimeout(message, killed, leaked)
        if status == "error":
            self._reported("error", None)
            raise TaskOutcome("error", reply.get("error") or f"could not run on {host}")
        leftovers = reply.get("leftovers") or []
        if self.exe:
            found = exit_outcome(reply.get("returncode") or 0)
            if found is not None:
                own = TaskOutcome(*found)
                self._reported(found[0], own)
                raise own
            ret: Any = {"returncode": 0}
            shared = None
        else:
            blob = reply.get("result")
            if blob is None:
                code = reply.get("returncode")
                what = (f"killed by signal {-code}" if code is not None and code < 0
                        else f"exit status {code}")
                own = TaskOutcome("error", f"the task's process on {host} ended ({what}) "
                                           "without a result")
                self._reported("error", own)
                raise own
            ret, shared, exc, text = pickle.loads(blob)
            if text is not None:
                if exc is None:
                    exc = TaskOutcome("error", text.strip().splitlines()[-1])
                exc.pexen_text_ = text
                self._reported(_own_outcome(exc), exc)
                raise exc
        if leftovers:
            own = TaskOutcome("warn", leftovers_message(leftovers, []))
            self._reported("warn", own)
            raise own
        self._reported("pass", None)
        return ret, shared

    def pexen_survivor_(self, res: Any, started: float, ended: float) -> None:
        """(In a worker whose controller died: `pexen.sched._zygote`.) Keep
        the result of this task in the journal."""
        finish_survivor(self, res, started, ended)

    def __repr__(self) -> str:
        return f"<task {self.ctx.task}>"


#: Free space below this on the disk of a failed task's output is called full.
_FULL_BELOW = 1 << 16


def _backstop(grace: float) -> Callable[[Any], Optional[float]]:
    """A task's timeout as the controller's watchdog keeps it for a task
    on a Dask worker: its own, plus the worker's grace period and a minute
    (the worker ends it first, and says what it ended)."""
    def timeout_of(task: Any) -> Optional[float]:
        limit = task_timeout(task)
        return None if limit is None else limit + grace + 60.0
    return timeout_of


def _own_outcome(exc: BaseException) -> str:
    """The outcome a task's exception gives it (before what it reported)."""
    if isinstance(exc, TaskOutcome):
        return exc.outcome
    if isinstance(exc, TaskSkipError):
        return "skip"
    if isinstance(exc, TaskFailError):
        return "fail"
    return "error"


def _full_disk(log: str) -> Optional[str]:
    """When the disk a task's output goes to (`log`: a file of it) is full:
    what to add to its failure (a test that cannot write its output often
    fails for that alone, with no word of it in the output); else None."""
    where = os.path.dirname(log)
    while True:
        try:
            fs = os.statvfs(where)
            break
        except FileNotFoundError:   # (not made yet: its parent's disk)
            parent = os.path.dirname(where)
            if parent == where:
                return None
            where = parent
        except OSError:
            return None
    if fs.f_bavail * fs.f_frsize >= _FULL_BELOW:
        return None
    return f"no space left on device: the disk of {where} is full"


#: name -> (the str value this process last set, the bytes `os.environ` holds
#: for it since): see `_set_env`.
_env_set: Dict[str, Tuple[str, bytes, bytes]] = {}


class _QuickWrapper(TaskWrapper):
    """The TaskWrapper of a Python task in a thread with no condition
    (TaskWrapper.__init__ gives it this class)."""

    __slots__ = ()

    def __call__(self, shared: Dict[str, Any], **kwargs: Any) -> Any:  # type: ignore[override]
        """`TaskWrapper.__call__` of a Python task in a thread (no condition, output
        captured per thread, nothing of its own to end after it): the same
        steps, with no call that is not needed. A task in the thread pool
        is usually small, and this runs for each one."""
        contexts.ctx = self.ctx
        capture = ThreadCapture(where=self._logs, limit=self.side.max_output)
        captures.files = capture
        counter = self.side.counter
        if counter is None:
            counter = counter_path(self.ctx)
        self.reports_before = before = count_at(counter)
        try:
            if takes_shared(self.inner):
                ret = self.inner(shared, **kwargs)
            else:
                ret = self.inner(**kwargs)
        except BaseException as exc:
            captures.files = None
            capture.close()
            contexts.ctx = None
            self._ended(0.0, exc)
            raise
        captures.files = None
        if capture.opened:
            capture.close()
        contexts.ctx = None
        if before is None or count_at(counter) != before:
            self._reported("pass", None)
        return ret


def _set_env(values: Dict[str, str]) -> None:
    """Put `values` in this process's environment, setting only those that
    differ: a worker runs task after task, and most PEXEN_* values stay.
    What `os.environ` holds is checked (by identity: the bytes object set
    last is still there), so a task that changed a variable does not leave it
    wrong for the next one."""
    environ = os.environ
    data = getattr(environ, "_data", None)   # (os._Environ's own: bytes -> bytes)
    if data is None:
        for name, value in values.items():
            if environ.get(name) != value:
                environ[name] = value
        return
    known = _env_set
    for name, value in values.items():
        last = known.get(name)
        if last is not None and last[0] == value and data.get(last[1]) is last[2]:
            continue
        environ[name] = value
        key = os.fsencode(name)
        known[name] = (value, key, data[key])


def end_task_processes(token: str, grace: float, began: float
                       ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """End what an executable of the thread pool left running: what is in
    its cgroup (where the spawner started it in one: `_cgroup`), and what
    carries its token."""
    cgroup = _cgroup.path_of(_cgroup.task_name(token))
    if cgroup is None or not os.path.isdir(cgroup):
        return end_processes((), [token], grace, since=began)
    if not _cgroup.populated(cgroup):
        # Nothing it started is left: what it starts stays in its cgroup
        # (the scan for its token, the costly part, is not needed).
        if _cgroup.discard(cgroup):
            return [], []
    try:
        return end_processes((), [token], grace, since=began, cgroups=[cgroup])
    finally:
        _cgroup.remove(cgroup)


def leftovers_message(ended: Sequence[Dict[str, Any]],
                      leaked: Sequence[Dict[str, Any]]) -> str:
    """What a task that left processes running is told."""
    parts = []
    if ended:
        parts.append(f"ended {describe_procs(ended)}")
    if leaked:
        parts.append(f"LEAKED (still running after SIGKILL): {describe_procs(leaked)}")
    return "the task left processes running: " + "; ".join(parts)


def outcome_of(res: Any) -> Tuple[TaskState, Optional[str]]:
    """The journal outcome of an engine result (or of its `excinfo`), and its
    message."""
    excinfo = getattr(res, "excinfo", res)
    if excinfo is None:
        return TaskState.PASS, None
    val = excinfo.val
    if isinstance(val, TaskTimeout):
        return (TaskState.TIMEOUT if val.started else TaskState.SKIP), str(val)
    if isinstance(val, TaskOutcome):
        return TaskState(val.outcome), str(val) or None
    if isinstance(val, TaskSkipError):
        return TaskState.SKIP, str(val) or None
    message = None
    if val is not None:
        message = f"{type(val).__name__}: {val}"
    elif excinfo.type is not None:
        message = excinfo.type.__name__
    if is_controlled_fail(excinfo):
        return TaskState.FAIL, message
    return TaskState.ERROR, message


class Session(Record):
    """What one controller session runs."""

    journal: Journal
    run_id: int
    tasks: Sequence[Tuple[str, Callable[..., Any]]]
    attempts: Dict[str, int]                       # key -> attempts already made
    time_used: Dict[str, float]                    # key -> seconds used before
    assumed: List[Tuple[Sequence[Any], Optional[Dict[str, Any]]]] = Factory(list)
    pool: str = "process"
    workers: int = 2
    timeout: Optional[float] = None                # for tasks without `timeout`
    kill_grace: float = 10.0
    run_deadline: Optional[float] = None           # time.time() the run must end by
    progress: Optional[Callable[..., None]] = None   # (key, state, reason, duration)
    writer: Optional[JournalWriter] = None         # one already made (resume)
    ready: Optional[Callable[[], None]] = None     # called as the engine starts
    reboots: Dict[str, int] = Factory(dict)  # key -> reboots so far
    drain_timeout: float = 600.0                   # for the others, before a reboot
    reboot_now: Optional[str] = None               # a task whose reboot is still owed
    interrupts: Dict[str, int] = Factory(dict)  # key -> unplanned reboots
    groups: Sequence[SuiteGroup] = ()              # exclusivity groups, in run order
    allow_reboot: bool = False                     # may tasks reboot the machine
    max_output: int = DEFAULT_MAX_OUTPUT           # bytes an attempt's stream keeps
    dask: Optional[str] = None                     # a Dask scheduler: run tasks there
    max_attempts: int = 3                          # (a lost Dask worker's task runs again)
    suite: Optional[Dict[str, Any]] = None         # the suite's JSON (for Dask workers)


@contextmanager
def quiet_gc() -> Iterator[Callable[[], None]]:
    """Keep the cyclic garbage collector off what the harness builds for a run.

    Loading a suite and setting a run up make several objects per task (the
    tasks, their wrappers and contexts, the engine's and the journal's
    bookkeeping) that all live until the run ends; with the collector on,
    every full collection walks all of them again, which at 100k tasks was a
    fifth of the harness's time. Inside the block the collector is off; the
    function it yields, called once the run is set up, moves everything that
    exists to the permanent generation (`gc.freeze()`) and turns the collector
    on again, so the garbage the tasks make is collected as usual. Leaving the
    block unfreezes. A process that turned the collector off or froze objects
    itself is left as it is.
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield lambda: None
        return
    frozen: List[bool] = []

    def ready() -> None:
        if not frozen:
            gc.freeze()
            frozen.append(True)
            gc.enable()

    gc.disable()
    try:
        yield ready
    finally:
        if frozen:
            gc.unfreeze()
        gc.enable()


class _Stop(Exception):
    """SIGINT or SIGTERM reached the controller."""


class _Reboot(Exception):
    """A task asked for a reboot and the others have drained."""


class _WriterFailed(Exception):
    """The journal's writer stopped (its process died, a commit failed)."""


#: The reason of a task that was running when its run's journal writer failed.
WRITER_FAILED = "interrupted: the journal could not be written"


#: A running task is said to still run after this many seconds
#: ($PEXEN_STILL_RUNNING_AFTER, else a minute), and then every five times
#: as long.
STILL_RUNNING_FIRST = 60.0


class _Beat:
    """The controller's second thread: the heartbeat every 2 s, and a look
    at the journal every 0.25 s for a task's reboot request. On one: no more
    tasks are handed out, the other running tasks get up to `drain` seconds
    to finish, then the main thread is told (SIGUSR1 -> _Reboot)."""

    def __init__(self, session: Session, writer: JournalWriter, sched: Sched,
                 stop: threading.Event, counter: Optional[str] = None) -> None:
        self.session = session
        self.counter = counter   # the run's report counter (see _loop)
        self.writer = writer
        self.sched = sched
        self.stop = stop
        self.reboot_key: Optional[str] = None
        self.writer_failed: Optional[BaseException] = None
        self.listener: Optional[JournalListener] = None   # (for the still-running lines)
        self._told: Dict[str, float] = {}   # key -> when it is next said to still run
        try:
            after = float(os.environ.get("PEXEN_STILL_RUNNING_AFTER") or STILL_RUNNING_FIRST)
        except ValueError:
            after = STILL_RUNNING_FIRST
        self.still_after = after if after > 0 and after == after else STILL_RUNNING_FIRST
        self.main = threading.main_thread().ident
        self.thread = threading.Thread(target=self._loop, name="pexen-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        writer, journal, run_id = self.writer, self.session.journal, self.session.run_id
        next_beat = time.monotonic() + HEARTBEAT_SECONDS
        counter = self.counter
        seen: Optional[int] = -1   # the report count at the last look (-1: none yet)
        while not self.stop.wait(REBOOT_POLL_SECONDS):
            failed = writer.failure()
            if failed is not None:
                # Nothing more can be journaled: stop the run now, not when
                # the running tasks end by themselves.
                self.writer_failed = failed
                if self.main is not None:
                    signal.pthread_kill(self.main, signal.SIGUSR1)
                return
            try:
                if time.monotonic() >= next_beat:
                    writer.update_run(heartbeat_at=time.time())
                    next_beat = time.monotonic() + HEARTBEAT_SECONDS
                    self._still_running()
                if self.reboot_key is None:
                    # A reboot request bumps the run's report counter: the
                    # journal is read only when it moved (no counter: always).
                    now = count_at(counter)
                    if now is not None and now == seen:
                        continue
                    seen = now
                    for key, *_ in journal.reboot_requests(run_id):
                        if writer.state_of(key) is TaskState.RUNNING:
                            self._drain(key)
                            return
            except Exception:
                return

    def _still_running(self) -> None:
        """A line for each task running past a minute (and every five minutes
        after): a console that shows only finished tasks says what it waits
        for."""
        progress = self.session.progress
        listener = self.listener
        if listener is None or not hasattr(progress, "still_running"):
            return
        first = self.still_after
        every = 5 * first
        now = time.time()
        told = self._told
        for key, began in list(listener.started.items()):
            ran = now - began
            if ran < told.get(key, first):
                continue
            told[key] = ran - (ran - first) % every + every
            progress.still_running(key, ran)   # type: ignore[union-attr]
        for key in [k for k in told if k not in listener.started]:
            del told[key]

    def _drain(self, key: str) -> None:
        self.reboot_key = key
        self.sched.pause()
        live = (TaskState.QUEUED, TaskState.RUNNING)
        others = [k for k, _ in self.session.tasks if k != key]
        end = time.monotonic() + self.session.drain_timeout
        while time.monotonic() < end and not self.stop.is_set():
            if not any(self.writer.state_of(k) in live for k in others):
                break
            time.sleep(0.05)
        if not self.stop.is_set() and self.main is not None:
            signal.pthread_kill(self.main, signal.SIGUSR1)


_QUEUED_COLUMNS = ("queued_at", "token", "attempt")
_STARTED_COLUMNS = ("started_at", "pid", "pid_started", "boot_id")
# A task finishes once in a run: the columns an outcome does not have are
# still null, and written as such so every finish has the same columns.
_FINISHED_COLUMNS = ("finished_at", "reason", "time_used", "ret", "ret_restorable",
                     "exc_type", "exc_text", "shared", "shared_restorable")
_SKIPPED_COLUMNS = ("reason", "finished_at")


class JournalListener:
    """Turns the engine's lifecycle events into journal transitions.

    It runs for every event of every task (in the thread running the engine,
    or a worker thread for `started`): it checks the move and queues one tuple
    of column values for the journal writer, nothing more."""

    def __init__(self, writer: JournalWriter, session: Session, tokens: Dict[str, str],
                 thread_pool: bool, on_first: Callable[[], None],
                 thread_keys: Optional[Set[str]] = None,
                 run_root: Optional[str] = None) -> None:
        self.writer = writer
        self.run_root = run_root   # where the workers' spools are
        # with groups of both kinds: the tasks that run in threads
        self.thread_keys = thread_keys
        self.on_first: Optional[Callable[[], None]] = on_first
        self.session = session
        self.tokens = tokens
        self.boot = boot_id()
        self.thread_pool = thread_pool
        self.own_start = process_started(os.getpid())
        self.own_pid = os.getpid()
        self.started: Dict[str, float] = {}
        self.pids: Dict[str, int] = {}   # key -> the worker that runs it
        self._attempts = session.attempts
        self._time_used = session.time_used

    #: the engine calls task_queued/task_started/task_finished directly
    #: (no TaskEvent made: see Sched._hooks)
    task_events = True

    def __call__(self, ev: TaskEvent) -> None:
        kind = ev.kind
        if kind is EventKind.QUEUED:
            self.task_queued(ev.key, ev.task, ev.at)
        elif kind is EventKind.STARTED:
            self.task_started(ev.key, ev.task, ev.pid, ev.at)
        elif kind is EventKind.FINISHED:
            self.task_finished(ev.key, ev.task, ev.result, ev.at)
        elif kind is EventKind.SKIPPED:
            reason = storable(ev.reason)
            self.writer.move(ev.key, TaskState.SKIP, ev.at, _SKIPPED_COLUMNS, (reason, ev.at))
            progress = self.session.progress
            if progress is not None:
                progress(ev.key, TaskState.SKIP.value, reason)
        elif kind is EventKind.GROUP_STARTED or kind is EventKind.GROUP_FINISHED:
            group = ev.task
            detail: Dict[str, Any] = {"group": ev.key}
            if kind is EventKind.GROUP_STARTED:
                detail.update(pool=group.pool or self.session.pool,
                              workers=group.workers or self.session.workers)
            self.writer.run_note(kind.value.replace("_", "-"), detail)

    def task_queued(self, key: str, task: Any, at: float) -> None:
        if self.on_first is not None:
            # The pool has started (forked) by now: other threads may start.
            self.on_first()
            self.on_first = None
        # The attempt is counted when the task is handed to the pool, not
        # when it starts: the start may not reach the disk before a crash,
        # and a task that kills the machine at once must still use up its
        # attempts (else a panicking test could loop the machine forever).
        # Under the process pool the attempt is on disk before the task
        # can start (the pool holds it until `Committer` says so): a test
        # that takes the machine down at once must still use up its
        # attempts. The thread pool, for in-process tasks that are often
        # tiny, journals asynchronously: see doc/harness.md, "Attempts".
        self.writer.move(key, TaskState.QUEUED, at, _QUEUED_COLUMNS,
                         (at, self.tokens[key], self._attempts.get(key, 0) + 1))

    def requeue(self, key: str, reason: str, max_attempts: int) -> Optional[int]:
        """(A Dask worker died under the task.) Journal the attempt as
        interrupted and the next one as queued; the next attempt's number, or
        None if the task has used up its attempts (it then ends as the pool
        says)."""
        attempt = self._attempts.get(key, 0) + 1
        if attempt >= max_attempts:
            return None
        now = time.time()
        began = self.started.pop(key, None)
        used = self._time_used.get(key, 0.0) + (now - began if began is not None else 0.0)
        self._time_used[key] = used
        self.writer.transition(key, TaskState.INTERRUPTED, at=now, reason=storable(reason),
                               detail={"by": "worker lost"}, time_used=used)
        self._attempts[key] = attempt
        self.writer.move(key, TaskState.QUEUED, now, _QUEUED_COLUMNS,
                         (now, self.tokens[key], attempt + 1))
        return attempt + 1

    def task_started(self, key: str, task: Any, pid: int, at: float) -> None:
        self.started[key] = at
        pid_started = (self.own_start if pid == self.own_pid or (
            self.thread_pool if self.thread_keys is None else key in self.thread_keys)
            else remembered_start(pid))
        self.pids[key] = pid
        # (the worker's pid in the event too: tasks.pid is the last attempt's;
        # the HTML report's lanes follow the workers by it)
        self.writer.move(key, TaskState.RUNNING, at, _STARTED_COLUMNS,
                         (at, pid, pid_started, self.boot),
                         f'{{"pid": {pid}}}' if isinstance(pid, int) else None)

    def task_finished(self, key: str, task: Any, res: Any, at: float) -> None:
        excinfo = res.excinfo
        took = at - self.started.pop(key, at)
        used = self._time_used.get(key, 0.0) + took
        pid = self.pids.pop(key, None)
        shared, shared_ok = ((None, None) if res.shared is None
                             else to_json_value(res.shared))
        if excinfo is None:
            # (the common case, in short)
            ret = res.ret
            ret, ret_ok = ("null", True) if ret is None else to_json_value(ret)
            self.writer.move(key, TaskState.PASS, at, _FINISHED_COLUMNS,
                             (at, None, used, ret, ret_ok, None, None, shared, shared_ok))
            progress = self.session.progress
            if progress is not None:
                progress(key, "pass", None, took)
            return
        if self.run_root is not None and isinstance(
                excinfo.val, (TaskKilledError, WorkerDiedError)) and not (
                self.thread_pool if self.thread_keys is None else key in self.thread_keys):
            # Its worker is gone (killed, or died in it): what the task
            # wrote is still in the worker's spool.
            forget_process(pid)
            salvage(self.run_root, expect=(key, self._attempts.get(key, 0) + 1),
                    limit=self.session.max_output)
        state, values, detail = failure_values(task, excinfo, at, used, shared, shared_ok)
        if detail is not None:
            self.writer.transition(key, state, at=at, detail=detail,
                                   **dict(zip(_FINISHED_COLUMNS, values)))
        else:
            self.writer.move(key, state, at, _FINISHED_COLUMNS, values)
        progress = self.session.progress
        if progress is not None:
            progress(key, state.value, values[1], took)


def failure_values(task: Any, excinfo: Any, at: float, used: float, shared: Any,
                   shared_ok: Optional[bool]
                   ) -> Tuple[TaskState, Tuple[Any, ...], Optional[Dict[str, Any]]]:
    """The outcome of a task that raised (`excinfo`), the values of its
    `_FINISHED_COLUMNS`, and the detail of its event (None: none)."""
    state, message = outcome_of(excinfo)
    exc_type = storable(getattr(excinfo.type, "__name__", None))
    # (an executable's exit status, raised in pexen's own code: its
    # traceback says nothing of the test; the message and the test's
    # stderr do)
    exc_text = (None if exc_type == "TaskOutcome" and getattr(task, "exe", False)
                else storable(excinfo.text))
    values = (at, storable(message), used, None, None, exc_type, exc_text, shared, shared_ok)
    detail = None
    if isinstance(excinfo.val, TaskTimeout):
        # the watchdog's: the processes it ended (or could not) go to the
        # event's detail
        val = excinfo.val
        detail = {"by": "watchdog", "killed": val.killed, "leaked": val.leaked}
    return state, values, detail


#: Seconds a survivor's record may take (a journal busy that long is not
#: waited for: resume then runs the task again).
SURVIVOR_RECORD_TIMEOUT = 60.0


def _ended_values(wrapper: TaskWrapper, res: Any, ended: float
                  ) -> Tuple[TaskState, Dict[str, Any], Optional[Dict[str, Any]]]:
    """A finished task's state, the columns of its row (time used aside) and
    its event's detail, from its result `res`, as the controller records
    them: for a result recorded by another process than the controller."""
    shared, shared_ok = (None, None) if res.shared is None else to_json_value(res.shared)
    if res.excinfo is None:
        ret, ret_ok = ("null", True) if res.ret is None else to_json_value(res.ret)
        state = TaskState.PASS
        values: Tuple[Any, ...] = (ended, None, 0.0, ret, ret_ok, None, None, shared,
                                   shared_ok)
        detail: Optional[Dict[str, Any]] = None
    else:
        state, values, detail = failure_values(wrapper, res.excinfo, ended, 0.0, shared,
                                               shared_ok)
    fields = dict(zip(_FINISHED_COLUMNS, values))
    del fields["time_used"]
    return state, fields, detail


def finish_survivor(wrapper: TaskWrapper, res: Any, started: float, ended: float) -> bool:
    """Record the result of a task whose controller died while it ran, from
    the worker that ran it (see doc/journal.md, "A task outlives its
    controller"): as the controller would have, unless a controller has
    claimed the run since. Whether it was recorded."""
    ctx = wrapper.ctx
    state, fields, detail = _ended_values(wrapper, res, ended)
    detail = dict(detail or {}, recorded_by="worker", pid=os.getpid())
    return _record_survivor({"journal": ctx.journal, "run_id": ctx.run_id, "key": ctx.task,
                             "attempt": ctx.attempt, "token": ctx.token, "state": state.value,
                             "at": ended, "fields": fields, "used": ended - started,
                             "started": started, "detail": detail})


def record_remote_orphans(journal: Journal, journal_path: str, run: Any,
                          loaded: Sequence[Tuple[str, Any]], kill_grace: float,
                          max_output: int, timeout: Optional[float]) -> List[str]:
    """(`resume` of a run on a Dask cluster, before it claims the run.)
    Record the finishes of tasks that ended on a worker while their
    controller was dead (each worker keeps them: pexen.remote), as the
    controller would have: output, reported results, outcome. The keys
    recorded."""
    from ..remote import collect_orphans

    rows = {t.key: t for t in journal.tasks(run.id) if t.state in ("queued", "running")
            and t.token}
    if not rows:
        return []
    try:
        import distributed

        with distributed.Client(run.config["dask"], timeout=30,
                                set_as_default=False) as client:
            kept = client.run(collect_orphans, sorted({t.token for t in rows.values()}))
    except Exception:
        return []
    replies: Dict[str, Dict[str, Any]] = {}
    for found in kept.values():
        replies.update(found)
    by_key = dict(loaded)
    run_root = os.path.join(run.config.get("data_root") or data_root(journal_path),
                            str(run.id))
    side = WrapperSide(True, kill_grace, False, f"{run_root}.reports", None, max_output,
                       remote={"suite": run.suite, "timeout": timeout, "time_used": {},
                               "requeue": None})
    recorded = []
    from ._journal import controller_alive

    for key, row in rows.items():
        reply = replies.get(f"{row.token}-{row.attempt}")
        task = by_key.get(key)
        if reply is None or task is None:
            continue
        ctx = TaskContext(journal_path, run.id, key, row.attempt, row.token,
                          os.path.join(run_root, key_path(key), "data"))
        wrapper = TaskWrapper(task, ctx, side)
        res = wrapper.pexen_remote_done_(reply)
        started, ended = reply.get("started") or time.time(), reply.get("ended") or time.time()
        state, fields, detail = _ended_values(wrapper, res, ended)
        detail = dict(detail or {}, recorded_by="resume", host=reply.get("host"))
        if journal.finish_survivor(run.id, key, row.attempt, row.token, state.value, ended,
                                   fields, ended - started, started, detail,
                                   is_alive=controller_alive):
            recorded.append(key)
    return recorded


def _record_survivor(record: Dict[str, Any]) -> bool:
    """Have a fresh process record a survivor's finish (see _survive.py: the
    process calling this holds SQLite's state of the controller's
    connection, which a fork does not carry well). Whether it was recorded."""
    import json
    import subprocess

    import pexen

    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(pexen.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [top, env.get("PYTHONPATH")]))
    try:
        return subprocess.run([sys.executable, "-m", "pexen.harness._survive"],
                              input=json.dumps(record).encode(), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=SURVIVOR_RECORD_TIMEOUT).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def record_executable(info: Dict[str, Any], status: int, started: float,
                      ended: float) -> None:
    """(In the thread pool's spawner, its controller gone.) Record the finish
    of an executable as the controller would have: its exit status, a worse
    result it reported, what it left running ended, its output capped."""
    from .suite import exit_outcome

    found = exit_outcome(status)
    ended_procs, leaked = end_task_processes(info["token"], 10.0, started)
    for path, name in zip(info.get("logs") or (), ("stdout", "stderr")):
        if info.get("limit"):
            try:
                settle(path, info["limit"], 0, name)
            except OSError:
                pass
    if found is None and (ended_procs or leaked):
        found = ("warn", leftovers_message(ended_procs, leaked))
    state, message = found if found is not None else ("pass", None)
    fields: Dict[str, Any] = {"finished_at": ended, "reason": storable(message),
                              "ret": '{"returncode": 0}' if found is None else None,
                              "ret_restorable": True if found is None else None,
                              "exc_type": None if found is None else "TaskOutcome",
                              "exc_text": None, "shared": None, "shared_restorable": None}
    _record_survivor({"journal": info["journal"], "run_id": info["run_id"], "key": info["key"],
                      "attempt": info["attempt"], "token": info["token"], "state": state,
                      "at": ended, "fields": fields, "used": ended - started,
                      "started": started, "reported": True,
                      "detail": {"recorded_by": "spawner", "pid": os.getpid()}})


class CommitBarrier:
    """The process pools' barrier (`Sched.dispatch_barrier`): a task handed
    to a pool starts once what the journal was given before it, its `queued`
    transition among it, is committed.

    The engine does not wait: the journal's writer lets each task go from its
    own thread once that commit is made (`JournalWriter.after_commit`), and
    the tasks handed out while one commit is under way share the next one
    (one sync for them all) while the workers run those let go before. If the
    journal cannot be written, the tasks waiting end with its error instead
    of starting."""

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer

    def __call__(self, task: Any, release: Callable[[Optional[BaseException]], None]) -> None:
        # The commit may gather transitions for a few milliseconds (LINGER):
        # the tasks handed out ahead keep the workers busy meanwhile, and a
        # pool with an idle worker says so (`hurry`).
        self.writer.after_commit(release, urgent=False)

    def hurry(self) -> None:
        """A worker is idle and the tasks it could run wait for the commit."""
        self.writer.hurry()


def execute(session: Session, journal_path: str) -> int:
    """Run the session's tasks; return the exit code (0/1/2)."""
    journal = session.journal
    writer = session.writer or journal.writer(
        session.run_id, separate=len(session.tasks) >= SEPARATE_WRITER_AT)
    thread_pool = session.pool == "thread"
    # a group may run in a pool of another kind and size than the session's
    kind_of: Dict[str, Tuple[bool, int]] = {}
    for group in session.groups:
        in_thread = (group.pool or session.pool) == "thread"
        size = group.workers if group.workers is not None else session.workers
        kind_of.update((key, (in_thread, size)) for key in group.keys)
    root = data_root(journal_path)
    os.makedirs(root, mode=0o700, exist_ok=True)
    tokens: Dict[str, str] = {}
    wrapper_of: Dict[str, TaskWrapper] = {}
    nonce = os.urandom(8).hex()
    run_root = os.path.join(root, str(session.run_id))
    one_at_a_time = False
    thread_keys = set()
    run_data = f"{run_root}.shared"   # beside the tasks' directories, never one of them
    make_counter(f"{run_root}.reports")   # (pexen.harness.report): see `counter` below
    attempts, reboots, interrupts = session.attempts, session.reboots, session.interrupts
    for n, (key, _) in enumerate(session.tasks):
        tokens[key] = f"{nonce}-{n}"
    contexts = TaskContext.many(journal_path, session.run_id, session.allow_reboot, run_data, (
        (key, attempts.get(key, 0) + 1, tokens[key],
         f"{run_root}/{key_path(key)}/data",
         reboots.get(key, 0), interrupts.get(key, 0))
        for key, _ in session.tasks))
    counter = f"{run_root}.reports"
    sides: Dict[Tuple[bool, bool], WrapperSide] = {}
    default_kind = (thread_pool, session.workers)
    for (key, task), ctx in zip(session.tasks, contexts):
        in_thread, size = kind_of.get(key, default_kind) if kind_of else default_kind
        alone = in_thread and size == 1
        if alone:
            one_at_a_time = True
        if in_thread:
            thread_keys.add(key)
        side = sides.get((in_thread, alone))
        if side is None:
            side = sides[in_thread, alone] = WrapperSide(
                not in_thread, session.kill_grace, alone, counter, spool_dir(run_root),
                session.max_output, remote=None if session.dask is None else {
                    "suite": session.suite, "timeout": session.timeout,
                    "time_used": session.time_used, "requeue": None})
        wrapper_of[key] = TaskWrapper(task, ctx, side)
    stop_heartbeat = threading.Event()
    listener = JournalListener(writer, session, tokens, thread_pool, lambda: beat.start(),
                               thread_keys=thread_keys if session.groups else None,
                               run_root=run_root)
    for side in sides.values():
        if side.remote is not None:   # (a Dask worker lost: the next attempt)
            side.remote["requeue"] = lambda key, reason: listener.requeue(
                key, reason, session.max_attempts)
    sched = Sched(listeners=[listener])
    sched.dispatch_barrier = CommitBarrier(writer)
    # The last results are committed before the workers are told to end: a
    # worker that ends in good order records nothing itself, so a controller
    # killed between the two would lose them.
    sched.before_pool_end = writer.flush
    beat = _Beat(session, writer, sched, stop_heartbeat, counter)
    beat.listener = listener
    watched = getattr(session.progress, "watched", None)
    if watched is not None:
        # a task's line is printed once its finish is committed
        watched()
        writer.watch = session.progress
    for provides, shared in session.assumed:
        sched.assume_provided(provides, shared)
    with warnings.catch_warnings():
        # "provided, but not required by any task": checked and allowed at start
        warnings.simplefilter("ignore", PexenWarning)
        if session.groups:
            sched.add_tasks(grouped(session.tasks, session.groups,
                                    lambda key, _: wrapper_of[key], pool=session.pool,
                                    workers=session.workers))
        else:
            # start() and resume() checked these tasks (with what is assumed
            # provided) before journaling anything: the wrappers carry the
            # same metadata and keys
            sched._add_checked([wrapper_of[key] for key, _ in session.tasks],
                               [key for key, _ in session.tasks])
    spare = default_spare(session.pool, session.workers) or session.workers
    pool: Any
    timeout_of: Callable[[Any], Optional[float]] = task_timeout
    if session.dask is not None:
        from ..sched._daskpool import DaskWorkerPool

        pool = DaskWorkerPool(session.dask, workers=session.workers or None,
                              spare=max(2, session.workers), grace=session.kill_grace)
        # The deadline is the worker's runner's to keep (it ends the task's
        # processes there, and names them); the controller's watchdog keeps
        # the run's, and is a backstop for a worker that does not answer.
        timeout_of = _backstop(session.kill_grace)
    else:
        pool = (ThreadWorkerPool(workers=session.workers, spare=spare)
                if thread_pool else ProcessWorkerPool(workers=session.workers, spare=spare,
                                                      ahead=HAND_OUT_AHEAD))
    default_timeout = session.timeout
    if session.dask is not None and default_timeout is not None:
        default_timeout += session.kill_grace + 60.0   # (a backstop, as above)
    watchdog = Watchdog(sched, pool, default_timeout=default_timeout,
                        grace=session.kill_grace, run_deadline=session.run_deadline,
                        time_used=session.time_used, tokens=tokens, timeout_of=timeout_of)
    sched.add_listener(watchdog)
    below: List[Tuple[int, Optional[float]]] = []

    def note_below() -> None:
        below[:] = _below_workers(listener, list(listener.pids))

    previous = _install_stop_handlers(lambda: beat.reboot_key is not None, note_below,
                                      lambda: beat.writer_failed is not None)
    # The engine's thread hands the interpreter lock to the journal writer's
    # thread at every system call it makes (a read of the workers, a write
    # of the progress lines): it gets it back within a millisecond, not the
    # default five.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    gen = None
    code = EXIT_OK
    switch = install() if thread_keys else None
    if switch is not None:
        switch.__enter__()
        use_journal(journal_path, journal)
    progress_out = None
    if one_at_a_time:
        # the tasks' capture moves fd 1: the progress lines keep a copy of it
        stream = getattr(session.progress, "stream", None)
        if stream is not None and hasattr(stream, "fileno"):
            try:
                stream.flush()
                progress_out = os.fdopen(os.dup(stream.fileno()), "w", buffering=1,
                                         encoding=getattr(stream, "encoding", None))
                session.progress.stream = progress_out  # type: ignore[union-attr]
            except (OSError, ValueError):
                progress_out = None
    # What the workers of an earlier session left in their spools (they died
    # with their controller, or were ended by resume) goes to its tasks' files.
    salvage(run_root, limit=session.max_output)
    spawner_mark: Optional[str] = None
    # A cgroup for the session, each worker and executable one below it
    # (where the system allows it): what a task starts cannot escape it, and
    # the record beside the spools lets resume end it if this process dies.
    cgroup_mark = None
    if _cgroup.open_session(f"{session.run_id}-{os.getpid()}") is not None:
        cgroup_mark = _cgroup.record(spool_dir(run_root),
                                     f"{os.getpid()}-{spool_tag(os.getpid())}")
    try:
        if session.reboot_now is not None:
            # The last controller died between a reboot request and the reboot.
            beat.reboot_key = session.reboot_now
            raise _Reboot()
        if thread_pool or thread_keys:
            if any(isinstance(task, ExecutableTask) for _, task in session.tasks):
                # executables started by a process that outlives this one;
                # its mark among the workers' spools lets resume wait for it
                spawner = start_spawner(record_executable)
                spawner_mark = os.path.join(spool_dir(run_root),
                                            f"{spawner.pid}-{spool_tag(spawner.pid)}.own")
                os.makedirs(spool_dir(run_root), exist_ok=True)
                with open(spawner_mark, "wb"):
                    pass
        watchdog.start()
        if session.ready is not None:
            session.ready()
        gen = sched.run(pool)
        with warnings.catch_warnings():
            # the engine's summary of skipped tasks: each is journaled (and
            # printed) with its own reason instead
            warnings.simplefilter("ignore", PexenWarning)
            for _ in gen:
                pass
        watchdog.stop()
        writer.flush()
        code = _exit_code(journal, session.run_id)
        detail = None
        if watchdog.run_timed_out:
            code = EXIT_FAILED
            detail = {"reason": RUN_TIMEOUT}
        writer.run_event("finished", detail=detail, finished_at=time.time(), exit_code=code)
    except _Stop:
        _ignore_stop_signals(previous)  # a second ^C must not break the cleanup
        stopped = [key for key, _ in session.tasks
                   if writer.state_of(key) in (TaskState.QUEUED, TaskState.RUNNING)]
        if gen is not None:
            gen.close()  # the pool's workers are killed
        # What the tasks started: found under their workers before those
        # went, and (in sessions of their own: executables, their daemons)
        # by the task's token.
        kill_leftovers(below, {tokens[key] for key in stopped})
        now = time.time()
        for key in stopped:
            fields: Dict[str, Any] = {}
            began = listener.started.get(key)
            if began is not None:
                fields["time_used"] = session.time_used.get(key, 0.0) + (now - began)
            writer.transition(key, TaskState.INTERRUPTED, reason=STOPPED_BY_SIGNAL,
                              detail={"by": "signal"}, **fields)
        code = EXIT_INTERRUPTED
        writer.run_event("interrupted", exit_code=code)
    except _WriterFailed:
        _ignore_stop_signals(previous)
        live = [k for k, _ in session.tasks
                if writer.state_of(k) in (TaskState.QUEUED, TaskState.RUNNING)]
        if gen is not None:
            gen.close()
        kill_leftovers(below, {tokens[k] for k in live})
        failure = beat.writer_failed or JournalError("the journal writer failed")
        # What was running is marked so without the writer (when the journal
        # still takes a write): resume runs it again.
        try:
            journal.interrupt_live(session.run_id, os.getpid(), WRITER_FAILED,
                                   {"by": "journal", "error": storable(str(failure))})
        except Exception:
            pass
        raise write_failed(journal.where, failure) from None
    except _Reboot:
        _ignore_stop_signals(previous)
        key = beat.reboot_key or ""
        live = [k for k, _ in session.tasks
                if writer.state_of(k) in (TaskState.QUEUED, TaskState.RUNNING)]
        if gen is not None:
            gen.close()
        kill_leftovers(below, {tokens[k] for k in live})
        now = time.time()
        for k in live:
            fields = {}
            began = listener.started.get(k)
            if began is not None:
                fields["time_used"] = session.time_used.get(k, 0.0) + (now - began)
            if k == key:
                writer.transition(k, TaskState.REBOOTING, reason="rebooting: the task asked "
                                  "for a reboot", detail={"by": "reboot",
                                                          "reboot_count": session.reboots.get(
                                                              k, 0)}, **fields)
            else:
                writer.transition(k, TaskState.INTERRUPTED, reason=REQUEUED_FOR_REBOOT,
                                  detail={"by": "reboot"}, **fields)
        code = EXIT_INTERRUPTED
        writer.run_event("rebooting", detail={"task": key}, exit_code=code)
    finally:
        stop_spawner()
        if spawner_mark is not None:
            try:
                os.unlink(spawner_mark)
            except OSError:
                pass
        # (what is still in it was started by a task and outlived it)
        _cgroup.close_session()
        if cgroup_mark is not None:
            try:
                os.unlink(cgroup_mark)
            except OSError:
                pass
        watchdog.stop()
        if switch is not None:
            switch.__exit__(None, None, None)
            use_journal(journal_path, None)
        if progress_out is not None:
            session.progress.stream = stream  # type: ignore[union-attr]
            progress_out.close()
        _restore_stop_handlers(previous)
        sys.setswitchinterval(interval)
        salvage(run_root, limit=session.max_output)   # the workers are gone
        try:
            os.rmdir(spool_dir(run_root))
        except OSError:   # none was made (or a spool is left: moved next time)
            pass
        stop_heartbeat.set()
        if beat.thread.is_alive():
            beat.thread.join()
        writer.close()
    return code


def _below_workers(listener: JournalListener, keys: Sequence[str]
                   ) -> List[Tuple[int, Optional[float]]]:
    """(pid, start time) of every process below the worker processes that
    run tasks `keys`: found before the workers are killed, since a worker is
    the child subreaper of what its task started (a daemon that left the
    task's session and environment included), which goes to init with it."""
    me = os.getpid()
    pids = {pid for pid in (listener.pids.get(key) for key in keys)
            if pid is not None and pid != me}
    if not pids:
        return []
    import psutil

    found: List[Tuple[int, Optional[float]]] = []
    for pid in pids:
        try:
            worker = psutil.Process(pid)
            started = remembered_start(pid)
            if started is None or abs(worker.create_time() - started) >= 0.5:
                continue   # (gone: the pid may be another process's now)
            for proc in worker.children(recursive=True):
                found.append((proc.pid, proc.create_time()))
        except psutil.Error:
            continue
    return found


def data_root(journal_path: str) -> str:
    """Where tasks' data directories and output files go: next to a file
    journal (PATH.d); for a database URL, ./pexen-data."""
    return (f"{journal_path}.d" if "://" not in journal_path
            else os.path.abspath("pexen-data"))


def attempt_dir(journal_path: str, run_id: int, key: str) -> str:
    """A task's directory: its data directory and its output files."""
    return os.path.join(data_root(journal_path), str(run_id), key_path(key))


def _exit_code(journal: Journal, run_id: int) -> int:
    counts = journal.counts(run_id)
    return EXIT_FAILED if any(counts.get(s) for s in FAILED_STATES) else EXIT_OK


def _install_stop_handlers(rebooting: Callable[[], bool],
                           before: Callable[[], None],
                           failed: Callable[[], bool] = lambda: False) -> Any:
    """Handlers that stop the run (SIGINT, SIGTERM) or, on SIGUSR1, stop it
    because the journal's writer `failed()`, or go on to a reboot (when
    `rebooting()`); each calls `before()` first, while the pool's workers
    still live (the engine ends them as the exception leaves it)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        before()
        raise _Stop(signal.Signals(signum).name)

    def reboot(signum: int, frame: Any) -> None:
        if failed():
            before()
            raise _WriterFailed()
        if rebooting():
            before()
            raise _Reboot()

    return (signal.signal(signal.SIGINT, stop),
            signal.signal(signal.SIGTERM, stop),
            signal.signal(signal.SIGUSR1, reboot))


def _ignore_stop_signals(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _restore_stop_handlers(previous: Any) -> None:
    if previous is None:
        return
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])
    signal.signal(signal.SIGUSR1, previous[2])

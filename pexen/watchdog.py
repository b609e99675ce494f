"""The watchdog: deadlines for running tasks, and ending a task's whole
process tree.

`Watchdog` is a listener on the engine (`Sched(listeners=[...])`) with a
thread of its own. It gives each task a deadline when it starts (its
``timeout`` metadata, else a default, less the time earlier attempts used)
and the whole run one. At a task's deadline it takes the task over from the
pool (`take_over`: whatever result the task still gives is dropped), ends
everything of the task with `end_processes`, and only when that is confirmed
hands the pool the task's result: a `TaskTimeout` failure, which releases the
task's locks and fails its dependents.

`end_processes` finds a task's processes three ways: the process the pool ran
it in (checked against its start time, so a reused pid is never hit) with
every descendant psutil finds; every process whose environment carries the
task's ``PEXEN_TASK_TOKEN`` (double-forked daemons that left the tree); and
the whole process group of any of them that leads its own group (executables
run in a session of their own). Then: SIGTERM and SIGCONT (a stopped process
cannot act on SIGTERM), a grace period in which new processes of the task are
found and signalled too, SIGKILL to what is left, and a wait that confirms
each is gone. A process that survives even SIGKILL (stuck in the kernel) is
returned as leaked.

`end_children` is the cheap check a worker process makes when each task ends:
a worker that is a child subreaper (`become_subreaper`) inherits every
orphan its tasks leave, so "no child left" (one `waitid` call) proves that
nothing of the task outlives it.

This module knows the engine's types, not the journal or the harness.
"""

from __future__ import annotations

import heapq
import os
import signal
import threading
import time

from .sched import _cgroup
from .sched._zygote import reap_exited, set_subreaper
from .sched.common import ExceptionInfo, TaskKilledError, TaskRes
from .sched.meta import SCHED_ATTR_NAME
from .util import LazyModule, process_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

    ProcInfo = Dict[str, Any]   # {"pid": int, "name": str, "cmdline": str}

# psutil is imported when a process tree is first looked at: a run whose
# tasks leave nothing behind and meet their deadlines never needs it.
psutil: Any = LazyModule("psutil", globals())

#: The message of tasks ended (or never started) because the run's limit passed.
RUN_TIMEOUT = "run timeout"
#: The environment variable every process of a task carries.
TOKEN_VAR = "PEXEN_TASK_TOKEN"

_POLL = 0.02
_RESCAN = 0.25


class TaskTimeout(TaskKilledError):
    """The watchdog ended the task: its deadline (or the run's) passed.

    `killed` and `leaked` describe the processes ended and those that
    survived (dicts with pid, name, cmdline); `started` is False for a task
    the run's deadline caught before it started. Locks are released (the
    task's processes are confirmed gone), dependents do not run.
    """

    def __init__(self, message: str, killed: Iterable[ProcInfo] = (),
                 leaked: Iterable[ProcInfo] = (), started: bool = True) -> None:
        super().__init__(message)
        self.killed = list(killed)
        self.leaked = list(leaked)
        self.started = started

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.killed, self.leaked, self.started))


# -- processes' start times -------------------------------------------------------

_started: Dict[int, float] = {}


def remembered_start(pid: int) -> Optional[float]:
    """When process `pid` started (psutil's `create_time`), or None if it is
    gone; remembered, so not a liveness check: a pool's worker runs task
    after task, and asking psutil reads two files of /proc each time. Call
    `forget_process` once a process is known to be gone, so that a later one
    with its pid is asked about."""
    started = _started.get(pid)
    if started is None:
        started = process_start_time(pid)
        if started is None:
            return None
        _started[pid] = started
    return started


def forget_process(pid: Optional[int]) -> None:
    """Process `pid` is gone (see `remembered_start`)."""
    if pid is not None:
        _started.pop(pid, None)


# -- ending processes ------------------------------------------------------------

def _info(proc: psutil.Process) -> ProcInfo:
    try:
        with proc.oneshot():
            name = proc.name()
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                cmdline = ""
    except psutil.Error:
        name, cmdline = "?", ""
    if len(cmdline) > 200:
        cmdline = cmdline[:197] + "..."
    return {"pid": proc.pid, "name": name, "cmdline": cmdline}


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def token_processes(tokens: Set[str], since: Optional[float] = None,
                    exclude: Iterable[int] = ()) -> List[psutil.Process]:
    """Processes whose environment carries one of `tokens` in TOKEN_VAR; with
    `since` (a time.time()), only those created at or after it (the start of
    the task: older ones cannot be its own, and reading their environment is
    the costly part)."""
    if not tokens:
        return []
    skip = set(exclude)
    skip.add(os.getpid())
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if since is not None and proc.create_time() < since - 1.0:
                continue
            if proc.environ().get(TOKEN_VAR) in tokens:
                found.append(proc)
        except psutil.Error:
            continue
    return found


class _Victims:
    """The processes of one task, found again and again while it is ended
    (a task may fork while it dies)."""

    def __init__(self, roots: Iterable[Tuple[int, Optional[float]]], tokens: Set[str],
                 since: Optional[float], exclude: Iterable[int],
                 cgroups: Iterable[str] = ()) -> None:
        self.me = os.getpid()
        # (never a cgroup this process is in: it would end itself)
        mine = _cgroup.cgroup_of() if cgroups else None
        self.cgroups = [cg for cg in cgroups if cg and not (
            mine is not None and (mine == cg or mine.startswith(cg + "/")))]
        self.my_group = os.getpgrp()
        self.exclude = set(exclude) | {self.me}
        self.tokens = tokens
        self.since = since
        self.roots: List[psutil.Process] = []
        for pid, started in roots:
            if not pid or pid in self.exclude:
                continue
            try:
                proc = psutil.Process(pid)
                # psutil remembers the create time, and refuses to signal a
                # process with the same pid but another one.
                if started is None or abs(proc.create_time() - started) < 0.5:
                    self.roots.append(proc)
            except psutil.Error:
                continue
        self.known: Dict[int, psutil.Process] = {}
        self.infos: Dict[int, ProcInfo] = {}
        self.groups: Set[int] = set()

    def find(self) -> List[psutil.Process]:
        """Every process of the task found now that was not found before."""
        found: List[psutil.Process] = []
        for root in self.roots:
            try:
                if _gone(root):
                    continue
                found.append(root)
                found.extend(root.children(recursive=True))
            except psutil.Error:
                continue
        found.extend(token_processes(self.tokens, self.since, self.exclude))
        for cgroup in self.cgroups:
            for pid in _cgroup.pids(cgroup):
                try:
                    found.append(psutil.Process(pid))
                except psutil.Error:
                    continue
        new = []
        for proc in found:
            if proc.pid in self.exclude:
                continue
            known = self.known.get(proc.pid)
            if known is not None and known == proc:  # same pid and create time
                continue
            self.known[proc.pid] = proc
            self.infos[proc.pid] = _info(proc)
            new.append(proc)
            try:
                pgid = os.getpgid(proc.pid)
            except OSError:
                continue
            if pgid == proc.pid and pgid != self.my_group:
                self.groups.add(pgid)
        return new

    def signal(self, procs: Iterable[psutil.Process], sig: int) -> None:
        if sig == signal.SIGKILL:
            for cgroup in self.cgroups:   # (what forks now is killed too)
                _cgroup.kill(cgroup)
        for group in self.groups:
            try:
                os.killpg(group, sig)
            except OSError:
                pass
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass

    def alive(self) -> List[psutil.Process]:
        return [p for p in self.known.values() if not _gone(p)]


def end_processes(roots: Iterable[Tuple[int, Optional[float]]] = (),
                  tokens: Iterable[str] = (), grace: float = 10.0, *,
                  since: Optional[float] = None, exclude: Iterable[int] = (),
                  confirm: float = 5.0, cgroups: Iterable[str] = ()
                  ) -> Tuple[List[ProcInfo], List[ProcInfo]]:
    """End a task's processes: `roots` as (pid, create time or None) with their
    descendants, every process carrying one of `tokens` (created at or
    after `since`, when given), and every process in one of `cgroups`
    (cgroup v2 directories; SIGKILL through their ``cgroup.kill``). SIGTERM +
    SIGCONT, up to `grace` seconds for them to go, SIGKILL, and up to
    `confirm` seconds to see them gone.

    Returns (ended, leaked): what was found and is gone, and what survived.
    Never signals this process (nor a cgroup it is in), `exclude`, or a
    process whose pid was reused.
    """
    victims = _Victims(roots, set(tokens), since, exclude, cgroups)
    procs = victims.find()
    if not procs:
        return [], []
    # A scan of the process table is the costly part (several ender threads
    # may run at once): between the scans, only the processes found are polled.
    victims.signal(procs, signal.SIGTERM)
    victims.signal(procs, signal.SIGCONT)
    now = time.monotonic()
    end, scanned = now + grace, now
    while victims.alive() and now < end:
        time.sleep(_POLL)
        now = time.monotonic()
        if now - scanned >= _RESCAN:
            scanned = now
            new = victims.find()  # forked while dying
            victims.signal(new, signal.SIGTERM)
            victims.signal(new, signal.SIGCONT)
    if grace > 0:
        victims.find()
    end = time.monotonic() + confirm
    while True:
        alive = victims.alive()
        if not alive:
            # Confirm with a last scan: a process forked just before its
            # parent died would otherwise be missed.
            alive = victims.find()
            if not alive:
                break
        victims.signal(alive, signal.SIGKILL)
        if time.monotonic() >= end:
            break
        # psutil confirms (a zombie, dead but not yet reaped by its parent,
        # counts as gone: `alive()` drops it)
        psutil.wait_procs(alive, timeout=_POLL)
    alive_pids = {p.pid for p in victims.alive()}
    ended = [info for pid, info in victims.infos.items() if pid not in alive_pids]
    leaked = [info for pid, info in victims.infos.items() if pid in alive_pids]
    return ended, leaked


#: Make the calling process a child subreaper (Linux); False where refused.
become_subreaper = set_subreaper


def end_children(grace: float) -> Tuple[List[ProcInfo], List[ProcInfo]]:
    """End every child of this process (and their descendants), reaping them.
    Cheap when there are none: a single waitid call. Returns (ended, leaked)
    as `end_processes` does; exited children not yet waited for are reaped
    and not reported."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    try:
        os.waitid(os.P_ALL, 0, flags)
    except ChildProcessError:
        return [], []
    reap_exited()
    children = [(p.pid, None) for p in psutil.Process().children()]
    ended: List[ProcInfo] = []
    leaked: List[ProcInfo] = []
    if children:
        ended, leaked = end_processes(children, grace=grace)
    reap_exited()
    return ended, leaked


def describe_procs(procs: Iterable[ProcInfo], limit: int = 5) -> str:
    """'123 (sleep), 456 (sh)' (and 'and N more')."""
    procs = list(procs)
    text = ", ".join(f"{p['pid']} ({p['name']})" for p in procs[:limit])
    if len(procs) > limit:
        text += f" and {len(procs) - limit} more"
    return text


# -- the watchdog ------------------------------------------------------------------

class _Running:
    __slots__ = ("key", "task", "pid", "pid_started", "deadline", "ending", "started",
                 "started_at")

    def __init__(self, key: str, task: Any) -> None:
        self.key = key
        self.task = task
        self.pid: Optional[int] = None
        self.pid_started: Optional[float] = None
        self.deadline: Optional[float] = None   # time.monotonic()
        self.ending = False
        self.started = False
        self.started_at: Optional[float] = None   # time.time()


def task_timeout(task: Any) -> Optional[float]:
    """The task's ``timeout`` metadata, or None."""
    meta = getattr(task, SCHED_ATTR_NAME, None)
    return meta.get("timeout") if meta is not None else None


class Watchdog:
    """Deadlines for the tasks of one run of `sched` on `pool` (see the module
    docstring). Add it as a listener before the run, `start()` it, `stop()` it
    after.

    `default_timeout`: seconds for tasks without ``timeout`` metadata (None:
    no limit). `time_used`: seconds a task's earlier attempts already used, by
    key (charged against its timeout). `run_deadline`: a time.time() at which
    the whole run ends: `sched.cancel(RUN_TIMEOUT)`, then every task handed to
    the pool is ended. `tokens`: each task's PEXEN_TASK_TOKEN, by key.
    `grace`: seconds between SIGTERM and SIGKILL.
    """

    def __init__(self, sched: Any, pool: Any, *, default_timeout: Optional[float] = None,
                 grace: float = 10.0, run_deadline: Optional[float] = None,
                 time_used: Optional[Mapping[str, float]] = None,
                 tokens: Optional[Mapping[str, str]] = None,
                 timeout_of: Callable[[Any], Optional[float]] = task_timeout) -> None:
        self.sched = sched
        self.pool = pool
        self.default_timeout = default_timeout
        self.grace = grace
        self.run_deadline = run_deadline
        self.time_used = time_used or {}
        self.tokens = tokens or {}
        self.timeout_of = timeout_of
        self.run_timed_out = False
        # every task is watched when the run has a deadline or a default
        # timeout; else only those with a `timeout` of their own
        self._watch_all = run_deadline is not None or default_timeout is not None
        self._me = os.getpid()
        self._cond = threading.Condition()
        self._running: Dict[str, _Running] = {}
        self._heap: List[Tuple[float, str]] = []
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._enders: List[threading.Thread] = []

    # -- the listener (called by the engine, from its threads) ---------------

    #: the engine calls task_queued/task_started/task_finished directly
    #: (no TaskEvent made: see Sched._hooks)
    task_events = True

    def __call__(self, ev: Any) -> None:
        kind = ev.kind   # (a str enum: compared as the str, not through .value)
        if kind == "queued":
            self.task_queued(ev.key, ev.task, ev.at)
        elif kind == "started":
            self.task_started(ev.key, ev.task, ev.pid, ev.at)
        elif kind == "finished" or kind == "skipped":
            # (a dict's pop is atomic; the thread takes copies under the lock)
            self._running.pop(ev.key, None)

    def task_queued(self, key: str, task: Any, at: float) -> None:
        if not self._watch_all and self.timeout_of(task) is None:
            return  # no deadline of its own, none for the run: nothing to watch
        entry = _Running(key, task)
        with self._cond:
            self._running[key] = entry

    def task_started(self, key: str, task: Any, pid: int, at: float) -> None:
        entry = self._running.get(key)
        if entry is None:
            return  # not watched (or ended at once)
        limit = self.timeout_of(task)
        if limit is None:
            limit = self.default_timeout
        pid_started = None
        if pid and pid != self._me:
            pid_started = remembered_start(pid)
        with self._cond:
            entry.started = True
            entry.started_at = at
            entry.pid = pid
            entry.pid_started = pid_started
            self._cond.notify_all()
            if self.run_timed_out:   # (handed out before the run's deadline passed)
                self._end(entry, RUN_TIMEOUT)
                return
            if limit is not None:
                left = limit - self.time_used.get(key, 0.0) - (time.time() - at)
                entry.deadline = time.monotonic() + max(0.0, left)
                heapq.heappush(self._heap, (entry.deadline, key))

    def task_finished(self, key: str, task: Any, res: Any, at: float) -> None:
        # (a dict's pop is atomic; the thread takes copies under the lock)
        self._running.pop(key, None)

    # -- the thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pexen-watchdog",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; wait for kills in progress to end."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        for ender in list(self._enders):
            ender.join()

    def _loop(self) -> None:
        run_mono = None
        if self.run_deadline is not None:
            run_mono = time.monotonic() + (self.run_deadline - time.time())
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if run_mono is not None and now >= run_mono and not self.run_timed_out:
                    self.run_timed_out = True
                    self._cond.release()
                    try:
                        self.sched.cancel(RUN_TIMEOUT)
                    finally:
                        self._cond.acquire()
                    for running in list(self._running.values()):
                        self._end(running, RUN_TIMEOUT)
                heap = self._heap
                while heap and heap[0][0] <= now:
                    deadline, key = heapq.heappop(heap)
                    entry = self._running.get(key)
                    if entry is not None and entry.deadline == deadline:
                        limit = self.timeout_of(entry.task)
                        if limit is None:
                            limit = self.default_timeout
                        self._end(entry, f"timeout: still running after its "
                                         f"{_seconds(limit)} limit")
                waits = [heap[0][0] - now] if heap else []
                if run_mono is not None and not self.run_timed_out:
                    waits.append(run_mono - now)
                self._cond.wait(max(0.0, min(waits)) if waits else None)

    def _end(self, entry: _Running, reason: str) -> None:
        """(Holding the lock.) End one task, in a thread of its own: a grace
        period must not hold up the other deadlines."""
        if entry.ending:
            return
        entry.ending = True
        ender = threading.Thread(target=self._end_task, args=(entry, reason),
                                 name=f"pexen-watchdog-{entry.key}", daemon=True)
        self._enders = [t for t in self._enders if t.is_alive()]
        self._enders.append(ender)
        ender.start()

    def _end_task(self, entry: _Running, reason: str) -> None:
        # with exclusivity groups the pool running the task is the group's
        pool = getattr(self.sched, "pool", None) or self.pool
        where = pool.take_over(entry.task)
        if not where:
            return  # it ended by itself just now
        killed: List[ProcInfo] = []
        leaked: List[ProcInfo] = []
        if where == "running" and not entry.started:
            # Handed to a worker, which has not said so yet: wait for its pid.
            with self._cond:
                self._cond.wait_for(lambda: entry.started, timeout=5.0)
        entry.started = where == "running"
        if entry.started:
            roots = []
            if entry.pid and entry.pid != self._me:
                roots.append((entry.pid, entry.pid_started))
            token = self.tokens.get(entry.key)
            # The task's cgroup, where it has one: its worker's (the process
            # pool), or its executable's (the thread pool's spawner).
            cgroups = []
            if _cgroup.session is not None:
                if entry.pid and entry.pid != self._me and _same_process(entry.pid,
                                                                          entry.pid_started):
                    cgroups.append(_cgroup.task_cgroup(entry.pid))
                if token:
                    own = _cgroup.path_of(_cgroup.task_name(token))
                    if own is not None and os.path.isdir(own):
                        cgroups.append(own)
            # Whatever carries the token was started by the task: not before it.
            killed, leaked = end_processes(roots, [token] if token else [], self.grace,
                                           since=entry.started_at,
                                           cgroups=[cg for cg in cgroups if cg])
        message = reason if entry.started else f"not started: {reason}"
        if killed:
            message += f"; ended {describe_procs(killed)}"
        if leaked:
            message += f"; LEAKED (still running after SIGKILL): {describe_procs(leaked)}"
        err = TaskTimeout(message, killed, leaked, started=entry.started)
        pool.deliver(TaskRes(entry.task, None, None, ExceptionInfo(
            TaskTimeout, err, None, f"TaskTimeout: {err}\n")))


def _same_process(pid: int, started: Optional[float]) -> bool:
    """Whether `pid` is still the process that started at `started`."""
    now = process_start_time(pid)
    return now is not None and (started is None or abs(now - started) < 0.5)


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "?"
    return f"{value:g} s"


__all__ = ["RUN_TIMEOUT", "TOKEN_VAR", "TaskTimeout", "Watchdog", "become_subreaper",
           "describe_procs", "end_children", "end_processes", "forget_process",
           "remembered_start", "task_timeout", "token_processes"]

"""Starting and resuming runs (the library behind `pexen-harness start/resume`)."""

from __future__ import annotations

import _socket
import json
import math
import os
import time

from ..journal import Journal, RunInfo, TaskState, task_meta
from ..journal._open import shown
from ..journal._store import ResumeRow
from ..journal.states import TERMINAL
from ..sched import DepcheckError, MutexError, Sched, TaskKeyError
from ..sched.meta import SCHED_ATTR_NAME
from ..util import Record
from . import controller
from ._journal import (  # noqa: F401  (the verbs' helpers, as they were here)
    DEFAULT_JOURNAL,
    EXIT_INTERNAL,
    EXIT_USAGE,
    HarnessError,
    _dead,
    controller_alive,
    journal_path,
    pick_run,
    this_host,
)
from ._journal import open_for_verb as _open
from ._outcap import DEFAULT_MAX_OUTPUT
from .controller import (
    REQUEUED_FOR_REBOOT,
    STOPPED_BY_SIGNAL,
    Session,
    boot_id,
    process_started,
)
from .reaper import kill_leftovers
from .selection import choose, report_lines, rerun_spec
from .selection import to_json as selection_json
from .suite import (
    Loaded,
    SuiteError,
    SuiteGroup,
    SuiteSpec,
    _display_name,
    grouped,
    load_suite_groups,
    parse_suite,
)

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import AbstractSet, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

    #: What `start` and `resume` call when the session has ended.
    OnEnd = Callable[[Journal, int, int], int]

LIVE_STATES = {"queued", "running", "rebooting", "interrupted"}
ENDED_STATES = {state.value for state in TERMINAL}


class Options(Record, frozen=True):
    workers: int = 2
    pool: str = "process"
    max_attempts: int = 3
    timeout: Optional[float] = None       # seconds, for tasks without `timeout`
    kill_grace: float = 10.0              # SIGTERM .. SIGKILL
    run_timeout: Optional[float] = None   # seconds from start (or resume)
    max_reboots: int = 10                 # per task
    drain_timeout: float = 600.0          # for the other tasks, before a reboot
    reboot_command: Optional[str] = None  # None: $PEXEN_REBOOT_COMMAND or systemctl reboot
    allow_reboot: bool = False            # may tasks reboot the machine
    max_output: int = DEFAULT_MAX_OUTPUT  # bytes kept per stream of an attempt (0: all)
    dask: Optional[str] = None            # a Dask scheduler's address: run the tasks there

    def check(self) -> None:
        if self.dask is not None:
            if not self.dask.strip():
                raise HarnessError("--dask needs the address of a Dask scheduler "
                                   "(tcp://host:8786)")
            try:
                import distributed  # noqa: F401
            except ImportError:
                raise HarnessError("--dask needs Dask's distributed: pip install "
                                   "'pexen[dask]'") from None
        if self.workers < (0 if self.dask else 1):
            raise HarnessError(f"-j/--workers must be at least 1, not {self.workers}")
        if self.pool not in ("process", "thread"):
            raise HarnessError(f"--pool must be 'process' or 'thread', not {self.pool!r}")
        if self.max_attempts < 1:
            raise HarnessError(f"--max-attempts must be at least 1, not {self.max_attempts}")
        for flag, value in (("--timeout", self.timeout), ("--run-timeout", self.run_timeout)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise HarnessError(f"{flag} must be a number of seconds > 0, not {value!r}")
        if self.max_reboots < 0:
            raise HarnessError(f"--max-reboots must be at least 0, not {self.max_reboots}")
        if not (self.drain_timeout >= 0 and math.isfinite(self.drain_timeout)):
            raise HarnessError(f"--drain-timeout must be a number of seconds >= 0, "
                               f"not {self.drain_timeout!r}")
        if self.reboot_command is not None and not self.reboot_command.strip():
            raise HarnessError("--reboot-command must not be empty")
        if not (self.kill_grace >= 0 and math.isfinite(self.kill_grace)):
            raise HarnessError(f"--kill-grace must be a number of seconds >= 0, "
                               f"not {self.kill_grace!r}")
        if not isinstance(self.max_output, int) or self.max_output < 0:
            raise HarnessError(f"--max-output must be a size >= 0, not {self.max_output!r}")

    def config(self, run_deadline: Optional[float], journal: str) -> Dict[str, Any]:
        """What the run row keeps of them (resume starts from it), and where
        the tasks' files are (`data_root`: ROOT/RUN/KEY/ATTEMPT.out|.err)."""
        return {"workers": self.workers, "pool": self.pool,
                "max_attempts": self.max_attempts, "timeout": self.timeout,
                "kill_grace": self.kill_grace, "run_deadline": run_deadline,
                "max_reboots": self.max_reboots, "drain_timeout": self.drain_timeout,
                "reboot_command": self.reboot_command, "allow_reboot": self.allow_reboot,
                "max_output": self.max_output, "data_root": controller.data_root(journal),
                **({"dask": self.dask} if self.dask else {})}


def _check_pool(spec: SuiteSpec, pool: str, dask: Optional[str]) -> None:
    """A pytest suite runs on the process pool or on Dask: a pytest session
    is not made to be shared by threads, and in the thread pool the tests
    would run in the controller's own process (doc/pytest.md)."""
    if spec.kind == "pytest" and pool == "thread" and not dask:
        raise HarnessError("a pytest:PATH suite runs on the process pool, not --pool thread "
                           "(pytest's sessions are not thread-safe, and a test would run in "
                           "the controller)")


def _check_tasks(tasks: Sequence[Tuple[str, Any]], spec: SuiteSpec,
                 assumed: Sequence[Any] = (), groups: Sequence[SuiteGroup] = ()) -> None:
    """The engine's checks (deps, locks, keys, and with groups: no task
    requires what only a later group provides) before anything is journaled."""
    try:
        probe = Sched()
        if assumed:
            probe.assume_provided(assumed)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.add_tasks(grouped(tasks, groups, lambda key, task: task))
    except (DepcheckError, MutexError, TaskKeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"suite {spec.target}: {exc}") from None


def _rows(tasks: Sequence[Tuple[str, Any]], group_of: Dict[str, str]
          ) -> List[Tuple[str, Dict[str, Any]]]:
    """The task rows of a new run: key and metadata (with the task's group)."""
    rows = []
    for key, task in tasks:
        meta = task_meta(task)
        if key in group_of:
            meta["group"] = group_of[key]
        rows.append((key, meta))
    return rows


class Pick(Record, frozen=True):
    """The selection options of `start` (see pexen.harness.selection)."""

    select: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()
    prefer: Tuple[str, ...] = ()
    deps: bool = True
    pytest_args: Tuple[str, ...] = ()   # (a pytest:PATH suite's)


#: The defaults of `start` (frozen records, shared safely).
DEFAULT_OPTIONS = Options()
NO_PICK = Pick()


def start(suite: Optional[str], journal: Optional[str] = None,
          options: Options = DEFAULT_OPTIONS, progress: Optional[Callable[..., Any]] = None,
          extra_config: Optional[Dict[str, Any]] = None, pick: Pick = NO_PICK,
          rerun_failed: Optional[int] = None,
          notify: Callable[[str], None] = print,
          on_end: Optional[OnEnd] = None) -> Tuple[int, int]:
    """Start a new run of `suite`, or of the tasks of run `rerun_failed` (0:
    the newest run) that did not pass; return (run id, exit code).
    `extra_config` is kept in the run's config (the boot unit installed for
    it, say). `on_end(journal, run_id, code)`, once the session has ended
    (the journal still open, everything committed), returns the exit code
    (an export, say, without opening the journal again)."""
    options.check()
    path = journal_path(journal)
    with controller.quiet_gc() as ready:
        try:
            if rerun_failed is not None:
                if suite is not None:
                    raise HarnessError("give SUITE or --rerun-failed, not both (the run "
                                       "to rerun names its suite)")
                spec, loaded = _rerun_spec(path, rerun_failed, pick)
            else:
                if suite is None:
                    raise HarnessError("give SUITE (or --rerun-failed [RUN])")
                spec = parse_suite(suite).replace(select=pick.select,
                               exclude=pick.exclude, prefer=pick.prefer, deps=pick.deps,
                               pytest_args=pick.pytest_args)
                if spec.pytest_args and spec.kind != "pytest":
                    raise HarnessError("--pytest-args is for a pytest:PATH suite")
                loaded = load_suite_groups(spec)
            tasks = loaded.tasks
            chosen = choose(spec, tasks) if spec.selects else None
        except SuiteError as exc:
            raise HarnessError(str(exc)) from None
        _check_pool(spec, options.pool, options.dask)
        unmet: List[Tuple[str, Any]] = []
        if chosen is not None:
            for line in report_lines(chosen):
                notify(line)
            unmet = [(k, t) for k, t in tasks if k in chosen.unmet]
            suite_order = {key: i for i, (key, _) in enumerate(tasks)}
            tasks = chosen.tasks
            loaded = loaded.restricted(tasks)
        groups = loaded.groups
        _check_tasks(tasks, spec, groups=groups)
        j = _open(path, create=True)
        try:
            run_deadline = (time.time() + options.run_timeout
                            if options.run_timeout is not None else None)
            rows = tasks
            if unmet:
                rows = sorted([*tasks, *unmet], key=lambda kt: suite_order[kt[0]])
            run_id = j.create_run(
                spec.to_json(), {**options.config(run_deadline, path), **(extra_config or {})},
                _rows(rows, loaded.group_of()),
                host=_socket.gethostname(), boot_id=boot_id(), controller_pid=os.getpid(),
                controller_started=process_started(os.getpid()) or time.time())
            # The writer (and its process) now, not in the controller: the
            # process starts while the rest is set up, and the first task's
            # attempt, committed before it runs, need not wait for it.
            writer = j.writer(run_id, separate=len(rows) >= controller.SEPARATE_WRITER_AT)
            try:
                if groups:
                    j.add_run_event(run_id, "groups",
                                    {"groups": [g.to_json() for g in groups]})
                if chosen is not None:
                    j.add_run_event(run_id, "selection", selection_json(chosen))
                    for key, _ in unmet:
                        writer.transition(key, TaskState.SKIP, finished_at=time.time(),
                                          reason=chosen.unmet[key])
                session = Session(j, run_id, tasks, attempts={}, time_used={},
                                  pool=options.pool, workers=options.workers,
                                  timeout=options.timeout, kill_grace=options.kill_grace,
                                  run_deadline=run_deadline,
                                  drain_timeout=options.drain_timeout,
                                  progress=(progress(len(rows), len(unmet)) if progress
                                            else None),
                                  ready=ready, writer=writer,
                                  allow_reboot=options.allow_reboot, groups=groups,
                                  max_output=options.max_output, dask=options.dask,
                                  suite=spec.to_json(), max_attempts=options.max_attempts)
            except BaseException:
                writer.close()
                raise
            if progress:
                notify(f"run {run_id}: {len(rows)} tasks of {_display_name(spec)}, "
                       f"{_pool_text(options)}, journal {shown(path)}")
            code = controller.execute(session, path)
            _close_progress(session)
            if on_end is not None:
                code = on_end(j, run_id, code)
            return run_id, code
        finally:
            j.close()


def _rerun_spec(path: str, run_id: int, pick: Pick) -> Tuple[SuiteSpec, Loaded]:
    """The spec and whole suite of a rerun of run `run_id` (0: the newest)."""
    if "://" not in path and not os.path.exists(path):
        raise HarnessError(f"no journal at {path} (give --journal)")
    if pick.select or pick.exclude:
        raise HarnessError("--rerun-failed picks the tasks itself; drop --select/--exclude")
    j = _open(path, create=False)
    try:
        if run_id:
            run = pick_run(j, run_id)
        else:
            newest = j.newest()
            if newest is None:
                raise HarnessError(f"{j.where} has no runs yet")
            run = newest
        states = {t.key: t.state for t in j.tasks(run.id)}
    finally:
        j.close()
    if controller_alive(run):
        raise _alive_error(run)
    try:
        old = SuiteSpec.from_json(run.suite)
        loaded = load_suite_groups(old)
    except SuiteError as exc:
        raise HarnessError(f"run {run.id} cannot be run again: its suite no longer loads: "
                           f"{exc}") from None
    spec = rerun_spec(old, states, loaded.tasks, run.id, prefer=pick.prefer)
    if not pick.deps:
        spec = spec.replace(deps=False)
    return spec, loaded


def _pool_text(options: Options) -> str:
    if options.dask:
        return (f"Dask cluster {options.dask}"
                + (f" -j {options.workers}" if options.workers else ""))
    return f"-j {options.workers} ({options.pool} pool)"


def _close_progress(session: Session) -> None:
    """(The session ended, everything it journaled committed.)"""
    release = getattr(session.progress, "release", None)
    if release is not None:
        release()
    close = getattr(session.progress, "close", None)
    if close is not None:
        close()


def _alive_error(run: RunInfo) -> HarnessError:
    if run.host and run.host != this_host():
        return HarnessError(
            f"run {run.id} is still being run on {run.host} (pid {run.controller_pid}, its "
            f"heartbeat is fresh); wait for it to end, or stop it there, then resume there")
    return HarnessError(
        f"run {run.id} is still being run by pid {run.controller_pid}; wait for it to "
        f"end, or stop it (kill {run.controller_pid}), then resume "
        f"(pexen-harness status {run.id} shows it)")


def resume(journal: Optional[str] = None, run_id: Optional[int] = None,
           options: Optional[Dict[str, Any]] = None,
           progress: Optional[Callable[..., Any]] = None,
           notify: Callable[[str], None] = print,
           rerun_interrupted: bool = False,
           on_end: Optional[OnEnd] = None) -> Tuple[int, int]:
    """Continue a run where it stopped; return (run id, exit code).
    `rerun_interrupted`: tasks an unplanned reboot cut short run again (as if
    each had `rerun_on_interrupt` metadata), up to --max-attempts. `on_end`:
    as for `start`."""
    path = journal_path(journal)
    if "://" not in path and not os.path.exists(path):
        raise HarnessError(f"no journal at {path} (start a run with pexen-harness "
                           "start, or give --journal)")
    with controller.quiet_gc() as ready:
        j = _open(path, create=False)
        try:
            run = pick_run(j, run_id)
            if run.state == "finished":
                raise HarnessError(f"run {run.id} has finished; nothing to resume")
            if controller_alive(run):
                raise _alive_error(run)
            if run.host and run.host != this_host():
                raise HarnessError(
                    f"run {run.id} was started on {run.host}, not here; resume it there "
                    "(its processes, cgroups, data directories and reboots are that "
                    "machine's)")
            # Options not given stay as the run was started (or last resumed).
            config = dict(run.config)
            config.update(options or {})
            opts = Options(int(config.get("workers", 2)), str(config.get("pool", "process")),
                           int(config.get("max_attempts", 3)), config.get("timeout"),
                           float(config.get("kill_grace", 10.0)), config.get("run_timeout"),
                       int(config.get("max_reboots", 10)),
                       float(config.get("drain_timeout", 600.0)),
                       config.get("reboot_command"), bool(config.get("allow_reboot", False)),
                       int(config.get("max_output", DEFAULT_MAX_OUTPUT)), config.get("dask"))
            opts.check()
            # --run-timeout on resume: a new limit from now; else the run's own.
            run_deadline = (time.time() + opts.run_timeout if opts.run_timeout is not None
                            else config.get("run_deadline"))
            try:
                spec = SuiteSpec.from_json(run.suite)
                _check_pool(spec, opts.pool, opts.dask)
                whole = load_suite_groups(spec)
                loaded = whole.tasks
            except SuiteError as exc:
                raise HarnessError(f"run {run.id} cannot be resumed: its suite no longer "
                                   f"loads: {exc}") from None
            if spec.selects:
                loaded, unmet = _started_part(j, run, loaded)
                checked = [kt for kt in loaded if kt[0] not in unmet]
            else:
                checked = loaded
            # before anything is written
            _check_tasks(checked, spec, groups=whole.restricted(checked).groups)
            # What the dead controller's workers still run ends by itself, and
            # its result is recorded by them: wait for it before taking over.
            # (read before the survivors record their tasks' ends: whether a
            # task of the dead session was on disk as started, see _plan_resume)
            started_at_death = j.counts(run.id).get(TaskState.RUNNING.value, 0) > 0
            spooled = _started_by_spools(run, path)
            _wait_for_survivors(run, path, loaded, opts, notify, run_deadline,
                                {key for key, *_ in j.reboot_requests(run.id)})
            if run.config.get("dask"):
                # what ended on the workers while no controller was there
                kept = controller.record_remote_orphans(j, path, run, loaded,
                                                        opts.kill_grace, opts.max_output,
                                                        opts.timeout)
                if kept:
                    notify(f"recorded {len(kept)} task(s) that ended on their Dask workers "
                           f"after the controller died: {', '.join(kept[:5])}"
                           + (" ..." if len(kept) > 5 else ""))
            claimed = j.claim_run(run.id, is_alive=controller_alive, pid=os.getpid(),
                                  pid_started=process_started(os.getpid()) or time.time(),
                                  boot_id=boot_id(),
                                  config={**opts.config(run_deadline, path),
                                      **{k: v for k, v in run.config.items()
                                         if k == "boot_unit"}})
            if controller_alive(claimed):
                raise _alive_error(claimed)
            _end_old_cgroups(run, path)
            plan = _plan_resume(j, run, loaded, opts, notify, rerun_interrupted,
                                started_at_death, spooled)
            session = Session(j, run.id, plan.tasks, attempts=plan.attempts,
                              time_used=plan.time_used, assumed=plan.assumed, pool=opts.pool,
                              workers=opts.workers, timeout=opts.timeout,
                              kill_grace=opts.kill_grace, run_deadline=run_deadline,
                              progress=progress(plan.total, plan.done) if progress else None,
                              writer=plan.writer, ready=ready, reboots=plan.reboots,
                              drain_timeout=opts.drain_timeout, reboot_now=plan.reboot_now,
                              interrupts=plan.interrupts, allow_reboot=opts.allow_reboot,
                              groups=whole.restricted(plan.tasks).groups,
                              max_output=opts.max_output, dask=opts.dask, suite=run.suite,
                              max_attempts=opts.max_attempts)
            if progress:
                notify(f"run {run.id} resumed: {plan.total - plan.done} of {plan.total} "
                       f"tasks to go, {_pool_text(opts)}, journal {shown(path)}")
            code = controller.execute(session, path)
            _close_progress(session)
            if on_end is not None:
                code = on_end(j, run.id, code)
            return run.id, code
        finally:
            j.close()


def _survivors(run: RunInfo, path: str, timeouts: Dict[str, Optional[float]],
               opts: Options) -> List[Tuple[int, float, Optional[float], Optional[str]]]:
    """The workers of `run`'s dead controller still alive (on this boot):
    (pid, start time, deadline or None, key of the task it runs or None).
    Each worker has a spool named after its pid; the owner record in it,
    written when a task starts, names the task and dates its start."""
    from .capture import _read_owner, started_tag

    if run.boot_id != boot_id():
        return []
    found = []
    for base in _worker_spools(run, path):
        pid = started_tag(base)   # (None: gone, or the pid is another process's now)
        try:
            st = os.stat(base + ".own")
        except OSError:
            continue
        started = process_started(pid) if pid is not None else None
        if pid is None or started is None or _dead(pid):
            continue   # (a zombie has ended: what it recorded is in)
        owner = _read_owner(base + ".own")
        key = owner[0] if owner is not None else None
        timeout = timeouts.get(key) if key is not None else None
        if timeout is None:
            timeout = opts.timeout
        deadline = st.st_mtime + timeout + opts.kill_grace if timeout else None
        found.append((pid, started, deadline, key))
    return found


def _worker_spools(run: RunInfo, path: str) -> List[str]:
    """The spools of `run`'s process-pool workers (paths without the suffix)."""
    from .capture import _spool_bases, spool_dir

    root = run.config.get("data_root") or controller.data_root(path)
    return _spool_bases(spool_dir(os.path.join(root, str(run.id))))


def _started_by_spools(run: RunInfo, path: str) -> Set[Tuple[str, int]]:
    """(key, attempt) of the tasks the run's process-pool workers started,
    as their spools' owner records say (written before a task runs, kept
    until the worker's next task): a start the journal may not have had time
    to record before the controller died."""
    from .capture import _read_owner

    owners = (_read_owner(base + ".own") for base in _worker_spools(run, path))
    return {owner for owner in owners if owner is not None}


def _end_old_cgroups(run: RunInfo, path: str) -> None:
    """End what is still in the cgroups of the run's earlier sessions (their
    controllers are gone, their survivors were waited for): daemons that
    left their task's tree and dropped its token too (see doc/watchdog.md)."""
    from ..sched import _cgroup
    from .capture import spool_dir

    root = run.config.get("data_root") or controller.data_root(path)
    _cgroup.sweep(spool_dir(os.path.join(root, str(run.id))))


#: Survivors that end within this many seconds are waited for without a word.
_QUIET_WAIT = 0.5


def _wait_for_survivors(run: RunInfo, path: str, loaded: List[Tuple[str, Any]],
                        opts: Options, notify: Callable[[str], None],
                        run_deadline: Optional[float] = None,
                        rebooting: AbstractSet[str] = frozenset()) -> None:
    """Wait until the workers the dead controller left running have ended
    (each records the result of the task it ran: see doc/journal.md, "A task
    outlives its controller"), each up to its task's deadline (`timeout`
    metadata, else --timeout, and --kill-grace; none: until it ends), and
    all up to the run's deadline; not for tasks that asked for a reboot
    (`rebooting`: they wait for the machine to go down). What is still
    running then is ended by `_plan_resume` (and run again, or ended by the
    run's deadline)."""
    from ..watchdog import task_timeout

    timeouts = {key: task_timeout(task) for key, task in loaded}
    waiting = [found for found in _survivors(run, path, timeouts, opts)
               if found[3] not in rebooting]
    told = False
    began = time.monotonic()
    while waiting:
        if not told and time.monotonic() - began > _QUIET_WAIT:
            told = True
            keys = sorted({key for _, _, _, key in waiting if key is not None})
            shown = ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
            notify(f"waiting for {len(waiting)} worker(s) of run {run.id}'s previous "
                   f"controller to finish their tasks{f' ({shown})' if shown else ''}; each "
                   "records its task's result")
        time.sleep(0.02)
        now = time.time()
        if run_deadline is not None and now >= run_deadline:
            return
        waiting = [(pid, started, deadline, key) for pid, started, deadline, key in waiting
                   if process_started(pid) == started and not _dead(pid)
                   and (deadline is None or now < deadline)]


def _started_part(j: Journal, run: RunInfo, loaded: List[Tuple[str, Any]]
                  ) -> Tuple[List[Tuple[str, Any]], Set[str]]:
    """A run of a selection resumes the tasks its start chose (not the rest of
    the suite), and the keys of those it left out for unmet requirements."""
    keys = {t.key for t in j.tasks(run.id)}
    unmet: Set[str] = set()
    for event in j.events_to(run.id, "selection"):
        unmet.update((event.detail or {}).get("unmet", {}))
    return [kt for kt in loaded if kt[0] in keys], unmet


class _ResumePlan:
    """What `_plan_resume` decided. (A plain class: a Record costs a few
    milliseconds to make at import, which every `start` pays.)"""

    def __init__(self, tasks: List[Tuple[str, Any]], attempts: Dict[str, int],
                 time_used: Dict[str, float],
                 assumed: List[Tuple[List[Any], Optional[Dict[str, Any]]]], total: int,
                 done: int, writer: Any = None, reboots: Optional[Dict[str, int]] = None,
                 reboot_now: Optional[str] = None,
                 interrupts: Optional[Dict[str, int]] = None) -> None:
        self.tasks = tasks
        self.attempts = attempts
        self.time_used = time_used
        self.assumed = assumed
        self.total = total
        self.done = done
        self.writer = writer
        self.reboots = {} if reboots is None else reboots
        self.reboot_now = reboot_now
        self.interrupts = {} if interrupts is None else interrupts


def _plan_resume(j: Journal, run: RunInfo, loaded: List[Tuple[str, Any]], opts: Options,
                 notify: Callable[[str], None], rerun_interrupted: bool = False,
                 started_at_death: bool = False,
                 spooled: AbstractSet[Tuple[str, int]] = frozenset()) -> _ResumePlan:
    """Decide what runs again: terminal tasks never; tasks the dead controller
    left running are killed if alive and run again (attempt + 1), up to
    max_attempts; a changed boot id ends them `error`. `started_at_death`:
    some task was recorded running when the controller died; `spooled`:
    (key, attempt) its workers' spools say they started. A task handed out
    behind a started one and never started itself is spared. The rows are
    read once, and the writer made here goes on to the controller."""
    # (key, id, state, attempt), and the other columns of the few tasks
    # that need them, by key: see Journal.resume_rows
    found, extras = j.resume_rows(run.id)
    rows = {row[0]: row for row in found}
    by_key = dict(loaded)
    writer = j.writer(run.id, {key: (row[1], row[2]) for key, row in rows.items()},
                      separate=len(rows) >= controller.SEPARATE_WRITER_AT)
    same_boot = run.boot_id == boot_id()
    try:
        added = [k for k in by_key if k not in rows]
        if added:
            notify(f"note: {len(added)} task(s) are new in the suite since run {run.id} "
                   f"started and are not run: {', '.join(added[:5])}"
                   + (" ..." if len(added) > 5 else ""))
        interrupted = [ResumeRow(*row, *extras.get(row[0], ())) for row in found
                       if row[2] in LIVE_STATES]
        time_used = {row.key: row.time_used or 0.0 for row in interrupted}
        requests = {key: (boot, count) for key, _, boot, count in j.reboot_requests(run.id)}
        issued = run.state == "rebooting" and j.reboot_issued(run.id)
        reboots: Dict[str, int] = j.reboot_counts(run.id)
        reboot_now = None
        attempt_of: Dict[str, int] = {}
        interrupts = j.interrupt_counts(run.id)
        spared = j.spared_counts(run.id)
        # A task handed out but never started, when another task of the dead
        # session is known to have started (`running` in the journal when it
        # died, or named by its worker's spool): that one is blamed for
        # the crash, this one is spared, not charged an attempt. Up to
        # --max-attempts times, so a task that takes the machine down before
        # its start reaches the disk still ends its loop.
        # (an owner record outlives its task: only a task not ended counts)
        started = {key for key, attempt in spooled if key in rows
                   and rows[key][2] in LIVE_STATES and rows[key][3] == attempt}
        blame_started = started_at_death or bool(started)
        rerun: Dict[str, int] = {}
        if same_boot and interrupted:
            kill_leftovers([(r.pid, r.pid_started) for r in interrupted if r.pid],
                           {r.token for r in interrupted if r.token})
        if opts.dask and interrupted:
            # what the old controller's tasks still run on the workers
            from ..remote import end_on_cluster

            end_on_cluster(opts.dask, sorted({r.token for r in interrupted if r.token}),
                           opts.kill_grace)
        for row in interrupted:
            if row.state == "rebooting" or (row.key in requests
                                            and row.state in ("running", "interrupted")):
                reboot_now = _plan_reboot(writer, run, row, requests, opts, reboots,
                                          attempt_of, time_used, issued) or reboot_now
                continue
            if row.state == "interrupted" and row.reason in (STOPPED_BY_SIGNAL,
                                                             REQUEUED_FOR_REBOOT):
                # stopped on purpose (^C, SIGTERM): not a crash, not a reboot
                writer.transition(row.key, TaskState.PENDING, reason=None)
                continue
            if row.state != TaskState.INTERRUPTED.value:
                used = row.time_used or 0.0
                if row.state == TaskState.RUNNING.value and row.started_at:
                    # charged up to the dead controller's last heartbeat
                    last = max(run.heartbeat_at or 0.0, row.started_at)
                    used += last - row.started_at
                writer.transition(row.key, TaskState.INTERRUPTED,
                                  reason="its controller died", time_used=used,
                                  detail={"by": "controller death"})
                time_used[row.key] = used
            was_spared = spared.get(row.key, 0)
            if (row.state == TaskState.QUEUED.value and blame_started
                    and row.key not in started and was_spared < opts.max_attempts):
                writer.transition(row.key, TaskState.PENDING, reason=None,
                                  spared_count=was_spared + 1)
                continue
            charged = row.attempt - was_spared
            if not same_boot:
                # An unplanned reboot: the task may have taken the machine down.
                if row.state == TaskState.QUEUED.value:
                    # Handed out, never recorded as started: it most likely
                    # waited behind others. It runs again, counted, so one that
                    # took the machine down at once loops at most
                    # --max-attempts times.
                    if charged < opts.max_attempts:
                        writer.transition(row.key, TaskState.PENDING, reason=None)
                        continue
                    writer.transition(row.key, TaskState.ERROR, finished_at=time.time(),
                                      reason=f"interrupted by reboot (not run again: "
                                             f"{_attempts(charged, was_spared)}, "
                                             f"--max-attempts {opts.max_attempts})")
                    continue
                task = by_key.get(row.key)
                opted = rerun_interrupted or bool(
                    task is not None and _meta_get(task, "rerun_on_interrupt"))
                if opted and charged < opts.max_attempts:
                    count = interrupts.get(row.key, 0) + 1
                    writer.transition(row.key, TaskState.PENDING, reason=None,
                                      interrupt_count=count)
                    rerun[row.key] = count
                    continue
                reason = "interrupted by reboot"
                if opted:
                    reason += (f" (not run again: {_attempts(charged, was_spared)}, "
                               f"--max-attempts {opts.max_attempts})")
                writer.transition(row.key, TaskState.ERROR, reason=reason,
                                  finished_at=time.time())
            elif charged >= opts.max_attempts:
                writer.transition(row.key, TaskState.ERROR, finished_at=time.time(),
                                  reason=f"crash loop: {_attempts(charged, was_spared)}, "
                                         f"interrupted (--max-attempts {opts.max_attempts})")
            else:
                writer.transition(row.key, TaskState.PENDING, reason=None)
        gone = [key for key, row in rows.items()
                if key not in by_key and row[2] not in ENDED_STATES]
        for key in gone:
            if not writer.state_of(key).terminal:
                writer.transition(key, TaskState.ERROR, finished_at=time.time(),
                                  reason="no longer in the suite")
        # The state of each task now: as read, but for those moved above.
        state_now = {row.key: writer.state_of(row.key).value for row in interrupted}
        state_now.update((key, writer.state_of(key).value) for key in gone)
        to_run: List[Tuple[str, Any]] = []
        assumed: List[Tuple[List[Any], Optional[Dict[str, Any]]]] = []
        provided_ok = set()
        done = 0
        for key, found_row in rows.items():
            state = state_now.get(key) or found_row[2]
            if state in ENDED_STATES:
                done += 1
            task = by_key.get(key)
            if task is None:
                continue
            if state == "pass" or state == "warn":
                provides = list(_meta_get(task, "provides"))
                if provides:
                    provided_ok.update(provides)
                    # only a restorable, non-empty shared dict is in extras
                    extra = extras.get(key)
                    shared = json.loads(extra[5]) if extra and extra[5] else None
                    assumed.append((provides, shared if isinstance(shared, dict) else None))
            elif state == "pending":
                to_run.append((key, task))
        before = len(to_run)
        to_run = _skip_unreachable(writer, to_run, provided_ok)
        done += before - len(to_run)
        writer.flush()
    except BaseException:
        writer.close()
        raise
    used = {key: extra[4] for key, extra in extras.items() if extra[4]}
    used.update(time_used)
    return _ResumePlan(to_run, {k: attempt_of.get(k, rows[k][3]) for k, _ in to_run},
                       {k: used.get(k, 0.0) for k, _ in to_run}, assumed,
                       total=len(rows), done=done, writer=writer, reboots=reboots,
                       reboot_now=reboot_now, interrupts={**interrupts, **rerun})


def _attempts(charged: int, spared: int) -> str:
    """``3 attempts``; with spared ones, ``3 attempts (and 2 spared: handed
    out, not started, when another task took its controller down)``."""
    text = "1 attempt" if charged == 1 else f"{charged} attempts"
    if spared:
        text += (f" (and {spared} spared: handed out, not started, when another task "
                 "took its controller down)")
    return text


def _plan_reboot(writer: Any, run: RunInfo, row: Any, requests: Dict[str, Any],
                 opts: Options, reboots: Dict[str, int], attempt_of: Dict[str, int],
                 time_used: Dict[str, float], issued: bool) -> Optional[str]:
    """A task that asked for a reboot. Booted since (the boot id differs from
    the one of its request): it runs again, same attempt, reboot count + 1,
    up to --max-reboots. Same boot and the reboot command was run: the reboot
    did not happen, `error`. Same boot, but the controller died before it
    rebooted: the reboot is still owed (returns the key)."""
    key = row.key
    req_boot, count = requests.get(key, (None, None))
    count = count or 0
    now = time.time()
    if row.state != TaskState.REBOOTING.value:
        used = row.time_used or 0.0
        if row.state == TaskState.RUNNING.value and row.started_at:
            used += max(run.heartbeat_at or 0.0, row.started_at) - row.started_at
        time_used[key] = used
        writer.transition(key, TaskState.REBOOTING, reason="rebooting: the task asked for "
                          "a reboot", time_used=used, detail={"by": "reboot",
                                                              "reboot_count": count})
    if (req_boot or run.boot_id) != boot_id():
        if count + 1 > opts.max_reboots:
            writer.transition(key, TaskState.ERROR, finished_at=now,
                              reason=f"reboot loop: {count + 1} reboots "
                                     f"(--max-reboots {opts.max_reboots})",
                              reboot_requested_at=None, reboot_boot_id=None)
            return None
        writer.transition(key, TaskState.PENDING, reason=None, reboot_count=count + 1,
                          reboot_requested_at=None, reboot_boot_id=None)
        reboots[key] = count + 1
        attempt_of[key] = max(row.attempt - 1, 0)   # the same attempt goes on
        return None
    if run.state == "rebooting" and issued:
        writer.transition(key, TaskState.ERROR, finished_at=now,
                          reason="reboot did not happen: the boot id is unchanged since "
                                 "the task asked for a reboot",
                          reboot_requested_at=None, reboot_boot_id=None)
        return None
    return key


def _meta_get(task: Any, name: str) -> Any:
    meta = getattr(task, SCHED_ATTR_NAME, None)
    return meta.get(name) if meta is not None else ()


def _skip_unreachable(writer: Any, to_run: List[Tuple[str, Any]],
                      provided_ok: set) -> List[Tuple[str, Any]]:
    """Tasks whose requirement no finished task gave and no task left to run
    can give end `skip` now, with the reason (cascading)."""
    keep = list(to_run)
    while True:
        can_give = set(provided_ok)
        for _, task in keep:
            can_give.update(_meta_get(task, "provides"))
        doomed = {k for k, t in keep if not set(_meta_get(t, "requires")) <= can_give}
        if not doomed:
            return keep
        for key, task in keep:
            if key in doomed:
                missing = sorted(map(repr, set(_meta_get(task, "requires")) - can_give))
                writer.transition(key, TaskState.SKIP, finished_at=time.time(),
                                  reason=f"dependency {', '.join(missing)} not met: its "
                                         "provider did not pass")
        keep = [(k, t) for k, t in keep if k not in doomed]

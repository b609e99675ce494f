"""The scheduler: runs callables in parallel as their metadata says.

Usage::

    s = Sched([callable1, callable2])
    s.add_tasks([callable3])
    for res in s.run():
        print(res)

`Sched` keeps the set of tasks and checks it as it grows (every `requires`
provided by someone, no lock both claimed and used, no two tasks with one key).
`run()` builds a fresh `Plan` (see `_plan.py`) and drives a worker pool with
it, sending lifecycle events to listeners. Tasks may be added while a run is
in progress: from the loop consuming `run()`, or from inside a task (under the
process pool the task is sent back to the controller, so it must be picklable).

Exclusivity groups (`TaskGroup`, see `_groups.py`) run one after the other,
each with a pool of its own that `run()` makes when the group starts and shuts
down when it ends. A Sched that never saw a group keeps no group table and
runs exactly as without them.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
from collections import namedtuple

from .. import util
from . import pool as _pool
from ._events import EventKind, Listener, TaskEvent, outcome_of
from ._groups import GroupedBatch, GroupTable, TaskGroup, order_check
from ._keys import auto_name, describe, explicit_key
from ._plan import Plan, bucket_add, bucket_items
from .common import SchedulerError, TaskRes
from .meta import _SET_FIELDS, SCHED_ATTR_NAME, SchedMeta, _convert

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import (
        Any,
        Callable,
        Dict,
        Generator,
        Iterable,
        List,
        Optional,
        Tuple,
        Union,
    )

    from ._plan import Skips

_PROVIDED, _REQUIRED = 1, 2  # bits of Sched._deps

_now = time.time


class DepcheckError(SchedulerError):
    """A `requires` that no task `provides`; `.remain` maps each unmet
    require to the keys of the tasks that need it."""

    def __init__(self, msg: str, remain: Any) -> None:
        self.remain = remain
        super().__init__(msg)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.remain))


class MutexError(SchedulerError):
    """A task has the same lock in both `claims` and `uses`; `.task` is it."""

    def __init__(self, msg: str, task: Any) -> None:
        self.task = task
        super().__init__(msg)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), None))  # the task may not cross a process


class TaskKeyError(SchedulerError, ValueError):
    """Two different tasks have the same key in one Sched."""


class _Grouping(namedtuple("_Grouping", ("positions", "new_groups", "enable"))):
    """Where the tasks of a checked batch go, for a Sched with groups:
    positions (List[int], per task of the batch: its group's position),
    new_groups (List[TaskGroup], appended to the order, in this order),
    enable (bool: the Sched's first groups, make its table)."""

    __slots__ = ()


class Sched:
    """A set of tasks, and the engine that runs them."""

    def __init__(self, tasks: Iterable[Callable[..., Any]] = (), *,
                 listeners: Iterable[Listener] = ()) -> None:
        self._lock = threading.RLock()
        self._tasks: Dict[Any, str] = {}        # task -> key, in insertion order
        self._keys: Dict[str, Any] = {}         # key -> task
        # what some task provides (_PROVIDED) and/or requires (_REQUIRED): one
        # table, not two sets (in a chain every item is both)
        self._deps: Dict[Any, int] = {}
        self._warned: set = set()
        self._name_counts: Dict[str, int] = {}  # automatic name -> times used
        self._listeners: List[Listener] = list(listeners)
        # per kind of task event, what to call with (key, task, ..., at): see
        # `_hooks` (rebuilt when a listener is added)
        self._on_queued: Tuple[Callable[..., None], ...] = ()
        self._on_started: Tuple[Callable[..., None], ...] = ()
        self._on_finished: Tuple[Callable[..., None], ...] = ()
        self._hooks()
        self._run: Optional[Tuple[Plan, Any]] = None
        self._paused = False
        self._assumed: List[Tuple[frozenset, Optional[Dict[str, Any]]]] = []
        self._owner_pid = os.getpid()
        self._groups: Optional[GroupTable] = None  # None until the first group
        self._run_pos = 0  # during a run: the position of the group running
        self.default_shared: Dict[str, Any] = {}
        #: Given to each pool of a run that has a `barrier` attribute (the
        #: process pool): called with every task submitted and a function to
        #: call once the task may start (see ProcessWorkerPool.barrier).
        self.dispatch_barrier: Optional[
            Callable[[Any, Callable[[Optional[BaseException]], None]], None]] = None
        #: Called, when set, after a pool's last result and before the pool
        #: is shut down (its workers told to end): what must be durable
        #: before the workers that ran the tasks are gone (the harness
        #: commits the results there).
        self.before_pool_end: Optional[Callable[[], None]] = None
        if tasks:
            self.add_tasks(tasks)

    # -- the set of tasks ----------------------------------------------------

    @property
    def tasks(self) -> List[Any]:
        """The tasks, in the order they were added."""
        return list(self._tasks)

    def key_of(self, task: Any) -> str:
        """The key of a task of this Sched (KeyError if it has none)."""
        return self._tasks[task]

    @property
    def groups(self) -> List[TaskGroup]:
        """The groups in the order they run, the ungrouped tasks' group (named
        '') among them; [] for a Sched that has no groups."""
        with self._lock:
            return list(self._groups.order) if self._groups is not None else []

    def group_of(self, task: Any) -> Optional[TaskGroup]:
        """The group a task of this Sched runs in (KeyError if it is not in
        it); None for a Sched that has no groups."""
        with self._lock:
            if task not in self._tasks:
                raise KeyError(task)
            table = self._groups
            return table.order[table.group_of[task]] if table is not None else None

    @property
    def pool(self) -> Any:
        """The pool running tasks now (with groups: the running group's); None
        when no run is in progress, or between two groups."""
        run = self._run
        return run[1] if run is not None else None

    def add_listener(self, listener: Listener) -> None:
        """Send lifecycle events (`TaskEvent`) to `listener` from now on."""
        with self._lock:
            self._listeners.append(listener)
            self._hooks()

    def _hooks(self) -> None:
        """Work out what each listener is called with for a task's queued,
        started and finished events. A listener with ``task_events = True``
        (the journal's, the watchdog's) has methods ``task_queued(key, task,
        at)``, ``task_started(key, task, pid, at)`` and ``task_finished(key,
        task, result, at)`` called instead, with no `TaskEvent` made for it;
        these run for every task, and an event object for each cost more
        than the journal's own work. Any other gets its TaskEvent."""
        queued, started, finished = [], [], []
        for listener in self._listeners:
            if getattr(listener, "task_events", False):
                # (it has the three methods too, which a Listener type cannot say)
                direct: Any = listener
                queued.append(direct.task_queued)
                started.append(direct.task_started)
                finished.append(direct.task_finished)
            else:
                queued.append(_as_event(listener, EventKind.QUEUED))
                started.append(_as_event(listener, EventKind.STARTED))
                finished.append(_as_event(listener, EventKind.FINISHED))
        self._on_queued, self._on_started, self._on_finished = (
            tuple(queued), tuple(started), tuple(finished))

    def add_shared(self, **kwargs: Any) -> None:
        """Preset keys of the shared state every task starts with."""
        self.default_shared.update(kwargs)

    def assume_provided(self, provides: Iterable[Any],
                        shared: Optional[Dict[str, Any]] = None) -> None:
        """Treat `provides` as already provided (by a task that ended well in an
        earlier session, say): tasks requiring them run without a provider in
        this set, and start with `shared` merged into their shared dict."""
        with self._lock:
            if self._run is not None:
                raise SchedulerError("assume_provided() during a run")
            provided = frozenset(provides)
            for p in provided:
                # required too: no "provided but not required" warning
                self._deps[p] = _PROVIDED | _REQUIRED
            self._assumed.append((provided, dict(shared) if shared else None))
            if self._groups is not None:
                self._groups.assume(provided)

    def add_tasks(self, new: Iterable[Union[Callable[..., Any], TaskGroup]], *,
                  group: Union[str, TaskGroup, None] = None) -> None:
        """Add tasks; checked as a batch, and added only if the batch is valid.

        `new` may hold `TaskGroup`s beside plain callables. Plain tasks join
        the group `group` names (a name, or a TaskGroup of this Sched) if
        given; else, during a run, the group running; else the ungrouped
        tasks (see doc/sched.md, "Exclusivity groups").

        Also callable from inside a running task: under the process pool the
        tasks are sent to the controller (they must be picklable).
        """
        from . import _zygote

        if os.getpid() != self._owner_pid and _zygote.worker_channel is not None:
            name = group.name if isinstance(group, TaskGroup) else group
            _zygote.worker_channel.add_tasks(list(new), name)
            return
        with self._lock:
            tasks, keys, grouping = self._check_batch(new, group)
            if not tasks and (grouping is None or not grouping.new_groups):
                return
            run = self._run
            positions = grouping.positions if grouping is not None else None
            if run is not None:
                plan, pool = run
                if pool is not None:
                    if positions is None:
                        self._register_late(pool, tasks, keys)
                    else:  # only the running group's: the others get pools of their own
                        now = [n for n, pos in enumerate(positions) if pos == self._run_pos]
                        if now:
                            self._register_late(pool, [tasks[n] for n in now],
                                                [keys[n] for n in now])
            self._commit(tasks, keys, grouping)
            if run is not None:
                if positions is not None and plan.gpos is None:
                    plan.enable_groups(self._run_pos)  # the first group, mid-run
                self._emit_skips(plan, plan.add(zip(tasks, keys), positions))

    def _check_batch(self, new: Iterable[Any], group: Any = None,
                     ) -> Tuple[List[Any], List[str], Optional[_Grouping]]:
        """The new tasks of a valid batch and their keys, in two lists (no
        pair per task: at 100k tasks, objects that live through the checks
        cost collections of the cyclic GC), and where they go if the Sched has
        groups (else None)."""
        if self._groups is not None or group is not None:
            return self._check_grouped(new, group)
        tasks: List[Any] = []
        explicit: List[Optional[str]] = []
        seen = set()
        new_keys: Dict[str, Any] = {}
        items = iter(new)
        for task in items:
            if task in self._tasks or id(task) in seen:
                continue  # a set of tasks: adding one twice adds it once
            seen.add(id(task))
            if isinstance(task, TaskGroup):  # the Sched's first group
                return self._check_grouped(itertools.chain(tasks, [task], items), None)
            tasks.append(task)
            explicit.append(self._admit(task, new_keys))
        if not tasks:
            return [], [], None
        keys, used = self._name_batch(tasks, explicit, new_keys)
        if __debug__:
            self._depcheck(tasks, keys)
        self._name_counts.update(used)  # the batch is valid: from here on it is added
        return tasks, keys, None

    def _name_batch(self, tasks: List[Any], explicit: List[Optional[str]],
                    new_keys: Dict[str, Any]) -> Tuple[List[str], Dict[str, int]]:
        """Name the tasks no factory named: explicit keys win, the others get
        their __name__, with '#2', '#3', ... where that is taken. Returns the
        keys and the name counters to commit with the batch."""
        taken = self._keys
        counts = self._name_counts
        used: Dict[str, int] = {}  # committed to counts with the batch
        keys: List[str] = []
        batch_keys: set = set()
        for task, key in zip(tasks, explicit):
            if key is None:
                base = auto_name(task)
                n = used.get(base, counts.get(base, 0))
                key = base if n == 0 else f"{base}#{n + 1}"
                # The counter makes this loop run once but for a clash with
                # an explicit key that looks like an automatic one.
                while key in taken or key in new_keys or key in batch_keys:
                    n += 1
                    key = f"{base}#{n + 1}"
                if n:  # only names used more than once are counted
                    used[base] = n + 1
            batch_keys.add(key)
            keys.append(key)
        return keys, used

    def _check_grouped(self, new: Iterable[Any], group: Any,
                       ) -> Tuple[List[Any], List[str], Optional[_Grouping]]:
        """`_check_batch` for a Sched with groups (or getting its first)."""
        batch = GroupedBatch(self._groups, self._tasks,
                             self._run_pos if self._run is not None else None, self._admit)
        batch.collect(new, group)
        keys, used = self._name_batch(batch.tasks, batch.explicit, batch.new_keys)
        if __debug__:
            self._order_check(batch.tasks, keys, batch.positions, batch.label)
        self._name_counts.update(used)
        return (batch.tasks, keys,
                _Grouping(batch.positions, batch.new_groups, self._groups is None))

    def _admit(self, task: Any, new_keys: Dict[str, Any]) -> Optional[str]:
        """Check one new task (callable, metadata, key not taken by another
        task, here or in `new_keys`); its explicit key, noted in `new_keys`."""
        if not callable(task):
            raise TypeError(f"task {task!r} is not callable")
        key = explicit_key(task)
        self._check_meta(task, key)
        if key is not None:
            other = new_keys.get(key, self._keys.get(key))
            if other is not None:
                raise TaskKeyError(f"two tasks have the key {key!r}: {describe(other)} "
                                   f"and {describe(task)}")
            new_keys[key] = task
        return key

    def _order_check(self, tasks: List[Any], keys: List[str], positions: List[int],
                     label: Callable[[int], str]) -> None:
        """`_depcheck` with groups: a require is met only by a task of the same
        group or an earlier one."""
        table = self._groups
        first: Callable[[Any], Optional[Tuple[int, str]]]
        if table is not None:
            first = table.first.get
        else:  # all the Sched's tasks so far are at position 0, the earliest
            deps = self._deps

            def first(r: Any) -> Optional[Tuple[int, str]]:
                return (0, "") if deps.get(r, 0) & _PROVIDED else None

        problem = order_check(tasks, keys, positions, first, label)
        if problem is not None:
            raise DepcheckError(*problem)

    @staticmethod
    def _check_meta(task: Any, key: Optional[str]) -> None:
        """Check metadata again (sets can be mutated in place after they were
        set); errors name the task."""
        meta = getattr(task, SCHED_ATTR_NAME, None)
        if meta is None:
            return
        if not isinstance(meta, SchedMeta):
            raise TypeError(f"task {key or describe(task)}: its metadata is a "
                            f"{type(meta).__name__}, not a SchedMeta")
        data = meta.set_fields()
        for field, value in data.items():
            if type(value) is set:  # the common case, already checked when set
                continue
            if type(value) is tuple and field in _SET_FIELDS:
                # A packed set (it cannot change), unless stored by going
                # around the checks: then an item may be unhashable.
                try:
                    hash(value)
                    continue
                except TypeError:
                    pass
            try:
                converted = _convert(field, value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"task {key or describe(task)}: {exc}") from None
            if converted is not value:
                object.__setattr__(meta, field, converted)
                data[field] = converted
        uses = data.get("uses")
        claims = data.get("claims")
        if uses and claims and not set(uses).isdisjoint(claims):
            raise MutexError(f"Task {key or describe(task)} has {set(uses) & set(claims)} "
                             "in both claims and uses", task)

    def _depcheck(self, tasks: List[Any], keys: List[str]) -> None:
        """Simulate the batch on top of the set (every task of which can run):
        each require must be met by someone who can run himself."""
        deps = self._deps
        need = [0] * len(tasks)      # unmet requires, by index in the batch
        index: Dict[Any, Any] = {}   # require -> the indexes needing it (a bucket)
        go: List[int] = []
        for i, task in enumerate(tasks):
            n = 0
            for r in _field(task, "requires"):
                if deps.get(r, 0) & _PROVIDED:
                    continue
                n += 1
                bucket_add(index, r, i)
            if n:
                need[i] = n
            else:
                go.append(i)
        newly: set = set()
        while go:
            for p in _field(tasks[go.pop()], "provides"):
                if p in newly or deps.get(p, 0) & _PROVIDED:
                    continue
                newly.add(p)
                for i in bucket_items(index.pop(p, None)):
                    n = need[i] - 1
                    need[i] = n
                    if n == 0:
                        go.append(i)
        if index:
            remain = {r: [keys[i] for i in bucket_items(entries)]
                      for r, entries in index.items()}
            who = "; ".join(f"{r!r} by {', '.join(ks)}" for r, ks in remain.items())
            raise DepcheckError(f"Unsatisfied requires remain: {list(remain)} "
                                f"(required {who})", remain)

    def _add_checked(self, tasks: List[Any], keys: List[str]) -> None:
        """Add tasks (no groups) that were checked already, as they are, with
        their keys: what `add_tasks` does once a batch is valid. For a caller
        that checked the same tasks with another Sched just before (the
        harness checks a suite before it journals it, then runs wrappers that
        carry the same metadata and keys): at 100k tasks the checks cost a
        fifth of a second."""
        with self._lock:
            if self._run is not None or self._groups is not None:
                raise SchedulerError("_add_checked: only before a run, without groups")
            self._commit(tasks, keys, None)

    def _commit(self, tasks: List[Any], keys: List[str],
                grouping: Optional[_Grouping] = None) -> None:
        if grouping is not None and grouping.enable:
            self._groups = GroupTable.from_plain(self._tasks,
                                                 (p for p, _ in self._assumed))
        deps = self._deps
        get = deps.get
        by_task, by_key = self._tasks, self._keys
        providers = []   # (task, what it provides), for the warning below
        for task, key in zip(tasks, keys):
            by_task[task] = key
            by_key[key] = task
            meta = getattr(task, SCHED_ATTR_NAME, None)
            if meta is None:
                continue
            provides = meta.get("provides")
            if provides:
                providers.append((task, provides))
                for p in provides:
                    deps[p] = get(p, 0) | _PROVIDED
            for r in meta.get("requires"):
                deps[r] = get(r, 0) | _REQUIRED
        for task, provides in providers:
            for p in provides:
                if not deps[p] & _REQUIRED and p not in self._warned:
                    self._warned.add(p)
                    warnings.warn(f"Dep '{p}' provided by {task}, but not required "
                                  "by any task", category=util.PexenWarning,
                                  stacklevel=4)
        if grouping is not None:
            assert self._groups is not None
            self._groups.commit(tasks, keys, grouping.positions, grouping.new_groups)

    @staticmethod
    def _register_late(pool: Any, tasks: List[Any], keys: List[str]) -> None:
        register_late = getattr(pool, "register_late", None)
        if register_late is None:
            raise _pool.PoolError(
                f"{type(pool).__name__} cannot take tasks while it runs (it has no "
                "register_late method); add the tasks before run()")
        try:
            register_late(list(tasks))
        except _pool.PoolError as exc:
            by_id = {id(t): k for t, k in zip(tasks, keys)}
            task = getattr(exc, "task", None)
            prefix = f"task {by_id[id(task)]}: " if id(task) in by_id else ""
            raise _pool.PoolError(f"{prefix}{exc}") from None

    # -- running -------------------------------------------------------------

    def pause(self) -> None:
        """During a run, from any thread: hand no more tasks to the pool (the
        running ones go on; nothing is skipped). For a caller about to stop
        the run itself (a reboot): a paused run whose running tasks all end
        ends as if the rest could not run."""
        with self._lock:
            self._paused = True

    def cancel(self, reason: str) -> None:
        """During a run, from any thread: start no more tasks. Every task not
        yet handed to the pool (and every task added from now on) is skipped
        with `reason`; running tasks end as they do, and `run()` ends after
        them. Does nothing when no run is in progress."""
        with self._lock:
            if self._run is None:
                return
            plan = self._run[0]
            self._emit_skips(plan, plan.cancel(reason))

    def run(self, pool: Any = None) -> Generator[TaskRes, None, None]:
        """Run every task once; yield a TaskRes per task that ran, in
        completion order. Without a pool, a ThreadWorkerPool() is used (for
        the ungrouped tasks; each TaskGroup makes a pool of its own)."""
        with self._lock:
            if self._run is not None:
                raise SchedulerError("run() was called while a run of this Sched "
                                     "is in progress")
            if not self._tasks:
                return
            plan = Plan(dict(self.default_shared), self._tasks)
            for provided, shared in self._assumed:
                plan.assume(provided, shared)
            table = self._groups
            if table is None:
                skips = plan.add(self._tasks.items())
            else:
                plan.enable_groups()
                # one batch, so that each require counts all its providers
                keys = self._tasks
                skips = plan.add([(t, keys[t]) for members in table.members for t in members],
                                 [pos for pos, members in enumerate(table.members)
                                  for _ in members])
            self._run = (plan, None)
            self._run_pos = 0
            self._emit_skips(plan, skips)
        emit = self._emit if self._listeners else None
        listener_errors: List[BaseException] = []
        started_hook = (self._started_hook(plan, listener_errors)
                        if emit is not None else None)
        completed = False
        current: Any = None  # the pool that may have workers now
        try:
            pos = 0
            while True:
                # One group per turn (a Sched without groups: one turn, group None).
                with self._lock:
                    table = self._groups
                    if table is not None and pos >= len(table.order):
                        self._run = None
                        break
                    group = table.order[pos] if table is not None else None
                    if group is not None and not plan.activate(pos):
                        # Nothing of it left to run: no pool. Done under the lock,
                        # so a task added to it meanwhile cannot be stranded.
                        self._run_pos = pos + 1
                        if emit is not None:
                            emit(TaskEvent(EventKind.GROUP_STARTED, group.name, group))
                            emit(TaskEvent(EventKind.GROUP_FINISHED, group.name, group))
                        pos += 1
                        continue
                if group is not None and emit is not None:
                    emit(TaskEvent(EventKind.GROUP_STARTED, group.name, group))
                if group is None or group.pool is None:
                    if pool is None:
                        pool = _pool.ThreadWorkerPool()
                    gpool = pool
                else:
                    gpool = group.make_pool()
                with self._lock:
                    table = self._groups
                    members = (list(table.members[pos]) if table is not None
                               else list(self._tasks))
                    gpool.register(members)
                    if hasattr(gpool, "on_start"):
                        gpool.on_start = started_hook
                    if hasattr(gpool, "on_add_tasks"):
                        gpool.on_add_tasks = self.add_tasks
                    if hasattr(gpool, "key_of"):
                        gpool.key_of = plan.key_of
                    if self.dispatch_barrier is not None and hasattr(gpool, "barrier"):
                        gpool.barrier = self.dispatch_barrier
                    self._run = (plan, gpool)  # from now on late tasks go to gpool
                current = gpool
                gpool.start()
                results = gpool.iter_results()
                last = False
                while True:
                    with self._lock:
                        self._fill(plan, gpool, emit)
                        if not plan.running:
                            if plan.unstick():
                                continue
                            last = self._group_ends(plan, pos)
                            break
                    try:
                        res = next(results)
                    except StopIteration:
                        raise SchedulerError(
                            f"internal error: {type(gpool).__name__}.iter_results() "
                            f"ended with {len(plan.running)} tasks still running (a bug "
                            "in pexen or in the pool)") from None
                    if listener_errors:
                        raise listener_errors[0]
                    with self._lock:
                        node, skips = plan.finish(res)
                        if emit is not None:
                            key, task, at = plan.key[node], res.task, _now()
                            for hook in self._on_finished:
                                hook(key, task, res, at)
                        if skips:
                            self._emit_skips(plan, skips)
                    yield res
                if self.before_pool_end is not None:
                    self.before_pool_end()
                gpool.shutdown(wait=True)
                for res in results:
                    raise SchedulerError(f"internal error: a result after the end: {res}")
                current = None
                if group is not None and emit is not None:
                    emit(TaskEvent(EventKind.GROUP_FINISHED, group.name, group))
                if last:
                    break
                pos += 1
            with self._lock:
                self._emit_skips(plan, plan.end())
            completed = True
        finally:
            with self._lock:
                if self._run is not None and self._run[0] is plan:
                    self._run = None
            if not completed and current is not None:
                _abandon(current)
        if plan.skipped_deps:
            warnings.warn(f"{plan.skipped_deps} tasks skipped due to unmet deps "
                          "caused by parent exception", category=util.PexenWarning,
                          stacklevel=2)
        held = plan.held_locks()
        if held:
            warnings.warn(f"{held} locks still held at exit due to parent exception",
                          category=util.PexenWarning, stacklevel=2)

    def _group_ends(self, plan: Plan, pos: int) -> bool:
        """(Holding the lock.) Nothing of the group at `pos` runs or can start:
        skip what is left of it, and point late tasks at the next group.
        Returns True if the run ends with it (the last group, or paused)."""
        table = self._groups
        if self._paused:
            self._run = None  # a paused run ends as if the rest could not run
            return True
        if table is not None:
            self._emit_skips(plan, plan.end_group(table.label(pos)))
            if pos + 1 < len(table.order):
                self._run = (plan, None)  # between two groups: no pool
                self._run_pos = pos + 1
                return False
        self._run = None  # later add_tasks wait for the next run
        return True

    def _fill(self, plan: Plan, pool: Any, emit: Optional[Callable[..., None]]) -> None:
        if self._paused:
            return
        while not pool.full():
            node = plan.pop_dispatchable()
            if node is None:
                return
            task = plan.task[node]
            if emit is not None:
                key, at = plan.key[node], _now()
                for hook in self._on_queued:
                    hook(key, task, at)
            pool.submit(task, plan.shared_for(node))

    def _emit(self, event: TaskEvent) -> None:
        for listener in self._listeners:
            listener(event)

    def _emit_skips(self, plan: Plan, skips: Skips) -> None:
        if not skips or not self._listeners:
            return
        for node, reason in skips:
            self._emit(TaskEvent(EventKind.SKIPPED, plan.key[node], plan.task[node],
                                 reason=reason))

    def _started_hook(self, plan: Plan,
                      errors: List[BaseException]) -> Callable[[Any, int], None]:
        def started(task: Any, pid: int) -> None:
            node = plan.nodes.get(task)
            key = plan.key[node] if node is not None else describe(task)
            try:
                at = _now()
                for hook in self._on_started:
                    hook(key, task, pid, at)
            except BaseException as exc:  # raised again in the thread running run()
                errors.append(exc)

        return started


def _as_event(listener: Listener, kind: EventKind) -> Callable[..., None]:
    """A task-event hook (see `Sched._hooks`) that gives `listener` the event."""
    if kind is EventKind.QUEUED:
        def queued(key: str, task: Any, at: float) -> None:
            listener(TaskEvent(kind, key, task, at))
        return queued
    if kind is EventKind.STARTED:
        def started(key: str, task: Any, pid: int, at: float) -> None:
            listener(TaskEvent(kind, key, task, at, pid))
        return started

    def finished(key: str, task: Any, res: TaskRes, at: float) -> None:
        listener(TaskEvent(kind, key, task, at, result=res, outcome=outcome_of(res)))
    return finished


def _field(task: Any, name: str) -> Any:
    meta = getattr(task, SCHED_ATTR_NAME, None)
    return meta.get(name) if meta is not None else ()


def _abandon(pool: Any) -> None:
    """The run ended early (the generator was closed, or an error): stop the
    pool without waiting for its tasks, leaving no process behind."""
    terminate = getattr(pool, "terminate", None)
    if terminate is not None:
        terminate()
        return
    try:
        pool.shutdown(wait=False)
    except _pool.PoolError:
        pass


__all__ = ["DepcheckError", "MutexError", "Sched", "TaskKeyError"]

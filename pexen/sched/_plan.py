"""The incremental planner of one run: dependencies, locks, the ready heap.

Every event costs O(log n) amortised: an index from each provide to the tasks
waiting on it (with a count of unmet requires per task), a lock table for
claims (exclusive) and uses (shared) with a priority-ordered queue of parked
tasks per lock, and the ready tasks ordered by (priority, insertion order):
a run of nodes that became ready in that order (a deque: no entry object per
task, the common case: independent tasks, or all children of one provide),
and a heap of (priority, node) for the others; the smaller head of the two
goes first. Nothing here re-sorts, scans all waiting tasks, or pops from the
front of a list. A task is a node, an index into per-task lists (no object
per task); a finished one is dropped from the index by task.

The plan does no I/O and knows no pool: `Sched` feeds it tasks and results and
hands what `pop_dispatchable()` returns to a pool.

Exclusivity groups (`enable_groups()`; a plan without groups has none of
this): each node has a group position, and only the active group's nodes
enter the ready structures. A node of another group whose requires are met
is GATED (left out of every queue) until `activate()` of its group, which
walks that group's members once; `end_group()` walks them once more to skip
what is stuck. So the groups cost O(size of the group) each, twice per run,
and nothing per event.
"""

from __future__ import annotations

import heapq
from collections import deque

from .common import SchedulerError, TaskRes, TaskSkipError, is_controlled_fail
from .meta import SCHED_ATTR_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

    # (node, reason) pairs; the caller turns them into events.
    Skips = List[Tuple[int, str]]

WAITING, READY, PARKED, RUNNING, DONE, SKIPPED, GATED = range(7)

_NOTHING: tuple = ()


def _frozen(meta: Any, name: str) -> tuple:
    """A field of a task's metadata as a tuple: the packed value itself, or a
    copy of a set (so that a set mutated during the run cannot corrupt the
    counts; small, and untracked by the cyclic GC when it holds strings)."""
    value = meta.get(name)
    return value if type(value) is tuple else tuple(value)


def bucket_add(buckets: Dict[Any, Any], key: Any, item: Any) -> None:
    """Add `item` under `key`: one item is kept bare, several in a list (most
    provides have one child; a list per provide costs memory and GC time at
    100k tasks). Items must not be lists themselves."""
    cur = buckets.get(key)
    if cur is None:
        buckets[key] = item
    elif type(cur) is list:
        cur.append(item)
    else:
        buckets[key] = [cur, item]


def bucket_items(value: Any) -> Any:
    """The items of a bucket value (None: no items)."""
    if value is None:
        return ()
    return value if type(value) is list else (value,)



class Plan:
    """The state of one run of a Sched.

    A task of the run is a node: its index in the per-task lists below, in
    the order the tasks were added (the tie-break among equal priorities). The
    lists, not an object per task: at 100k tasks, 100k long-lived objects make
    the cyclic GC run full collections over everything the process holds.
    """

    def __init__(self, default_shared: Dict[str, Any],
                 keys: Optional[Dict[Any, str]] = None) -> None:
        self.default_shared = default_shared
        self.keys = keys                     # task -> key, for key_of after the end
        self.nodes: Dict[Any, int] = {}      # task -> node, while not finished
        # per node
        self.task: List[Any] = []
        self.key: List[str] = []
        self.prio: List[Any] = []
        self.requires: List[tuple] = []
        self.provides: List[tuple] = []
        self.claims: List[tuple] = []
        self.uses: List[tuple] = []
        self.unmet: List[int] = []
        self.state = bytearray()
        self.shared: List[Optional[Dict[str, Any]]] = []
        self.parked_on: Dict[int, Any] = {}   # node -> the lock it waits for
        self.woken_from: Dict[int, Any] = {}  # node -> the lock that woke it
        # Ready nodes: `ready_run` in increasing (prio, node); `ready` a heap of
        # (prio, node) for those that came out of that order.
        self.ready_run: Deque[int] = deque()
        self.ready: List[Tuple[Any, int]] = []
        self.running: Dict[Any, int] = {}    # task -> node
        # dependencies
        self.satisfied: set = set()
        self.waiting: Dict[Any, Any] = {}   # provide -> a node or a list of them
        self.providers_left: Dict[Any, int] = {}
        self.culprit: Dict[Any, str] = {}
        # locks
        self.excl: Dict[Any, int] = {}      # lock -> the node claiming it
        self.shared_count: Dict[Any, int] = {}
        self.parked: Dict[Any, List[Tuple[Any, int]]] = {}
        self.assumed_shared: Dict[Any, List[Dict[str, Any]]] = {}
        # counters
        self.finished = 0
        self.skipped_deps = 0
        self.skipped_locks = 0
        self.cancelled: Optional[str] = None
        # exclusivity groups (None: the plan has no groups)
        self.gpos: Optional[List[int]] = None       # node -> its group's position
        self.members: List[List[int]] = []          # position -> its nodes
        self.active = 0                             # the position that may run

    # -- adding --------------------------------------------------------------

    def assume(self, provides: Iterable[Any], shared: Optional[Dict[str, Any]]) -> None:
        """Mark `provides` satisfied before any task runs; children of them get
        `shared` merged into their shared dict."""
        for p in provides:
            self.satisfied.add(p)
            if shared:
                self.assumed_shared.setdefault(p, []).append(shared)

    def add(self, entries: Iterable[Tuple[Any, str]],
            positions: Optional[List[int]] = None) -> Skips:
        """Add (task, key) pairs, in groups at `positions` (one per pair) if
        the plan has groups; return the ones that can never run."""
        providers_left = self.providers_left
        nodes = self.nodes
        tasks, keys, prios = self.task, self.key, self.prio
        requires, provides = self.requires, self.provides
        claims, uses = self.claims, self.uses
        new: List[int] = []  # the nodes' int objects, shared by every index
        for task, key in entries:
            node = len(tasks)
            new.append(node)
            nodes[task] = node
            tasks.append(task)
            keys.append(key)
            meta = getattr(task, SCHED_ATTR_NAME, None)
            if meta is None:
                prios.append(0)
                requires.append(_NOTHING)
                provides.append(_NOTHING)
                claims.append(_NOTHING)
                uses.append(_NOTHING)
                continue
            prios.append(meta.get("priority"))
            requires.append(_frozen(meta, "requires"))
            gives = _frozen(meta, "provides")
            provides.append(gives)
            claims.append(_frozen(meta, "claims"))
            uses.append(_frozen(meta, "uses"))
            for p in gives:
                providers_left[p] = providers_left.get(p, 0) + 1
        count = len(new)
        if self.gpos is not None:
            if positions is None or len(positions) != count:
                raise SchedulerError("internal error: tasks added to a plan with "
                                     "groups without their groups (a bug in pexen)")
            self.gpos.extend(positions)
            members = self.members
            for node, pos in zip(new, positions):
                while len(members) <= pos:
                    members.append([])
                members[pos].append(node)
        self.unmet.extend([0] * count)
        self.state.extend(bytes(count))  # WAITING
        self.shared.extend([None] * count)
        skips: Skips = []
        doomed: List[Tuple[int, str]] = []
        satisfied = self.satisfied
        waiting = self.waiting
        shared_of = self.shared
        for node in new:
            unmet = 0
            reason = None
            for r in requires[node]:
                if r in satisfied:
                    for shared in self.assumed_shared.get(r, ()):
                        mine = shared_of[node]
                        if mine is None:
                            mine = shared_of[node] = dict(self.default_shared)
                        mine.update(shared)
                    continue
                if providers_left.get(r, 0) > 0:
                    bucket_add(waiting, r, node)
                    unmet += 1
                elif reason is None:
                    reason = self._why_unmet(r)
            if reason is not None:
                self.unmet[node] = unmet
                doomed.append((node, reason))
            elif unmet:
                self.unmet[node] = unmet
            else:
                self._make_ready(node)
        for node, reason in doomed:
            self._skip(node, reason, skips)
        if self.cancelled is not None:
            self._cancel(new, skips)
        return skips

    def _why_unmet(self, req: Any) -> str:
        culprit = self.culprit.get(req)
        if culprit is None:
            return f"dependency {req!r} is provided by no task"
        return f"dependency {req!r} not met: {culprit}"

    # -- dispatching ---------------------------------------------------------

    def _make_ready(self, node: int) -> None:
        gpos = self.gpos
        if gpos is not None and gpos[node] != self.active:
            self.state[node] = GATED  # its group's activate() makes it ready
            return
        self.state[node] = READY
        run = self.ready_run
        if run:
            last = run[-1]
            prio = self.prio
            # (prio[last], last) < (prio[node], node), as tuples compare
            if (last < node if prio[last] == prio[node] else prio[last] < prio[node]):
                run.append(node)
            else:
                heapq.heappush(self.ready, (prio[node], node))
        else:
            run.append(node)

    def pop_dispatchable(self) -> Optional[int]:
        """The most important ready task that could take its locks (now held),
        or None. Tasks whose locks are taken are parked on the lock."""
        run = self.ready_run
        ready = self.ready
        state = self.state
        prio = self.prio
        while True:
            if run:
                head = run[0]
                if ready:
                    top = ready[0]
                    # the heap's top goes first if top < (prio[head], head)
                    if (top[1] < head if top[0] == prio[head] else top[0] < prio[head]):
                        node = heapq.heappop(ready)[1]
                    else:
                        node = run.popleft()
                else:
                    node = run.popleft()
            elif ready:
                node = heapq.heappop(ready)[1]
            else:
                return None
            if state[node] != READY:
                continue
            if self.claims[node] or self.uses[node]:
                woken = self.woken_from.pop(node, None)
                lock = self._conflict(node)
                if lock is not None:
                    state[node] = PARKED
                    self.parked_on[node] = lock
                    heapq.heappush(self.parked.setdefault(lock, []), (prio[node], node))
                    if woken is not None and woken != lock:
                        self._wake(woken)
                    continue
                self._acquire(node)
                if woken is not None:
                    # It took the lock it was woken for; if shared, the next
                    # waiter may share it too.
                    self._wake(woken)
            state[node] = RUNNING
            self.running[self.task[node]] = node
            return node

    def shared_for(self, node: int) -> Dict[str, Any]:
        """The shared dict the task starts with (its own)."""
        shared = self.shared[node]
        if shared is None:
            return dict(self.default_shared)
        self.shared[node] = None  # the pool has it now
        return shared

    # -- finishing -----------------------------------------------------------

    def finish(self, res: TaskRes) -> Tuple[int, Skips]:
        """Take a task's result: release its locks and satisfy its provides as
        its outcome allows; return its node and the tasks that can now never run."""
        node = self.running.pop(res.task, None)
        if node is None:
            raise SchedulerError(
                f"internal error: a pool returned a result for {res.task!r}, which "
                "is not running (this is a bug in pexen or in the pool)")
        self.state[node] = DONE
        del self.nodes[res.task]  # its result is yielded; nothing here needs it
        self.finished += 1
        excinfo = res.excinfo
        if excinfo is None:
            deps_ok = locks_ok = True
        elif is_controlled_fail(excinfo):
            deps_ok = getattr(excinfo.val, "deps_ok", True)
            locks_ok = getattr(excinfo.val, "locks_ok", True)
        else:
            deps_ok = locks_ok = False
        if locks_ok and (self.claims[node] or self.uses[node]):
            self._release(node)
        skips: Skips = []
        if deps_ok:
            self._satisfy(node, res.shared)
        else:
            # a task that skipped (its condition, TaskSkipError, an outcome
            # of "skip") did not fail: say which
            val = excinfo.val if excinfo is not None else None
            how = ("was skipped" if isinstance(val, TaskSkipError)
                   or getattr(val, "outcome", None) == "skip" else "failed")
            for p in self.provides[node]:
                self._provider_gone(p, f"its provider {self.key[node]} {how}", skips)
        return node, skips

    def _satisfy(self, node: int, shared: Any) -> None:
        satisfied = self.satisfied
        providers_left = self.providers_left
        state = self.state
        unmet = self.unmet
        for p in self.provides[node]:
            providers_left[p] -= 1
            if p in satisfied:
                continue
            satisfied.add(p)
            if shared:
                # for tasks added later that require it (their add() merges it)
                self.assumed_shared.setdefault(p, []).append(shared)
            for w in self._pop_waiters(p):
                if state[w] != WAITING:
                    continue
                if shared:
                    theirs = self.shared[w]
                    if theirs is None:
                        theirs = self.shared[w] = dict(self.default_shared)
                    theirs.update(shared)
                left = unmet[w] - 1
                unmet[w] = left
                if left == 0:
                    self._make_ready(w)

    def _pop_waiters(self, provide: Any) -> Iterable[int]:
        return bucket_items(self.waiting.pop(provide, None))

    def _provider_gone(self, provide: Any, why: str, skips: Skips) -> None:
        """One provider of `provide` ended without providing it."""
        work = [(provide, why)]
        while work:
            p, why = work.pop()
            left = self.providers_left[p] - 1
            self.providers_left[p] = left
            if left > 0 or p in self.satisfied:
                continue
            self.culprit.setdefault(p, why)
            for w in self._pop_waiters(p):
                if self.state[w] != WAITING:
                    continue
                self.state[w] = SKIPPED
                self.skipped_deps += 1
                skips.append((w, f"dependency {p!r} not met: {why}"))
                for wp in self.provides[w]:
                    work.append((wp, f"its provider {self.key[w]} was skipped"))

    def _skip(self, node: int, reason: str, skips: Skips) -> None:
        self.state[node] = SKIPPED
        self.skipped_deps += 1
        skips.append((node, reason))
        for p in self.provides[node]:
            self._provider_gone(p, f"its provider {self.key[node]} was skipped", skips)

    # -- locks ---------------------------------------------------------------

    def _conflict(self, node: int) -> Any:
        excl = self.excl
        for c in self.claims[node]:
            if c in excl or c in self.shared_count:
                return c
        for u in self.uses[node]:
            if u in excl:
                return u
        return None

    def _acquire(self, node: int) -> None:
        for c in self.claims[node]:
            self.excl[c] = node
        counts = self.shared_count
        for u in self.uses[node]:
            counts[u] = counts.get(u, 0) + 1

    def _release(self, node: int) -> None:
        claims = self.claims[node]
        uses = self.uses[node]
        for c in claims:
            del self.excl[c]
        counts = self.shared_count
        for u in uses:
            n = counts[u] - 1
            if n:
                counts[u] = n
            else:
                del counts[u]
        for lock in claims:
            self._wake(lock)
        for lock in uses:
            self._wake(lock)

    def _wake(self, lock: Any) -> bool:
        """Move the first task parked on `lock` back to the ready tasks if the
        lock could now be taken in the mode it wants."""
        queue = self.parked.get(lock)
        if not queue:
            return False
        if lock in self.excl:
            return False
        head = queue[0][1]
        if lock in self.claims[head] and lock in self.shared_count:
            return False
        heapq.heappop(queue)
        if not queue:
            del self.parked[lock]
        del self.parked_on[head]
        self.woken_from[head] = lock
        self._make_ready(head)
        return True

    def unstick(self) -> bool:
        """Wake tasks parked on a lock nobody holds (a safety net: with nothing
        running, a free lock must not keep anyone waiting)."""
        woke = False
        for lock in list(self.parked):
            woke = self._wake(lock) or woke
        return woke

    # -- exclusivity groups --------------------------------------------------

    def enable_groups(self, active: int = 0) -> None:
        """From now on nodes have groups; the ones already here are in the
        group at position `active`, which is the one running."""
        count = len(self.task)
        self.gpos = [active] * count
        self.members = [[] for _ in range(active)] + [list(range(count))]
        self.active = active

    def activate(self, pos: int) -> bool:
        """Let the group at `pos` run: its gated nodes become ready. Returns
        whether it has a task left to run (else it needs no pool)."""
        self.active = pos
        if pos >= len(self.members):
            return False
        state = self.state
        live = False
        for node in self.members[pos]:
            st = state[node]
            if st == GATED:
                self._make_ready(node)
                live = True
            elif st != DONE and st != SKIPPED:
                live = True
        return live

    def end_group(self, label: str) -> Skips:
        """The active group can make no progress (nothing of it runs or is
        ready): skip its tasks that are left, waiting for a lock a failed task
        holds or for requires nobody met, so that the next group can start.
        Their provides are gone: dependents in later groups are skipped too."""
        skips: Skips = []
        state = self.state
        for node, lock in sorted(self.parked_on.items()):
            if state[node] != PARKED:
                continue
            holder = self.excl.get(lock)
            who = f" by {self.key[holder]}" if holder is not None else ""
            state[node] = SKIPPED
            self.skipped_locks += 1
            skips.append((node, f"lock {lock!r} still held{who} after a failure"))
            for p in self.provides[node]:
                self._provider_gone(p, f"its provider {self.key[node]} was skipped", skips)
        self.parked.clear()
        self.parked_on.clear()
        self.woken_from.clear()
        if self.active < len(self.members):
            satisfied = self.satisfied
            left = self.providers_left
            for node in self.members[self.active]:
                if state[node] != WAITING:
                    continue
                unmet = [r for r in self.requires[node] if r not in satisfied]
                if any(left.get(r, 0) > 0 for r in unmet):
                    # a provider is left, in a group still to come
                    why = (f"dependencies {unmet!r} not provided by the end of "
                           f"{label}")
                else:
                    why = f"dependencies {unmet!r} never provided"
                self._skip(node, why, skips)
        return skips

    # -- the end -------------------------------------------------------------

    def end(self) -> Skips:
        """Skip what is left when nothing runs and nothing is ready."""
        skips: Skips = []
        state = self.state
        for node in self.nodes.values():
            if state[node] == WAITING:
                unmet = [r for r in self.requires[node] if r not in self.satisfied]
                state[node] = SKIPPED
                self.skipped_deps += 1
                skips.append((node, f"dependencies {unmet!r} never provided"))
            elif state[node] == PARKED:
                lock = self.parked_on[node]
                holder = self.excl.get(lock)
                who = f" by {self.key[holder]}" if holder is not None else ""
                state[node] = SKIPPED
                self.skipped_locks += 1
                skips.append((node, f"lock {lock!r} still held{who} after a failure"))
        return skips

    def cancel(self, reason: str) -> Skips:
        """Start nothing more: skip every task not yet handed out (and every
        task added later) with `reason`. Running tasks end as they do."""
        self.cancelled = reason
        skips: Skips = []
        self._cancel(self.nodes.values(), skips)
        return skips

    def _cancel(self, nodes: Iterable[int], skips: Skips) -> None:
        reason = self.cancelled or "cancelled"
        self.ready.clear()
        self.ready_run.clear()
        self.parked.clear()
        self.parked_on.clear()
        self.waiting.clear()
        state = self.state
        for node in nodes:
            if state[node] in (WAITING, READY, PARKED, GATED):
                state[node] = SKIPPED
                skips.append((node, reason))

    def held_locks(self) -> int:
        return len(self.excl) + len(self.shared_count)

    def key_of(self, task: Any) -> str:
        node = self.nodes.get(task)
        if node is not None:
            return self.key[node]
        key = self.keys.get(task) if self.keys is not None else None
        return key if key is not None else repr(task)

"""The incremental planner of one run: dependencies, locks, the ready heap.

Every event costs O(log n) amortised: an index from each provide to the tasks
waiting on it (with a count of unmet requires per task), a lock table for
claims (exclusive) and uses (shared) with a priority-ordered queue of parked
tasks per lock, and the ready tasks ordered by (priority, insertion order):
a run of nodes that became ready in that order (a deque: no entry object per
task, the common case: independent tasks, or all children of one provide),
and a heap of (priority, seq, node) for the others; the smaller head of the two
goes first. Nothing here re-sorts, scans all waiting tasks, or pops from the
front of a list. A finished task's node is dropped from the index.

The plan does no I/O and knows no pool: `Sched` feeds it tasks and results and
hands what `pop_dispatchable()` returns to a pool.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

from .common import SchedulerError, TaskRes, is_controlled_fail
from .meta import SCHED_ATTR_NAME

WAITING, READY, PARKED, RUNNING, DONE, SKIPPED = range(6)

_NOTHING: tuple = ()


class Node:
    """One task in one run."""

    __slots__ = ("task", "key", "seq", "prio", "requires", "provides", "claims",
                 "uses", "unmet", "state", "shared", "parked_on", "woken_from")

    def __init__(self, task: Any, key: str, seq: int) -> None:
        self.task = task
        self.key = key
        self.seq = seq
        meta = getattr(task, SCHED_ATTR_NAME, None)
        if meta is None:
            self.prio = 0
            self.requires = self.provides = self.claims = self.uses = _NOTHING
        else:
            get = meta.get
            self.prio = get("priority")
            # Tuple copies (small, and not tracked by the cyclic GC when they
            # hold strings): a set mutated during the run cannot corrupt the counts.
            self.requires = tuple(get("requires"))
            self.provides = tuple(get("provides"))
            self.claims = tuple(get("claims"))
            self.uses = tuple(get("uses"))
        self.unmet = 0
        self.state = WAITING
        self.shared: Optional[Dict[str, Any]] = None
        self.parked_on: Any = None
        self.woken_from: Any = None


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


# (node, reason) pairs; the caller turns them into events.
Skips = List[Tuple[Node, str]]


class Plan:
    """The state of one run of a Sched."""

    def __init__(self, default_shared: Dict[str, Any],
                 keys: Optional[Dict[Any, str]] = None) -> None:
        self.default_shared = default_shared
        self.keys = keys                     # task -> key, for key_of after the end
        self.nodes: Dict[Any, Node] = {}     # the tasks not finished
        # Ready tasks: `ready_run` in increasing (prio, seq); `ready` a heap of
        # (prio, seq, node) for those that came out of that order.
        self.ready_run: Deque[Node] = deque()
        self.ready: List[Tuple[Any, int, Node]] = []
        self.running: Dict[Any, Node] = {}
        # dependencies
        self.satisfied: set = set()
        self.waiting: Dict[Any, Any] = {}   # provide -> a Node or a list of them
        self.providers_left: Dict[Any, int] = {}
        self.culprit: Dict[Any, str] = {}
        # locks
        self.excl: Dict[Any, Node] = {}
        self.shared_count: Dict[Any, int] = {}
        self.parked: Dict[Any, List[Tuple[Any, int, Node]]] = {}
        self.assumed_shared: Dict[Any, List[Dict[str, Any]]] = {}
        # counters
        self.seq = 0
        self.finished = 0
        self.skipped_deps = 0
        self.skipped_locks = 0

    # -- adding --------------------------------------------------------------

    def assume(self, provides: Iterable[Any], shared: Optional[Dict[str, Any]]) -> None:
        """Mark `provides` satisfied before any task runs; children of them get
        `shared` merged into their shared dict."""
        for p in provides:
            self.satisfied.add(p)
            if shared:
                self.assumed_shared.setdefault(p, []).append(shared)

    def add(self, entries: Iterable[Tuple[Any, str]]) -> Skips:
        """Add (task, key) pairs; return the ones that can never run."""
        new: List[Node] = []
        providers_left = self.providers_left
        for task, key in entries:
            node = Node(task, key, self.seq)
            self.seq += 1
            self.nodes[task] = node
            new.append(node)
            for p in node.provides:
                providers_left[p] = providers_left.get(p, 0) + 1
        skips: Skips = []
        doomed: List[Tuple[Node, str]] = []
        satisfied = self.satisfied
        waiting = self.waiting
        for node in new:
            unmet = 0
            reason = None
            for r in node.requires:
                if r in satisfied:
                    for shared in self.assumed_shared.get(r, ()):
                        if node.shared is None:
                            node.shared = dict(self.default_shared)
                        node.shared.update(shared)
                    continue
                if providers_left.get(r, 0) > 0:
                    bucket_add(waiting, r, node)
                    unmet += 1
                elif reason is None:
                    reason = self._why_unmet(r)
            node.unmet = unmet
            if reason is not None:
                doomed.append((node, reason))
            elif unmet == 0:
                self._make_ready(node)
        for node, reason in doomed:
            self._skip(node, reason, skips)
        return skips

    def _why_unmet(self, req: Any) -> str:
        culprit = self.culprit.get(req)
        if culprit is None:
            return f"dependency {req!r} is provided by no task"
        return f"dependency {req!r} not met: {culprit}"

    # -- dispatching ---------------------------------------------------------

    def _make_ready(self, node: Node) -> None:
        node.state = READY
        run = self.ready_run
        if run:
            last = run[-1]
            # (last.prio, last.seq) < (node.prio, node.seq), as tuples compare
            if (last.seq < node.seq if last.prio == node.prio
                    else last.prio < node.prio):
                run.append(node)
            else:
                heapq.heappush(self.ready, (node.prio, node.seq, node))
        else:
            run.append(node)

    def pop_dispatchable(self) -> Optional[Node]:
        """The most important ready task that could take its locks (now held),
        or None. Tasks whose locks are taken are parked on the lock."""
        run = self.ready_run
        ready = self.ready
        while True:
            if run:
                head = run[0]
                if ready:
                    top = ready[0]
                    # the heap's top goes first if (top[0], top[1]) < (head.prio, head.seq)
                    if (top[1] < head.seq if top[0] == head.prio
                            else top[0] < head.prio):
                        node = heapq.heappop(ready)[2]
                    else:
                        node = run.popleft()
                else:
                    node = run.popleft()
            elif ready:
                node = heapq.heappop(ready)[2]
            else:
                return None
            if node.state != READY:
                continue
            woken = node.woken_from
            node.woken_from = None
            if node.claims or node.uses:
                lock = self._conflict(node)
                if lock is not None:
                    node.state = PARKED
                    node.parked_on = lock
                    heapq.heappush(self.parked.setdefault(lock, []),
                                   (node.prio, node.seq, node))
                    if woken is not None and woken != lock:
                        self._wake(woken)
                    continue
                self._acquire(node)
                if woken is not None:
                    # It took the lock it was woken for; if shared, the next
                    # waiter may share it too.
                    self._wake(woken)
            node.state = RUNNING
            self.running[node.task] = node
            return node
        return None

    def shared_for(self, node: Node) -> Dict[str, Any]:
        """The shared dict the task starts with (its own)."""
        if node.shared is None:
            return dict(self.default_shared)
        return node.shared

    # -- finishing -----------------------------------------------------------

    def finish(self, res: TaskRes) -> Tuple[Node, Skips]:
        """Take a task's result: release its locks and satisfy its provides as
        its outcome allows; return its node and the tasks that can now never run."""
        node = self.running.pop(res.task, None)
        if node is None:
            raise SchedulerError(
                f"internal error: a pool returned a result for {res.task!r}, which "
                "is not running (this is a bug in pexen or in the pool)")
        node.state = DONE
        del self.nodes[node.task]  # its result is yielded; nothing here needs it
        self.finished += 1
        excinfo = res.excinfo
        if excinfo is None:
            deps_ok = locks_ok = True
        elif is_controlled_fail(excinfo):
            deps_ok = getattr(excinfo.val, "deps_ok", True)
            locks_ok = getattr(excinfo.val, "locks_ok", True)
        else:
            deps_ok = locks_ok = False
        if locks_ok and (node.claims or node.uses):
            self._release(node)
        skips: Skips = []
        if deps_ok:
            self._satisfy(node, res.shared)
        elif node.provides:
            for p in node.provides:
                self._provider_gone(p, f"its provider {node.key} failed", skips)
        return node, skips

    def _satisfy(self, node: Node, shared: Any) -> None:
        satisfied = self.satisfied
        providers_left = self.providers_left
        for p in node.provides:
            providers_left[p] -= 1
            if p in satisfied:
                continue
            satisfied.add(p)
            for w in self._pop_waiters(p):
                if w.state != WAITING:
                    continue
                if shared:
                    if w.shared is None:
                        w.shared = dict(self.default_shared)
                    w.shared.update(shared)
                w.unmet -= 1
                if w.unmet == 0:
                    self._make_ready(w)

    def _pop_waiters(self, provide: Any) -> Iterable[Node]:
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
                if w.state != WAITING:
                    continue
                w.state = SKIPPED
                self.skipped_deps += 1
                skips.append((w, f"dependency {p!r} not met: {why}"))
                for wp in w.provides:
                    work.append((wp, f"its provider {w.key} was skipped"))

    def _skip(self, node: Node, reason: str, skips: Skips) -> None:
        node.state = SKIPPED
        self.skipped_deps += 1
        skips.append((node, reason))
        for p in node.provides:
            self._provider_gone(p, f"its provider {node.key} was skipped", skips)

    # -- locks ---------------------------------------------------------------

    def _conflict(self, node: Node) -> Any:
        excl = self.excl
        for c in node.claims:
            if c in excl or c in self.shared_count:
                return c
        for u in node.uses:
            if u in excl:
                return u
        return None

    def _acquire(self, node: Node) -> None:
        for c in node.claims:
            self.excl[c] = node
        counts = self.shared_count
        for u in node.uses:
            counts[u] = counts.get(u, 0) + 1

    def _release(self, node: Node) -> None:
        for c in node.claims:
            del self.excl[c]
        counts = self.shared_count
        for u in node.uses:
            n = counts[u] - 1
            if n:
                counts[u] = n
            else:
                del counts[u]
        for lock in node.claims:
            self._wake(lock)
        for lock in node.uses:
            self._wake(lock)

    def _wake(self, lock: Any) -> bool:
        """Move the first task parked on `lock` back to the ready heap if the
        lock could now be taken in the mode it wants."""
        queue = self.parked.get(lock)
        if not queue:
            return False
        if lock in self.excl:
            return False
        head = queue[0][2]
        if lock in head.claims and lock in self.shared_count:
            return False
        heapq.heappop(queue)
        if not queue:
            del self.parked[lock]
        head.parked_on = None
        head.woken_from = lock
        self._make_ready(head)
        return True

    def unstick(self) -> bool:
        """Wake tasks parked on a lock nobody holds (a safety net: with nothing
        running, a free lock must not keep anyone waiting)."""
        woke = False
        for lock in list(self.parked):
            woke = self._wake(lock) or woke
        return woke

    # -- the end -------------------------------------------------------------

    def end(self) -> Skips:
        """Skip what is left when nothing runs and nothing is ready."""
        skips: Skips = []
        for node in self.nodes.values():
            if node.state == WAITING:
                unmet = [r for r in node.requires if r not in self.satisfied]
                node.state = SKIPPED
                self.skipped_deps += 1
                skips.append((node, f"dependencies {unmet!r} never provided"))
            elif node.state == PARKED:
                holder = self.excl.get(node.parked_on)
                who = f" by {holder.key}" if holder is not None else ""
                node.state = SKIPPED
                self.skipped_locks += 1
                skips.append((node, f"lock {node.parked_on!r} still held{who} "
                                    "after a failure"))
        return skips

    def held_locks(self) -> int:
        return len(self.excl) + len(self.shared_count)

    def key_of(self, task: Any) -> str:
        node = self.nodes.get(task)
        if node is not None:
            return node.key
        key = self.keys.get(task) if self.keys is not None else None
        return key if key is not None else repr(task)


"""`pexen-harness follow`: a run's task transitions and reported results,
printed as they are journaled, from another process.

The journal is polled: the run's events after the last one read (the
`events` table's id is the cursor), the results after the last one read
(the same with `results`), and the reasons of the tasks that ended in what
was read; no table is read whole, and a row is read once (but for the ids
of the last few seconds, looked at again: see `_Cursor`). Only when nothing
new came does it read the run's row: whether the run has finished, and
whether its controller lives (judged as `resume` judges it).
"""

from __future__ import annotations

import heapq
import json
import time
from collections import deque

from ..journal.states import TERMINAL
from ._journal import EXIT_INTERRUPTED, EXIT_OK, REMOTE_STALE, controller_alive
from .progress import one_line, to_devnull

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import IO, Any, Callable, Deque, Dict, List, Optional, Set, Tuple

    from ..journal import EventInfo, Journal, RunInfo

#: The version of the fields of `follow --json` (doc/harness.md): raised when
#: one changes meaning or goes away, not when one is added.
SCHEMA = 1
#: Seconds between two looks at the journal when nothing new came.
POLL = 0.2
#: Rows of each table read at a time (a long run's history is printed in
#: pieces, not loaded whole).
BATCH = 2000
#: Seconds the controller must have been gone, with nothing new written,
#: before follow says so: the journal writer's process of a controller that
#: died may still commit what it was handed (see doc/journal.md).
GONE_GRACE = 1.0
#: Seconds a row may take to be committed after a row with a higher id was
#: (see _Cursor).
LOOKBEHIND = 5.0
#: A controller on another machine (a journal at a URL) cannot be looked up
#: by pid: it is taken as gone when its heartbeat (every 2 s) has not moved
#: for this long.

_ENDED = frozenset(s.value for s in TERMINAL)
_KEYS_PER_STATEMENT = 500
_INTERRUPTED_BY = {"controller death": "its controller died",
                   "signal": "stopped by a signal to the controller",
                   "reboot": "ended for another task's reboot"}
_VERDICT = {0: "all passed", 1: "some failed"}


def follow(j: Journal, run: RunInfo, *, as_json: bool, wait: bool, hint: str = "",
           out: Optional[IO[str]] = None, poll: float = POLL) -> int:
    """Print run `run` of journal `j` from its first event on, then what is
    journaled as it comes; return the exit status of `follow` (the run's
    own when it finishes; 2 when its controller is gone first, without
    `wait`, or on SIGINT; 0 when the reader of `out` went away). `hint` is
    added to the commands suggested (` --journal PATH`)."""
    import sys

    return _Follower(j, run, as_json, wait, hint, out or sys.stdout, poll).follow()


class _Follower:
    """One `follow`: its cursors, what it knows of the tasks' attempts, and
    whether it has said the run's controller is gone."""

    def __init__(self, j: Journal, run: RunInfo, as_json: bool, wait: bool, hint: str,
                 out: IO[str], poll: float) -> None:
        self.j = j
        self.run_id = run.id
        self.as_json = as_json
        self.wait = wait
        self.hint = hint
        self.out = out
        self.poll = poll
        self.events = _Cursor()   # where reading each table is
        self.results = _Cursor()
        self.attempts: Dict[str, int] = {}
        self.rebooted: Set[str] = set()   # asked for a reboot: the same attempt goes on
        self.ended: Optional[int] = None  # the exit status, once the run finished
        self.told_gone: Optional[Tuple[Any, ...]] = None  # the controller said gone
        self.host: Optional[str] = None
        self.beat: Optional[Tuple[Any, ...]] = None     # (a remote controller's)
        self.beat_seen = 0.0

    def follow(self) -> int:
        try:
            return self._loop()
        except BrokenPipeError:
            # the reader went away (`... | head`): stop quietly
            to_devnull(self.out)
            return EXIT_OK
        except KeyboardInterrupt:
            try:
                self.out.flush()
            except BrokenPipeError:
                to_devnull(self.out)
            return EXIT_INTERRUPTED

    def _loop(self) -> int:
        quiet_since: Optional[float] = None   # the controller seen gone, nothing new
        while True:
            printed, more = self._step()
            if printed:
                self.out.flush()
                quiet_since = None
            if self.ended is not None:
                return self.ended
            if more:
                continue
            run = self.j.run(self.run_id)
            if run.state != "finished":   # (else its event is there: the next read)
                if self._alive(run):
                    quiet_since = None
                else:
                    now = time.monotonic()
                    ident = (run.controller_pid, run.controller_started)
                    if quiet_since is None:
                        quiet_since = now
                    elif now - quiet_since >= GONE_GRACE and ident != self.told_gone:
                        self.told_gone = ident
                        self._emit(self._gone(run))
                        self.out.flush()
                        if not self.wait:
                            return EXIT_INTERRUPTED
            time.sleep(self.poll)

    # -- reading -------------------------------------------------------------

    def _step(self) -> Tuple[bool, bool]:
        """Print what is new; return (whether anything was, whether there is
        more to read at once)."""
        j, run_id, now = self.j, self.run_id, time.monotonic()
        events = j.events(run_id, self.events.after, limit=BATCH)
        results = _results_after(j, run_id, self.results.after, BATCH)
        events_cut, results_cut = len(events) == BATCH, len(results) == BATCH
        # The two are merged by time. When one was cut short, the other is
        # taken only up to the time it was cut at, so that what comes next
        # from the first is not older than what was printed of the second.
        if events_cut and (not results_cut or events[-1].at <= results[-1][6]):
            results = _upto(results, events[-1].at, _row_at)
        elif results_cut:
            events = _upto(events, results[-1][6], _event_at)
        more = events_cut or results_cut
        if not more:   # (caught up: what was passed over, if anything)
            events += [ev for i in self.events.missed(j, run_id, "events", now)
                       for ev in j.events(run_id, i - 1, limit=1) if ev.id == i]
            results += [row for i in self.results.missed(j, run_id, "results", now)
                        for row in _results_after(j, run_id, i - 1, 1) if row[0] == i]
        self.events.read([ev.id for ev in events], now)
        self.results.read([row[0] for row in results], now)
        reasons = self._reasons({e.key for e in events
                                 if e.key is not None and e.to_state in _ENDED})
        made = [self._event(e, reasons) for e in events]
        found = [self._result(r) for r in results]
        for obj in heapq.merge(made, found, key=_at):
            self._emit(obj)
        return bool(made or found), more

    def _reasons(self, keys: Set[str]) -> Dict[str, Optional[str]]:
        """The reason of each of `keys` (tasks that ended: it no longer changes)."""
        if not keys:
            return {}
        wanted = sorted(keys)
        found: Dict[str, Optional[str]] = {}
        # (Journal has no read of some tasks' columns: this one is here)
        with self.j._transaction() as cur:
            for i in range(0, len(wanted), _KEYS_PER_STATEMENT):
                part = wanted[i:i + _KEYS_PER_STATEMENT]
                cur.execute("SELECT key, reason FROM tasks WHERE run_id = ? AND key IN ("
                            + ", ".join("?" * len(part)) + ")", (self.run_id, *part))
                found.update(cur.fetchall())
        return found

    def _alive(self, run: RunInfo) -> bool:
        if self.host is None:
            import socket

            self.host = socket.gethostname()
        if run.host == self.host:
            return controller_alive(run)   # pid, boot id and start time
        # (not controller_alive's fresh heartbeat: a follower runs long, and
        # sees whether the heartbeat moves)
        # Another machine's controller: its heartbeat must move. (Its age by
        # this machine's clock only starts the count: clocks may differ.)
        ident = (run.controller_pid, run.controller_started, run.heartbeat_at)
        now = time.monotonic()
        if ident != self.beat:
            age = time.time() - run.heartbeat_at if run.heartbeat_at else REMOTE_STALE
            self.beat = ident
            self.beat_seen = now - min(max(age, 0.0), REMOTE_STALE)
        return now - self.beat_seen < REMOTE_STALE

    # -- what is printed -------------------------------------------------------

    def _event(self, ev: EventInfo, reasons: Dict[str, Optional[str]]) -> Dict[str, Any]:
        detail = ev.detail
        if ev.key is None:
            exit_code = None
            if ev.to_state == "finished":
                exit_code = self.j.run(self.run_id).exit_code
                self.ended = EXIT_OK if exit_code is None else exit_code
            elif ev.to_state in ("interrupted", "rebooting"):
                exit_code = EXIT_INTERRUPTED   # (what the controller ends such a session with)
            return {"schema": SCHEMA, "run": self.run_id, "kind": "run", "id": ev.id,
                    "at": ev.at, "key": None, "from": ev.from_state, "to": ev.to_state,
                    "detail": detail, "exit_code": exit_code}
        key, to = ev.key, ev.to_state
        if to == "queued":
            if key in self.rebooted:   # after a planned reboot the attempt goes on
                self.rebooted.discard(key)
                attempt = max(self.attempts.get(key, 0), 1)
            else:
                attempt = self.attempts.get(key, 0) + 1
            self.attempts[key] = attempt
        else:
            if to == "rebooting":
                self.rebooted.add(key)
            attempt = self.attempts.get(key, 0)
        return {"schema": SCHEMA, "run": self.run_id, "kind": "transition", "id": ev.id,
                "at": ev.at, "key": key, "from": ev.from_state, "to": to,
                "attempt": attempt, "reason": reasons.get(key) if to in _ENDED else None,
                "detail": detail}

    def _result(self, row: Tuple[Any, ...]) -> Dict[str, Any]:
        id_, key, attempt, name, outcome, message, at = row
        return {"schema": SCHEMA, "run": self.run_id, "kind": "result", "id": id_, "at": at,
                "key": key, "attempt": attempt, "name": name, "outcome": outcome,
                "message": message}

    def _gone(self, run: RunInfo) -> Dict[str, Any]:
        """What follow saw, not what the journal has: the controller is gone
        and the run has not finished."""
        return {"schema": SCHEMA, "run": self.run_id, "kind": "run", "id": None,
                "at": time.time(), "key": None, "from": run.state, "to": "controller-gone",
                "detail": {"pid": run.controller_pid}, "exit_code": None}

    def _emit(self, obj: Dict[str, Any]) -> None:
        self.out.write((json.dumps(obj) if self.as_json else self._line(obj)) + "\n")

    def _line(self, obj: Dict[str, Any]) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(obj["at"]))
        kind = obj["kind"]
        if kind == "result":
            text = (f"{one_line(obj['key'])} reported {one_line(obj['name'])}: "
                    f"{one_line(obj['outcome'])}")
            if obj["message"]:
                text += f": {one_line(obj['message'])}"
        elif kind == "transition":
            text = _transition_text(obj)
        else:
            text = f"run {obj['run']} {self._run_text(obj)}"
        return f"{stamp} {text}"

    def _run_text(self, obj: Dict[str, Any]) -> str:
        to = obj["to"]
        detail = obj["detail"] if isinstance(obj["detail"], dict) else {}
        run = obj["run"]
        if to == "running":
            if obj["from"] is None:
                tasks = detail.get("tasks")
                return "started" + (f" ({tasks} tasks)" if isinstance(tasks, int) else "")
            pid = detail.get("resumed_by")
            return "resumed" + (f" (pid {pid})" if isinstance(pid, int) else "")
        if to == "finished":
            code = obj["exit_code"]
            why = detail.get("reason") or _VERDICT.get(code)
            return f"finished: exit {code}" + (f" ({one_line(str(why))})" if why else "")
        if to == "interrupted":
            return f"interrupted: stopped by a signal (exit {obj['exit_code']})"
        if to == "rebooting":
            return f"rebooting: {one_line(str(detail.get('task')))} asked for a reboot"
        if to == "reboot-issued":
            return f"reboot command run: {one_line(str(detail.get('command')))}"
        if to == "controller-gone":
            text = (f"controller gone (pid {detail.get('pid')}) before the run finished; ")
            if self.wait:
                return text + f"waiting for pexen-harness resume {run}{self.hint}"
            return text + f"pexen-harness resume {run}{self.hint} continues it"
        if to in ("group-started", "group-finished"):
            group = detail.get("group")
            text = (f"group {one_line(str(group))}" if group else "the tasks in no group")
            text += " " + to[6:]
            if detail.get("pool"):
                workers = detail.get("workers")
                text += (f" ({one_line(str(detail['pool']))}, {workers} worker"
                         f"{'' if workers == 1 else 's'})")
            return text
        if to == "groups":
            groups = detail.get("groups") or []
            return "groups: " + ", ".join(
                f"{one_line(str(g.get('name')))} ({g.get('tasks')} tasks)"
                for g in groups if isinstance(g, dict))
        if to == "selection":
            return (f"selection: {detail.get('selected')} selected, "
                    f"{len(detail.get('pulled') or ())} pulled in, "
                    f"{len(detail.get('unmet') or ())} not run")
        return one_line(str(to))


class _Cursor:
    """Where reading one table of the run is: the highest id read (`after`),
    and the ids read lately.

    A row's id is taken when it is inserted, not when it is committed. On
    SQLite, with one writer at a time, that is the same order; on
    PostgreSQL, of two transactions writing at once (two tasks reporting a
    result), the one with the higher id may commit first, and a cursor
    alone would pass the other by for good. So once caught up, the ids from
    where the cursor was LOOKBEHIND seconds ago up to where it is are
    looked at again (the ids only, from an index), and a row not read
    before is read then."""

    def __init__(self) -> None:
        self.after = 0
        self.marks: Deque[Tuple[float, int]] = deque()   # (a read's time, `after` before it)
        self.order: Deque[int] = deque()   # the ids read since the oldest mark
        self.seen: Set[int] = set()

    def read(self, ids: List[int], now: float) -> None:
        self.marks.append((now, self.after))
        for i in ids:
            self.order.append(i)
            self.seen.add(i)
            if i > self.after:
                self.after = i

    def missed(self, j: Journal, run_id: int, table: str, now: float) -> List[int]:
        """The ids of `table` not read, between where the cursor was
        LOOKBEHIND seconds ago and where it is."""
        marks, order, seen = self.marks, self.order, self.seen
        while marks and marks[0][0] <= now - LOOKBEHIND:
            marks.popleft()
        floor = marks[0][1] if marks else self.after
        while order and order[0] <= floor:
            seen.discard(order.popleft())
        if floor >= self.after:
            return []
        with j._transaction() as cur:
            cur.execute(f"SELECT id FROM {table} WHERE run_id = ? AND id > ? AND id <= ?",
                        (run_id, floor, self.after))
            return sorted(i for (i,) in cur.fetchall() if i not in seen)


def _transition_text(obj: Dict[str, Any]) -> str:
    key, to, attempt = one_line(obj["key"]), obj["to"], obj["attempt"]
    if to in ("queued", "running", "rebooting"):
        return f"{key} {to} (attempt {attempt})"
    if to == "interrupted":
        detail = obj["detail"] if isinstance(obj["detail"], dict) else {}
        by = detail.get("by")
        return f"{key} interrupted" + (
            f": {_INTERRUPTED_BY.get(by) or one_line(str(by))}" if by else "")
    text = f"{key} {to}"
    if to in _ENDED:
        if attempt > 1:
            text += f" (attempt {attempt})"
        if obj["reason"]:
            text += f": {one_line(obj['reason'])}"
    return text


def _at(obj: Dict[str, Any]) -> float:
    return obj["at"]


def _row_at(row: Tuple[Any, ...]) -> float:
    return row[6]


def _event_at(ev: EventInfo) -> float:
    return ev.at


def _upto(rows: List[Any], at: float, when: Callable[[Any], float]) -> List[Any]:
    """The rows before the first one later than `at`."""
    for i, row in enumerate(rows):
        if when(row) > at:
            return rows[:i]
    return rows


def _results_after(j: Journal, run_id: int, after: int, limit: int) -> List[Tuple[Any, ...]]:
    """(id, key, attempt, name, outcome, message, at) of the run's results
    with an id above `after`, oldest first, at most `limit`. (`Journal.results`
    has no cursor: this is its read from a point on.)"""
    with j._transaction() as cur:
        cur.execute("SELECT id, key, attempt, name, outcome, message, at FROM results "
                    "WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", (run_id, after, limit))
        return [tuple(r) for r in cur.fetchall()]

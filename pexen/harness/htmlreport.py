"""`--html FILE`: a run as one self-contained HTML page, from the journal only.

The page holds its CSS, its script and the run's data inline (nothing is
fetched: it opens from disk, from a Jenkins artifact, from a mail). Its
parts (doc/report.md says what each shows):

- the run: suite, host, journal, times, state, counts by outcome, the
  controller sessions (how each ended: finished, stopped, rebooting, died);
- a timeline: a lane per worker slot, a bar per attempt of a task, the
  gaps where the controller was dead or the machine rebooting, the
  resumes, the exclusivity groups;
- a table of every task (sorted, filtered by outcome, searched by key,
  a page at a time), each with its reason, traceback, reported results
  and captured output per attempt (head and tail, the path of the whole).

`report_data` reads the journal into plain lists (the page's data, as
columns: a run of 100k tasks is a few MB of JSON, not 100k objects);
`write` puts it into the page, atomically.

Lanes: a lane per worker. Each `running` event names the worker's pid, and
an attempt goes to its worker's lane (`_Lanes`); an attempt with no pid
(a journal from before pexen recorded it) goes to the lowest-numbered lane
free when it started, so the lanes are the run's concurrency (-j lanes
while it ran at -j; more where the attempts of a dead controller's workers
ran on beside the next session's).
"""

from __future__ import annotations

import json
import os
import time

from .. import xunit
from ..journal import Journal, RunInfo
from ..util import write_atomically
from .capture import key_path, log_paths
from .export import UNFINISHED, controller_gone, suite_name, tasks_dir

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

#: Characters of each captured stream of an attempt put into the page (its
#: head and its tail; the page names the file that holds all of it).
STREAM_CAP = 8_000
#: Characters of captured output the page holds in all: the attempts of the
#: tasks that did not pass come first, then the others while it lasts (a
#: run of 100k chatty tests would otherwise make a page no browser opens).
OUTPUT_BUDGET = 40_000_000

#: The outcomes and states, in the order the page lists them, and the colour
#: of each (its bars, its badges with white text: each has a contrast of at
#: least 4.5:1 against white, tests/harness/test_htmlreport.py checks).
PALETTE: Dict[str, str] = {
    "pass": "#1a7f37",
    "warn": "#9a6700",
    "fail": "#cf222e",
    "error": "#8250df",
    "timeout": "#bc4c00",
    "skip": "#57606a",
    "interrupted": "#6e5494",
    "rebooting": "#0550ae",
    "running": "#0969da",
    "queued": "#4d2d00",
    "pending": "#424a53",
}
OUTCOMES = list(PALETTE)
_INDEX = {name: i for i, name in enumerate(OUTCOMES)}

#: The page's own colours besides the outcomes' (text on background).
PAGE_COLOURS = {"text": "#1f2328", "background": "#ffffff", "muted": "#59636e",
                "link": "#0550ae", "gap": "#59636e", "tooltip-text": "#ffffff",
                "tooltip-background": "#1f2328"}

#: Seconds a bar may start before the end of the one before it in its lane
#: (the journal has the end when the controller heard of it).
LANE_SLACK = 1.0

_ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_report")


def _t(at: Optional[float], t0: float) -> Optional[float]:
    """A time as seconds after the run's start, to the millisecond."""
    return None if at is None else round(at - t0, 3)


def _detail(text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def report_data(j: Journal, run: RunInfo, journal_path: str, *,
                stream_cap: int = STREAM_CAP, budget: int = OUTPUT_BUDGET,
                now: Optional[float] = None) -> Dict[str, Any]:
    """The page's data: run `run` as the journal has it now."""
    from ..journal._open import shown

    now = time.time() if now is None else now
    t0 = run.created_at
    gone = controller_gone(run)
    rows = j.report_rows(run.id)
    events = j.event_rows(run.id)
    config = run.config
    index = {row[0]: i for i, row in enumerate(rows)}
    n = len(rows)

    # -- the tasks, as columns ---------------------------------------------
    keys: List[str] = []
    states: List[int] = []
    used: List[float] = []
    attempts: List[int] = []
    reboots: List[int] = []
    messages: List[Optional[str]] = []
    tracebacks: Dict[int, str] = {}
    group_of: List[int] = []
    groups: List[str] = []
    group_index: Dict[str, int] = {}
    for key, _, to, _, detail in events:   # the groups in the order they run
        if key is None and to == "groups":
            for group in _detail(detail).get("groups") or ():
                name = group.get("name") if isinstance(group, dict) else None
                if isinstance(name, str) and name not in group_index:
                    group_index[name] = len(groups)
                    groups.append(xunit.clean(name))
    counts: Dict[str, int] = {}
    for i, (key, state, attempt, reboot_count, reason, time_used, exc_type, exc_text,
            meta) in enumerate(rows):
        keys.append(xunit.clean(key))
        counts[state] = counts.get(state, 0) + 1
        states.append(_INDEX.get(state, _INDEX["pending"]))
        used.append(round(time_used or 0.0, 3))
        attempts.append(attempt or 0)
        reboots.append(reboot_count or 0)
        message = reason
        if state in UNFINISHED:
            why = UNFINISHED[state]
            if gone and state in ("queued", "running", "rebooting"):
                why += " when its controller died (pexen-harness resume continues the run)"
            message = f"{why}: {reason}" if reason else why
        elif not message and exc_type:
            message = exc_type
        messages.append(xunit.clean(message) if message else None)
        if exc_text:
            tracebacks[i] = xunit.clean(exc_text)
        group = _detail(meta).get("group") if meta and '"group"' in meta else None
        if group is not None:
            g = group_index.get(group)
            if g is None:
                g = group_index[group] = len(groups)
                groups.append(xunit.clean(str(group)))
            group_of.append(g)
        else:
            group_of.append(-1)

    results: Dict[int, List[List[Any]]] = {}
    for r in j.results(run.id):
        found = index.get(r.key)
        if found is not None:
            results.setdefault(found, []).append([r.attempt, xunit.clean(r.name), r.outcome,
                                              xunit.clean(r.message) if r.message else None])

    # -- sessions, gaps, bars ------------------------------------------------
    sessions: List[Dict[str, Any]] = []
    gaps: List[Dict[str, Any]] = []
    # task, attempt, start, end, outcome, the worker's pid (None: not known)
    bars: List[Tuple[int, int, float, float, int, Optional[int]]] = []
    queued: List[int] = [0] * n
    opened: Dict[int, Tuple[float, int, Optional[int]]] = {}
    last_alive = t0        # the newest event the session's controller wrote
    rebooting_at: Optional[float] = None
    for key, frm, to, at, detail in events:
        if key is None:
            if to == "running":
                pid = _detail(detail).get("resumed_by" if frm is not None else "pid")
                if sessions and sessions[-1]["end"] is None:
                    # The previous controller died: no end of its own.
                    sessions[-1].update(end=_t(last_alive, t0), ended="died")
                    gaps.append({"kind": "crash", "start": _t(last_alive, t0),
                                 "end": _t(at, t0)})
                elif rebooting_at is not None:
                    gaps.append({"kind": "reboot", "start": _t(rebooting_at, t0),
                                 "end": _t(at, t0)})
                rebooting_at = None
                sessions.append({"start": _t(at, t0), "end": None, "ended": None,
                                 "pid": pid if isinstance(pid, int) else None})
                last_alive = at
            elif to in ("finished", "interrupted", "rebooting") and sessions \
                    and sessions[-1]["end"] is None:
                sessions[-1].update(end=_t(at, t0), ended="stopped"
                                    if to == "interrupted" else to)
                if to == "rebooting":
                    rebooting_at = at
                last_alive = at
            continue
        found = index.get(key)
        if found is None:
            continue
        i = found
        if detail is None or '"recorded_by"' not in detail:
            last_alive = at
        if to == "queued":
            queued[i] += 1
        elif to == "running":
            opened[i] = (at, queued[i] or 1, _worker_pid(detail))
        if frm == "running":
            began = opened.pop(i, None)
            if began is not None:
                bars.append((i, began[1], began[0], at, _INDEX.get(to, _INDEX["pending"]),
                             began[2]))
    if sessions:
        sessions[-1]["pid"] = run.controller_pid   # (the run's row names the last one)
    if sessions and sessions[-1]["end"] is None:
        if run.state == "finished":
            sessions[-1].update(end=_t(run.finished_at or last_alive, t0), ended="finished")
        elif gone:
            seen = max(last_alive, run.heartbeat_at or last_alive)
            sessions[-1].update(end=_t(seen, t0), ended="died")
        else:
            sessions[-1]["ended"] = "running"
    if sessions and sessions[-1]["ended"] == "finished":
        end = run.finished_at or last_alive
    elif sessions and sessions[-1]["ended"] in ("died", "stopped", "rebooting"):
        end = t0 + (sessions[-1]["end"] or 0.0)
    else:
        end = now
    for i, (since, attempt, wpid) in opened.items():   # still running (or its controller died)
        bars.append((i, attempt, since, max(end, since), _INDEX["running"], wpid))
    if rebooting_at is not None:
        gaps.append({"kind": "reboot", "start": _t(rebooting_at, t0), "end": None})
    elif sessions and sessions[-1]["ended"] == "died":
        gaps.append({"kind": "crash", "start": sessions[-1]["end"], "end": None})

    bars.sort(key=lambda b: (b[2], b[3]))
    flat: List[Any] = []
    workers = config.get("workers")
    slots: int = workers if isinstance(workers, int) else 0
    spans: Dict[int, List[float]] = {}
    lane_of = _Lanes(slots)
    # (a pid is a worker's under the process pool; the thread pool's tasks
    # share the controller's, and on Dask each task has a process of its own)
    by_pid = config.get("pool", "process") == "process" and not config.get("dask")
    for i, attempt, start, stop, outcome, wpid in bars:
        lane = lane_of.place(start, stop, wpid if by_pid else None)
        flat += (i, attempt, _t(start, t0), _t(stop, t0), outcome, lane)
        g = group_of[i]
        if g >= 0:
            span = spans.setdefault(g, [start, stop])
            span[0] = min(span[0], start)
            span[1] = max(span[1], stop)

    # -- output: the attempts of what did not pass first -------------------
    root = tasks_dir(run, journal_path)
    captured = _captured(root, index)
    ended_as: Dict[Tuple[int, int], int] = {(b[0], b[1]): b[4] for b in bars}
    output: Dict[int, List[List[Any]]] = {}
    left = budget
    passed = (_INDEX["pass"], _INDEX["warn"], _INDEX["skip"])
    order = sorted(captured, key=lambda i: (states[i] in passed, i))
    for i in order:
        files = captured[i]
        task_dir = os.path.join(root, key_path(rows[i][0]))
        for number in range(1, attempts[i] + 1):
            out, err = log_paths(task_dir, number)
            entry: List[Any] = []
            for path in (out, err):
                if os.path.basename(path) not in files:
                    entry += (None, None)
                    continue
                text = xunit.read_capped(path, stream_cap) if left > 0 else None
                if text is not None:
                    if len(text) > left:
                        text = None
                    else:
                        left -= len(text)
                entry += (text, path)
            if entry != [None] * 4:
                output.setdefault(i, []).append([number, ended_as.get((i, number)), *entry])

    return {
        "format": 1,
        "generated": now,
        "outcomes": OUTCOMES,
        "colours": PALETTE,
        "run": {
            "id": run.id,
            "suite": suite_name(run),
            "target": xunit.clean(str(run.suite.get("target", ""))),
            "host": run.host,
            "journal": shown(journal_path),
            "created": t0,
            "finished": run.finished_at,
            "duration": round((run.finished_at or end) - t0, 3),
            "end": _t(end, t0),
            "state": run.state,
            "exit_code": run.exit_code,
            "gone": gone,
            "workers": config.get("workers"),
            "pool": config.get("pool"),
            "dask": config.get("dask"),
            "counts": counts,
            "tasks": n,
            "reboots": sum(1 for g in gaps if g["kind"] == "reboot"),
        },
        "sessions": sessions,
        "gaps": gaps,
        "groups": groups,
        "group_spans": [[g, _t(s[0], t0), _t(s[1], t0)] for g, s in sorted(spans.items())],
        "lanes": lane_of.count,
        "tasks": {"key": keys, "state": states, "time": used, "attempts": attempts,
                  "reboots": reboots, "message": messages, "group": group_of},
        "tracebacks": tracebacks,
        "results": results,
        "output": output,
        "bars": flat,
    }


def _worker_pid(detail: Optional[str]) -> Optional[int]:
    """The worker's pid a `running` event names (``{"pid": N}``), or None."""
    if not detail or not detail.startswith('{"pid": '):
        return None
    try:
        return int(detail[8:-1])
    except ValueError:
        return None


class _Lanes:
    """The timeline's lanes: a lane per worker. An attempt goes to the lane
    of the worker that ran it (its pid, from the journal), the lane the
    worker got with its first attempt; a worker seen for the first time (or
    an attempt with no pid: a journal from before pexen recorded it, the
    thread pool's shared pid busy) takes the lowest-numbered lane free when
    it started, a new one first while there are fewer than the run's -j, and
    of the lanes of workers seen before, the one whose worker ended last (a
    worker replaced after a death, a resumed run's new workers)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.until: List[float] = []        # lane -> the end of its last attempt
        self.owned: List[bool] = []         # lane -> a worker's (by pid)
        self.of: Dict[int, int] = {}        # pid -> lane

    @property
    def count(self) -> int:
        return len(self.until)

    def place(self, start: float, stop: float, pid: Optional[int]) -> int:
        until = self.until
        lane = self.of.get(pid) if pid is not None else None
        if lane is None or until[lane] > start + LANE_SLACK:
            lane = self._free(start, pid is not None)
            if pid is not None:
                self.of[pid] = lane
                self.owned[lane] = True
        until[lane] = max(until[lane], stop)
        return lane

    def _free(self, start: float, new_worker: bool) -> int:
        until, owned = self.until, self.owned
        free = [lane for lane in range(len(until)) if until[lane] <= start]
        if new_worker:
            unowned = [lane for lane in free if not owned[lane]]
            if unowned:
                return unowned[0]
            if len(until) < self.slots:
                return self._new()
            if free:
                return max(free, key=lambda lane: (until[lane], -lane))
        elif free:
            return free[0]
        if len(until) >= self.slots > 0:
            # A worker takes its next task a moment before the controller
            # journals the end of its last one: the same slot.
            soon = min(range(len(until)), key=lambda lane: (until[lane], lane))
            if until[soon] <= start + LANE_SLACK:
                return soon
        return self._new()

    def _new(self) -> int:
        self.until.append(0.0)
        self.owned.append(False)
        return len(self.until) - 1


def _captured(root: str, index: Dict[str, int]) -> Dict[int, set]:
    """Task index -> the names of the files in its directory, for the tasks
    whose directory holds any: one walk of the directories that are task
    directories or hold some (not the data tasks keep in theirs), instead of
    two look-ups per attempt (most tasks write nothing: no directory)."""
    index = {key_path(key): i for key, i in index.items()}
    wanted = set()
    for key in index:
        parts = key.split("/")
        for k in range(1, len(parts) + 1):
            wanted.add("/".join(parts[:k]))
    out: Dict[int, set] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel) if rel else root))
        except OSError:
            continue
        files = set()
        for entry in entries:
            name = entry.name
            sub = f"{rel}/{name}" if rel else name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if sub in wanted:
                        stack.append(sub)
                elif name.endswith((".out", ".err")):
                    files.add(name)
            except OSError:
                continue
        i = index.get(rel)
        if i is not None and files:
            out[i] = files
    return out


def _script_json(data: Dict[str, Any]) -> str:
    """`data` as JSON that can sit inside a <script> element: no ``<`` in it
    (so no ``</script>`` or ``<!--`` a test wrote ends it early)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029")


def render(data: Dict[str, Any]) -> str:
    """The page, with `data` in it."""
    import html

    def asset(name: str) -> str:
        with open(os.path.join(_ASSETS, name), encoding="utf-8") as f:
            return f.read()

    run = data["run"]
    title = html.escape(f"{run['suite']}: run {run['id']} ({run['state']}) - pexen")
    colours = "".join(f"--o-{name}:{value};" for name, value in PALETTE.items())
    colours += "".join(f"--{name}:{value};" for name, value in PAGE_COLOURS.items())
    page = asset("report.html")
    for mark, value in (("/*PEXEN-COLOURS*/", colours), ("/*PEXEN-CSS*/", asset("report.css")),
                        ("/*PEXEN-JS*/", asset("report.js")),
                        ("/*PEXEN-DATA*/", _script_json(data)), ("PEXEN-TITLE", title)):
        head, sep, tail = page.partition(mark)
        assert sep, f"{mark} missing from report.html"
        page = head + value + tail
    return page


def write(path: str, data: Dict[str, Any]) -> None:
    """Write the page to `path` atomically (a temporary file beside it, then
    a rename): a reader never sees half a page."""
    page = render(data)
    write_atomically(path, lambda f: f.write(page), ".pexen-html-", ".html")


def export_html(j: Journal, run: RunInfo, journal_path: str, path: str) -> Dict[str, int]:
    """Write run `run`'s page to `path`; the counts of its tasks by state."""
    data = report_data(j, run, journal_path)
    write(path, data)
    return dict(data["run"]["counts"])

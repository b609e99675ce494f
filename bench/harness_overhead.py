#!/usr/bin/env python3
"""What the journaled harness costs per task over the engine alone, and how
long `resume` takes to plan a 100k-task run.

Three measurements, each in a fresh interpreter
(``python bench/harness_overhead.py --one KIND N ...`` prints one JSON line):

- ``engine``: N distinct no-op Python tasks through ``pexen.sched.Sched`` with
  a ``ThreadWorkerPool(workers, spare=3 * workers)`` (what the controller
  uses for the thread pool: ``pexen.harness.suite.default_spare``).
  Timed: ``Sched(tasks)`` + consuming ``run()``; building the tasks is timed
  apart (``build``).
- ``harness``: the same N tasks as a ``module:function`` suite written into a
  temporary directory (the process's cwd, which `parse_suite` records and the
  loader puts on sys.path), run by
  ``pexen.harness.run.start("overhead_suite:tasks", journal,
  Options(workers, pool="thread"), progress=None)`` into a fresh journal file
  in that directory. Timed: the whole ``start()`` (loading the suite, the
  engine's checks, opening/creating the journal, the run rows, the run, the
  last commits), split into phases by wrapping the functions it calls.
- ``resume``: a 100k-task run started like ``harness`` and SIGKILLed when
  about half its tasks have passed (the journal is then copied with SQLite's
  backup API, so every repetition resumes the same state); ``resume()`` on a
  fresh copy, timed from its call until the engine's ``run()`` begins: opening
  the journal, picking the run, rebuilding the suite (``load_suite``),
  claiming the run, ``_plan_resume`` (reading rows, matching keys, moving the
  interrupted tasks back to pending, killing survivors), the engine's checks
  of the tasks left, and the controller's set-up. Imports are done before the
  clock starts (printed apart). The resumed run then goes to its end
  (checked, not part of the figure).

Before each timed run the process warms up on a 200-task run (imports, code
paths). Targets, PASS/FAIL: at least 15k tasks/s journaled; the engine's run()
with the journal listener (and the last commits) at most 2x the engine alone
per task; resume planning of a 100k-task run at most 1 s. The whole start()
against the engine is printed, without a target: the whole-process figures
of ``bench/peers.py`` are the ones users feel.

Usage::

    python bench/harness_overhead.py                    # 10k and 100k
    python bench/harness_overhead.py --quick            # 10k, 1 rep; resume at 20k
    python bench/harness_overhead.py --sizes 10000 --workers 4
    python bench/harness_overhead.py --profile 100000   # cProfile, in-process

The journal is synchronous=FULL: its cost depends on the disk under --dir
(default: the temp dir), which the header names.

It is a report, not a test: the exit code is 0 whatever the figures, unless a
measurement crashed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
SUITE_MODULE = "overhead_suite"
WARM_MODULE = "overhead_warm"
WARM_N = 200
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (10_000,)
RESUME_N = 100_000
QUICK_RESUME_N = 20_000
KILL_FRACTION = 0.5

TARGET_TASKS_PER_S = 15_000.0   # journaled
TARGET_VS_ENGINE = 2.0          # journaled per-task cost / the engine's
TARGET_RESUME_S = 1.0           # resume planning of a 100k-task run

SUITE_TEXT = textwrap.dedent('''
    """{n} distinct no-op tasks (written by bench/harness_overhead.py)."""


    def _make(i):
        def noop():
            return None

        noop.__name__ = noop.__qualname__ = f"noop{{i}}"
        return noop


    def tasks():
        return [_make(i) for i in range({n})]
''')


def _import_pexen() -> None:
    """Make `pexen` importable also from a checkout that is not installed."""
    try:
        import pexen  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO))


def code_version() -> str:
    """The checkout's commit (with -dirty if modified), for the header."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    try:
        import pexen  # noqa: F401
    except ImportError:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                          env.get("PYTHONPATH")]))
    return env


def write_suite(directory: Path, module: str, n: int) -> None:
    (directory / f"{module}.py").write_text(SUITE_TEXT.format(n=n))


def build_tasks(n: int) -> List[Callable[[], None]]:
    """The tasks of the suite, built in this process (for the engine alone)."""
    ns: Dict[str, Any] = {}
    exec(SUITE_TEXT.format(n=n), ns)
    return ns["tasks"]()


# -- timing what pexen calls (in a child) --------------------------------------


class Phases:
    """Wraps functions so that calls to them are timed (cumulative). A call
    made inside another timed call is labelled with the path of the callers
    ("plan_resume/journal.tasks"); `marks` holds when each label was first
    entered."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}
        self.marks: Dict[str, float] = {}
        self._stack: List[str] = []
        self._undo: List[Tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        orig = getattr(owner, name, None)
        if orig is None:  # not in this version of pexen: not timed
            return
        seconds, calls, marks, stack = self.seconds, self.calls, self.marks, self._stack
        main = threading.main_thread()

        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not main:
                return orig(*args, **kwargs)
            path = "/".join(stack + [label])
            stack.append(label)
            t0 = time.perf_counter()
            marks.setdefault(path, t0)
            try:
                return orig(*args, **kwargs)
            finally:
                seconds[path] = seconds.get(path, 0.0) + time.perf_counter() - t0
                calls[path] = calls.get(path, 0) + 1
                stack.pop()

        self._undo.append((owner, name, orig))
        setattr(owner, name, timed)

    def mark(self, label: str) -> None:
        self.marks.setdefault("/".join(self._stack + [label]), time.perf_counter())

    def undo(self) -> None:
        for owner, name, orig in reversed(self._undo):
            setattr(owner, name, orig)
        self._undo.clear()


def instrument(phases: Phases, writers: List[Any]) -> None:
    """Time the steps of start() and resume(); mark when the engine's run()
    begins; keep the journal writers (for their commit counts)."""
    from pexen.harness import controller, run
    from pexen.journal import Journal, JournalWriter

    phases.wrap(run, "load_suite_groups", "load_suite")
    phases.wrap(run, "_check_tasks", "check_tasks")
    phases.wrap(run, "_open", "open")
    phases.wrap(run, "pick_run", "pick_run")
    phases.wrap(run, "_plan_resume", "plan_resume")
    phases.wrap(run, "kill_leftovers", "kill_leftovers")
    phases.wrap(run, "_kill_survivors", "kill_leftovers")  # older name
    phases.wrap(run, "_skip_unreachable", "skip_unreachable")
    phases.wrap(Journal, "create_run", "create_run")
    phases.wrap(Journal, "claim_run", "claim_run")
    phases.wrap(Journal, "resume_rows", "journal.tasks")
    phases.wrap(Journal, "writer", "journal.writer")
    phases.wrap(controller, "execute", "execute")
    phases.wrap(JournalWriter, "flush", "writer.flush")
    phases.wrap(JournalWriter, "close", "writer.close")
    orig_writer = Journal.writer

    def keep_writer(self: Any, run_id: int, *args: Any, **kwargs: Any) -> Any:
        w = orig_writer(self, run_id, *args, **kwargs)
        writers.append(w)
        return w

    Journal.writer = keep_writer  # type: ignore[method-assign]
    phases._undo.append((Journal, "writer", orig_writer))

    base = controller.Sched

    class MarkingSched(base):  # type: ignore[misc, valid-type]
        def run(self, pool: Any = None) -> Any:
            phases.mark("engine_run")
            return super().run(pool)

    controller.Sched = MarkingSched
    phases._undo.append((controller, "Sched", base))


def check_run(journal_path: str, n_expected: Optional[int] = None) -> Dict[str, int]:
    """The state counts of the newest run; raises unless all passed."""
    import pexen.journal

    with pexen.journal.open(journal_path, create=False) as j:
        run = j.newest()
        counts = j.counts(run.id)
    if set(counts) != {"pass"} or (n_expected is not None and counts["pass"] != n_expected):
        raise RuntimeError(f"the run did not pass as expected: {counts}")
    return counts


# -- the measurements (each in a fresh interpreter) -----------------------------


def measure_engine(n: int, reps: int, workers: int) -> Dict[str, Any]:
    _import_pexen()
    from pexen.sched import Sched, ThreadWorkerPool

    def once(tasks: List[Any]) -> Tuple[float, float]:
        t0 = time.perf_counter()
        sched = Sched(tasks)
        t1 = time.perf_counter()
        count = 0
        from pexen.harness.suite import default_spare

        spare = default_spare("thread", workers)
        for res in sched.run(ThreadWorkerPool(workers=workers, spare=spare)):
            count += 1
            if res.excinfo is not None:
                raise RuntimeError(f"a task failed: {res.excinfo}")
        t2 = time.perf_counter()
        if count != len(tasks):
            raise RuntimeError(f"{count} results for {len(tasks)} tasks")
        return t1 - t0, t2 - t1

    once(build_tasks(WARM_N))
    totals, adds, builds = [], [], []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        tasks = build_tasks(n)
        builds.append(time.perf_counter() - t0)
        add, run = once(tasks)
        adds.append(add)
        totals.append(add + run)
        del tasks
    return {"kind": "engine", "n": n, "reps": reps, "workers": workers,
            "total_s": totals, "add_s": adds, "build_s": builds}


def measure_harness(n: int, reps: int, workers: int, base: Optional[str]) -> Dict[str, Any]:
    _import_pexen()
    from pexen.harness import run
    from pexen.harness.run import Options

    tmp = Path(tempfile.mkdtemp(prefix="pexen-overhead-", dir=base))
    try:
        os.chdir(tmp)
        write_suite(tmp, SUITE_MODULE, n)
        write_suite(tmp, WARM_MODULE, WARM_N)
        opts = Options(workers=workers, pool="thread")
        _, code = run.start(f"{WARM_MODULE}:tasks", str(tmp / "warm.sqlite"), opts,
                            progress=None)
        if code != 0:
            raise RuntimeError(f"the warm-up run exited {code}")
        totals, phase_list, commits, events = [], [], [], []
        for rep in range(reps):
            journal = str(tmp / f"journal{rep}.sqlite")
            # The module is imported once per process; load_suite calls tasks()
            # again each time, so every repetition builds its tasks anew.
            phases = Phases()
            writers: List[Any] = []
            instrument(phases, writers)
            gc.collect()
            t0 = time.perf_counter()
            try:
                _, code = run.start(f"{SUITE_MODULE}:tasks", journal, opts, progress=None)
            finally:
                total = time.perf_counter() - t0
                phases.undo()
            if code != 0:
                raise RuntimeError(f"the run exited {code}")
            check_run(journal, n)
            totals.append(total)
            p = phases.seconds
            p["setup"] = phases.marks["execute/engine_run"] - phases.marks["execute"]
            p["drain"] = p.get("execute/writer.flush", 0.0) + p.get("execute/writer.close", 0.0)
            p["loop"] = p["execute"] - p["setup"] - p["drain"]
            phase_list.append(p)
            commits.append(sum(w.commits for w in writers))
            events.append(sum(w.events_written for w in writers))
            shutil.rmtree(f"{journal}.d", ignore_errors=True)
        return {"kind": "harness", "n": n, "reps": reps, "workers": workers,
                "total_s": totals, "phases": phase_list, "commits": commits,
                "events": events, "fs": fs_type(tmp)}
    finally:
        os.chdir("/")
        shutil.rmtree(tmp, ignore_errors=True)


def make_journal(n: int, directory: str, workers: int) -> None:
    """Start a run of n tasks (the parent kills it partway)."""
    _import_pexen()
    from pexen.harness import run
    from pexen.harness.run import Options

    os.chdir(directory)
    run.start(f"{SUITE_MODULE}:tasks", str(Path(directory) / "killed.sqlite"),
              Options(workers=workers, pool="thread"), progress=None)


def measure_resume(journal: str) -> Dict[str, Any]:
    """resume() on a journal whose controller was killed: time until the
    engine's run() begins, by step; then let it finish."""
    t0 = time.perf_counter()
    _import_pexen()
    import alembic.command  # noqa: F401  (imported lazily by the first open)
    import alembic.config  # noqa: F401
    import alembic.script  # noqa: F401

    import pexen.harness.run as run
    import pexen.journal  # noqa: F401
    imports = time.perf_counter() - t0
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        before = dict(con.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    finally:
        con.close()
    phases = Phases()
    writers: List[Any] = []
    instrument(phases, writers)
    gc.collect()
    t0 = time.perf_counter()
    _, code = run.resume(journal, progress=None, notify=lambda msg: None)
    t_end = time.perf_counter()
    phases.undo()
    if code != 0:
        raise RuntimeError(f"the resumed run exited {code}")
    counts = check_run(journal)
    started = phases.marks.get("execute/engine_run")
    if started is None:
        raise RuntimeError("the engine's run() never began")
    # The controller's set-up: from execute() to the engine's run(), less the
    # writer it opens.
    phases.seconds["setup"] = (started - phases.marks["execute"]
                               - phases.seconds.get("execute/journal.writer", 0.0))
    return {"kind": "resume", "imports_s": imports, "planning_s": started - t0,
            "phases": phases.seconds, "calls": phases.calls, "rest_s": t_end - started,
            "before": before, "after": counts, "fs": fs_type(Path(journal).parent)}


def fs_type(path: Path) -> str:
    """The filesystem type under `path` (Linux; '?' elsewhere)."""
    try:
        best, kind = "", "?"
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) \
                        and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
        return kind
    except OSError:
        return "?"


# -- the parent ----------------------------------------------------------------


def run_child(args: List[str], timeout: float = 1800) -> Tuple[Optional[Dict[str, Any]], str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=child_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, proc.stderr or f"exit code {proc.returncode}, no output"
    try:
        return json.loads(lines[-1]), proc.stderr
    except json.JSONDecodeError as exc:
        return None, f"bad output {lines[-1]!r}: {exc}\n{proc.stderr}"


def prepare_resume_journal(n: int, workers: int, base: Optional[str]
                           ) -> Tuple[Optional[Path], str]:
    """A directory holding the suite and `base.sqlite`: a run of n tasks
    whose controller was SIGKILLed with about KILL_FRACTION of them passed."""
    tmp = Path(tempfile.mkdtemp(prefix="pexen-resume-", dir=base))
    write_suite(tmp, SUITE_MODULE, n)
    killed = tmp / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--one",
                             "make", str(n), "--workers", str(workers), "--dir", str(tmp)],
                            env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    passed = 0
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if not killed.exists():
                continue
            try:
                con = sqlite3.connect(f"file:{killed}?mode=ro", uri=True, timeout=5)
                try:
                    passed = con.execute("SELECT count(*) FROM tasks WHERE state = 'pass'"
                                         ).fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:
                continue
            if passed >= n * KILL_FRACTION:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    if proc.returncode != -signal.SIGKILL:
        shutil.rmtree(tmp, ignore_errors=True)
        return None, (f"the {n}-task run was not killed partway (exit {proc.returncode}, "
                      f"{passed} passed): {err.strip()[-500:]}")
    src = sqlite3.connect(killed)
    dst = sqlite3.connect(tmp / "base.sqlite")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    os.chmod(tmp / "base.sqlite", 0o600)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{killed}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(f"{killed}.d", ignore_errors=True)
    return tmp, ""


def per_task_us(res: Optional[Dict[str, Any]]) -> Optional[float]:
    if res is None:
        return None
    return statistics.median(res["total_s"]) / res["n"] * 1e6


def fmt(val: Optional[float], spec: str, width: int = 0) -> str:
    return ("-" if val is None else format(val, spec)).rjust(width)


def verdict(ok: Optional[bool]) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


HARNESS_PHASES = (
    ("load_suite", "load_suite (import + tasks())"),
    ("check_tasks", "_check_tasks (a probe Sched)"),
    ("open", "open the journal (create, migrate)"),
    ("create_run", "create_run (run + task rows)"),
    ("execute", "controller.execute (the run)"),
)
EXECUTE_PARTS = (
    ("setup", "set-up (writer, wrappers, Sched)"),
    ("loop", "the engine's run() + listener"),
    ("drain", "last commits (flush, close)"),
)

RESUME_PHASES = (  # (key, label, indent)
    ("open", "open the journal", 0),
    ("pick_run", "pick_run", 0),
    ("load_suite", "load_suite (rebuild the suite)", 0),
    ("claim_run", "claim_run", 0),
    ("plan_resume", "_plan_resume (rows, keys, transitions)", 0),
    ("plan_resume/journal.tasks", "of which reading the task rows", 1),
    ("plan_resume/journal.writer", "of which Journal.writer() set-up", 1),
    ("plan_resume/kill_leftovers", "of which killing what was left", 1),
    ("plan_resume/skip_unreachable", "of which _skip_unreachable", 1),
    ("check_tasks", "_check_tasks (a probe Sched)", 0),
    ("execute/journal.writer", "controller: Journal.writer() set-up", 0),
    ("setup", "controller: the rest of its set-up", 0),
)


def main_parent(args: argparse.Namespace) -> int:
    try:
        load: Optional[float] = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    if load is not None and load > 0.5:
        print(f"warning: load average {load:.2f} before starting: something else is "
              "using the CPUs, the figures will be noisy", file=sys.stderr)
    sizes = sorted(set(args.sizes))
    reps = args.reps
    crashed = False
    results: Dict[Tuple[str, int], Optional[Dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for n in sizes:
        r = reps or (1 if args.quick else (3 if n <= 20_000 else 2))
        for kind in ("engine", "harness"):
            print(f"{kind} n={n} reps={r} ...", end=" ", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            extra = ["--dir", args.dir] if args.dir else []
            res, err = run_child(["--one", kind, str(n), "--reps", str(r),
                                  "--workers", str(args.workers), *extra])
            results[(kind, n)] = res
            crashed |= res is None
            print(f"{time.perf_counter() - t0:.1f} s"
                  + ("" if res is not None else " CRASHED"), file=sys.stderr, flush=True)
            if err.strip():
                print("    " + err.strip().replace("\n", "\n    "), file=sys.stderr)

    resume_n = (args.resume_size if args.resume_size is not None
                else QUICK_RESUME_N if args.quick else RESUME_N)
    resume_runs: List[Dict[str, Any]] = []
    resume_err = ""
    if resume_n:
        print(f"resume: a {resume_n}-task run killed at ~{KILL_FRACTION:.0%} ...", end=" ",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        directory, resume_err = prepare_resume_journal(resume_n, args.workers, args.dir)
        print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        if directory is not None:
            try:
                for rep in range(args.resume_reps):
                    copy = directory / f"resume{rep}.sqlite"
                    shutil.copyfile(directory / "base.sqlite", copy)
                    os.chmod(copy, 0o600)
                    print(f"resume rep {rep + 1} ...", end=" ", file=sys.stderr, flush=True)
                    t0 = time.perf_counter()
                    res, err = run_child(["--one", "resume", str(resume_n),
                                          "--journal", str(copy)])
                    print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
                    if res is None:
                        resume_err = err
                        break
                    resume_runs.append(res)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        crashed |= not resume_runs
        if resume_err.strip():
            print("    " + resume_err.strip().replace("\n", "\n    "), file=sys.stderr)
    print(f"total time {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    report(args, sizes, results, resume_n, resume_runs, load)
    return 1 if crashed else 0


def report(args: argparse.Namespace, sizes: List[int],
           results: Dict[Tuple[str, int], Optional[Dict[str, Any]]], resume_n: int,
           resume_runs: List[Dict[str, Any]], load: Optional[float]) -> None:
    fs = next((r["fs"] for r in results.values() if r and "fs" in r), None) or (
        resume_runs[0]["fs"] if resume_runs else "?")
    print()
    print(f"pexen harness overhead: no-op Python tasks, {args.workers} worker threads "
          f"(spare {3 * args.workers}); journal on {fs} ({args.dir or tempfile.gettempdir()})")
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs"
          + ("" if load is None else f", 1-min load average {load:.2f} before starting")
          + f"; pexen {code_version()}")
    print("engine = Sched(tasks) + consuming run() with ThreadWorkerPool; journaled = "
          "pexen.harness.run.start(...) of a module:function suite, whole call; "
          "median of the reps, each kind in a fresh process")
    print()
    head = (f"{'tasks':>6} | {'engine tasks/s':>14} {'µs/task':>8} | "
            f"{'journaled tasks/s':>17} {'µs/task':>8} | {'ratio':>5} | "
            f"{'commits':>7} {'events/commit':>13}")
    print(head)
    print("-" * len(head))
    for n in sizes:
        eng, har = results.get(("engine", n)), results.get(("harness", n))
        e_us, h_us = per_task_us(eng), per_task_us(har)
        ratio = h_us / e_us if e_us and h_us is not None else None
        commits = statistics.median(har["commits"]) if har else None
        events = statistics.median(har["events"]) if har else None
        per_commit = events / commits if commits else None
        print(f"{size_label(n):>6} | {fmt(1e6 / e_us if e_us else None, ',.0f', 14)} "
              f"{fmt(e_us, '.1f', 8)} | {fmt(1e6 / h_us if h_us else None, ',.0f', 17)} "
              f"{fmt(h_us, '.1f', 8)} | {fmt(ratio, '.2f', 5)} | "
              f"{fmt(commits, '.0f', 7)} {fmt(per_commit, '.1f', 13)}")
    print("(engine: building the tasks, not timed, took "
          + ", ".join(f"{fmt(per_task_us_of(results.get(('engine', n)), 'build_s'), '.1f')}"
                      f" µs/task at {size_label(n)}" for n in sizes)
          + "; the journaled figure includes building them, in load_suite)")

    print()
    print("where start() spends its time (median µs/task; 'other' = not in a timed step)")
    head = f"{'step':<40}" + "".join(f" | {size_label(n):>8}" for n in sizes)
    print(head)
    print("-" * len(head))
    rows = list(HARNESS_PHASES[:-1]) + [HARNESS_PHASES[-1]] + [
        (k, "  " + label) for k, label in EXECUTE_PARTS] + [("other", "other")]
    for key, label in rows:
        line = f"{label:<40}"
        for n in sizes:
            har = results.get(("harness", n))
            if har is None:
                line += f" | {'-':>8}"
                continue
            if key == "other":
                vals = [t - sum(p.get(k, 0.0) for k, _ in HARNESS_PHASES)
                        for t, p in zip(har["total_s"], har["phases"])]
            else:
                vals = [p.get(key, 0.0) for p in har["phases"]]
            line += f" | {statistics.median(vals) / n * 1e6:8.1f}"
        print(line)

    planning = None
    if resume_runs:
        print()
        first = resume_runs[0]
        before = ", ".join(f"{v} {k}" for k, v in sorted(first["before"].items()))
        print(f"resume of a {size_label(resume_n)}-task run killed partway ({before}); "
              f"median of {len(resume_runs)} fresh copies, ms")
        head = f"{'step':<48} | {'ms':>8}"
        print(head)
        print("-" * len(head))
        for key, label, indent in RESUME_PHASES:
            vals = [r["phases"].get(key, 0.0) for r in resume_runs]
            calls = first["calls"].get(key, 0)
            text = ("  " * indent + label
                    + (f" ({calls} calls)" if calls > 1 else ""))
            print(f"{text:<48} | {statistics.median(vals) * 1e3:8.1f}")
        three = [r["phases"]["open"] + r["phases"]["load_suite"] + r["phases"]["plan_resume"]
                 for r in resume_runs]
        planning = statistics.median(r["planning_s"] for r in resume_runs)
        print(f"{'open + load_suite + _plan_resume':<48} | "
              f"{statistics.median(three) * 1e3:8.1f}")
        print(f"{'total: resume() called -> engine run() begins':<48} | "
              f"{planning * 1e3:8.1f}")
        imports = statistics.median(r["imports_s"] for r in resume_runs)
        print(f"(imports before the clock: {imports * 1e3:.0f} ms; "
              f"the rest of the resumed run: "
              f"{statistics.median(r['rest_s'] for r in resume_runs):.1f} s)")

    print()
    print("targets:")
    large = max(sizes)
    note = "" if large == 100_000 else f"  (measured at {size_label(large)}; target at 100k)"
    har_us = per_task_us(results.get(("harness", large)))
    rate = 1e6 / har_us if har_us else None
    ok = None if rate is None else rate >= TARGET_TASKS_PER_S
    print(f"  [{verdict(ok)}] journaled at {size_label(large)}: {fmt(rate, ',.0f')} tasks/s "
          f"(target >= {TARGET_TASKS_PER_S:,.0f}){note}")
    for n in sizes:
        eng, har = results.get(("engine", n)), results.get(("harness", n))
        e_us = per_task_us(eng)
        # the target: the engine's run() with the journal listener, and the
        # last commits it leaves, against the engine alone (Sched + run())
        r_us = None if har is None else statistics.median(
            p.get("loop", 0.0) + p.get("drain", 0.0) for p in har["phases"]) / n * 1e6
        ratio = r_us / e_us if e_us and r_us is not None else None
        ok = None if ratio is None else ratio <= TARGET_VS_ENGINE
        print(f"  [{verdict(ok)}] the engine's run() + journal listener + last commits / "
              f"engine alone per task at {size_label(n)}: "
              f"{fmt(r_us, '.1f')} / {fmt(e_us, '.1f')} µs = {fmt(ratio, '.2f')}x "
              f"(target <= {TARGET_VS_ENGINE:g}x)")
        h_us = per_task_us(har)
        whole = h_us / e_us if e_us and h_us is not None else None
        print(f"  [info] whole start() / engine alone at {size_label(n)}: "
              f"{fmt(h_us, '.1f')} / {fmt(e_us, '.1f')} µs = {fmt(whole, '.2f')}x "
              "(no target: bench/peers.py measures whole runs)")
    if not resume_n:   # --resume-size 0
        return
    ok = None if planning is None else planning <= TARGET_RESUME_S
    note = ("" if resume_n == RESUME_N else
            f"  (measured at {size_label(resume_n)}; target at 100k)")
    print(f"  [{verdict(ok)}] resume planning of a {size_label(resume_n)}-task run: "
          f"{fmt(planning, '.2f')} s (target <= {TARGET_RESUME_S:g} s){note}")
    if resume_runs:
        # the narrower reading: open + rebuild + match, without the engine's
        # check of the tasks left and the controller's set-up
        narrow = statistics.median(r["phases"]["open"] + r["phases"]["load_suite"]
                                   + r["phases"]["plan_resume"] for r in resume_runs)
        print(f"  [{verdict(narrow <= TARGET_RESUME_S)}] of which open + rebuild + match: "
              f"{narrow:.2f} s (target <= {TARGET_RESUME_S:g} s){note}")


def per_task_us_of(res: Optional[Dict[str, Any]], key: str) -> Optional[float]:
    if res is None:
        return None
    return statistics.median(res[key]) / res["n"] * 1e6


# -- profiling (in-process) ------------------------------------------------------


def main_profile(n: int, args: argparse.Namespace) -> int:
    """cProfile one journaled start() of n tasks: the main thread (engine,
    listener), the journal writer thread, the worker threads."""
    import cProfile
    import pstats

    _import_pexen()
    from pexen.harness import run
    from pexen.harness.run import Options

    tmp = Path(tempfile.mkdtemp(prefix="pexen-overhead-", dir=args.dir))
    try:
        os.chdir(tmp)
        write_suite(tmp, SUITE_MODULE, n)
        write_suite(tmp, WARM_MODULE, WARM_N)
        opts = Options(workers=args.workers, pool="thread")
        run.start(f"{WARM_MODULE}:tasks", str(tmp / "warm.sqlite"), opts, progress=None)
        gc.collect()
        profs: List[Tuple[str, cProfile.Profile]] = []

        def thread_profile(frame: Any, event: str, arg: Any) -> None:
            sys.setprofile(None)
            prof = cProfile.Profile()
            profs.append((threading.current_thread().name, prof))
            prof.enable()

        threading.setprofile(thread_profile)
        main_prof = cProfile.Profile()
        t0 = time.perf_counter()
        main_prof.enable()
        try:
            run.start(f"{SUITE_MODULE}:tasks", str(tmp / "journal.sqlite"), opts,
                      progress=None)
        finally:
            main_prof.disable()
            threading.setprofile(None)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
        print(f"profile of a journaled start() of {n} no-op tasks, {args.workers} worker "
              f"threads: {wall:.2f} s wall under cProfile ({wall / n * 1e6:.1f} µs/task); "
              "tottime/n = µs per task")
        groups: Dict[str, List[cProfile.Profile]] = {}
        for name, prof in profs:
            group = ("journal writer" if "journal-writer" in name else
                     "worker threads" if "worker" in name else f"other threads ({name})")
            groups.setdefault(group, []).append(prof)
        for title, plist in [("main thread (load, checks, engine, listener)", [main_prof])] \
                + sorted(groups.items()):
            stats = pstats.Stats(plist[0], stream=sys.stdout)
            for prof in plist[1:]:
                stats.add(prof)
            print(f"\n== {title}: top {args.top} by tottime ==")
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        os.chdir("/")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# -- command line -----------------------------------------------------------------


def parse_sizes(text: str) -> List[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be integers >= 1")
    return sizes


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-task cost of the journaled harness over the engine alone, "
                    "and the time resume takes to plan a 100k-task run.")
    parser.add_argument("--sizes", type=parse_sizes, default=None,
                        help="comma-separated task counts; default 10000,100000")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker threads (engine and harness); default 2")
    parser.add_argument("--quick", action="store_true",
                        help="10k only, 1 rep; resume planning at 20k tasks")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions (default: 3 up to 20k tasks, 2 above)")
    parser.add_argument("--resume-size", type=int, default=None,
                        help=f"tasks of the resumed run (default {RESUME_N}; 0 skips it)")
    parser.add_argument("--resume-reps", type=int, default=3,
                        help="resumes of fresh copies of the killed run (default 3)")
    parser.add_argument("--dir", default=None,
                        help="where the suites and journals go (default: the temp dir)")
    parser.add_argument("--profile", type=int, default=None, metavar="N",
                        help="cProfile one journaled run of N tasks in this process")
    parser.add_argument("--top", type=int, default=25,
                        help="entries per thread group with --profile; default 25")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "N"),
                        help="one measurement, JSON on stdout (used internally): "
                             "engine, harness, make or resume")
    parser.add_argument("--journal", help="(with --one resume) the journal to resume")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    if args.resume_reps < 1:
        parser.error("--resume-reps must be >= 1")
    if args.dir is not None:
        args.dir = os.path.abspath(args.dir)
    if args.one is not None:
        kind, n_text = args.one
        n = int(n_text.replace("_", ""))
        if kind == "engine":
            res = measure_engine(n, args.reps or 1, args.workers)
        elif kind == "harness":
            res = measure_harness(n, args.reps or 1, args.workers, args.dir)
        elif kind == "make":
            make_journal(n, args.dir, args.workers)
            return 0
        elif kind == "resume":
            res = measure_resume(args.journal)
        else:
            parser.error(f"unknown kind {kind!r}")
        print(json.dumps(res))
        return 0
    if args.profile is not None:
        return main_profile(args.profile, args)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How the cost per task of `pexen.sched.Sched` grows with the number of tasks.

Runs no-op tasks through `Sched` with a `ThreadWorkerPool` in six shapes
(independent, one long chain, fan-in, fan-out, lock-heavy, and independent
tasks split into 100 exclusivity groups, each run by a thread pool of its own
of the same size) at 1k, 10k and 100k tasks, next to a plain
`concurrent.futures.ThreadPoolExecutor` running the same number of no-op
callables with the same number of threads, and prints a table:
microseconds per task, the ratio of the per-task cost at the largest size to
the smallest, the ratio to the executor, and the peak RSS, with the targets
marked PASS/FAIL.

Every (shape, size) is measured in a fresh interpreter
(``python bench/sched_scaling.py --one SHAPE N``) that prints its timings and
its peak RSS (``ru_maxrss``) as one JSON line, so that one measurement's memory
does not leak into the next one's peak; up to 20k tasks in three of them, their
repetitions pooled (see `default_procs`).

What is timed: ``Sched(tasks)`` (the checks of ``add_tasks``) plus consuming
``run()`` to the end (planning, thread start, dispatch, the calls, results,
pool shutdown). Not timed: creating the tasks and assigning their metadata.
For the executor: creating it, submitting all, collecting all, shutting down.

Usage::

    python bench/sched_scaling.py                 # full run (a few minutes)
    python bench/sched_scaling.py --quick         # 1k and 10k only
    python bench/sched_scaling.py --workers 4 --spare 4 --sizes 1000,100000
    python bench/sched_scaling.py --profile chain 100000   # cProfile, in-process

It is a report, not a test: the exit code is 0 whatever the figures, unless a
measurement crashed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SHAPES = ("independent", "chain", "fan-in", "fan-out", "lock-heavy", "groups")
NGROUPS = 100  # the "groups" shape: the tasks split into this many TaskGroups
BASELINE = "threadpoolexecutor"
# Extra row: independent tasks that all share one __name__ (so Sched has to
# invent 'noop#2', 'noop#3', ... keys); measured only at small sizes.
SAMENAME = "independent-samename"
SAMENAME_MAX = 10_000
ALL_CASES = SHAPES + (BASELINE, SAMENAME)
NLOCKS = 10

DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)

# Targets (see the brief in bench/README.md).
TARGET_US_INDEPENDENT = 25.0     # µs/task, independent, at 100k
TARGET_GROWTH = 1.3              # per-task cost largest size / smallest, any shape
TARGET_VS_TPE = 2.0              # per-task cost / ThreadPoolExecutor's, independent
TARGET_RSS_MB = 150.0            # peak RSS at 100k, any shape


def default_procs(n: int) -> int:
    """Fresh processes per measurement. A run of 1k tasks lasts tens of ms, and
    where the OS puts its three threads (one core or two) stays the same for the
    whole process and changes its cost by up to 2x; a run of 100k tasks lasts
    seconds and averages over that within the process. The repetitions of
    several processes are pooled, so that one placement does not decide the
    figure of a small size."""
    return 3 if n <= 20_000 else 1


def default_reps(n: int) -> int:
    """Repetitions per measurement: fewer for the big sizes."""
    if n <= 2_000:
        return 7
    if n <= 20_000:
        return 5
    return 3


# -- building the tasks (never timed) ----------------------------------------


def _noop_factory(i: int, distinct_name: bool) -> Callable[[], None]:
    def noop():
        return None

    if distinct_name:
        # Distinct names give distinct keys without Sched having to number
        # them (see the SAMENAME row for what numbering costs).
        noop.__name__ = noop.__qualname__ = f"noop{i}"
    return noop


def build_tasks(shape: str, n: int, workers: int = 2, spare: int = 2) -> List[Any]:
    """n distinct no-op callables with the metadata of `shape` (for "groups",
    NGROUPS TaskGroups holding them, each with a thread pool of `workers` and
    `spare`)."""
    from pexen.sched.meta import assign_val

    tasks = [_noop_factory(i, shape != SAMENAME) for i in range(n)]
    if shape in ("independent", SAMENAME, BASELINE):
        pass
    elif shape == "groups":
        from pexen.sched import TaskGroup

        size = -(-n // NGROUPS)  # the last groups may be smaller (or empty)
        return [TaskGroup(f"g{k}", tasks[k * size:(k + 1) * size], pool="thread",
                          workers=workers, spare=spare) for k in range(NGROUPS)]
    elif shape == "chain":
        # Task i requires p{i-1} and provides p{i}; the last one provides
        # nothing (a provide nobody requires would only add a warning).
        for i, task in enumerate(tasks):
            assign_val(task,
                       requires=[f"p{i - 1}"] if i > 0 else [],
                       provides=[f"p{i}"] if i < n - 1 else [])
    elif shape == "fan-in":
        # n-1 producers, each with its own token; one consumer needing them all.
        for i, task in enumerate(tasks[:-1]):
            assign_val(task, provides=[f"t{i}"])
        assign_val(tasks[-1], requires=[f"t{i}" for i in range(n - 1)])
    elif shape == "fan-out":
        # One producer of 'x'; n-1 consumers of it.
        assign_val(tasks[0], provides=["x"])
        for task in tasks[1:]:
            assign_val(task, requires=["x"])
    elif shape == "lock-heavy":
        for i, task in enumerate(tasks):
            assign_val(task, claims=[f"lock{i % NLOCKS}"])
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return tasks


# -- one measurement (runs in a fresh interpreter) ---------------------------


def _import_pexen() -> None:
    """Make `pexen` importable also from a checkout that is not installed."""
    try:
        import pexen  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def time_sched(tasks: List[Any], workers: int, spare: int) -> Tuple[float, float]:
    """(seconds in Sched(tasks), seconds consuming run()); checks the results."""
    from pexen.sched import Sched, TaskGroup, ThreadWorkerPool

    t0 = time.perf_counter()
    sched = Sched(tasks)
    t1 = time.perf_counter()
    count = failed = 0
    for res in sched.run(ThreadWorkerPool(workers=workers, spare=spare)):
        count += 1
        if res.excinfo is not None:
            failed += 1
    t2 = time.perf_counter()
    expected = sum(len(t.tasks) if isinstance(t, TaskGroup) else 1 for t in tasks)
    if count != expected or failed:
        raise RuntimeError(f"{count} results ({failed} failed) for {expected} tasks")
    return t1 - t0, t2 - t1


def time_executor(tasks: List[Any], workers: int) -> float:
    """Seconds for a ThreadPoolExecutor to run all tasks (submit all, then
    collect all)."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(task) for task in tasks]
        for fut in futures:
            fut.result()
    t1 = time.perf_counter()
    return t1 - t0


def max_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def current_rss_kib() -> Optional[int]:
    """The resident set size now, in KiB (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


class GcTimer:
    """Time spent in the cyclic garbage collector (any thread), and how often
    each generation was collected, while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)


def measure_one(shape: str, n: int, reps: int, workers: int, spare: int,
                gc_mode: str = "on") -> Dict[str, Any]:
    """Time `reps` runs of `n` tasks of `shape`; return the figures."""
    _import_pexen()
    rss_start = max_rss_kib()
    # Warm up (imports, code paths, thread machinery) with a small run.
    warm = build_tasks(shape, min(n, 200), workers, spare)
    if shape == BASELINE:
        time_executor(warm, workers)
    else:
        time_sched(warm, workers, spare)
    del warm
    adds: List[float] = []
    runs: List[float] = []
    gcs: List[float] = []
    gc_counts = [0, 0, 0]
    rss_tasks: Optional[int] = None
    for rep in range(reps):
        tasks = build_tasks(shape, n, workers, spare)
        gc.collect()
        if rep == 0:
            # Only the first: later ones count the heap an earlier run left.
            rss_tasks = current_rss_kib()
        if gc_mode == "freeze":
            gc.freeze()  # the tasks are no longer traversed by collections
        elif gc_mode == "off":
            gc.disable()
        with GcTimer() as gc_timer:
            if shape == BASELINE:
                adds.append(0.0)
                runs.append(time_executor(tasks, workers))
            else:
                add, run = time_sched(tasks, workers, spare)
                adds.append(add)
                runs.append(run)
        gc.enable()
        gc.unfreeze()
        gcs.append(gc_timer.seconds)
        gc_counts = [a + b for a, b in zip(gc_counts, gc_timer.collections)]
        del tasks
    gc.collect()
    totals = [a + r for a, r in zip(adds, runs)]
    return {
        "shape": shape,
        "n": n,
        "reps": reps,
        "workers": workers,
        "spare": spare,
        "total_s": totals,
        "add_s": adds,
        "run_s": runs,
        "gc_s": gcs,
        "gc_collections": gc_counts,
        "gc_mode": gc_mode,
        "rss_start_kib": rss_start,
        "rss_tasks_kib": rss_tasks,
        "maxrss_kib": max_rss_kib(),
    }


# -- the parent: run every measurement in a subprocess, print the table ------


def run_child(shape: str, n: int, reps: int, workers: int, spare: int,
              gc_mode: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """Run one measurement in a fresh interpreter: (figures or None, stderr)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", shape, str(n),
           "--reps", str(reps), "--workers", str(workers), "--spare", str(spare),
           "--gc", gc_mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, proc.stderr or f"exit code {proc.returncode}, no output"
    try:
        return json.loads(lines[-1]), proc.stderr
    except json.JSONDecodeError as exc:
        return None, f"bad output {lines[-1]!r}: {exc}\n{proc.stderr}"


def us_per_task(res: Optional[Dict[str, Any]], key: str = "total_s") -> Optional[float]:
    if res is None:
        return None
    return statistics.median(res[key]) / res["n"] * 1e6


def rss_mb(res: Optional[Dict[str, Any]], key: str = "maxrss_kib") -> Optional[float]:
    if res is None or res.get(key) is None:
        return None
    return res[key] / 1024


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def fmt(val: Optional[float], spec: str, width: int) -> str:
    return ("-" if val is None else format(val, spec)).rjust(width)


def verdict(ok: Optional[bool]) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def merge_results(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    """Pool the repetitions of two processes measuring the same case."""
    out = dict(a)
    for key in ("total_s", "add_s", "run_s", "gc_s"):
        out[key] = a[key] + b[key]
    out["reps"] = a["reps"] + b["reps"]
    out["gc_collections"] = [x + y for x, y in zip(a["gc_collections"],
                                                   b["gc_collections"])]
    out["maxrss_kib"] = max(a["maxrss_kib"], b["maxrss_kib"])
    return out


def report(results: Dict[Tuple[str, int], Optional[Dict[str, Any]]], sizes: List[int],
           args: argparse.Namespace, reps_of: Dict[int, int],
           procs_of: Dict[int, int]) -> bool:
    """Print the tables and the targets; return True if a measurement crashed."""
    small, large = min(sizes), max(sizes)
    lsmall, llarge = size_label(small), size_label(large)
    print()
    print(f"pexen Sched scaling: ThreadWorkerPool(workers={args.workers}, "
          f"spare={args.spare}) vs ThreadPoolExecutor(max_workers={args.workers})")
    loads = ("" if args.load_before is None else
             f", 1-min load average {args.load_before:.2f} before starting")
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{loads}")
    print("µs/task = wall time of Sched(tasks) + consuming run(), / n; median of "
          + ", ".join(f"{reps_of[n]} reps"
                      + (f" x {procs_of[n]} processes" if procs_of[n] > 1 else "")
                      + f" at {size_label(n)}" for n in sizes)
          + "; each process measures one (shape, size)")
    print("xTPE = our µs/task / ThreadPoolExecutor's at the same size; "
          "RSS = peak RSS of that process, MiB"
          + ("" if args.gc == "on" else f"; cyclic GC: --gc {args.gc}"))
    print()
    head = f"{'shape':<22}"
    for n in sizes:
        head += f" | {size_label(n) + ' µs':>9} {'xTPE':>5} {'RSS':>5}"
    head += f" | {llarge + '/' + lsmall:>9}"
    print(head)
    print("-" * len(head))
    rows = SHAPES + (BASELINE,) + ((SAMENAME,) if not args.no_name_probe else ())
    crashed = False
    for shape in rows:
        line = f"{shape:<22}"
        for n in sizes:
            if (shape, n) not in results:
                line += f" | {'':>9} {'':>5} {'':>5}"
                continue
            res = results[(shape, n)]
            crashed |= res is None
            us = us_per_task(res)
            base = us_per_task(results.get((BASELINE, n)))
            rel = us / base if us is not None and base and shape != BASELINE else None
            line += (f" | {fmt(us, '.2f', 9)} {fmt(rel, '.2f', 5)} "
                     f"{fmt(rss_mb(res), '.0f', 5)}")
        a = us_per_task(results.get((shape, small)))
        b = us_per_task(results.get((shape, large)))
        growth = b / a if a and b is not None and large != small else None
        line += f" | {fmt(growth, '.2f', 9)}"
        print(line)
    if not args.no_name_probe:
        print(f"({SAMENAME}: all tasks named 'noop', so Sched numbers the keys; "
              f"measured up to {size_label(SAMENAME_MAX)} tasks only, 1k with --quick)")

    # Where the time goes: Sched(tasks) vs run(), and the spread of the reps.
    print()
    print("split (median µs/task): add = Sched(tasks), run = consuming run(), "
          "gc = of add+run, in the cyclic GC; spread = min..max of the total "
          "over the reps")
    head = f"{'shape':<22}"
    for n in sizes:
        head += f" | {size_label(n) + ' add':>8} {'run':>6} {'gc':>5} {'spread':>12}"
    print(head)
    print("-" * len(head))
    for shape in rows:
        line = f"{shape:<22}"
        for n in sizes:
            res = results.get((shape, n))
            if res is None:
                line += f" | {'':>8} {'':>6} {'':>5} {'':>12}"
                continue
            lo = min(res["total_s"]) / n * 1e6
            hi = max(res["total_s"]) / n * 1e6
            spread = f"{lo:.1f}..{hi:.1f}"
            line += (f" | {fmt(us_per_task(res, 'add_s'), '.2f', 8)} "
                     f"{fmt(us_per_task(res, 'run_s'), '.2f', 6)} "
                     f"{fmt(us_per_task(res, 'gc_s'), '.2f', 5)} {spread:>12}")
        print(line)

    # Memory at the largest size: how much is the tasks themselves.
    print()
    print(f"memory at {llarge} (MiB): start = interpreter with pexen imported; "
          "tasks = RSS once the tasks and their metadata are built (untimed); "
          "peak = peak RSS; engine = peak - tasks")
    head = f"{'shape':<22} | {'start':>6} {'tasks':>6} {'peak':>6} {'engine':>7}"
    print(head)
    print("-" * len(head))
    for shape in SHAPES + (BASELINE,):
        res = results.get((shape, large))
        start, built, peak = (rss_mb(res, "rss_start_kib"),
                              rss_mb(res, "rss_tasks_kib"), rss_mb(res))
        engine = peak - built if peak is not None and built is not None else None
        print(f"{shape:<22} | {fmt(start, '.0f', 6)} {fmt(built, '.0f', 6)} "
              f"{fmt(peak, '.0f', 6)} {fmt(engine, '.0f', 7)}")

    # The targets.
    print()
    note = ("" if large == 100_000 else
            f"  (measured at {llarge}; the target is for 100k)")
    print("targets:")
    us = us_per_task(results.get(("independent", large)))
    ok = None if us is None else us <= TARGET_US_INDEPENDENT
    print(f"  [{verdict(ok)}] independent at {llarge}: {fmt(us, '.2f', 0)} µs/task "
          f"(target <= {TARGET_US_INDEPENDENT:g}){note}")

    growths = []
    for shape in SHAPES:
        a = us_per_task(results.get((shape, small)))
        b = us_per_task(results.get((shape, large)))
        growth = b / a if a and b is not None and large != small else None
        growths.append((shape, growth))
    known = [g for _, g in growths if g is not None]
    ok = None if len(known) < len(SHAPES) else all(g <= TARGET_GROWTH for g in known)
    detail = ", ".join(f"{s} {fmt(g, '.2f', 0)}"
                       + ("" if g is None or g <= TARGET_GROWTH else " FAIL")
                       for s, g in growths)
    print(f"  [{verdict(ok)}] per-task cost {llarge}/{lsmall} <= {TARGET_GROWTH:g} in "
          f"every shape: {detail}"
          + ("" if (small, large) == (1_000, 100_000) else
             "  (target is for 100k/1k)"))

    base = us_per_task(results.get((BASELINE, large)))
    rel = us / base if us is not None and base else None
    ok = None if rel is None else rel <= TARGET_VS_TPE
    print(f"  [{verdict(ok)}] independent vs ThreadPoolExecutor at {llarge}: "
          f"{fmt(us, '.2f', 0)} / {fmt(base, '.2f', 0)} µs = {fmt(rel, '.2f', 0)}x "
          f"(target <= {TARGET_VS_TPE:g}x){note}")

    rss = [(shape, rss_mb(results.get((shape, large)))) for shape in SHAPES]
    known_rss = [r for _, r in rss if r is not None]
    ok = None if len(known_rss) < len(SHAPES) else max(known_rss) <= TARGET_RSS_MB
    detail = ", ".join(f"{s} {fmt(r, '.0f', 0)}" for s, r in rss)
    print(f"  [{verdict(ok)}] peak RSS at {llarge} <= {TARGET_RSS_MB:g} MiB in every "
          f"shape: {detail}{note}")
    base_rss = rss_mb(results.get((BASELINE, large)))
    start_mb = rss_mb(results.get(("independent", large)), "rss_start_kib")
    if start_mb is not None and base_rss is not None:
        print(f"         (for scale: the interpreter with pexen imported starts at "
              f"{start_mb:.0f} MiB; ThreadPoolExecutor at {llarge}: "
              f"{base_rss:.0f} MiB)")
    return crashed


def load_average() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def main_parent(args: argparse.Namespace) -> int:
    load = load_average()
    if load is not None and load > 0.5:
        print(f"warning: load average {load:.2f} before starting: something else "
              "is using the CPUs, the figures will be noisy", file=sys.stderr)
    args.load_before = load
    sizes = sorted(set(args.sizes))
    reps_of = {n: args.reps or default_reps(n) for n in sizes}
    procs_of = {n: args.procs or default_procs(n) for n in sizes}
    samename_max = 1_000 if args.quick else SAMENAME_MAX
    cases: List[Tuple[str, int]] = []
    for n in sizes:
        cases.extend((shape, n) for shape in SHAPES + (BASELINE,))
        if not args.no_name_probe and n <= samename_max:
            cases.append((SAMENAME, n))
    results: Dict[Tuple[str, int], Optional[Dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for i, (shape, n) in enumerate(cases, 1):
        reps, procs = reps_of[n], procs_of[n]
        if shape == SAMENAME:
            reps, procs = min(reps, 3 if n <= 2_000 else 1), 1
        print(f"[{i}/{len(cases)}] {shape} n={n} reps={reps}x{procs} ...", end=" ",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res, err = None, ""
        for _ in range(procs):
            one, one_err = run_child(shape, n, reps, args.workers, args.spare, args.gc)
            err += one_err
            if one is None:
                res = None
                break
            res = one if res is None else merge_results(res, one)
        results[(shape, n)] = res
        us = us_per_task(res)
        print(f"{time.perf_counter() - t0:.1f} s"
              + (f", {us:.2f} µs/task" if us is not None else ", CRASHED"),
              file=sys.stderr, flush=True)
        if err.strip():
            print("    " + err.strip().replace("\n", "\n    "), file=sys.stderr)
    print(f"total time {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    crashed = report(results, sizes, args, reps_of, procs_of)
    return 1 if crashed else 0


# -- profiling (in-process) --------------------------------------------------


def main_profile(shape: str, n: int, args: argparse.Namespace) -> int:
    """cProfile one run: the thread driving Sched, then the worker threads."""
    import cProfile
    import pstats
    import threading

    _import_pexen()
    warm = build_tasks(shape, min(n, 200), args.workers, args.spare)
    time_sched(warm, args.workers, args.spare)
    del warm
    tasks = build_tasks(shape, n, args.workers, args.spare)
    gc.collect()

    worker_profs: List[cProfile.Profile] = []

    def start_worker_profile(frame: Any, event: str, arg: Any) -> None:
        # The first profile event in a new thread swaps this hook for a profiler.
        sys.setprofile(None)
        prof = cProfile.Profile()
        worker_profs.append(prof)
        prof.enable()

    if args.gc == "freeze":
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    threading.setprofile(start_worker_profile)
    main_prof = cProfile.Profile()
    t0 = time.perf_counter()
    with GcTimer() as gc_timer:
        main_prof.enable()
        try:
            add, run = time_sched(tasks, args.workers, args.spare)
        finally:
            main_prof.disable()
            threading.setprofile(None)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    gc.enable()
    print(f"profile of {shape} n={n}: {wall:.2f} s wall under cProfile "
          f"({wall / n * 1e6:.1f} µs/task; Sched(tasks) {add / n * 1e6:.1f}, "
          f"run() {run / n * 1e6:.1f}); tottime/n = µs per task")
    print(f"cyclic GC (--gc {args.gc}): {gc_timer.seconds:.2f} s "
          f"({gc_timer.seconds / n * 1e6:.1f} µs/task), collections per generation "
          f"{gc_timer.collections}; cProfile charges it to whichever function "
          "was allocating")
    print(f"\n== main thread (Sched, the plan, the pool's controller side), "
          f"top {args.top} by tottime ==")
    stats = pstats.Stats(main_prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(args.top)
    if worker_profs:
        stats = pstats.Stats(worker_profs[0], stream=sys.stdout)
        for prof in worker_profs[1:]:
            stats.add(prof)
        print(f"\n== {len(worker_profs)} worker threads together, top {args.top} "
              f"by tottime ==")
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


# -- command line ------------------------------------------------------------


def parse_sizes(text: str) -> List[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not sizes or any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be integers >= 2")
    return sizes


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-task cost of pexen's Sched as the number of tasks grows.")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker threads (and ThreadPoolExecutor max_workers); "
                             "default 2")
    parser.add_argument("--spare", type=int, default=2,
                        help="tasks handed out ahead of the workers; default 2")
    parser.add_argument("--sizes", type=parse_sizes, default=None,
                        help="comma-separated task counts; default 1000,10000,100000")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: 1k and 10k only (unless --sizes), "
                             "3 reps (unless --reps), 1 process (unless --procs)")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions for every size (default: 7 up to 2k "
                             "tasks, 5 up to 20k, 3 above)")
    parser.add_argument("--procs", type=int, default=None,
                        help="fresh processes per (shape, size), their repetitions "
                             "pooled (default: 3 up to 20k tasks, 1 above)")
    parser.add_argument("--no-name-probe", action="store_true",
                        help=f"skip the {SAMENAME} row")
    parser.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                        help="the cyclic GC during the timed section: on (default, "
                             "as users run), freeze (gc.freeze() after building the "
                             "tasks) or off (gc.disable()); for diagnosis")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "N"),
                        help="measure one case and print JSON (used internally)")
    parser.add_argument("--profile", nargs=2, metavar=("SHAPE", "N"),
                        help="cProfile one run in this process and print the top "
                             "entries by tottime")
    parser.add_argument("--top", type=int, default=25,
                        help="entries to print with --profile; default 25")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.spare < 0:
        parser.error("--workers must be >= 1 and --spare >= 0")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    if args.procs is not None and args.procs < 1:
        parser.error("--procs must be >= 1")

    for opt, shapes in ((args.one, ALL_CASES), (args.profile, SHAPES + (SAMENAME,))):
        if opt is not None:
            if opt[0] not in shapes:
                parser.error(f"unknown shape {opt[0]!r}; one of {', '.join(shapes)}")
            try:
                opt[1] = int(opt[1].replace("_", ""))
            except ValueError:
                parser.error(f"not a number of tasks: {opt[1]!r}")
    if args.one is not None:
        shape, n = args.one
        res = measure_one(shape, n, args.reps or default_reps(n), args.workers,
                          args.spare, args.gc)
        print(json.dumps(res))
        return 0
    if args.profile is not None:
        return main_profile(args.profile[0], args.profile[1], args)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.quick and args.reps is None:
        args.reps = 3
    if args.quick and args.procs is None:
        args.procs = 1
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())

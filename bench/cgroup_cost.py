#!/usr/bin/env python3
"""What a cgroup per task costs a whole run (doc/watchdog.md, "A cgroup per task").

A suite of N executables that do nothing (``exit 0``), run by
``pexen-harness start DIR`` with cgroups (the default where cgroup v2 is
writable) and without (``PEXEN_CGROUPS=0``), under the process pool (a
cgroup per worker: made once per worker) and the thread pool (a cgroup per
executable: the spawner moves into it to start the executable, and back).
The whole process is timed: start-up, journal, capture, watchdog. The two
settings alternate, ``--reps`` times each; the median of each is printed,
with the ratio of "on" to "off" and the cost per executable.

    python bench/cgroup_cost.py                 # 300 executables, -j 2, 5 reps
    python bench/cgroup_cost.py --tasks 1000 --reps 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from pexen.sched import _cgroup  # noqa: E402


def _suite(where: str, n: int) -> str:
    suite = os.path.join(where, "suite")
    os.makedirs(suite)
    for i in range(n):
        path = os.path.join(suite, f"t{i:05d}.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    return suite


def _run(suite: str, where: str, pool: str, workers: int, cgroups: bool) -> float:
    journal = os.path.join(where, "j.sqlite")
    for leftover in (journal, journal + ".d"):
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        elif os.path.exists(leftover):
            os.unlink(leftover)
    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    env["PEXEN_CGROUPS"] = "1" if cgroups else "0"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pexen.harness.cli", "start", suite,
                          "--journal", journal, "--pool", pool, "-j", str(workers)],
                         cwd=where, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"the run failed ({pool}, cgroups {cgroups}): {out.stderr.strip()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    probe = _cgroup.open_session(f"bench-{os.getpid()}")
    _cgroup.close_session()
    if probe is None:
        sys.exit(f"cgroups are not usable here: {_cgroup.unavailable}")
    where = tempfile.mkdtemp(prefix="pexen-cgroup-bench-")
    try:
        suite = _suite(where, args.tasks)
        print(f"{args.tasks} executables (exit 0), -j {args.workers}, "
              f"median of {args.reps}, whole process")
        print(f"{'pool':<8} {'off':>8} {'on':>8} {'on/off':>7} {'per task':>9}")
        for pool in ("process", "thread"):
            times: dict = {True: [], False: []}
            _run(suite, where, pool, args.workers, True)   # (warm the caches)
            for _ in range(args.reps):
                for setting in (False, True):
                    times[setting].append(_run(suite, where, pool, args.workers, setting))
            off, on = statistics.median(times[False]), statistics.median(times[True])
            print(f"{pool:<8} {off:>7.2f}s {on:>7.2f}s {on / off:>7.2f} "
                  f"{(on - off) / args.tasks * 1000:>+7.2f}ms")
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()

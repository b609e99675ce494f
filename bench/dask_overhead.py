#!/usr/bin/env python3
"""What running a suite on a Dask cluster costs per test (doc/lab.md).

Starts a Dask scheduler and two workers (one thread each) on loopback,
then runs the same suite of N trivial tests with ``pexen-harness start``
through ``--dask ADDRESS`` and on the local process pool (``-j 2``), the two
alternating, ``--reps`` times each; the whole process is timed (start-up,
journal, capture, and on Dask the round trips and each task's own process on
its worker). Two suites: N executables (``exit 0``) and N trivial Python
functions (a module, `bench_tasks:tasks`). Prints the medians, the ms per
test, and the ratio Dask / process pool.

    python bench/dask_overhead.py                   # 2000 tests, 3 reps
    python bench/dask_overhead.py --tasks 500 --reps 5 --kinds exe
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PY_SUITE = """
def _make(i):
    def task():
        return i
    task.__name__ = task.__qualname__ = f"t{i:05d}"
    return task


def tasks():
    return [_make(i) for i in range(N)]
"""


def _cluster(where: str) -> tuple:
    info = os.path.join(where, "scheduler.json")
    procs = []
    for args in (["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                  "--scheduler-file", info],
                 None):
        if args is None:
            deadline = time.monotonic() + 60
            while not os.path.exists(info) or not open(info).read().strip():
                if time.monotonic() > deadline:
                    sys.exit("the Dask scheduler did not start")
                time.sleep(0.1)
            address = json.load(open(info))["address"]
            args = ["worker", address, "--nworkers", "2", "--nthreads", "1",
                    "--no-dashboard", "--local-directory", os.path.join(where, "w")]
        with open(os.path.join(where, f"{args[0]}.log"), "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:]],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=where))
    import distributed

    with distributed.Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


def _run(target: str, where: str, extra: list) -> float:
    journal = os.path.join(where, "j.sqlite")
    for leftover in (journal, journal + ".d", journal + "-wal", journal + "-shm"):
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        elif os.path.exists(leftover):
            os.unlink(leftover)
    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    env["PYTHONPATH"] = where
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pexen.harness.cli", "start", target,
                          "--journal", journal, *extra], cwd=where, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"the run failed ({target} {extra}): {out.stderr.strip()[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kinds", default="exe,python", help="exe, python or both")
    args = parser.parse_args()
    try:
        import distributed  # noqa: F401
    except ImportError:
        sys.exit("needs dask.distributed: pip install 'pexen[dask]'")
    where = tempfile.mkdtemp(prefix="pexen-dask-bench-")
    procs: list = []
    try:
        suite = os.path.join(where, "suite")
        os.makedirs(suite)
        for i in range(args.tasks):
            path = os.path.join(suite, f"t{i:05d}.sh")
            with open(path, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, 0o755)
        with open(os.path.join(where, "bench_tasks.py"), "w") as f:
            f.write(f"N = {args.tasks}\n" + PY_SUITE)
        address, procs = _cluster(where)
        print(f"{args.tasks} trivial tests, Dask: 2 workers x 1 thread on loopback, "
              f"process pool: -j 2; median of {args.reps}, whole process")
        print(f"{'suite':<8} {'process':>9} {'dask':>9} {'ms/test':>16} {'dask/process':>13}")
        for kind in args.kinds.split(","):
            target = suite if kind == "exe" else "bench_tasks:tasks"
            times: dict = {"process": [], "dask": []}
            for _ in range(args.reps):
                times["process"].append(_run(target, where, ["-j", "2"]))
                times["dask"].append(_run(target, where, ["--dask", address]))
            local, remote = statistics.median(times["process"]), statistics.median(times["dask"])
            per = f"{local / args.tasks * 1000:.2f} / {remote / args.tasks * 1000:.2f}"
            print(f"{kind:<8} {local:>8.2f}s {remote:>8.2f}s {per:>16} {remote / local:>13.1f}")
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A test that floods its stdout, under pexen's output cap and without a harness.

The cap (``--max-output``, doc/results.md) must not slow a flood down: the
task writes straight to its capture file while a thread of the worker
punches the middle out of it. This measures the flood's own speed (timed by
the flooding program itself, from its first write to its last) and the most
disk space its stdout held while it ran (``st_blocks`` of its fd 1, sampled
by the flooder every 16 MiB; not under the thread pool's per-thread
capture, where fd 1 is the controller's), in these setups, all in one invocation:

- ``direct``: the flooder with stdout redirected to a file, no harness: the
  baseline;
- ``exe/process``, ``exe/thread``: the flooder as an executable test in a
  suite directory, ``pexen-harness start DIR --pool process|thread``;
- ``py/process``, ``py/thread``: the same loop as a Python task
  (``os.write(1, ...)`` under the process pool; ``sys.stdout`` writes of the
  same blocks under the thread pool with ``-j 2``, where a task's output is
  captured per thread);
- ``exe/process --max-output 0``: no cap, for what capture costs by itself.

Each setup runs ``--reps`` times, interleaved (median shown, then the
ratio of its median speed to its baseline's, the disk peak, and its whole
process wall time: start-up, journal and watchdog included). The baseline
of the thread pool's Python row is the same text writes through
``sys.stdout`` to a file, without a harness (``direct, sys.stdout``). Exit status 1 if a run did not
pass or its output file was not capped as it should be.

    python bench/output_flood.py                 # 1 GiB floods, cap 64MiB, 5 reps
    python bench/output_flood.py --size 256M --reps 3 --max-output 1M
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from pexen.util import parse_size  # noqa: E402

BLOCK = 1 << 16

# The flood loop, shared by the executable and the Python task: `write(block)`
# SIZE // BLOCK times, looking at the disk blocks of fd 1 every 16 MiB.
LOOP = """
def flood(write, size, fd=1, report=None, block=b"y" * 65535 + b"\\n"):
    import os, time
    blocks = (lambda: os.fstat(fd).st_blocks * 512) if fd is not None else (lambda: -1)
    every = (16 << 20) // len(block)
    peak = 0 if fd is not None else -1
    t0 = time.perf_counter()
    for i in range(size // len(block)):
        write(block)
        if i % every == 0:
            peak = max(peak, blocks())
    took = time.perf_counter() - t0
    peak = max(peak, blocks())
    line = f"FLOOD {took:.6f} {peak}\\n"
    if report is None:
        os.write(2, line.encode())
    else:
        report(line)
"""

EXE = """#!{python}
import os, sys
{loop}
flood(lambda b: os.write(1, b), {size})
"""

# The same loop writing through sys.stdout (text), as the Python task does
# under the thread pool: the baseline of that row.
EXE_TEXT = """#!{python}
import os, sys
{loop}
out = sys.stdout
flood(lambda b: out.write(b.decode()), {size})
out.flush()
"""

PY_TASK = """
import os, sys
from pexen.sched.meta import func_meta
{loop}

@func_meta()
def flood_py():
    if {thread}:
        out = sys.stdout
        flood(lambda b: out.write(b.decode()), {size}, fd=None,
              report=sys.stderr.write)
        out.flush()
    else:
        flood(lambda b: os.write(1, b), {size})
"""

_FLOOD = re.compile(r"FLOOD ([0-9.]+) (-?[0-9]+)")


def _parse(text: str) -> tuple:
    found = _FLOOD.search(text)
    if not found:
        raise RuntimeError(f"no FLOOD line in {text[-300:]!r}")
    return float(found.group(1)), int(found.group(2))


def run_direct(work: str, exe: str) -> tuple:
    out = os.path.join(work, "direct.out")
    t0 = time.perf_counter()
    with open(out, "wb") as o:
        res = subprocess.run([exe], stdout=o, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"direct flood exited {res.returncode}: {res.stderr}")
    took, peak = _parse(res.stderr)
    os.unlink(out)
    return took, peak, wall


def run_harness(work: str, suite: str, key: str, pool: str, cap: int,
                workers: int) -> tuple:
    journal = os.path.join(work, "j.sqlite")
    for leftover in (journal, journal + ".d"):
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        elif os.path.exists(leftover):
            os.unlink(leftover)
    env = dict(os.environ, PYTHONPATH=work + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pexen.harness.cli", "start", suite, "--journal", journal,
           "--pool", pool, "-j", str(workers), "--max-output", str(cap)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=work, env=env, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:])}: exit {res.returncode}: "
                           f"{res.stdout[-500:]} {res.stderr[-500:]}")
    task = os.path.join(journal + ".d", "1", key)
    with open(os.path.join(task, "1.err")) as f:
        took, peak = _parse(f.read())
    size = os.path.getsize(os.path.join(task, "1.out"))
    if cap and size > cap + 300:
        raise RuntimeError(f"{key} under --pool {pool}: 1.out holds {size} bytes, cap {cap}")
    return took, peak, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="bytes each flood writes (default 1G)")
    ap.add_argument("--max-output", default="64MiB", help="the cap (default 64MiB)")
    ap.add_argument("--reps", type=int, default=5)
    ns = ap.parse_args()
    size, cap = parse_size(ns.size), parse_size(ns.max_output)
    work = tempfile.mkdtemp(prefix="pexen-flood-")
    try:
        loop = LOOP
        exe = os.path.join(work, "suite", "flood.py")
        os.mkdir(os.path.dirname(exe))
        with open(exe, "w") as f:
            f.write(EXE.format(python=sys.executable, loop=loop, size=size))
        os.chmod(exe, 0o755)
        text = os.path.join(work, "flood_text.py")
        with open(text, "w") as f:
            f.write(EXE_TEXT.format(python=sys.executable, loop=loop, size=size))
        os.chmod(text, 0o755)
        for name, thread in (("pyflood_proc", False), ("pyflood_thread", True)):
            with open(os.path.join(work, name + ".py"), "w") as f:
                f.write(PY_TASK.format(loop=loop, size=size, thread=thread))
        # (name, baseline, run)
        setups = [
            ("direct", None, lambda: run_direct(work, exe)),
            ("exe/process", "direct",
             lambda: run_harness(work, "suite", "flood", "process", cap, 2)),
            ("exe/thread", "direct",
             lambda: run_harness(work, "suite", "flood", "thread", cap, 2)),
            ("py/process", "direct",
             lambda: run_harness(work, "pyflood_proc", "flood_py", "process", cap, 2)),
            ("direct, sys.stdout", None, lambda: run_direct(work, text)),
            ("py/thread", "direct, sys.stdout",
             lambda: run_harness(work, "pyflood_thread", "flood_py", "thread", cap, 2)),
            ("exe/process --max-output 0", "direct",
             lambda: run_harness(work, "suite", "flood", "process", 0, 2)),
        ]
        results: dict = {name: [] for name, _, _ in setups}
        for _rep in range(ns.reps):   # interleaved: a slow moment hits every setup
            for name, _, func in setups:
                results[name].append(func())
        print(f"flood of {size} bytes in {BLOCK}-byte writes, --max-output {ns.max_output}, "
              f"median of {ns.reps}")
        print(f"{'setup':28} {'MB/s':>8} {'ratio':>6} {'to':20} {'disk peak':>10} "
              f"{'wall s':>7}")
        speeds = {}
        for name, base, _ in setups:
            rows = results[name]
            speed = speeds[name] = statistics.median(size / r[0] / 1e6 for r in rows)
            peaks = [r[1] for r in rows if r[1] >= 0]
            shown = f"{statistics.median(peaks) / (1 << 20):8.1f}Mi" if peaks else f"{'n/a':>10}"
            wall = statistics.median(r[2] for r in rows)
            ratio = f"{speed / speeds[base]:6.2f} {base:20}" if base else f"{'':6} {'':20}"
            print(f"{name:28} {speed:8.0f} {ratio} {shown} {wall:7.2f}")
        return 0
    except RuntimeError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

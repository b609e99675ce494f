#!/usr/bin/env python3
"""How long `pexen-harness` takes to start and to answer, whole process.

Each measurement runs a command as a new process and times it from the
start of `subprocess.run` until the process has exited (wall clock; the
CPU time the process and its children used is printed beside it), one
untimed warm-up run of each first, then the median of ``--reps`` runs (7):

- ``python -c pass``: the interpreter alone (the baseline of the ratios);
- ``start PY``: ``pexen-harness start startup_suite`` (a Python module
  with one test function) into a fresh journal;
- ``start DIR``: ``pexen-harness start suite/`` (a directory with one
  executable, ``/bin/sh`` exiting 0) into a fresh journal;
- ``status``: ``pexen-harness status`` of a finished run;
- ``--help``: ``pexen-harness --help``;
- ``import cli``: ``python -c "import pexen.harness.cli"``, and the
  ``-X importtime`` total of that import (one run).

The runs go round-robin (one of each command, then the next round), so a
machine that is busy with something else for a while slows all of them
alike; the ratios are of medians.

``pexen-harness`` is the console script beside the interpreter when there
is one (what a user runs), else ``python -m pexen.harness.cli``. Each
``start`` gets a journal that does not exist yet (a new path per run).
The children run without ``PYTHONDONTWRITEBYTECODE``, as an installed pexen
does: the warm-up leaves the bytecode cached.
Targets: ``start`` and ``status`` at most 6x ``python -c pass``
(PASS/FAIL). Then, for ``status`` and each ``start``: whether SQLAlchemy
or Alembic were imported (a child runs the verb through `runpy` and
writes what it has in `sys.modules` as it exits).

The exit code is 0 unless a measured command failed.

Usage::

    python bench/startup.py             # 7 reps each
    python bench/startup.py --reps 15
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

TARGET = 6.0

SUITE_MODULE = '''\
from pexen.sched.meta import func_meta


@func_meta()
def test_one():
    pass
'''

# Runs `pexen-harness ARGS...` in this process (as the console script would)
# and, as the process exits, writes the top-level packages it imported to
# the file named by PEXEN_STARTUP_MODULES (only the process it started as:
# not the process pool's workers or the writer's process).
PROBE = '''\
import atexit, json, os, runpy, sys
me = os.getpid()
def _record():
    if os.getpid() == me:
        with open(os.environ["PEXEN_STARTUP_MODULES"], "w") as f:
            json.dump(sorted({m.split(".")[0] for m in sys.modules}), f)
atexit.register(_record)
sys.argv = ["pexen-harness", *sys.argv[1:]]
runpy.run_module("pexen.harness.cli", run_name="__main__", alter_sys=True)
'''


class Timing(NamedTuple):
    wall_ms: float     # median
    low_ms: float      # fastest run
    cpu_ms: float      # median CPU time (user + system) of the process and its children


class Failed(Exception):
    """A measured command exited with an error."""


def harness_command(python: str) -> List[str]:
    script = os.path.join(os.path.dirname(python), "pexen-harness")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [python, "-m", "pexen.harness.cli"]


def run_once(argv: Sequence[str], cwd: str, env: Dict[str, str]) -> Tuple[float, float]:
    """(wall ms, CPU ms) of one run of `argv`; Failed if it exits non-zero."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise Failed(f"{' '.join(argv)}: exit {done.returncode}: {' / '.join(tail)}")
    return wall * 1000, cpu * 1000


def measure(commands: Sequence[Callable[[int], List[str]]], reps: int, cwd: str,
            env: Dict[str, str]) -> List[Timing]:
    """One untimed warm-up run of each command, then `reps` rounds of one timed
    run of each, in turn (so that a machine busy with something else for a
    while slows every command alike); `make_argv(i)` gives the command of
    run i (0 is the warm-up)."""
    for make_argv in commands:
        run_once(make_argv(0), cwd, env)
    walls: List[List[float]] = [[] for _ in commands]
    cpus: List[List[float]] = [[] for _ in commands]
    for i in range(1, reps + 1):
        for n, make_argv in enumerate(commands):
            wall, cpu = run_once(make_argv(i), cwd, env)
            walls[n].append(wall)
            cpus[n].append(cpu)
    return [Timing(statistics.median(w), min(w), statistics.median(c))
            for w, c in zip(walls, cpus)]


def import_time_us(python: str, module: str, cwd: str, env: Dict[str, str]) -> Optional[int]:
    """The cumulative `-X importtime` figure of importing `module` (one run)."""
    done = subprocess.run([python, "-X", "importtime", "-c", f"import {module}"], cwd=cwd,
                          env=env, capture_output=True, text=True)
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|\s?(\S.*)$", line)
        if m and m.group(2).strip() == module:
            return int(m.group(1))
    return None


def modules_loaded(python: str, args: Sequence[str], cwd: str, env: Dict[str, str]
                   ) -> List[str]:
    """The top-level packages `pexen-harness ARGS` imports (in its own process)."""
    out = os.path.join(cwd, "modules.json")
    done = subprocess.run([python, "-c", PROBE, *args], cwd=cwd,
                          env=dict(env, PEXEN_STARTUP_MODULES=out),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise Failed(f"pexen-harness {' '.join(args)} (probe): exit {done.returncode}")
    with open(out) as f:
        return list(json.load(f))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed runs each (default 7)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter pexen is installed in (default: this one)")
    args = parser.parse_args(argv)
    python = args.python
    harness = harness_command(python)
    work = tempfile.mkdtemp(prefix="pexen-startup-")
    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    # as installed: the warm-up run leaves the modules' bytecode cached
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        with open(os.path.join(work, "startup_suite.py"), "w") as f:
            f.write(SUITE_MODULE)
        os.mkdir(os.path.join(work, "suite"))
        exe = os.path.join(work, "suite", "ok.sh")
        with open(exe, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(exe, 0o755)
        finished = os.path.join(work, "finished.sqlite")
        run_once([*harness, "start", "startup_suite", "--journal", finished], work, env)

        def fresh(tag: str) -> Callable[[int], List[str]]:
            def argv(i: int) -> List[str]:
                return [*harness, "start", "startup_suite" if tag == "py" else "suite/",
                        "--journal", os.path.join(work, f"{tag}-{i}.sqlite")]
            return argv

        plan: List[Tuple[str, str, Callable[[int], List[str]], bool]] = [
            ("python -c pass", "", lambda i: [python, "-c", "pass"], False),
            ("start PY", "start startup_suite (1 Python test, new journal)", fresh("py"),
             True),
            ("start DIR", "start suite/ (1 executable, new journal)", fresh("dir"), True),
            ("status", "status (a finished run)",
             lambda i: [*harness, "status", "--journal", finished], True),
            ("--help", "--help", lambda i: [*harness, "--help"], False),
            ("import cli", 'python -c "import pexen.harness.cli"',
             lambda i: [python, "-c", "import pexen.harness.cli"], False)]
        timings = measure([make for _, _, make, _ in plan], args.reps, work, env)
        base = timings[0]
        rows: List[Tuple[str, str, Timing, Optional[bool]]] = [
            (label, cmd, timing, timing.wall_ms <= TARGET * base.wall_ms if target else None)
            for (label, cmd, _, target), timing in zip(plan, timings)]

        print(f"pexen-harness startup, whole process, median of {args.reps} after one "
              f"warm-up ({' '.join(harness)}; python {sys.version.split()[0]})")
        print(f"{'':12} {'median ms':>10} {'fastest':>8} {'CPU ms':>7} {'x pass':>7}  "
              f"target {TARGET:g}x")
        for label, cmd, timing, ok in rows:
            verdict = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{label:12} {timing.wall_ms:10.1f} {timing.low_ms:8.1f} "
                  f"{timing.cpu_ms:7.1f} {timing.wall_ms / base.wall_ms:7.2f}  {verdict:4}  "
                  f"{cmd}")
        cli = next(t for label, _, t, _ in rows if label == "import cli")
        us = import_time_us(python, "pexen.harness.cli", work, env)
        print(f"import pexen.harness.cli: {cli.wall_ms - base.wall_ms:.1f} ms over python -c "
              f"pass (median; fastest: {cli.low_ms - base.low_ms:.1f} ms)"
              + (f"; -X importtime: {us / 1000:.1f} ms" if us is not None else ""))
        status_j = os.path.join(work, "probe.sqlite")
        for label, verb in (("start PY", ["start", "startup_suite", "--journal", status_j]),
                            ("start DIR", ["start", "suite/", "--journal",
                                           os.path.join(work, "probe-dir.sqlite")]),
                            ("status", ["status", "--journal", status_j])):
            loaded = set(modules_loaded(python, verb, work, env))
            heavy = sorted(loaded & {"sqlalchemy", "alembic"})
            print(f"{label:10} imported SQLAlchemy/Alembic: "
                  f"{'yes (' + ', '.join(heavy) + ')' if heavy else 'no'}")
    except Failed as exc:
        print(f"startup: a measurement failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Disk syncs per test of a whole `pexen-harness start`, counted by strace.

A sync costs about 60 µs on the disk this was written on and milliseconds on
many real disks, so the journal must not sync once per test. For each
workload (N trivial Python tests in one module; N executables `exit 0`) and
each `-j`, this runs `strace -f -c -e trace=fdatasync,fsync pexen-harness
start ... -j J` with a fresh journal in a temporary directory (on the disk
of `--dir`, default the temp dir), and prints fdatasync + fsync calls per
test, every process of the run counted (the controller, the journal
writer's process, the workers, the tests). The run is checked (exit 0, N
tasks passed in the journal). strace slows the run down, and the journal
commits at most every 10 ms, so these counts are higher than an untraced
run's. Target (issue 14): at most 0.5 per test.

    python bench/syncs.py                    # N = 2000, -j 2 and -j 8
    python bench/syncs.py --tests 500 --jobs 2,4,8

Exit code: 0 whatever the figures; 1 if strace is missing or a run failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence


def harness_command() -> List[str]:
    script = os.path.join(os.path.dirname(sys.executable), "pexen-harness")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "pexen.harness.cli"]


def write_workloads(where: str, n: int) -> Dict[str, str]:
    width = len(str(n))
    with open(os.path.join(where, "synctests.py"), "w") as f:
        f.write("from pexen.sched.meta import func_meta\n")
        f.write("".join(f"\n@func_meta()\ndef test_{i:0{width}d}():\n    pass\n"
                        for i in range(1, n + 1)))
    exe = os.path.join(where, "exe")
    os.mkdir(exe)
    for i in range(1, n + 1):
        path = os.path.join(exe, f"t{i:0{width}d}.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    return {"python": "synctests", "exe": exe}


def count_syncs(strace_out: str) -> int:
    """fdatasync + fsync calls in `strace -c` output."""
    total = 0
    for line in strace_out.splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fdatasync", "fsync"):
            # % time, seconds, usecs/call, calls, [errors], syscall
            total += int(parts[3])
    return total


def check(journal: str, n: int) -> Optional[str]:
    try:
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"journal unreadable: {exc}"
    if dict(rows) != {"pass": n}:
        return f"tasks by state: {dict(rows)}"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000, help="N (default 2000)")
    parser.add_argument("--jobs", default="2,8", help="the -j values (default 2,8)")
    parser.add_argument("--dir", default=None, help="where the journals go (default: temp)")
    args = parser.parse_args(argv)
    strace = shutil.which("strace")
    if strace is None:
        print("syncs.py: strace is not installed (apt-get install strace)", file=sys.stderr)
        return 1
    jobs = [int(j) for j in args.jobs.split(",")]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PEXEN_JOURNAL", None)
    failed = False
    with tempfile.TemporaryDirectory(prefix="pexen-syncs-", dir=args.dir) as tmp:
        suites = write_workloads(tmp, args.tests)
        print(f"disk syncs per test (fdatasync + fsync, strace -f -c), N = {args.tests}, "
              f"journal under {tmp}")
        print("| workload | " + " | ".join(f"-j {j}" for j in jobs) + " |")
        print("|---|" + "---:|" * len(jobs))
        for workload, suite in suites.items():
            cells = []
            for j in jobs:
                journal = os.path.join(tmp, f"{workload}-{j}.sqlite")
                out = os.path.join(tmp, f"{workload}-{j}.strace")
                res = subprocess.run(
                    [strace, "-f", "-c", "-o", out, "-e", "trace=fdatasync,fsync",
                     *harness_command(), "start", suite, "-j", str(j), "--journal", journal],
                    cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True)
                problem = (f"exit {res.returncode}: {res.stderr.strip()[-300:]}"
                           if res.returncode else check(journal, args.tests))
                if problem:
                    print(f"syncs.py: {workload} -j {j}: {problem}", file=sys.stderr)
                    cells.append("failed")
                    failed = True
                    continue
                with open(out) as f:
                    syncs = count_syncs(f.read())
                cells.append(f"{syncs / args.tests:.3f} ({syncs})")
            print(f"| {workload} | " + " | ".join(cells) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

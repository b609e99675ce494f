#!/usr/bin/env python3
"""A pytest file of 2000 tests: `pexen-harness start pytest:FILE -j 2`
against `pytest` and `pytest -n 2` (pytest-xdist), whole processes.

The file (``--tests``, default 2000): plain tests, a fifth of them taking a
module-scoped fixture, a tenth parametrised, each doing a little arithmetic
(the per-test cost of the tool is what shows). pytest and pytest-xdist run
from a virtualenv of their own with pinned versions (the same as
bench/peers.py's, built on first use under ~/.cache/pexen-bench-peers);
pexen from this checkout's interpreter, its journal a new file per run.
Each tool's run is checked (every test passed: pytest's summary line, the
journal's counts) and timed from its start to its exit, start-up,
collection, journal and capture included; the tools take turns, ``--reps``
rounds (default 3). Printed: the median wall time of each, ms per test,
and the ratios against ``pytest -n 2`` (the target of issue 18: pexen at
most 1.2x).

    python bench/pytest_suite.py
    python bench/pytest_suite.py --tests 500 --reps 5

A report: exit 0 whatever the figures, 1 if a run failed.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from peers import PINS, check_pytest, default_venvs, ensure_venv, timed  # noqa: E402


def write_file(where: str, n: int) -> str:
    lines = ["import pytest", "", "",
             "@pytest.fixture(scope='module')", "def table():",
             "    return {i: i * i for i in range(100)}", "", ""]
    i = 0
    while i < n:
        if i % 10 == 9 and i + 3 <= n:
            lines += ["@pytest.mark.parametrize('v', [1, 2, 3])",
                      f"def test_{i:05d}(v):", "    assert v * 2 > v", "", ""]
            i += 3
            continue
        if i % 5 == 0:
            lines += [f"def test_{i:05d}(table):", f"    assert table[{i % 100}] == "
                      f"{(i % 100) ** 2}", "", ""]
        else:
            lines += [f"def test_{i:05d}():", f"    assert sum(range({i % 50})) >= 0", "", ""]
        i += 1
    path = os.path.join(where, "test_many.py")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def check_journal(journal: str, n: int) -> Optional[str]:
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        counts = dict(con.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    finally:
        con.close()
    return None if counts == {"pass": n} else f"journal counts {counts}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--venvs", default=default_venvs())
    args = parser.parse_args(argv)
    bindir, freeze = ensure_venv(args.venvs, "xdist", PINS["xdist"])
    versions = ", ".join(p for p in freeze if p.lower().startswith(("pytest==", "pytest-xdist")))
    w = args.workers
    with tempfile.TemporaryDirectory(prefix="pexen-pytest-bench-") as tmp:
        path = write_file(tmp, args.tests)
        n = args.tests
        env = dict(os.environ)
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PEXEN_JOURNAL", None)
        tools: Dict[str, List[str]] = {
            "pytest": [os.path.join(bindir, "python"), "-m", "pytest",
                       "-p", "no:cacheprovider", path],
            f"pytest -n {w}": [os.path.join(bindir, "python"), "-m", "pytest",
                               "-p", "no:cacheprovider", "-n", str(w), path],
            f"pexen -j {w}": [sys.executable, "-m", "pexen.harness.cli", "start",
                              f"pytest:{os.path.basename(path)}", "-j", str(w)],
        }
        print(f"pytest_suite: {n} tests in one file, {args.reps} rounds; {versions}; pexen "
              f"from this checkout; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        walls: Dict[str, List[float]] = {name: [] for name in tools}
        for rep in range(args.reps):
            for name, cmd in tools.items():
                journal = os.path.join(tmp, f"j{rep}.sqlite")
                run_env = dict(env, PEXEN_JOURNAL=journal) if name.startswith("pexen") else env
                log = os.path.join(tmp, f"{name.replace(' ', '_')}.{rep}")
                wall, _, rc = timed(cmd, tmp, run_env, log, timeout=600)
                with open(log + ".out", errors="replace") as f:
                    out = f.read()
                bad = (check_journal(journal, n) if name.startswith("pexen")
                       else check_pytest(out, n))
                if rc != 0 or bad:
                    print(f"  {name}: FAILED (exit {rc}; {bad})\n{out[-2000:]}")
                    return 1
                walls[name].append(wall)
        base = statistics.median(walls[f"pytest -n {w}"])
        for name, values in walls.items():
            med = statistics.median(values)
            print(f"  {name:12} {med:6.2f} s median ({', '.join(f'{v:.2f}' for v in values)});"
                  f" {med / n * 1000:.2f} ms/test; {med / base:.2f}x pytest -n {w}")
        ratio = statistics.median(walls[f"pexen -j {w}"]) / base
        print(f"  target pexen <= 1.2x pytest -n {w}: {'PASS' if ratio <= 1.2 else 'FAIL'} "
              f"({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

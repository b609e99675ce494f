#!/usr/bin/env python3
"""Real projects' own pytest suites, from their sdists on PyPI (pinned in
tests/sdists.py: boltons, more-itertools): `pexen-harness start
pytest:PATH -j 2` against `pytest` and `pytest -n 2` (pytest-xdist) on the
same checkout, whole processes.

pytest and pytest-xdist run from the virtualenv bench/peers.py builds (the
pinned versions, on first use under ~/.cache/pexen-bench-peers); pexen from
this checkout's interpreter, its journal a new file per run. Each run is
checked (exit 0: every test passed or was skipped) and timed from its start
to its exit; the tools take turns, ``--reps`` rounds (default 3). Printed
per suite: the median wall time of each tool and its ratio to ``pytest -n
2``. The test that compares the outcomes test by test is
tests/harness/test_pytest_real.py.

    python bench/pytest_projects.py
    python bench/pytest_projects.py --reps 5 --project boltons

A report: exit 0 whatever the figures, 1 if a run failed, 2 if an sdist
could not be had.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from peers import PINS, default_venvs, ensure_venv, timed  # noqa: E402

from tests import sdists  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--project", action="append", choices=sorted(sdists.PROJECTS))
    parser.add_argument("--venvs", default=default_venvs())
    args = parser.parse_args(argv)
    bindir, freeze = ensure_venv(args.venvs, "xdist", PINS["xdist"])
    versions = ", ".join(p for p in freeze if p.lower().startswith(("pytest==", "pytest-xdist")))
    w = args.workers
    print(f"pytest_projects: {args.reps} rounds; {versions}; pexen from this checkout; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PEXEN_") and k != "PYTEST_ADDOPTS"}
    with tempfile.TemporaryDirectory(prefix="pexen-pytest-projects-") as tmp:
        for name in args.project or sorted(sdists.PROJECTS):
            project = sdists.PROJECTS[name]
            try:
                top = sdists.unpack(project, Path(tmp) / name)
            except sdists.Unavailable as exc:
                print(f"  {name}: {exc}")
                return 2
            for path, extra in project.suites:
                pytest_args = shlex.split(extra)
                py = os.path.join(bindir, "python")
                tools: Dict[str, List[str]] = {
                    "pytest": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *pytest_args, path],
                    f"pytest -n {w}": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       "-n", str(w), *pytest_args, path],
                    f"pexen -j {w}": [sys.executable, "-m", "pexen.harness.cli", "start",
                                      f"pytest:{path}", "-j", str(w),
                                      *([f"--pytest-args={extra}"] if extra else [])],
                }
                walls: Dict[str, List[float]] = {tool: [] for tool in tools}
                for rep in range(args.reps):
                    for tool, cmd in tools.items():
                        journal = os.path.join(tmp, f"{name}-{rep}.sqlite")
                        run_env = dict(env, PEXEN_JOURNAL=journal) if "pexen" in tool else env
                        log = os.path.join(tmp, f"{name}-{tool.replace(' ', '_')}.{rep}")
                        wall, _, rc = timed(cmd, str(top), run_env, log, timeout=900)
                        if rc != 0:
                            with open(log + ".out", errors="replace") as f:
                                print(f"  {name} {path} {tool}: FAILED (exit {rc})\n"
                                      f"{f.read()[-2000:]}")
                            return 1
                        walls[tool].append(wall)
                base = statistics.median(walls[f"pytest -n {w}"])
                label = f"{name} {project.version} pytest:{path}" + (f" {extra}" if extra else "")
                print(f"  {label}")
                for tool, values in walls.items():
                    med = statistics.median(values)
                    print(f"    {tool:12} {med:6.2f} s median "
                          f"({', '.join(f'{v:.2f}' for v in values)}); "
                          f"{med / base:.2f}x pytest -n {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""pexen-harness against its peers: whole-process wall time of N trivial tests.

Every peer runs in the same invocation, on the same generated workloads:

- ``pexen 0.0.3``: the original pexen from PyPI, driven through its own API: a
  driver script collects the tasks with its factories (``ModuleFactory`` for
  the module, ``FilesystemFactory`` for the executables), runs them with
  ``Sched(tasks).run(ThreadWorkerPool(workers=W))`` and prints how many passed;
- ``doit``: a ``dodo.py`` of N subtasks, ``doit run -n W -P thread`` with a
  fresh JSON dep-file (``--backend json``) each run;
- ``pytest``: plain ``pytest FILE``;
- ``pytest-xdist``: ``pytest -n W FILE``;
- the serial loop (executables only): a ``python -c`` script calling
  ``subprocess.run`` on each file in turn, one core: the floor, not a peer;
- ``pexen-harness start`` from this checkout, with its defaults (journal,
  output capture, watchdog, the process pool), ``-j W``, a fresh ``--journal``
  each run.

The peers come from PyPI, each in its own virtualenv built by this script (``python
-m venv`` + ``pip install`` of the versions in ``PINS``) under ``--venvs``
(default ``$XDG_CACHE_HOME/pexen-bench-peers``, else ``~/.cache/...``); a venv
whose marker file holds the same pins and interpreter is reused.

Workloads, generated once per size into a temporary directory:

- ``python``: N functions ``def test_00001(): pass``, ...: decorated with
  ``@func_meta()`` for pexen-harness and pexen 0.0.3 (``ptests.py``), plain for
  pytest (``test_plain.py``), the same functions as doit python-actions
  (``dodo.py``);
- ``exe``: N executables ``t00001.sh`` (``#!/bin/sh`` / ``exit 0``); pytest runs
  a module parametrized over the files (``subprocess.run([path], check=True)``),
  doit N tasks with the command ``[path]`` (no shell).

Timed: ``time.perf_counter()`` around starting the tool's command and waiting
for it, interpreter start-up included; stdout and stderr go to files. The
tools run without ``PYTHONDONTWRITEBYTECODE`` (so with their bytecode cached,
as the peers' venvs have it from pip), after an untimed warm-up run of each
on 20 tests. Not timed: checking the run, which counts only if N tests ran and passed:

- pytest, pytest-xdist: exit 0 and the summary line saying ``N passed`` and
  nothing failed, errored or was skipped;
- doit: exit 0, N lines ``.  t:NAME`` (a task started) on stdout, and N
  entries ``t:NAME`` in the dep-file, which doit writes for a task only once
  its actions succeeded;
- pexen 0.0.3 and the serial loop: exit 0 and the driver's own count of the
  results without an exception (or of exit codes 0);
- pexen-harness: exit 0 and, read from its journal with ``sqlite3``: one run,
  ``finished`` with exit code 0, N tasks, each ``pass``.

A run that does not validate shows ``invalid`` in the table, with the reason
on stderr, and the exit code is 1. Otherwise it is a report: 0 whatever the
figures.

    python bench/peers.py            # 2k and 20k, 3 reps (about 15 min, quiet 2-core machine)
    python bench/peers.py --quick    # 200 tests, 1 rep (about 30 s once the venvs exist)
    python bench/peers.py --only harness,pexen003 --workload python --sizes 2000
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

# The peers' virtualenvs: what each gets from PyPI.
PINS: Dict[str, List[str]] = {
    "pexen003": ["pexen==0.0.3"],
    "doit": ["doit==0.37.0"],
    "pytest": ["pytest==9.2.0"],
    "xdist": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
}

# Table order; "serial" is the floor of the executables, not a peer.
PEERS = ("pexen003", "doit", "pytest", "xdist", "serial", "harness")
WORKLOADS = ("python", "exe")
MARKER = "pexen-bench-pins.json"

RUNNING: List[subprocess.Popen] = []

DRIVER_003 = '''\
import importlib
import sys

from pexen.factory import FilesystemFactory, ModuleFactory
from pexen.sched import Sched
from pexen.sched.pool import ThreadWorkerPool

kind, where, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "python":
    sys.path.insert(0, where)
    tasks = list(ModuleFactory()(importlib.import_module("ptests")))
else:
    tasks = list(FilesystemFactory()(where))
passed = 0
for res in Sched(tasks).run(ThreadWorkerPool(workers=workers)):
    if res.excinfo is None:
        passed += 1
print(f"passed {passed} of {len(tasks)}")
'''

SERIAL = '''\
import os
import subprocess
import sys

where = sys.argv[1]
passed = 0
for name in sorted(os.listdir(where)):
    passed += subprocess.run([os.path.join(where, name)]).returncode == 0
print(f"passed {passed}")
'''


class BenchError(Exception):
    """The bench itself could not go on (a venv that does not build, ...)."""


# -- virtualenvs -------------------------------------------------------------------


def default_venvs() -> str:
    """Where the peers' virtualenvs are kept unless --venvs says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pexen-bench-peers")


def _marker_wanted(pins: Sequence[str]) -> Dict[str, object]:
    return {"pins": list(pins), "python": sys.version, "base_prefix": sys.base_prefix}


def ensure_venv(root: str, name: str, pins: Sequence[str]) -> Tuple[str, List[str]]:
    """The bin directory of the venv `name` holding `pins`, built if missing or
    stale, and what pip reports installed there."""
    where = os.path.join(root, name)
    bindir = os.path.join(where, "bin")
    marker = os.path.join(where, MARKER)
    wanted = _marker_wanted(pins)
    try:
        with open(marker) as f:
            found = json.load(f)
        if ({k: found.get(k) for k in wanted} == wanted
                and os.access(os.path.join(bindir, "python"), os.X_OK)):
            return bindir, list(found.get("installed", []))
    except (OSError, ValueError):
        pass
    print(f"building the {name} venv: {' '.join(pins)}", file=sys.stderr, flush=True)
    shutil.rmtree(where, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    log = os.path.join(root, f"{name}.build.log")
    python = os.path.join(bindir, "python")
    steps = [
        [sys.executable, "-m", "venv", where],
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
         *pins],
    ]
    with open(log, "wb") as out:
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL).returncode != 0:
                raise BenchError(f"building the {name} venv failed: {' '.join(cmd)}\n"
                                 f"{_tail(log)}")
    freeze = subprocess.run([python, "-m", "pip", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout.split()
    with open(marker + ".tmp", "w") as f:
        json.dump({**wanted, "installed": freeze}, f, indent=1)
    os.replace(marker + ".tmp", marker)
    os.unlink(log)
    return bindir, freeze


# -- workloads ---------------------------------------------------------------------


def _width(n: int) -> int:
    return max(5, len(str(n)))


def _functions(n: int, decorate: bool) -> str:
    w = _width(n)
    deco = "@func_meta()\n" if decorate else ""
    head = "from pexen.sched.meta import func_meta\n\n" if decorate else ""
    return head + "".join(f"\n{deco}def test_{i:0{w}d}():\n    pass\n" for i in range(1, n + 1))


def write_workloads(where: str, n: int) -> Dict[str, str]:
    """Write both workloads of `n` tests under `where`; returns their paths by name."""
    w = _width(n)
    paths = {name: os.path.join(where, name)
             for name in ("py", "pytest-py", "doit-py", "exe", "pytest-exe", "doit-exe")}
    for path in paths.values():
        os.makedirs(path)
    with open(os.path.join(paths["py"], "ptests.py"), "w") as f:
        f.write(_functions(n, decorate=True))
    with open(os.path.join(paths["pytest-py"], "test_plain.py"), "w") as f:
        f.write(_functions(n, decorate=False))
    with open(os.path.join(paths["doit-py"], "dodo.py"), "w") as f:
        f.write(_functions(n, decorate=False))
        f.write("\n\ndef task_t():\n"
                "    for name, func in sorted(globals().items()):\n"
                "        if name.startswith('test_'):\n"
                "            yield {'name': name[5:], 'actions': [(func,)], 'verbosity': 0}\n")
    for i in range(1, n + 1):
        path = os.path.join(paths["exe"], f"t{i:0{w}d}.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    with open(os.path.join(paths["pytest-exe"], "test_exe.py"), "w") as f:
        f.write("import os\nimport subprocess\n\nimport pytest\n\n"
                f"DIR = {paths['exe']!r}\n\n\n"
                "@pytest.mark.parametrize('name', sorted(os.listdir(DIR)))\n"
                "def test_exe(name):\n"
                "    subprocess.run([os.path.join(DIR, name)], check=True)\n")
    with open(os.path.join(paths["doit-exe"], "dodo.py"), "w") as f:
        f.write("import os\n\n"
                f"DIR = {paths['exe']!r}\n\n\n"
                "def task_t():\n"
                "    for name in sorted(os.listdir(DIR)):\n"
                "        yield {'name': name, 'actions': [[os.path.join(DIR, name)]],\n"
                "               'verbosity': 0}\n")
    for name in ("py", "doit-py", "doit-exe"):
        compileall.compile_dir(paths[name], quiet=1)
    return paths


# -- running -----------------------------------------------------------------------


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def timed(cmd: Sequence[str], cwd: str, env: Dict[str, str], log: str,
          timeout: float) -> Tuple[float, float, Optional[int]]:
    """Run `cmd` in a session of its own, stdout to `log`.out and stderr to
    `log`.err; returns (wall seconds, CPU seconds, exit code or None after a
    timeout). The CPU is user + system of the process and of every
    descendant its parent waited for (RUSAGE_CHILDREN before and after: one
    tool runs at a time)."""
    with open(log + ".out", "wb") as out, open(log + ".err", "wb") as err:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        RUNNING.append(proc)
        try:
            rc: Optional[int] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            rc = None
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    RUNNING.remove(proc)
    # What the tool left behind in its session (untimed): give it a moment, then kill it.
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(proc.pid):
        print(f"  warning: {os.path.basename(cmd[0])} left processes behind; killed",
              file=sys.stderr)
        _kill_group(proc)
    return wall, cpu, rc


def check_pytest(out: str, n: int) -> Optional[str]:
    """None if pytest's summary line says n passed and nothing else went wrong."""
    lines = [line for line in out.splitlines() if line.startswith("=") and " in " in line]
    if not lines:
        return "no summary line"
    counts = {word: int(num) for num, word in re.findall(r"(\d+) (\w+)", lines[-1])}
    bad = {k: v for k, v in counts.items() if k not in ("passed", "warning", "warnings")}
    if counts.get("passed") != n or bad:
        return f"summary: {lines[-1].strip('= ')}"
    return None


def check_doit(out: str, depfile: str, n: int) -> Optional[str]:
    """None if doit recorded n successes in its dep-file (it writes a task's
    entry only once its actions succeeded). Its `.  t:NAME` lines are not
    counted: with -P thread two threads sometimes write into one line."""
    try:
        with open(depfile) as f:
            done = sum(1 for key in json.load(f) if key.startswith("t:"))
    except (OSError, ValueError) as exc:
        return f"dep-file unreadable: {exc}"
    if done != n:
        started = out.count(".  t:")
        return f"{done} recorded successful of {n} ({started} started)"
    return None


def check_count(out: str, n: int) -> Optional[str]:
    """None if the driver's last line is 'passed n ...'."""
    lines = out.strip().splitlines()
    m = re.match(r"passed (\d+)", lines[-1]) if lines else None
    if not m or int(m.group(1)) != n:
        return f"driver said {lines[-1] if lines else 'nothing'!r}, expected passed {n}"
    return None


def check_journal(journal: str, n: int) -> Optional[str]:
    """None if the journal holds one finished run, exit 0, of n tasks all passed."""
    try:
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"journal: {exc}"
    try:
        runs = con.execute("SELECT state, exit_code FROM runs").fetchall()
        states = dict(con.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    except sqlite3.Error as exc:
        return f"journal: {exc}"
    finally:
        con.close()
    if runs != [("finished", 0)]:
        return f"journal runs (state, exit code): {runs}"
    if states != {"pass": n}:
        return f"journal task states: {states}, expected {{'pass': {n}}}"
    return None


class Bench:
    """The peers' commands for one invocation."""

    def __init__(self, args: argparse.Namespace, bins: Dict[str, str], tmp: str) -> None:
        self.args = args
        self.bins = bins
        self.tmp = tmp
        self.driver = os.path.join(tmp, "drive_pexen003.py")
        with open(self.driver, "w") as f:
            f.write(DRIVER_003)
        script = os.path.join(os.path.dirname(sys.executable), "pexen-harness")
        self.harness = ([script] if os.access(script, os.X_OK)
                        else [sys.executable, "-m", "pexen.harness.cli"])
        # Every tool keeps its bytecode cache, as on a machine with no
        # PYTHONDONTWRITEBYTECODE: the peers' venvs were compiled by pip, this
        # checkout's modules and the generated tests are cached by their first run.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("PEXEN_") and k != "PYTHONDONTWRITEBYTECODE"}
        # The peers' venvs hold everything they need.
        self.venv_env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}

    def run(self, peer: str, workload: str, paths: Dict[str, str],
            n: int) -> Tuple[float, float, Optional[str]]:
        """One timed run of `peer`; returns (wall seconds, CPU seconds, None or
        why it is invalid)."""
        w = str(self.args.workers)
        scratch = tempfile.mkdtemp(prefix=f"{peer}-", dir=self.tmp)
        log = os.path.join(scratch, "log")
        timeout = 120 + 0.05 * n
        py = workload == "python"
        try:
            if peer in ("pytest", "xdist"):
                where = paths["pytest-py" if py else "pytest-exe"]
                cmd = [os.path.join(self.bins[peer], "pytest")]
                if peer == "xdist":
                    cmd += ["-n", w]
                cmd.append("test_plain.py" if py else "test_exe.py")
                wall, cpu, rc = timed(cmd, where, self.venv_env, log, timeout)
                why = check_pytest(_read(log + ".out"), n)
            elif peer == "doit":
                where = paths["doit-py" if py else "doit-exe"]
                dep = os.path.join(scratch, "doit-dep.json")
                cmd = [os.path.join(self.bins[peer], "doit"), "run", "-f",
                       os.path.join(where, "dodo.py"), "--backend", "json", "--db-file", dep,
                       "-n", w, "-P", "thread"]
                wall, cpu, rc = timed(cmd, where, self.venv_env, log, timeout)
                why = check_doit(_read(log + ".out"), dep, n)
            elif peer == "pexen003":
                where = paths["py" if py else "exe"]
                cmd = [os.path.join(self.bins[peer], "python"), self.driver, workload, where, w]
                wall, cpu, rc = timed(cmd, where, self.venv_env, log, timeout)
                why = check_count(_read(log + ".out"), n)
            elif peer == "serial":
                cmd = [sys.executable, "-c", SERIAL, paths["exe"]]
                wall, cpu, rc = timed(cmd, scratch, self.env, log, timeout)
                why = check_count(_read(log + ".out"), n)
            else:
                journal = os.path.join(scratch, "journal.sqlite")
                suite, where = ("ptests", paths["py"]) if py else (paths["exe"], scratch)
                cmd = [*self.harness, "start", suite, "-j", w, "--journal", journal]
                wall, cpu, rc = timed(cmd, where, self.env, log, timeout)
                why = check_journal(journal, n)
            if rc is None:
                why = f"timed out after {timeout:.0f} s"
            elif rc != 0:
                why = f"exit code {rc}" + (f"; {why}" if why else "")
            if why:
                tail = _tail(log + ".err") or _tail(log + ".out")
                why += f"\n    command: {' '.join(cmd)}" + (f"\n{tail}" if tail else "")
            return wall, cpu, why
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()


# -- report ------------------------------------------------------------------------


def labels(versions: Dict[str, str], workers: int) -> Dict[str, str]:
    """The table's row names."""
    return {
        "pexen003": f"pexen {versions.get('pexen003', '?')} (Sched + ThreadWorkerPool({workers}))",
        "doit": f"doit {versions.get('doit', '?')} (-n {workers} -P thread)",
        "pytest": f"pytest {versions.get('pytest', '?')}",
        "xdist": f"pytest-xdist {versions.get('xdist', '?')} (-n {workers})",
        "serial": "serial subprocess.run loop (floor)",
        "harness": f"pexen-harness start (-j {workers})",
    }


def _ms(seconds: float, n: int) -> str:
    return f"{seconds * 1000 / n:.3f}"


def report(results: Dict[Tuple[str, str, int], object], peers: Sequence[str],
           workloads: Sequence[str], sizes: Sequence[int], names: Dict[str, str],
           cpus: Optional[Dict[Tuple[str, str, int], List[float]]] = None) -> List[str]:
    """Print the tables; returns the columns where pexen-harness is ahead of every peer."""
    cols = [(wl, n) for wl in workloads for n in sizes]
    head = "| peer | " + " | ".join(f"{wl} N={n}" for wl, n in cols) + " |"
    rule = "|---|" + "---:|" * len(cols)

    def cell(peer: str, wl: str, n: int, spread: bool) -> str:
        got = results.get((peer, wl, n))
        if got is None:
            return "–"
        if got == "invalid":
            return "invalid"
        assert isinstance(got, list)
        if spread:
            return f"{_ms(min(got), n)}..{_ms(max(got), n)}"
        return _ms(statistics.median(got), n)

    def rows(spread: bool) -> None:
        print(head)
        print(rule)
        for peer in peers:
            print(f"| {names[peer]} | " + " | ".join(cell(peer, wl, n, spread)
                                                      for wl, n in cols) + " |")

    print("ms/test, median wall time of the whole process / N:\n")
    rows(False)
    ahead = []
    if "harness" in peers:
        ratios = []
        for wl, n in cols:
            mine = results.get(("harness", wl, n))
            best = None
            for peer in peers:
                got = results.get((peer, wl, n))
                if peer in ("harness", "serial") or not isinstance(got, list):
                    continue
                med = statistics.median(got)
                if best is None or med < best[0]:
                    best = (med, peer)
            if not isinstance(mine, list) or best is None:
                ratios.append("–")
                continue
            ratio = statistics.median(mine) / best[0]
            ratios.append(f"{ratio:.2f}x {names[best[1]].split(' (')[0]}")
            if ratio < 1:
                ahead.append(f"{wl} N={n}")
        print("| **pexen-harness / best peer** | " + " | ".join(ratios) + " |")
    print("\nspread, ms/test min..max of the repetitions:\n")
    rows(True)
    if cpus:
        # Where the wall time is near CPU / cores, the tool is bound by CPU;
        # well under it, by the latency of its steps.
        print("\nCPU ms/test, median user + system time of the process and what it "
              "waited for / N:\n")
        print(head)
        print(rule)
        for peer in peers:
            cells = []
            for wl, n in cols:
                got = results.get((peer, wl, n))
                cpu = cpus.get((peer, wl, n))
                cells.append("invalid" if got == "invalid" else
                             _ms(statistics.median(cpu), n) if cpu else "–")
            print(f"| {names[peer]} | " + " | ".join(cells) + " |")
    return ahead


def _fs_type(path: str) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def _harness_version() -> str:
    try:
        from importlib.metadata import version

        import pexen
        here = os.path.dirname(os.path.abspath(pexen.__file__))
        ver = version("pexen")
    except Exception as exc:  # only the header needs it
        return f"? ({exc})"
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    if commit:
        ver += f", commit {commit}" + (" + uncommitted changes under pexen/" if dirty else "")
    return ver


def _version_of(freeze: Sequence[str], dist: str) -> str:
    for line in freeze:
        name, _, ver = line.partition("==")
        if name.lower().replace("_", "-") == dist:
            return ver
    return "?"


# -- main --------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="2000,20000", help="test counts (default 2000,20000)")
    p.add_argument("--reps", type=int, default=3, help="runs of each (default 3; the median)")
    p.add_argument("--workers", type=int, default=2, help="-j / -n of every peer (default 2)")
    p.add_argument("--only", help=f"comma-separated peers among {','.join(PEERS)}")
    p.add_argument("--workload", choices=("python", "exe", "both"), default="both")
    p.add_argument("--quick", action="store_true", help="sizes 200, 1 rep")
    p.add_argument("--venvs", default=default_venvs(), help="where the peers' venvs are kept")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.reps = "200", 1
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes: comma-separated integers")
    if not args.sizes or min(args.sizes) < 1 or args.reps < 1 or args.workers < 1:
        p.error("sizes, reps and workers must be positive")
    args.peers = list(PEERS)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in PEERS]
        if unknown:
            p.error(f"--only: unknown peer(s) {unknown}; choose among {', '.join(PEERS)}")
        args.peers = [peer for peer in PEERS if peer in wanted]
    args.workloads = list(WORKLOADS) if args.workload == "both" else [args.workload]
    return args


def warm_up(bench: Bench, args: argparse.Namespace, tmp: str) -> None:
    """One untimed run of every peer on 20 tests of each workload: whatever
    the tools cache (bytecode, ...) is written before the clock starts, and a
    peer that cannot run at all says so at once (on stderr; its timed runs
    will show it too)."""
    where = os.path.join(tmp, "warm-up")
    os.makedirs(where)
    paths = write_workloads(where, 20)
    for wl in args.workloads:
        for peer in args.peers:
            if wl == "python" and peer == "serial":
                continue
            _, _, why = bench.run(peer, wl, paths, 20)
            if why:
                print(f"[warm-up {wl}] {peer}: invalid: {why}", file=sys.stderr, flush=True)
    shutil.rmtree(where, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the venvs, run every peer, print the tables; the exit code."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} before starting: something else is using "
              "the CPUs, the figures will be noisy", file=sys.stderr)
    bins: Dict[str, str] = {}
    freezes: Dict[str, List[str]] = {}
    try:
        for peer in args.peers:
            if peer in PINS:
                bins[peer], freezes[peer] = ensure_venv(args.venvs, peer, PINS[peer])
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 1
    dist = {"pexen003": "pexen", "doit": "doit", "pytest": "pytest", "xdist": "pytest-xdist"}
    versions = {peer: _version_of(freezes[peer], dist[peer]) for peer in freezes}
    names = labels(versions, args.workers)

    tmp = tempfile.mkdtemp(prefix="pexen-bench-peers-")
    results: Dict[Tuple[str, str, int], object] = {}
    cpus: Dict[Tuple[str, str, int], List[float]] = {}
    invalid = 0
    try:
        bench = Bench(args, bins, tmp)
        warm_up(bench, args, tmp)
        print(f"python {platform.python_version()}, nproc {os.cpu_count()}, load average "
              f"{load:.2f} before starting, temp dir on {_fs_type(os.path.realpath(tmp))}")
        print(f"pexen-harness: pexen {_harness_version()}, command "
              f"{' '.join(os.path.basename(c) for c in bench.harness)}")
        for peer in freezes:
            print(f"{names[peer].split(' (')[0]} venv: {', '.join(freezes[peer])}")
        print(f"sizes {','.join(map(str, args.sizes))}, {args.reps} rep(s), "
              f"{args.workers} workers\n", flush=True)
        for n in args.sizes:
            where = os.path.join(tmp, f"n{n}")
            os.makedirs(where)
            paths = write_workloads(where, n)
            for wl in args.workloads:
                peers = [p for p in args.peers if wl == "exe" or p != "serial"]
                for rep in range(args.reps):
                    for peer in peers:
                        key = (peer, wl, n)
                        try:
                            wall, cpu, why = bench.run(peer, wl, paths, n)
                        except (OSError, subprocess.SubprocessError) as exc:
                            wall, cpu, why = 0.0, 0.0, f"crashed: {exc}"
                        if why:
                            invalid += 1
                            results[key] = "invalid"
                            print(f"[{wl} N={n} rep {rep + 1}/{args.reps}] {peer}: invalid: "
                                  f"{why}", file=sys.stderr, flush=True)
                            continue
                        print(f"[{wl} N={n} rep {rep + 1}/{args.reps}] {peer}: {wall:.3f} s "
                              f"(CPU {cpu:.3f} s)", file=sys.stderr, flush=True)
                        if results.get(key) != "invalid":
                            results.setdefault(key, [])
                            results[key].append(wall)  # type: ignore[union-attr]
                            cpus.setdefault(key, []).append(cpu)
            shutil.rmtree(where, ignore_errors=True)
        print(f"(load average {os.getloadavg()[0]:.2f} at the end)\n")
        ahead = report(results, args.peers, args.workloads, args.sizes, names, cpus)
        if "harness" in args.peers:
            print("\nThe serial loop is the floor of the executables, not a peer: the ratio "
                  "compares pexen-harness with the best of the others.")
            print("pexen-harness ahead of every peer: "
                  + (", ".join(ahead) if ahead else "nowhere"))
        if invalid:
            print(f"\n{invalid} run(s) invalid (reasons on stderr)")
        return 1 if invalid else 0
    finally:
        for proc in list(RUNNING):
            _kill_group(proc)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fault injection as a benchmark: SIGKILL `pexen-harness` at random moments.

Each trial, in a fresh temporary directory:

1. writes a suite of 50 tasks with dependencies (chains of five) and locks (a
   ``disk`` lock, claimed or used), each appending ``start ATTEMPT TIME PID``
   to a file under its ``PEXEN_TASK_DATA`` when it begins and ``end ATTEMPT
   TIME PID`` when it ends (sleeping 20-80 ms between), so that an execution
   which ran to its end is known. ``--workload python`` (the default): a module
   ``crash.py`` of Python tasks, run as ``crash:tasks``; ``--workload exe``:
   a directory ``suite/`` of 50 ``#!/bin/sh`` executables declaring the same
   metadata in ``# pexen:`` comments, run as ``suite`` (keys ``t00`` ..
   ``t49``, the ``.sh`` dropped); ``--workload pytest``: a file
   ``test_crash.py`` of 50 pytest tests, the metadata as ``pexen`` markers,
   run as ``pytest:test_crash.py`` (keys ``test_crash/test_t00`` ..);
2. runs ``python -m pexen.harness.cli start SUITE -j 2 --pool POOL`` with
   that directory as cwd, SIGKILLs the controller after a random delay, then
   runs ``... resume`` (no options: the run's config keeps the pool) and may
   kill that too (1 to 4 kills per trial, drawn at random), until a session
   runs to its end. After a kill the next session starts once the killed
   controller's processes are gone (they are given --survivor-wait), or
   right away with ``--overlap`` (``resume`` then meets the survivors).
   ``trial.log`` in the trial directory says when each session started and
   each kill was sent;
3. checks:

   - every task has exactly one terminal event in the journal's ``events``
     table, and its ``tasks`` row is terminal: ``pass``, or ``error`` with a
     "crash loop" reason (a task running at each of --max-attempts kills);
   - no task that had passed before a kill ran again afterwards (its execution
     log, snapshotted right before each kill, is unchanged at the end);
   - no execution that ran to its end (logged ``end``) was followed by
     another one (a later ``start``): "finished-ran-again", whether or not
     the journal had recorded the pass before the kill;
   - every passed task ran as many times as the journal counts attempts;
   - the run's config has the pool given to ``start``, after every session;
   - the run is ``finished`` and the last session's exit code agrees with it;
   - no process is left: the descendants of this process, recursively (the
     bench makes itself a child subreaper on Linux, so the workers a killed
     controller orphans are still its descendants), within --survivor-wait
     of each kill and at the end of the trial;
   - no hang: a trial that does not end within --trial-timeout is a violation,
     and everything it started is killed.

A kill can come before the run exists in the journal (the controller was still
importing or creating the journal): then the next session is ``start`` again;
one that comes after the run finished needs no resume.

The journal: by default the controller is given no ``--journal``, so it is
``pexen-journal.sqlite`` in the trial directory (the tasks' directories in
``pexen-journal.sqlite.d/RUN/KEY/``), read with ``sqlite3`` directly
(read-only), not through pexen's reader. With ``--journal URL``, a
PostgreSQL server (``postgresql+psycopg://user@host:port/db``), each trial
gets a database of its own on that server: created empty before the trial,
given to ``start`` and every ``resume`` as ``--journal``, read with psycopg
in read-only transactions (the same queries; not ``pexen.journal.open``,
which would make the schema itself on a URL), and dropped after the trial,
its connections ended first (a kept trial's tables are dumped first to
``journal.json`` in its directory). The tasks' directories are then in
``pexen-data/RUN/KEY/`` in the trial directory (the controller's cwd).

Usage::

    python bench/crash_torture.py                  # 200 trials, Python tasks, process pool
    python bench/crash_torture.py --workload exe --pool thread
    python bench/crash_torture.py --quick          # 10 trials
    python bench/crash_torture.py --seed 7 --trial 42   # rerun one trial
    python bench/crash_torture.py --journal postgresql+psycopg://postgres@127.0.0.1:5432/postgres

It is a report, not a test: the exit code is 0 whatever it finds, unless the
bench itself crashed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import psutil

REPO = Path(__file__).resolve().parent.parent
JOURNAL = "pexen-journal.sqlite"
NTASKS = 50
TERMINAL = ("pass", "warn", "skip", "fail", "timeout", "error")
PR_SET_CHILD_SUBREAPER = 36

# The Python suite (after tests/harness/suites.py CRASH_SUITE). The task reads
# its context with pexen.context(): under the thread pool the PEXEN_*
# variables are not in os.environ.
SUITE = textwrap.dedent('''
    """50 tasks with dependencies and locks; each logs every execution."""
    import os
    import time

    import pexen
    from pexen.sched.meta import assign_val


    def _make(i):
        def task():
            ctx = pexen.context()
            log = os.path.join(ctx.data_dir, "runs")
            with open(log, "a") as f:
                f.write(f"start {ctx.attempt} {time.time():.6f} {os.getpid()}\\n")
            time.sleep(0.02 + (i % 7) * 0.01)
            with open(log, "a") as f:
                f.write(f"end {ctx.attempt} {time.time():.6f} {os.getpid()}\\n")
            return i
        task.__name__ = task.__qualname__ = f"t{i:02d}"
        meta = {}
        if i % 5:
            meta["requires"] = [f"p{i - 1}"]
        if i % 5 != 4:
            meta["provides"] = [f"p{i}"]
        if i % 3 == 0:
            meta["claims"] = ["disk"]
        elif i % 3 == 1:
            meta["uses"] = ["disk"]
        assign_val(task, **meta)
        return task


    def tasks():
        return [_make(i) for i in range(NTASKS)]
''').replace("NTASKS", str(NTASKS))


def task_meta(i: int) -> List[Tuple[str, str]]:
    """(field, value) of the metadata of task i (as the Python workload's
    `_make` gives it): chains of five, a ``disk`` lock claimed or used."""
    meta = []
    if i % 5:
        meta.append(("requires", f"p{i - 1}"))
    if i % 5 != 4:
        meta.append(("provides", f"p{i}"))
    if i % 3 == 0:
        meta.append(("claims", "disk"))
    elif i % 3 == 1:
        meta.append(("uses", "disk"))
    return meta


def exe_script(i: int) -> str:
    """Executable i of the exe workload: the same metadata and log as the
    Python task i, as comment metadata (doc/harness.md, "Metadata for
    executables")."""
    meta = " ".join(f"{field}={value}" for field, value in task_meta(i))
    return textwrap.dedent(f"""\
        #!/bin/sh
        # pexen: {meta}
        log="$PEXEN_TASK_DATA/runs"
        echo "start $PEXEN_ATTEMPT $(date +%s.%N) $PPID" >> "$log"
        sleep {0.02 + (i % 7) * 0.01:.2f}
        echo "end $PEXEN_ATTEMPT $(date +%s.%N) $PPID" >> "$log"
        """)


def pytest_file() -> str:
    """The pytest workload: test_crash.py, test i with the metadata of the
    Python task i as a ``pexen`` marker and the same log."""
    lines = ["import os", "import time", "", "import pytest", "", "import pexen", "", "",
             "def _body(i):",
             "    ctx = pexen.context()",
             "    log = os.path.join(ctx.data_dir, 'runs')",
             "    with open(log, 'a') as f:",
             "        f.write(f'start {ctx.attempt} {time.time():.6f} {os.getpid()}\\n')",
             "    time.sleep(0.02 + (i % 7) * 0.01)",
             "    with open(log, 'a') as f:",
             "        f.write(f'end {ctx.attempt} {time.time():.6f} {os.getpid()}\\n')",
             "", ""]
    for i in range(NTASKS):
        meta = ", ".join(f"{field}=[{value!r}]" for field, value in task_meta(i))
        lines += [f"@pytest.mark.pexen({meta})", f"def test_t{i:02d}():",
                  f"    _body({i})", "", ""]
    return "\n".join(lines)


def write_suite(tdir: Path, workload: str) -> str:
    """Write the workload's suite into `tdir`; the SUITE argument of start."""
    if workload == "python":
        (tdir / "crash.py").write_text(SUITE)
        return "crash:tasks"
    if workload == "pytest":
        (tdir / "test_crash.py").write_text(pytest_file())
        return "pytest:test_crash.py"
    suite = tdir / "suite"
    suite.mkdir()
    for i in range(NTASKS):
        path = suite / f"t{i:02d}.sh"
        path.write_text(exe_script(i))
        path.chmod(0o755)
    return "suite"


# -- processes ---------------------------------------------------------------


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux), so a killed
    controller's workers stay visible as our descendants."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(skip: Set[int]) -> None:
    """Reap our zombie children that no Popen owns (orphans we adopted)."""
    for child in psutil.Process().children():
        if child.pid in skip:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass


def live_descendants() -> List[psutil.Process]:
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            pass
    return out


def describe_procs(procs: List[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        try:
            cmd = " ".join(proc.cmdline())[:120] or proc.name()
            parts.append(f"pid {proc.pid} ({proc.status()}, parent {proc.ppid()}): {cmd}")
        except psutil.Error:
            parts.append(f"pid {proc.pid} (gone)")
    return "; ".join(parts)


def wait_descendants_gone(timeout: float, skip: Set[int]) -> List[psutil.Process]:
    """Wait until no descendant is alive; return those still alive at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        reap_orphans(skip)
        alive = [p for p in live_descendants() if p.pid not in skip]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_procs(procs: List[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


# -- reading the journal (read-only: sqlite3 on a file, psycopg on PostgreSQL) --


class SqliteJournal:
    """The trial's journal file, ``pexen-journal.sqlite`` in its directory (the
    controller's default: it is given no --journal), read with ``sqlite3``."""

    kind = "sqlite"
    #: where the tasks' directories are, in the trial directory
    data_root = f"{JOURNAL}.d"

    def __init__(self, tdir: Path) -> None:
        self.path = tdir / JOURNAL

    def options(self) -> List[str]:
        """The controller's journal options (none: the default file)."""
        return []

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def session(self) -> Iterator[Callable[..., List[tuple]]]:
        """A query function: SQL with ``?`` placeholders -> all its rows."""
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            yield lambda sql, params=(): con.execute(sql, params).fetchall()
        finally:
            con.close()

    def has_runs(self, query: Callable[..., List[tuple]]) -> bool:
        return "runs" in {r[0] for r in query(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self, keep: Optional[Path]) -> None:
        pass


def driver_url(url: str) -> str:
    """An SQLAlchemy URL (postgresql+psycopg://...) as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


def with_database(url: str, name: str) -> str:
    """`url` naming database `name` instead of its own."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def masked(url: str) -> str:
    """`url` with its password, if any, shown as ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(
        netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def pg_admin(server: str) -> Any:
    """An autocommit connection to the server's own database (of --journal)."""
    import psycopg

    return psycopg.connect(driver_url(server), autocommit=True)


class PgJournal:
    """A database of its own for one trial on the PostgreSQL server of
    --journal: created (empty) here, given to the controller as
    ``--journal URL``, read with psycopg in read-only transactions, and
    dropped by `close` (its connections ended first)."""

    kind = "postgresql"
    #: a URL journal's tasks go to ./pexen-data (the controller's cwd)
    data_root = "pexen-data"

    def __init__(self, server: str, name: str) -> None:
        self.server = server
        self.name = name
        with pg_admin(server) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        self.url = with_database(server, name)
        self._con: Any = None

    def options(self) -> List[str]:
        return ["--journal", self.url]

    def exists(self) -> bool:
        return True

    @contextmanager
    def session(self) -> Iterator[Callable[..., List[tuple]]]:
        if self._con is None or self._con.closed:
            import psycopg

            self._con = psycopg.connect(driver_url(self.url), autocommit=True,
                                        options="-c default_transaction_read_only=on")
        con = self._con

        def query(sql: str, params: Tuple[Any, ...] = ()) -> List[tuple]:
            return con.execute(sql.replace("%", "%%").replace("?", "%s"), params).fetchall()

        yield query

    def has_runs(self, query: Callable[..., List[tuple]]) -> bool:
        return bool(query("SELECT to_regclass('runs') IS NOT NULL")[0][0])

    def dump(self, to: Path) -> None:
        """The journal's tables as JSON (a kept trial's database is dropped)."""
        out: Dict[str, List[Any]] = {}
        with self.session() as query:
            for table in ("runs", "tasks", "events", "results"):
                if query(f"SELECT to_regclass('{table}') IS NOT NULL")[0][0]:
                    out[table] = [json.loads(r[0]) for r in query(
                        f"SELECT row_to_json(t)::text FROM {table} t ORDER BY id")]
        to.write_text(json.dumps(out, indent=1) + "\n")

    def close(self, keep: Optional[Path]) -> None:
        """Drop the database; first, with `keep`, dump it there."""
        try:
            if keep is not None:
                self.dump(keep)
        finally:
            if self._con is not None:
                self._con.close()
            self._drop()

    def _drop(self) -> None:
        """DROP DATABASE, its connections ended first (after tests/pgserver.py)."""
        deadline = time.monotonic() + 30
        with pg_admin(self.server) as con:
            while True:
                con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,))
                try:
                    con.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


TrialJournal = Union[SqliteJournal, PgJournal]


def db_errors() -> Tuple[type, ...]:
    """The exceptions of reading a journal."""
    errors: Tuple[type, ...] = (sqlite3.Error,)
    if "psycopg" in sys.modules:
        errors += (sys.modules["psycopg"].Error,)
    return errors


@dataclass
class Row:
    state: str
    reason: Optional[str]
    attempt: int


@dataclass
class JournalView:
    run_id: Optional[int] = None        # None: no run in the journal (yet)
    run_state: Optional[str] = None
    exit_code: Optional[int] = None
    rows: Dict[str, Row] = field(default_factory=dict)


def read_journal(journal: TrialJournal, with_rows: bool = True) -> JournalView:
    if not journal.exists():
        return JournalView()
    with journal.session() as query:
        if not journal.has_runs(query):
            return JournalView()
        runs = query("SELECT id, state, exit_code FROM runs ORDER BY id DESC LIMIT 1")
        if not runs:
            return JournalView()
        run = runs[0]
        view = JournalView(run[0], run[1], run[2])
        if with_rows:
            view.rows = {key: Row(state, reason, attempt) for key, state, reason, attempt
                         in query("SELECT key, state, reason, attempt FROM tasks "
                                  "WHERE run_id = ?", (run[0],))}
        return view


def terminal_events(journal: TrialJournal, run_id: int
                    ) -> Dict[str, List[Tuple[int, str]]]:
    """key -> [(event id, to_state)] of the run's terminal task events."""
    with journal.session() as query:
        marks = ",".join("?" * len(TERMINAL))
        out: Dict[str, List[Tuple[int, str]]] = {}
        for eid, key, to_state in query(
                f"SELECT id, key, to_state FROM events WHERE run_id = ? AND key IS NOT NULL "
                f"AND to_state IN ({marks}) ORDER BY id", (run_id, *TERMINAL)):
            out.setdefault(key, []).append((eid, to_state))
        return out


# An execution log's lines: (what: "start" or "end", attempt, wall-clock time,
# pid: the worker's (a Python task's own, an executable's parent)).
Entry = Tuple[str, str, Optional[float], str]
Log = List[Entry]


def parse_entry(line: str) -> Entry:
    parts = line.split() + ["", "", "", ""]
    try:
        at: Optional[float] = float(parts[2])
    except ValueError:
        at = None
    return parts[0], parts[1], at, parts[3]


def executions(trial_dir: Path, data_root: str) -> Dict[str, Log]:
    """key -> its execution log, in order (`data_root`: where the tasks'
    directories are in `trial_dir`, RUN/KEY/data under it)."""
    out: Dict[str, Log] = {}
    for run_dir in trial_dir.glob(f"{data_root}/*"):
        if not run_dir.is_dir():
            continue
        for p in run_dir.rglob("data/runs"):
            try:
                lines = p.read_text().splitlines()
            except OSError:
                continue
            # (a key's parts are directories: pytest:'s test_crash/test_t00)
            out[str(p.parent.parent.relative_to(run_dir))] = [parse_entry(line)
                                                              for line in lines]
    return out


def starts(log: Log) -> List[str]:
    """The attempt numbers of the executions a log records."""
    return [e[1] for e in log if e[0] == "start"]


def finished_then_ran(log: Log) -> bool:
    """Did an execution run to its end (``end``) and another begin after it?"""
    ended = False
    for e in log:
        if e[0] == "end":
            ended = True
        elif e[0] == "start" and ended:
            return True
    return False


def show_log(log: Optional[Log], t0: Optional[float] = None) -> str:
    """A log as 'start:1 end:1', or with t0 'start:1@0.259s(pid 7)' (s after t0)."""
    if log is None:
        return "none"
    if t0 is None:
        return " ".join(f"{e[0]}:{e[1]}" for e in log) or "empty"
    return " ".join(f"{e[0]}:{e[1]}" + (f"@{e[2] - t0:.3f}s" if e[2] is not None else "")
                    + (f"(pid {e[3]})" if e[3] else "") for e in log) or "empty"


def run_config(journal: TrialJournal, run_id: int) -> Dict[str, object]:
    with journal.session() as query:
        rows = query("SELECT config FROM runs WHERE id = ?", (run_id,))
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def task_events(journal: TrialJournal, run_id: int, t0: float) -> Dict[str, List[str]]:
    """key -> its events, each 'from>to@TIME' (s after t0) with the detail, if any."""
    with journal.session() as query:
        out: Dict[str, List[str]] = {}
        for key, frm, to, at, detail in query(
                "SELECT key, from_state, to_state, at, detail FROM events WHERE run_id = ? "
                "AND key IS NOT NULL ORDER BY id", (run_id,)):
            out.setdefault(key, []).append(f"{frm}>{to}@{at - t0:.3f}s"
                                           + (f" {detail}" if detail else ""))
        return out


def worker_recorded(journal: TrialJournal, run_id: int) -> int:
    """How many task events a worker recorded (its controller dead)."""
    with journal.session() as query:
        rows = query("SELECT detail FROM events WHERE run_id = ? AND key IS NOT NULL "
                     "AND detail LIKE '%recorded_by%'", (run_id,))
    return sum(1 for (detail,) in rows
               if json.loads(detail).get("recorded_by") in ("worker", "spawner"))


# -- one trial ---------------------------------------------------------------


@dataclass
class TrialResult:
    index: int
    planned_kills: int
    kills: int = 0
    kills_before_run: int = 0
    sessions: int = 0
    elapsed: float = 0.0
    violations: List[Tuple[str, str]] = field(default_factory=list)   # (kind, details)
    crash_loop: int = 0          # tasks ended 'error' by the crash-loop cap
    rerun: int = 0               # tasks that ran more than once (interrupted)
    worker_recorded: int = 0     # task events recorded by a worker (its controller dead)
    t0: float = 0.0              # wall-clock time the trial began
    session_at: List[float] = field(default_factory=list)   # each session's start (wall)
    kill_at: List[float] = field(default_factory=list)      # each kill (wall)
    directory: Optional[Path] = None


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


def tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_trial(index: int, seed: int, args: argparse.Namespace, base: Optional[str]
              ) -> TrialResult:
    rng = random.Random(f"{seed}:{index}")
    res = TrialResult(index, rng.randint(1, args.max_kills))
    tdir = Path(tempfile.mkdtemp(prefix=f"pexen-crash-{index}-", dir=base))
    res.directory = tdir
    if args.journal is None:
        play_trial(rng, res, args, tdir, SqliteJournal(tdir))
        return res
    journal = PgJournal(args.journal, f"pexen_crash_{seed}_{index}_{os.getpid()}")
    try:
        play_trial(rng, res, args, tdir, journal)
    finally:
        keep = res.violations or args.keep
        try:
            journal.close(tdir / "journal.json" if keep else None)
        except Exception as exc:
            res.violations.append(("bench", f"dumping or dropping database "
                                            f"{journal.name}: {type(exc).__name__}: {exc}"))
    return res


def play_trial(rng: random.Random, res: TrialResult, args: argparse.Namespace,
               tdir: Path, journal: TrialJournal) -> None:
    """Run trial `res` in `tdir` on `journal`: sessions, kills, then the checks."""
    suite = write_suite(tdir, args.workload)
    env = child_env()
    t0 = time.monotonic()
    res.t0 = time.time()
    deadline = t0 + args.trial_timeout
    snapshots: List[Tuple[int, Set[str], Dict[str, Log]]] = []
    # (--overlap) the processes each kill left, to be gone by a deadline
    watches: List[Tuple[int, float, List[psutil.Process]]] = []
    verb: Optional[str] = "start"
    last_code: Optional[int] = None
    proc: Optional[subprocess.Popen] = None

    def violation(kind: str, details: str) -> None:
        res.violations.append((kind, details))

    def note(text: str) -> None:
        """A line of the trial's own log (trial.log, wall-clock times)."""
        with open(tdir / "trial.log", "a") as f:
            f.write(f"{time.time():.6f} {text}\n")

    def check_watches(skip: Set[int], wait: bool = False) -> None:
        """The processes of killed controllers (--overlap): a violation if
        any is alive past its deadline (then it is killed). `wait`: until
        every watch is settled."""
        while watches:
            reap_orphans(skip)
            now = time.monotonic()
            for watch in list(watches):
                kill, due, procs = watch
                left = [p for p in procs if alive(p)]
                if left and now < due:
                    continue
                watches.remove(watch)
                if left:
                    violation("survivor", f"{len(left)} process(es) of the controller "
                                          f"killed by kill {kill} still alive "
                                          f"{args.survivor_wait:g} s later: "
                                          f"{describe_procs(left)}")
                    kill_procs(left)
            if not wait:
                return
            time.sleep(0.02)

    def wait_session(proc: subprocess.Popen, timeout: float) -> int:
        if not watches:
            return proc.wait(timeout=timeout)
        end = time.monotonic() + timeout
        while True:
            check_watches({proc.pid})
            try:
                return proc.wait(timeout=max(0.0, min(0.05, end - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    raise

    def check_pool(run_id: Optional[int], when: str) -> None:
        if run_id is None:
            return
        pool = run_config(journal, run_id).get("pool")
        if pool != args.pool:
            violation("pool", f"{when}: the run's config has pool {pool!r}, not "
                              f"{args.pool!r}")

    try:
        while verb is not None:
            res.sessions += 1
            cmd = [sys.executable, "-m", "pexen.harness.cli", verb]
            if verb == "start":
                cmd += [suite, "-j", str(args.workers), "--pool", args.pool]
            cmd += journal.options()
            out = open(tdir / f"session{res.sessions}.out", "w")
            err = open(tdir / f"session{res.sessions}.err", "w")
            try:
                res.session_at.append(time.time())
                proc = subprocess.Popen(cmd, cwd=tdir, env=env, stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL)
                note(f"session {res.sessions} started: pid {proc.pid}: {' '.join(cmd[1:])}")
            finally:
                out.close()
                err.close()
            if res.kills < res.planned_kills:
                delay = rng.uniform(args.min_delay, args.max_delay)
                timeout = min(delay, max(0.0, deadline - time.monotonic()))
            else:
                delay = None
                timeout = max(0.0, deadline - time.monotonic())
            try:
                last_code = wait_session(proc, timeout)
            except subprocess.TimeoutExpired:
                if delay is None or time.monotonic() >= deadline:
                    hung = [proc.pid] + [p.pid for p in live_descendants()]
                    view = read_journal(journal)
                    counts: Dict[str, int] = {}
                    for row in view.rows.values():
                        counts[row.state] = counts.get(row.state, 0) + 1
                    violation("hang", f"session {res.sessions} ({verb}) still running "
                                      f"after the trial timeout ({args.trial_timeout:g} s); "
                                      f"processes {hung}; run {view.run_state}, tasks "
                                      f"{counts}; stderr: "
                                      f"{tail(tdir / f'session{res.sessions}.err')}")
                    kill_procs(live_descendants())
                    proc.wait()
                    proc = None
                    break
                # The kill: snapshot what had passed, and the logs, right before.
                view = read_journal(journal)
                passed = {k for k, r in view.rows.items() if r.state == "pass"}
                logs = executions(tdir, journal.data_root)
                res.kill_at.append(time.time())
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                note(f"kill {res.kills + 1} (sent at {res.kill_at[-1]:.6f}): session "
                     f"{res.sessions}, pid {proc.pid}, reaped")
                proc = None
                res.kills += 1
                snapshots.append((res.kills, passed, logs))
                check_pool(view.run_id, f"before kill {res.kills}")
                if args.overlap:
                    watches.append((res.kills, time.monotonic() + args.survivor_wait,
                                    live_descendants()))
                else:
                    left = wait_descendants_gone(args.survivor_wait, set())
                    if left:
                        violation("survivor", f"{len(left)} process(es) of the controller "
                                              f"killed by kill {res.kills} still alive "
                                              f"{args.survivor_wait:g} s later: "
                                              f"{describe_procs(left)}")
                        kill_procs(left)
                after = read_journal(journal, with_rows=False)
                if after.run_id is None:
                    res.kills_before_run += 1
                    verb = "start"
                elif after.run_state == "finished":
                    verb = None
                    last_code = None
                else:
                    verb = "resume"
                continue
            proc = None
            if last_code not in (0, 1):
                violation("exit", f"session {res.sessions} ({verb}) exited {last_code}: "
                                  f"{tail(tdir / f'session{res.sessions}.err')}")
            verb = None
        check_watches(set(), wait=True)
        check_pool(read_journal(journal, with_rows=False).run_id, "at the end")
    except Exception as exc:  # the bench itself: report, do not hang
        violation("bench", f"{type(exc).__name__}: {exc}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    left = wait_descendants_gone(args.survivor_wait, set())
    if left:
        violation("leftover", f"{len(left)} process(es) alive at the end of the trial: "
                              f"{describe_procs(left)}")
        kill_procs(left)
        reap_orphans(set())
    res.elapsed = time.monotonic() - t0
    check_trial(res, journal, tdir, snapshots, last_code)


def check_trial(res: TrialResult, journal: TrialJournal, tdir: Path,
                snapshots: List[Tuple[int, Set[str], Dict[str, Log]]],
                last_code: Optional[int]) -> None:
    def violation(kind: str, details: str) -> None:
        res.violations.append((kind, details))

    try:
        view = read_journal(journal)
    except db_errors() as exc:
        violation("journal", f"cannot read the journal: {exc}")
        return
    final = executions(tdir, journal.data_root)
    # No task that had passed before a kill ran again afterwards.
    for kill, passed, logs in snapshots:
        for key in sorted(passed):
            if final.get(key) != logs.get(key):
                row = view.rows.get(key)
                violation("ran-again", f"{key} had passed before kill {kill} (its log "
                                       f"then: {show_log(logs.get(key))}), ran again "
                                       f"after: {show_log(final.get(key))}; row now "
                                       f"{row.state if row else None}")
    # No execution that ran to its end was followed by another.
    again = [key for key, log in sorted(final.items()) if finished_then_ran(log)]
    if again:
        t0 = res.t0
        events = task_events(journal, view.run_id, t0) if view.run_id is not None else {}
        for key in again:
            row = view.rows.get(key)
            violation("finished-ran-again",
                      f"{key} ran to its end, then ran again (times in s after the trial "
                      f"began; sessions began at "
                      f"{', '.join(f'{t - t0:.3f}' for t in res.session_at)}, kills at "
                      f"{', '.join(f'{t - t0:.3f}' for t in res.kill_at) or 'none'}): "
                      f"log {show_log(final[key], t0)}; row {row.state if row else None} "
                      f"attempt {row.attempt if row else None}; events: "
                      + "; ".join(events.get(key, [])))
    if view.run_id is None:
        violation("unfinished", "no run in the journal at the end")
        return
    if view.run_state != "finished":
        counts: Dict[str, int] = {}
        for row in view.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        violation("unfinished", f"run {view.run_id} is {view.run_state!r} at the end; "
                                f"tasks {counts}")
        return
    if len(view.rows) != NTASKS:
        violation("tasks", f"{len(view.rows)} task rows, not {NTASKS}")
    ends = terminal_events(journal, view.run_id)
    for key in sorted(set(ends) - set(view.rows)):
        violation("terminal", f"terminal events for {key}, which has no row")
    failed = False
    for key, row in sorted(view.rows.items()):
        evs = ends.get(key, [])
        if len(evs) != 1:
            violation("terminal", f"{key}: {len(evs)} terminal events "
                                  f"{[s for _, s in evs]} (row {row.state})")
        elif evs[0][1] != row.state:
            violation("terminal", f"{key}: terminal event {evs[0][1]} but row {row.state}")
        if row.state == "error" and row.reason and "crash loop" in row.reason:
            res.crash_loop += 1
            failed = True
        elif row.state == "skip" and row.reason and "not met" in row.reason:
            pass  # what needed a task ended by the crash-loop cap
        elif row.state != "pass":
            violation("outcome", f"{key} ended {row.state!r} ({row.reason!r}); expected "
                                 "pass, or error by the crash-loop cap")
            failed = failed or row.state in ("fail", "timeout", "error")
        # Every execution must be a counted attempt (the crash-loop cap relies
        # on it): no attempt number twice, no more executions than attempts.
        # Fewer is fine: an attempt is counted when the task is handed out, and
        # a kill may come before its body runs.
        runs = starts(final.get(key, []))
        if len(runs) > 1:
            res.rerun += 1
        if len(runs) > row.attempt or len(set(runs)) != len(runs):
            violation("attempts", f"{key} ended {row.state} at attempt {row.attempt} but "
                                  f"ran {len(runs)} time(s) (logged attempts {runs})")
    res.worker_recorded = worker_recorded(journal, view.run_id)
    want = 1 if failed else 0
    if view.exit_code != want:
        violation("exit", f"run exit code {view.exit_code} in the journal, expected {want}")
    if last_code is not None and last_code != want:
        violation("exit", f"the last session exited {last_code}, expected {want}")


# -- the report ----------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="SIGKILL pexen-harness at random moments, resume, and check that "
                    "nothing is lost or run twice.")
    parser.add_argument("--trials", type=int, default=200, help="default 200")
    parser.add_argument("--quick", action="store_true", help="10 trials")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: a random one, printed)")
    parser.add_argument("--trial", type=int, default=None, metavar="I",
                        help="run only trial I of --seed (to reproduce a violation)")
    parser.add_argument("--workload", choices=("python", "exe", "pytest"), default="python",
                        help="the suite: 50 Python tasks (crash:tasks, the default), "
                             "50 #!/bin/sh executables of the same shape (a directory), "
                             "or a pytest file of 50 such tests (pytest:test_crash.py)")
    parser.add_argument("--pool", choices=("process", "thread"), default="process",
                        help="start's --pool (default process); resume is given none")
    parser.add_argument("--overlap", action="store_true",
                        help="start the next session right after a kill, while the "
                             "killed controller's processes may still run (default: "
                             "once they are gone)")
    parser.add_argument("-j", "--workers", type=int, default=2,
                        help="the controller's -j (default 2)")
    parser.add_argument("--max-kills", type=int, default=4,
                        help="kills per trial are drawn from 1..this (default 4)")
    parser.add_argument("--min-delay", type=float, default=0.0,
                        help="shortest delay before a kill, s (default 0)")
    parser.add_argument("--max-delay", type=float, default=2.5,
                        help="longest delay before a kill, s (default 2.5; an "
                             "uninterrupted run takes about 2 s, either workload "
                             "and pool)")
    parser.add_argument("--trial-timeout", type=float, default=120.0,
                        help="a trial still running after this is a hang (default 120 s)")
    parser.add_argument("--survivor-wait", type=float, default=10.0,
                        help="how long the processes of a killed controller get to "
                             "die (default 10 s)")
    parser.add_argument("--max-time", type=float, default=None,
                        help="start no trial after this many seconds")
    parser.add_argument("--journal", default=None, metavar="URL",
                        help="a PostgreSQL server (postgresql+psycopg://user@host:port/db):"
                             " each trial gets a database of its own there, created "
                             "before it and dropped after it, given to the controller "
                             "with --journal (default: a journal file, "
                             f"{JOURNAL}, in each trial directory)")
    parser.add_argument("--dir", default=None,
                        help="where the trial directories go (default: the temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep every trial directory (default: only failed ones)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = 10
    if args.trials < 1 or args.max_kills < 1 or args.workers < 1:
        parser.error("--trials, --max-kills and --workers must be >= 1")
    if not 0 <= args.min_delay <= args.max_delay:
        parser.error("need 0 <= --min-delay <= --max-delay")
    if args.workload == "pytest" and args.pool == "thread":
        parser.error("--workload pytest runs on the process pool (a pytest suite refuses "
                     "--pool thread)")
    server = ""
    if args.journal is not None:
        if not args.journal.startswith(("postgresql://", "postgresql+psycopg://")):
            parser.error("--journal takes a PostgreSQL URL: postgresql+psycopg://...")
        try:
            with pg_admin(args.journal) as con:
                server = f"PostgreSQL {con.execute('SHOW server_version').fetchone()[0]}"
        except ImportError:
            parser.error("--journal needs psycopg 3 (pip install 'pexen[postgres]')")
        except Exception as exc:
            parser.error(f"cannot connect to {masked(args.journal)}: {exc}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    indices = [args.trial] if args.trial is not None else list(range(args.trials))

    reaper = become_subreaper()
    try:
        load = f", 1-min load average {os.getloadavg()[0]:.2f} before starting"
    except (AttributeError, OSError):
        load = ""
    workload = {"python": "Python tasks (crash:tasks)",
                "exe": "executables (#!/bin/sh, a directory suite)",
                "pytest": "pytest tests (pytest:test_crash.py)"}[args.workload]
    kind = "sqlite" if args.journal is None else "postgresql"
    print(f"pexen crash torture: {len(indices)} trial(s), seed {seed}, "
          f"workload {args.workload}: {NTASKS} {workload}, --pool {args.pool}, "
          f"-j {args.workers}")
    if args.journal is None:
        print(f"journal: sqlite, {JOURNAL} in each trial directory (the default)")
    else:
        print(f"journal: postgresql, a database per trial on {server} at "
              f"{masked(args.journal)} (given as --journal to start and resume)")
    print(f"1-{args.max_kills} kills per trial, kill delays {args.min_delay:g}.."
          f"{args.max_delay:g} s, next session "
          + ("right after a kill (--overlap)" if args.overlap else
             f"once the killed controller's processes are gone (up to "
             f"{args.survivor_wait:g} s)")
          + f", trial timeout {args.trial_timeout:g} s", flush=True)
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs{load}; pexen {code_version()}; child subreaper: "
          f"{'yes' if reaper else 'no (orphaned workers are not seen)'}", flush=True)
    leftover = live_descendants()
    if leftover:
        print(f"warning: this process already has children: {describe_procs(leftover)}",
              file=sys.stderr)

    results: List[TrialResult] = []
    t_start = time.monotonic()
    stopped_early = False
    for n, index in enumerate(indices, 1):
        if args.max_time is not None and time.monotonic() - t_start > args.max_time:
            stopped_early = True
            break
        res = run_trial(index, seed, args, args.dir)
        results.append(res)
        ok = not res.violations
        if res.directory is not None and (ok and not args.keep):
            shutil.rmtree(res.directory, ignore_errors=True)
        early = (f" ({res.kills_before_run} before the run existed)"
                 if res.kills_before_run else "")
        print(f"[{n}/{len(indices)}] trial {index}: {res.kills} kill(s){early}, "
              f"{res.sessions} session(s), {res.elapsed:.1f} s, "
              + ("ok" if ok else f"{len(res.violations)} VIOLATION(S), kept in "
                 f"{res.directory}"), file=sys.stderr, flush=True)
    total = time.monotonic() - t_start

    failed = [r for r in results if r.violations]
    kills = sum(r.kills for r in results)
    times = [r.elapsed for r in results]
    hist: Dict[int, int] = {}
    for r in results:
        hist[r.kills] = hist.get(r.kills, 0) + 1
    print()
    if stopped_early:
        print(f"stopped after {len(results)} of {len(indices)} trials (--max-time "
              f"{args.max_time:g} s)")
    print(f"trials:        {len(results)}: {len(results) - len(failed)} passed, "
          f"{len(failed)} failed (journal {kind})")
    print(f"kills made:    {kills} ({sum(r.kills_before_run for r in results)} before the "
          f"run existed in the journal); trials by kills made: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items())))
    print(f"sessions:      {sum(r.sessions for r in results)} controllers started "
          "(start + resume)")
    print(f"tasks re-run:  {sum(r.rerun for r in results)} (ran more than once, being "
          f"interrupted); ended by the crash-loop cap: {sum(r.crash_loop for r in results)}"
          f" in {sum(1 for r in results if r.crash_loop)} trial(s)")
    print(f"by workers:    {sum(r.worker_recorded for r in results)} task results recorded "
          f"by a worker whose controller was dead, in "
          f"{sum(1 for r in results if r.worker_recorded)} trial(s)")
    if times:
        print(f"time:          {total:.0f} s total; per trial median "
              f"{statistics.median(times):.1f} s, mean {statistics.mean(times):.1f} s, "
              f"max {max(times):.1f} s")

    kinds = {
        "terminal": "every task has exactly one terminal event (and it matches its row)",
        "outcome": "every task ends pass, or error with a 'crash loop' reason (or skip: "
                   "what it needs was)",
        "ran-again": "no task that had passed before a kill ran again",
        "finished-ran-again": "no execution that ran to its end (logged 'end') was "
                              "followed by another (a later 'start')",
        "attempts": "every execution is a journaled attempt (no attempt number twice, "
                    "no more executions than attempts)",
        "pool": f"the run's config keeps --pool {args.pool} (before each kill, at the "
                "end)",
        "unfinished": "the run is finished at the end of the trial",
        "exit": "exit codes are 0/1 and agree with the outcomes",
        "survivor": "a killed controller's processes die with it "
                    f"(within {args.survivor_wait:g} s)",
        "leftover": "no process left at the end of a trial",
        "hang": f"no trial hangs (timeout {args.trial_timeout:g} s)",
    }
    found: Dict[str, int] = {}
    trials_with: Dict[str, int] = {}
    for r in results:
        for kind, _ in r.violations:
            found[kind] = found.get(kind, 0) + 1
        for kind in {kind for kind, _ in r.violations}:
            trials_with[kind] = trials_with.get(kind, 0) + 1
    per = {"finished-ran-again": "task(s)", "ran-again": "task(s)"}

    def counted(kind: str) -> str:
        return (f"{found[kind]} {per.get(kind, 'violation(s)')} in {trials_with[kind]} "
                f"trial(s)")

    print()
    print("checks:")
    for kind, text in kinds.items():
        n = found.get(kind, 0)
        print(f"  [{'PASS' if not n else 'FAIL'}] {kind}: {text}"
              + (f": {counted(kind)}" if n else ""))
    other = sorted(set(found) - set(kinds))
    for kind in other:
        print(f"  [FAIL] {kind}: {counted(kind)}")
    if failed:
        print()
        print("violations:")
        for r in failed:
            dump = ("; its database's tables in journal.json there"
                    if args.journal is not None else "")
            print(f"  trial {r.index} (--seed {seed} --trial {r.index}; {r.kills} kill(s), "
                  f"{r.sessions} session(s); kept in {r.directory}{dump}):")
            for kind, details in r.violations:
                print(f"    {kind}: {details}")
    crashed = any(kind == "bench" for r in results for kind, _ in r.violations)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The journal: opening (and refusing), the writer's order and group commit,
the reader API, values as JSON."""

import contextlib
import json
import os
import pathlib
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pexen.journal as journal
from pexen.journal import (
    JournalCorruptError,
    JournalLocationError,
    JournalTooNewError,
    NotAJournalError,
    TaskState,
)
from pexen.journal.states import IllegalTransition, advance, worst

S = TaskState


def new_run(j, keys=("a", "b", "c")):
    return j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {"workers": 1},
                        [(k, {"requires": []}) for k in keys], host="h", boot_id="boot",
                        controller_pid=os.getpid(), controller_started=0.0)


@pytest.fixture
def jpath(tmp_path):
    return str(tmp_path / "j.sqlite")


def test_create_is_0600_wal_and_at_head(jpath):
    with journal.open(jpath) as j:
        new_run(j)
        con = j.db.take()   # one of the journal's own connections
        try:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
            assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert con.execute("SELECT version_num FROM alembic_version"
                               ).fetchone()[0] == "0005"
        finally:
            j.db.give(con)
    assert stat.S_IMODE(os.stat(jpath).st_mode) == 0o600
    # opening again finds the run
    with journal.open(jpath) as j:
        assert [r.id for r in j.runs()] == [1]


def test_open_without_create(jpath):
    with pytest.raises(JournalLocationError, match="no journal at"):
        journal.open(jpath, create=False)
    assert not os.path.exists(jpath)


def test_missing_directory(tmp_path):
    with pytest.raises(JournalLocationError, match="does not exist"):
        journal.open(str(tmp_path / "nope" / "j.sqlite"))


@contextlib.contextmanager
def read_only(path):
    """Make a file or directory read-only, also for root (chattr +i)."""
    if os.geteuid() != 0:
        mode = os.stat(path).st_mode
        os.chmod(path, 0o500 if os.path.isdir(path) else 0o400)
        try:
            yield
        finally:
            os.chmod(path, mode)
        return
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a path read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    with read_only(d):
        with pytest.raises(JournalLocationError, match="cannot create|read-only"):
            journal.open(str(d / "j.sqlite"))
    assert list(d.iterdir()) == []


def test_read_only_file_is_refused_untouched(jpath):
    with journal.open(jpath) as j:
        new_run(j)
    before = pathlib.Path(jpath).read_bytes()
    with read_only(jpath):
        with pytest.raises(JournalLocationError, match="read-only"):
            journal.open(jpath)
    assert pathlib.Path(jpath).read_bytes() == before


def test_not_sqlite_is_refused_untouched(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("my precious notes\n")
    with pytest.raises(NotAJournalError, match="not a pexen journal"):
        journal.open(str(p))
    assert p.read_text() == "my precious notes\n"


def test_other_sqlite_database_is_refused_untouched(tmp_path):
    p = tmp_path / "app.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('ann')")
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(NotAJournalError, match="SQLite database but not a pexen journal"):
        journal.open(str(p))
    assert p.read_bytes() == before


def test_newer_schema_is_refused_untouched(jpath):
    with journal.open(jpath) as j:
        new_run(j)
    con = sqlite3.connect(jpath)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    before = pathlib.Path(jpath).read_bytes()
    with pytest.raises(JournalTooNewError, match="newer pexen"):
        journal.open(jpath)
    assert pathlib.Path(jpath).read_bytes() == before


def test_truncated_journal_is_refused_untouched(jpath, tmp_path):
    with journal.open(jpath) as j:
        rid = new_run(j, keys=[f"t{i}" for i in range(500)])
        w = j.writer(rid)
        for i in range(500):
            w.transition(f"t{i}", S.SKIP, reason="x" * 200)
        w.close()
    data = pathlib.Path(jpath).read_bytes()
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(JournalCorruptError, match="corrupt"):
        j = journal.open(str(broken))
        j.tasks(1)  # a damaged page may only show when read
    assert broken.read_bytes() == data[: len(data) // 3]


@pytest.mark.parametrize("separate", [False, True], ids=["thread", "process"])
def test_writer_order_projection_and_group_commit(jpath, separate):
    with journal.open(jpath) as j:
        rid = new_run(j, keys=[f"t{i}" for i in range(200)])
        w = j.writer(rid, separate=separate)
        for i in range(200):
            key = f"t{i}"
            w.transition(key, S.QUEUED)
            w.transition(key, S.RUNNING, pid=1000 + i, started_at=1.0)
            w.transition(key, S.PASS if i % 2 else S.FAIL, reason=None if i % 2 else "bad",
                         finished_at=2.0)
        w.flush()
        assert w.commits < 600  # events handed over together commit together
        rows = {t.key: t for t in j.tasks(rid)}
        assert rows["t1"].state == "pass" and rows["t1"].pid == 1001
        assert rows["t2"].state == "fail" and rows["t2"].reason == "bad"
        evs = j.events(rid)
        task_evs = [e for e in evs if e.key == "t7"]
        assert [(e.from_state, e.to_state) for e in task_evs] == [
            ("pending", "queued"), ("queued", "running"), ("running", "pass")]
        ids = [e.id for e in evs]
        assert ids == sorted(ids)
        pid = w.process_pid
        w.close()
    if separate:  # the commits were made by a process of the writer's, ended now
        assert pid is not None and pid != os.getpid()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    else:
        assert pid is None


def test_illegal_transition_is_refused_in_the_caller(jpath):
    with journal.open(jpath) as j:
        rid = new_run(j)
        w = j.writer(rid)
        w.transition("a", S.SKIP, reason="x")
        with pytest.raises(IllegalTransition, match="skip -> running"):
            w.transition("a", S.RUNNING)
        w.close()


def test_follow_sees_new_events(jpath):
    with journal.open(jpath) as j:
        rid = new_run(j)
        seen = []
        done = threading.Event()

        def reader():
            with journal.open(jpath) as r:
                for ev in r.follow(rid, poll=0.02, stop=done.is_set):
                    seen.append((ev.key, ev.to_state))

        t = threading.Thread(target=reader)
        t.start()
        w = j.writer(rid)
        w.transition("a", S.QUEUED)
        w.transition("a", S.RUNNING)
        w.close()
        import time
        time.sleep(0.2)
        done.set()
        t.join(5)
        assert ("a", "running") in seen and (None, "running") in seen


def test_values_are_json_never_pickle():
    assert journal.to_json_value({"a": [1, 2]}) == ('{"a": [1, 2]}', True)
    text_, ok = journal.to_json_value({1, 2})
    assert ok is False and "{1, 2}" in text_
    text_, ok = journal.to_json_value(float("nan"))
    assert ok is False

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    text_, ok = journal.to_json_value(Broken())
    assert ok is False and "unrepresentable" in text_


def test_states_table():
    assert S.PASS.terminal and not S.RUNNING.terminal
    assert worst(S.WARN, S.FAIL) is S.FAIL and worst(S.ERROR, S.TIMEOUT) is S.ERROR
    advance(S.PENDING, S.QUEUED)
    with pytest.raises(IllegalTransition):
        advance(S.PENDING, S.PASS)


def test_migrations_ship_inside_the_package():
    import pexen.migrations

    here = os.path.dirname(pexen.migrations.__file__)
    assert os.path.exists(os.path.join(here, "env.py"))
    assert os.path.exists(os.path.join(here, "script.py.mako"))
    assert os.path.exists(os.path.join(here, "versions", "0001_initial.py"))


def test_values_json_changes_are_not_restorable():
    assert journal.to_json_value((1, 2))[1] is False
    assert journal.to_json_value({1: "a"})[1] is False
    assert journal.to_json_value({"a": [1, {"b": None}]})[1] is True
    assert journal.to_json_value(True) == ("true", True)


def test_small_flat_dicts_are_json_whatever_was_seen_before():
    """Small flat dicts take a quick way (remembered by their items and the
    types of their values): True is not 1, 0 is not False, and a dict with a
    value JSON changes is still not restorable."""
    for _ in range(2):
        assert journal.to_json_value({"a": 1}) == ('{"a": 1}', True)
        assert journal.to_json_value({"a": True}) == ('{"a": true}', True)
        assert journal.to_json_value({"a": 0}) == ('{"a": 0}', True)
        assert journal.to_json_value({"a": False}) == ('{"a": false}', True)
        assert journal.to_json_value({"a": None, "b": "x"}) == ('{"a": null, "b": "x"}', True)
        assert journal.to_json_value({"a": (1,)}) == ('{"a": [1]}', False)
        assert journal.to_json_value({"a": [1]}) == ('{"a": [1]}', True)
        assert journal.to_json_value({"a": float("nan")})[1] is False


_COLUMN_SETS = [
    ("queued_at", "token", "attempt"),
    ("started_at", "pid", "pid_started", "boot_id"),
    ("finished_at", "reason", "time_used", "ret", "ret_restorable", "exc_type",
     "exc_text", "shared", "shared_restorable"),
    ("reason", "finished_at"),
    ("time_used",),
]


def _value(col, n):
    if col in ("attempt", "pid"):
        return n
    if col.endswith("_restorable"):
        return bool(n % 2)
    if col.endswith("_at") or col in ("time_used", "pid_started"):
        return n / 7
    return None if n % 5 == 0 else f"{col}-{n}-\u00e9"


def _commit_row_by_row(path, run_id, ids, batch):
    """The reference: the batch folded and written by SQLAlchemy Core, a
    statement per row (what the writer did before it wrote many rows to a
    statement)."""
    from sqlalchemy import bindparam, create_engine, update

    from pexen.journal import models
    from pexen.journal._sqlitewriter import fold

    event_rows, updates, run_fields = fold(batch, run_id, ids)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            names = ("run_id", "key", "from_state", "to_state", "at", "detail")
            if event_rows:
                conn.execute(models.events.insert(),
                             [dict(zip(names, r)) for r in event_rows])
            for cols, rows in updates.items():
                stmt = (update(models.tasks).where(models.tasks.c.id == bindparam("_id"))
                        .values({c: bindparam(c) for c in cols}))
                conn.execute(stmt, [dict(zip(cols + ("_id",), r)) for r in rows])
            if run_fields:
                conn.execute(update(models.runs).where(models.runs.c.id == run_id)
                             .values(**run_fields))
    finally:
        engine.dispose()


def _rows_after(path, batch, fast):
    """The task and event rows after the writer commits `batch` in one
    transaction, by its SQLite statements (fast) or by SQLAlchemy Core."""
    with journal.open(path) as j:
        rid = new_run(j, keys=[f"t{i}" for i in range(300)])
        w = j.writer(rid)
        if fast:
            con = j.db.connect()
            try:
                w._commit(batch, con)
            finally:
                con.close()
        else:
            _commit_row_by_row(path, rid, w._ids, batch)
        w.close()
    con = sqlite3.connect(path)
    try:
        tasks = [tuple(t) for t in con.execute("SELECT * FROM tasks ORDER BY id")]
        events = [tuple(e) for e in con.execute(
            "SELECT * FROM events WHERE key IS NOT NULL ORDER BY id")]
    finally:
        con.close()
    return tasks, events


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 299), st.integers(0, len(_COLUMN_SETS) - 1),
                          st.integers(0, 10_000), st.booleans()),
                min_size=1, max_size=700))
def test_a_big_batch_writes_what_row_by_row_statements_write(tmp_path_factory, items):
    """The writer puts a batch's rows in with statements of many rows; the
    rows must be those SQLAlchemy's one-row statements make: later values of
    a task win, every event in order, values of every type intact."""
    batch = []
    for task, which, n, event in items:
        cols = _COLUMN_SETS[which]
        values = tuple(_value(c, n + i) for i, c in enumerate(cols))
        batch.append((f"t{task}", "pending" if event else None, f"s{n % 9}" if event else None,
                      n / 3, cols, values, f'{{"n": {n}}}' if n % 3 == 0 else None))
    base = tmp_path_factory.mktemp("batch")
    fast = _rows_after(str(base / "fast.sqlite"), batch, fast=True)
    core = _rows_after(str(base / "core.sqlite"), batch, fast=False)
    assert fast == core
    assert len(fast[1]) == sum(1 for item in items if item[3])


def started_writer(j):
    """A run of tasks a, b, c and its writer with a process of its own, the
    move of `a` to queued committed, the process ready (until it is, the
    writer's thread commits itself)."""
    import time

    rid = new_run(j)
    w = j.writer(rid, separate=True)
    w.transition("a", S.QUEUED)
    w.flush()
    deadline = time.monotonic() + 30
    while not w._child.poll_ready():   # (the thread waits for the next batch)
        assert time.monotonic() < deadline, "the writer's process never got ready"
        time.sleep(0.005)
    return rid, w


def test_the_thread_commits_until_the_writers_process_is_ready(jpath, monkeypatch):
    """A batch handed over while the process starts is committed by the
    thread (with the same check of the run's controller), the next ones by
    the process once it is ready."""
    import pexen.journal._writer as writer_mod

    with journal.open(jpath) as j:
        rid = new_run(j)
        ready = writer_mod._Child.poll_ready
        monkeypatch.setattr(writer_mod._Child, "poll_ready", lambda self: self.ready)
        w = j.writer(rid, separate=True)
        w.transition("a", S.QUEUED)
        w.flush()
        assert w._own is not None and w.commits == 1   # committed by the thread
        with j._transaction(write=True) as cur:
            cur.execute("UPDATE runs SET controller_pid = controller_pid + 1")
        w.transition("b", S.QUEUED)
        with pytest.raises(journal.JournalError, match="another controller"):
            w.flush()
        monkeypatch.setattr(writer_mod._Child, "poll_ready", ready)
        with pytest.raises(journal.JournalError):
            w.close()
        assert {t.key: t.state for t in j.tasks(rid)} == {"a": "queued", "b": "pending",
                                                          "c": "pending"}


def test_writer_process_takes_tasks_added_later_and_values_of_any_type(jpath):
    with journal.open(jpath) as j:
        rid, w = started_writer(j)
        w.add_task("late", j.add_tasks(rid, [("late", {"requires": []})])["late"])
        w.transition("late", S.QUEUED)
        # a str enum (marshal knows only plain types): stored as its value
        w.transition("late", S.RUNNING, reason=S.RUNNING, pid=7)
        w.flush()
        rows = {t.key: t for t in j.tasks(rid)}
        assert rows["a"].state == "queued"
        assert rows["late"].state == "running" and rows["late"].pid == 7
        assert rows["late"].reason == "running"
        w.close()


def test_writer_process_commits_nothing_for_a_run_claimed_by_another(jpath):
    """After a controller dies, resume claims the run: a commit the old
    writer's process still makes must not land after that claim."""
    with journal.open(jpath) as j:
        rid, w = started_writer(j)
        with j._transaction(write=True) as cur:   # what claim_run writes
            cur.execute("UPDATE runs SET controller_pid = controller_pid + 1")
        w.transition("b", S.QUEUED)
        with pytest.raises(journal.JournalError, match="another controller"):
            w.flush()
        with pytest.raises(journal.JournalError):
            w.close()
        assert {t.key: t.state for t in j.tasks(rid)} == {"a": "queued", "b": "pending",
                                                          "c": "pending"}


def test_writer_process_that_dies_is_an_error_not_a_hang(jpath):
    with journal.open(jpath) as j:
        _, w = started_writer(j)
        proc = psutil.Process(w.process_pid)
        proc.kill()
        proc.wait(10)
        w.transition("b", S.QUEUED)
        with pytest.raises(journal.JournalError, match="process ended"):
            w.flush(timeout=30)
        with pytest.raises(journal.JournalError):
            w.close()


_DYING_CONTROLLER = """
import os, signal, sys
import pexen.journal as journal
from pexen.journal import TaskState as S
with journal.open(sys.argv[1]) as j:
    rid = j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {}, [("a", {})],
                       host="h", boot_id="b", controller_pid=os.getpid(),
                       controller_started=0.0)
    w = j.writer(rid, separate=True)
    w.transition("a", S.QUEUED)
    w.flush()
    print(w.process_pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writer_process_ends_with_its_controller(jpath):
    proc = subprocess.run([sys.executable, "-c", _DYING_CONTROLLER, jpath],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    pid = int(proc.stdout.split()[0])
    try:
        psutil.Process(pid).wait(10)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(pid)
    with journal.open(jpath) as j:
        assert [t.state for t in j.tasks(1)] == ["queued"]


def test_writer_commits_itself_when_its_process_cannot_run(jpath, monkeypatch):
    """An interpreter that cannot run the writer's program (it exits at
    once): the writer's thread commits instead, nothing is lost."""
    false = shutil.which("false")
    if false is None:
        pytest.skip("no false(1)")
    with journal.open(jpath) as j:
        rid = new_run(j)
        monkeypatch.setattr(sys, "executable", false)
        w = j.writer(rid, separate=True)
        monkeypatch.undo()
        w.transition("a", S.QUEUED)
        w.transition("a", S.RUNNING, pid=5)
        w.flush()
        w.add_task("late", j.add_tasks(rid, [("late", {"requires": []})])["late"])
        w.transition("late", S.QUEUED)
        w.close()
        assert w.process_pid is None
        assert {t.key: t.state for t in j.tasks(rid)} == {
            "a": "running", "b": "pending", "c": "pending", "late": "queued"}
        assert [e.to_state for e in j.events(rid) if e.key == "a"] == ["queued", "running"]


def test_transitions_nobody_waits_for_gather_into_one_commit(jpath, monkeypatch):
    """The writer's thread lets transitions that no flush waits for gather
    (LINGER) before it commits; a flush, or close, ends the wait at once and
    everything handed over is in the commit."""
    import pexen.journal._writer as writer_mod

    with journal.open(jpath) as j:
        rid, w = started_writer(j)
        before = w.commits
        monkeypatch.setattr(writer_mod, "LINGER", 60.0)
        # apart, as a run's tasks end: without the wait, each would be a
        # commit of its own
        for key, state, fields in (("b", S.QUEUED, {}), ("c", S.QUEUED, {}),
                                   ("b", S.RUNNING, {"pid": 1, "started_at": 1.0}),
                                   ("b", S.PASS, {"finished_at": 2.0})):
            w.transition(key, state, **fields)
            time.sleep(0.05)
        w.flush()    # not 60 s later
        assert w.commits - before == 1
        assert {t.key: t.state for t in j.tasks(rid)} == {"a": "queued", "b": "pass",
                                                          "c": "queued"}
        w.transition("c", S.RUNNING, pid=2, started_at=1.0)
        w.close()    # nor here
    with journal.open(jpath) as j:
        assert {t.key: t.state for t in j.tasks(rid)}["c"] == "running"


def _committed_state(path, key):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT state FROM tasks WHERE key = ?", (key,)).fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("separate", [False, True], ids=["thread", "process"])
def test_after_commit_runs_once_what_came_before_is_on_disk(jpath, separate):
    """What the process pool's barrier relies on: a callback runs (in the
    writer's thread, the caller does not wait) only once every transition
    handed over before it is committed, and callbacks made while a commit is
    under way share the next one."""
    with journal.open(jpath) as j:
        rid = new_run(j, keys=[f"t{i}" for i in range(50)])
        w = j.writer(rid, separate=separate)
        seen = []
        done = threading.Semaphore(0)

        def callback(key):
            def fn(error):
                # read by another connection: committed, not only queued
                seen.append((key, error, _committed_state(jpath, key)))
                done.release()
            return fn

        for i in range(50):
            w.transition(f"t{i}", S.QUEUED)
            w.after_commit(callback(f"t{i}"))
        for _ in range(50):
            assert done.acquire(timeout=30)
        assert [key for key, _, _ in seen] == [f"t{i}" for i in range(50)]   # in order
        assert all(error is None and state == "queued" for _, error, state in seen)
        assert w.commits < 50
        w.close()
        with pytest.raises(journal.JournalError, match="closed"):
            w.after_commit(lambda error: None)


def test_after_commit_hands_a_failed_commit_to_the_callback(jpath):
    with journal.open(jpath) as j:
        rid, w = started_writer(j)
        with j._transaction(write=True) as cur:   # another controller claims the run
            cur.execute("UPDATE runs SET controller_pid = controller_pid + 1")
        got = []
        done = threading.Event()
        w.transition("b", S.QUEUED)
        w.after_commit(lambda error: (got.append(error), done.set()))
        assert done.wait(30)
        assert isinstance(got[0], journal.JournalError) and "another controller" in str(got[0])
        with pytest.raises(journal.JournalError):
            w.close()
        assert _committed_state(jpath, "b") == "pending"


_QUICK_BINDS_SCRIPT = r'''
import json, sqlite3, sys
import pexen.journal as journal
from pexen.journal import _sqlitewriter as sw
path, quick = sys.argv[1], sys.argv[2] == "1"
if quick:
    sw.quick_binds()
with journal.open(path, create=True) as j:
    rid = j.create_run({"kind": "module", "target": "s"}, {}, [("a", {}), ("b", {})],
                       host="h", boot_id="b", controller_pid=1, controller_started=1.0)
    ids = dict(sqlite3.connect(path).execute("SELECT key, id FROM tasks"))
cols = ("finished_at", "reason", "time_used", "ret", "ret_restorable", "exc_type",
        "exc_text", "shared", "shared_restorable")
batch = [("a", "pending", "pass", 1.5, cols, (1.5, None, 0.25, "null", True, None, None,
                                              None, False), None),
         ("b", "pending", "error", 2.5, cols, (2.5, "boom", 0.5, None, None, "E", "tb",
                                               "{}", True), '{"x": 1}')]
con = sw.connect(path, 5000)
sw.commit(con, rid, *sw.fold(batch, rid, ids))
rows = con.execute("SELECT key, state, reason, typeof(reason), ret_restorable, "
                   "typeof(ret_restorable), shared_restorable, typeof(shared_restorable), "
                   "exc_type, typeof(exc_type), shared FROM tasks ORDER BY id").fetchall()
events = con.execute("SELECT key, from_state, to_state, detail, typeof(detail) FROM events "
                     "WHERE key IS NOT NULL ORDER BY id").fetchall()
print(json.dumps([rows, events]))
'''


def test_the_writers_process_binds_none_and_bools_as_the_driver_would(tmp_path):
    """The writer's process registers adapters for None and bools (the
    driver's look for one costs more than the rest of a bind): the rows
    must be what the driver writes without them."""
    out = {}
    for quick in ("0", "1"):
        proc = subprocess.run([sys.executable, "-c", _QUICK_BINDS_SCRIPT,
                               str(tmp_path / f"q{quick}.sqlite"), quick],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[quick] = proc.stdout
    assert out["1"] == out["0"]
    rows, events = json.loads(out["1"])
    assert rows[0][:8] == ["a", "pass", None, "null", 1, "integer", 0, "integer"]
    assert events[0][3:] == [None, "null"] and events[1][3:] == ['{"x": 1}', "text"]

"""The journal's API on both backends: a SQLite file and a PostgreSQL
database (tests/conftest.py's server): the writer's order and projection,
the refusals, following, the claim of a run, and the schema through the
same Alembic migrations."""

import os
import subprocess
import sys
import threading
import time

import pytest

import pexen.journal as journal
from pexen.journal import JournalTooNewError, NotAJournalError, TaskState, _schema
from pexen.journal.states import IllegalTransition

S = TaskState


def new_run(j, keys=("a", "b", "c")):
    return j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {"workers": 1},
                        [(k, {"requires": []}) for k in keys], host="h", boot_id="boot",
                        controller_pid=os.getpid(), controller_started=0.0)


def test_writer_order_projection_and_group_commit(journal_at):
    with journal.open(journal_at) as j:
        rid = new_run(j, keys=[f"t{i}" for i in range(100)])
        w = j.writer(rid)
        for i in range(100):
            key = f"t{i}"
            w.transition(key, S.QUEUED)
            w.transition(key, S.RUNNING, pid=1000 + i, started_at=1.0)
            w.transition(key, S.PASS if i % 2 else S.FAIL, reason=None if i % 2 else "bad",
                         finished_at=2.0, ret='{"x": 1}', ret_restorable=True)
        w.flush()
        assert w.commits < 300
        rows = {t.key: t for t in j.tasks(rid)}
        assert rows["t1"].state == "pass" and rows["t1"].pid == 1001
        assert rows["t2"].state == "fail" and rows["t2"].reason == "bad"
        assert [(e.from_state, e.to_state) for e in j.events(rid) if e.key == "t7"] == [
            ("pending", "queued"), ("queued", "running"), ("running", "pass")]
        assert j.counts(rid) == {"pass": 50, "fail": 50}
        w.close()


def test_illegal_transition_is_refused(journal_at):
    with journal.open(journal_at) as j:
        w = j.writer(new_run(j))
        w.transition("a", S.SKIP, reason="x")
        with pytest.raises(IllegalTransition, match="skip -> running"):
            w.transition("a", S.RUNNING)
        w.close()


def test_follow_from_another_connection(journal_at):
    with journal.open(journal_at) as j:
        rid = new_run(j)
        seen = []
        done = threading.Event()

        def reader():
            with journal.open(journal_at) as r:
                for ev in r.follow(rid, poll=0.02, stop=done.is_set):
                    seen.append((ev.key, ev.to_state))

        t = threading.Thread(target=reader)
        t.start()
        w = j.writer(rid)
        w.transition("a", S.QUEUED)
        w.transition("a", S.RUNNING)
        w.close()
        deadline = time.monotonic() + 10
        while ("a", "running") not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        done.set()
        t.join(10)
        assert ("a", "running") in seen


def test_two_resumes_claim_a_run_one_at_a_time(journal_at):
    """Two processes that find a run's controller dead claim it at once:
    exactly one gets it, the other finds the first alive (a writing
    transaction reads and writes as one, on PostgreSQL too)."""
    with journal.open(journal_at) as j:
        rid = new_run(j)
    claimers = {111: None, 222: None}

    def is_alive(run):
        return run.controller_pid in claimers

    for _ in range(10):
        with journal.open(journal_at) as j:
            with j._transaction(write=True) as cur:
                cur.execute("UPDATE runs SET controller_pid = 1, state = 'running'")
        barrier = threading.Barrier(2)
        got = {}

        def claim(pid):
            with journal.open(journal_at) as jj:
                barrier.wait()
                got[pid] = jj.claim_run(rid, is_alive=is_alive, pid=pid, pid_started=0.0,
                                        boot_id="b")

        threads = [threading.Thread(target=claim, args=(pid,)) for pid in claimers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [pid for pid, found in got.items() if not is_alive(found)]
        assert len(winners) == 1, got
        loser = ({111, 222} - set(winners)).pop()
        assert got[loser].controller_pid == winners[0]
        with journal.open(journal_at) as j:
            assert j.run(rid).controller_pid == winners[0]


def test_the_schema_is_at_head(postgres_journal):
    import psycopg

    with journal.open(postgres_journal):
        pass
    with psycopg.connect(postgres_journal.replace("+psycopg", "")) as con:
        assert [r[0] for r in con.execute("SELECT version_num FROM alembic_version")] == [
            _schema.HEAD]
        tables = {r[0] for r in con.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "tasks", "events", "alembic_version"} <= tables


def test_the_migrations_run_one_by_one_on_postgresql(postgres_journal):
    """From an empty database through every revision to head, as an old
    journal would be upgraded, with a run kept across them."""
    from alembic import command
    from sqlalchemy import create_engine

    from pexen.journal import _migrate

    engine = create_engine(postgres_journal)
    try:
        for rev in _schema.REVISIONS:
            with engine.begin() as conn:
                command.upgrade(_migrate.alembic_config(conn), rev)
    finally:
        engine.dispose()
    with journal.open(postgres_journal) as j:
        rid = new_run(j)
        assert {t.key for t in j.tasks(rid)} == {"a", "b", "c"}


def test_another_programs_database_is_refused_untouched(postgres_journal):
    import psycopg

    url = postgres_journal.replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE accounts (id integer, name text)")
        con.execute("INSERT INTO accounts VALUES (1, 'x')")
    with pytest.raises(NotAJournalError, match="not a pexen journal"):
        journal.open(postgres_journal)
    with psycopg.connect(url) as con:
        tables = {r[0] for r in con.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"accounts"}
        assert con.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1


def test_a_journal_at_head_opens_without_alembic(postgres_journal):
    """Every verb, and a worker recording its result after its controller
    died, opens the journal: at head, one query, not Alembic's second."""
    with journal.open(postgres_journal):
        pass
    code = ("import sys; import pexen.journal as j; j.open(sys.argv[1]).close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    res = subprocess.run([sys.executable, "-c", code, postgres_journal], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_a_newer_schema_is_refused(postgres_journal):
    import psycopg

    with journal.open(postgres_journal):
        pass
    with psycopg.connect(postgres_journal.replace("+psycopg", ""), autocommit=True) as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00dfeed'")
    with pytest.raises(JournalTooNewError, match="newer pexen"):
        journal.open(postgres_journal)


def test_controllers_opening_a_new_database_at_once(postgres_journal):
    """Several processes make the schema of one new database at once: one
    makes it, the others find it made (none fails)."""
    code = ("import sys, pexen.journal as j\n"
            "with j.open(sys.argv[1]) as jr: print(len(jr.runs()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_journal],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "0"

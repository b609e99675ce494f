"""The journal's schema without Alembic on the everyday paths: the head
revision and the head schema pexen keeps (`pexen.journal._schema`) are
Alembic's; a new journal gets that schema, an old one is upgraded by
Alembic; opening a journal at head loads neither SQLAlchemy nor Alembic."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

import pexen.journal as journal
from pexen.journal import _schema


def master(path):
    """What a database's schema is, as SQLite keeps it."""
    con = sqlite3.connect(path)
    try:
        return [tuple(r) for r in con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")]
    finally:
        con.close()


def revision(path):
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
    finally:
        con.close()


def alembic_upgrade(path, to="head"):
    """Run the migrations on a SQLite file with Alembic, as shipped."""
    from alembic import command
    from sqlalchemy import create_engine

    from pexen.journal import _migrate

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            command.upgrade(_migrate.alembic_config(conn), to)
    finally:
        engine.dispose()


def test_the_revisions_are_alembics():
    from alembic.script import ScriptDirectory

    from pexen.journal import _migrate

    script = ScriptDirectory(_migrate.script_location())
    assert script.get_current_head() == _schema.HEAD
    walked = [rev.revision for rev in script.walk_revisions()]   # newest first
    assert tuple(reversed(walked)) == _schema.REVISIONS


def test_a_new_journal_has_the_schema_alembic_makes(tmp_path):
    ours = str(tmp_path / "new.sqlite")
    journal.open(ours).close()
    theirs = str(tmp_path / "alembic.sqlite")
    alembic_upgrade(theirs)
    made = master(theirs)
    assert master(ours) == made, (
        "the migrations make another schema than pexen.journal._schema holds; its "
        "SQLITE_SCHEMA should be:\n" + "\n".join(repr(sql) for *_, sql in made if sql))
    assert revision(ours) == revision(theirs) == [_schema.HEAD]


def _old_journal(path, rev):
    """A journal at revision `rev`, with one run of two tasks."""
    alembic_upgrade(path, rev)
    con = sqlite3.connect(path)
    con.execute("INSERT INTO runs (created_at, state, suite, config, host, boot_id) "
                "VALUES (1.0, 'finished', ?, '{}', 'h', 'b')",
                (json.dumps({"kind": "dir", "target": "/x", "cwd": "/"}),))
    for key in ("a", "b"):
        con.execute("INSERT INTO tasks (run_id, key, state) VALUES (1, ?, 'pass')", (key,))
    con.commit()
    con.close()


@pytest.mark.parametrize("rev", _schema.REVISIONS[:-1])
def test_an_old_journal_is_upgraded_by_alembic(tmp_path, rev):
    path = str(tmp_path / "old.sqlite")
    _old_journal(path, rev)
    with journal.open(path) as j:
        assert [r.id for r in j.runs()] == [1]
        assert [(t.key, t.state, t.interrupt_count) for t in j.tasks(1)] == [
            ("a", "pass", 0), ("b", "pass", 0)]
        rid = j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {}, [("c", {})],
                           host="h", boot_id="b", controller_pid=os.getpid(),
                           controller_started=0.0)
        j.add_result(rid, "c", 1, "check", "pass")
    assert revision(path) == [_schema.HEAD]
    fresh = str(tmp_path / "fresh.sqlite")
    journal.open(fresh).close()
    assert master(path) == master(fresh)


_OPEN_AND_READ = """
import sys
import pexen.journal as journal
with journal.open(sys.argv[1], create=False) as j:
    runs = j.runs()
    j.tasks(runs[-1].id); j.counts(runs[-1].id); j.events(runs[-1].id)
    j.export_rows(runs[-1].id); j.results(runs[-1].id)
print(sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic"}))
"""


def _loaded(path):
    out = subprocess.run([sys.executable, "-c", _OPEN_AND_READ, path], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_opening_a_journal_at_head_loads_no_sqlalchemy(tmp_path):
    path = str(tmp_path / "j.sqlite")
    with journal.open(path) as j:
        rid = j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {}, [("a", {})],
                           host="h", boot_id="b", controller_pid=os.getpid(),
                           controller_started=0.0)
        w = j.writer(rid, separate=True)
        w.transition("a", journal.TaskState.SKIP, reason="x")
        w.close()
    assert _loaded(path) == "[]"


def test_upgrading_loads_alembic_once(tmp_path):
    path = str(tmp_path / "old.sqlite")
    _old_journal(path, "0002")
    assert _loaded(path) == "['alembic', 'sqlalchemy']"   # it upgrades
    assert _loaded(path) == "[]"                          # at head now


def test_models_is_there_on_first_use():
    code = ("import sys, pexen.journal as j; a = 'sqlalchemy' in sys.modules; "
            "print(a, j.models.tasks.name, 'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "tasks", "True"]


def test_a_database_at_a_url_still_works(tmp_path):
    """An SQLAlchemy URL (here SQLite's): the same API through its driver."""
    url = f"sqlite:///{tmp_path / 'url.sqlite'}"
    with journal.open(url) as j:
        rid = j.create_run({"kind": "dir", "target": "/x", "cwd": "/"}, {"workers": 1},
                           [("a", {}), ("b", {})], host="h", boot_id="b",
                           controller_pid=os.getpid(), controller_started=0.0)
        w = j.writer(rid, separate=True)   # no process of its own for a URL
        w.transition("a", journal.TaskState.QUEUED, attempt=1)
        w.transition("a", journal.TaskState.PASS, finished_at=2.0)
        w.update_run(heartbeat_at=3.0)
        w.close()
        assert w.process_pid is None
        assert j.counts(rid) == {"pass": 1, "pending": 1}
        assert [e.to_state for e in j.events(rid)] == ["running", "queued", "pass"]
        assert j.run(rid).heartbeat_at == 3.0
    with journal.open(url) as j:
        assert [t.key for t in j.tasks(rid)] == ["a", "b"]

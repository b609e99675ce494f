"""What `pexen-harness` loads: the verbs that read a journal load neither
SQLAlchemy, Alembic nor the engine; `import pexen` loads almost nothing;
a refused journal still gets its one-line error. Behaviour, not timing
(bench/startup.py has the figures)."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

# Runs `pexen-harness ARGS` in this process and prints, as it exits, its
# exit status and the pexen modules and database layers it imported.
PROBE = """
import atexit, json, os, runpy, sys
me = os.getpid()
def _record():
    if os.getpid() == me:
        mods = sorted(m for m in sys.modules if m.split(".")[0] in
                      ("pexen", "sqlalchemy", "alembic", "psutil", "typing"))
        with open(os.environ["PROBE_OUT"], "w") as f:
            json.dump(mods, f)
atexit.register(_record)
sys.argv = ["pexen-harness", *sys.argv[1:]]
runpy.run_module("pexen.harness.cli", run_name="__main__", alter_sys=True)
"""


def probe(tmp_path, *args):
    out = tmp_path / "probe.json"
    env = dict(os.environ, PROBE_OUT=str(out))
    env.pop("PEXEN_JOURNAL", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    return done, set(json.loads(out.read_text()))


def tops(modules):
    return {m.split(".")[0] for m in modules}


@pytest.fixture
def finished(tmp_path):
    """A journal with one finished run of one executable."""
    suite = tmp_path / "suite"
    suite.mkdir()
    exe = suite / "ok.sh"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    journal = str(tmp_path / "j.sqlite")
    done = subprocess.run([sys.executable, "-m", "pexen.harness.cli", "start", str(suite),
                           "--journal", journal], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return journal


@pytest.mark.parametrize("verb", [["status"], ["status", "--json"], ["list"],
                                  ["list", "--json"], ["log", "ok"]])
def test_reading_verbs_load_no_database_layer_and_no_engine(tmp_path, finished, verb):
    done, loaded = probe(tmp_path, *verb, "--journal", finished)
    assert done.returncode == 0, done.stderr
    assert not tops(loaded) & {"sqlalchemy", "alembic", "psutil", "typing"}, sorted(loaded)
    assert not {m for m in loaded if m.startswith(("pexen.sched", "pexen.factory"))}
    assert "pexen.harness.controller" not in loaded
    assert "pexen.journal.models" not in loaded


def test_export_loads_no_database_layer(tmp_path, finished):
    done, loaded = probe(tmp_path, "export", "--journal", finished, "--xunit",
                         str(tmp_path / "out.xml"))
    assert done.returncode == 0, done.stderr
    assert not tops(loaded) & {"sqlalchemy", "alembic", "psutil"}, sorted(loaded)
    assert "pexen.harness.controller" not in loaded


@pytest.mark.parametrize("kind", ["executables", "python"])
def test_start_loads_no_database_layer(tmp_path, kind):
    """Nor `typing` (annotations only: 5-8 ms of start-up)."""
    if kind == "executables":
        (tmp_path / "suite").mkdir()
        exe = tmp_path / "suite" / "ok.sh"
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    else:
        (tmp_path / "suite.py").write_text(
            "from pexen.sched.meta import func_meta\n\n@func_meta\ndef test_ok():\n    pass\n")
    done, loaded = probe(tmp_path, "start", "suite", "--journal", str(tmp_path / "new.sqlite"))
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout
    assert not tops(loaded) & {"sqlalchemy", "alembic", "typing"}, sorted(loaded)


def test_import_pexen_loads_only_its_errors():
    code = ("import sys, pexen; print(sorted(m for m in sys.modules "
            "if m.startswith('pexen')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['pexen', 'pexen.util']"


def test_every_name_of_pexen_is_there_on_first_use():
    import pexen

    for name in pexen.__all__:
        assert getattr(pexen, name) is not None, name
    assert pexen.sched.Sched and pexen.factory.BaseFactory
    from pexen.harness.context import TaskContext, context
    from pexen.harness.reboot import reboot
    from pexen.harness.report import report

    assert (pexen.TaskContext, pexen.context, pexen.reboot, pexen.report) == (
        TaskContext, context, reboot, report)
    assert set(pexen.__all__) <= set(dir(pexen))
    with pytest.raises(AttributeError):
        pexen.no_such_name  # noqa: B018


def test_the_light_copies_of_controller_constants_are_its_own():
    from pexen.harness import _journal, bootunit, cli, controller

    assert (_journal.EXIT_OK, _journal.EXIT_FAILED, _journal.EXIT_INTERRUPTED,
            _journal.EXIT_INTERNAL, _journal.EXIT_USAGE) == (
        controller.EXIT_OK, controller.EXIT_FAILED, controller.EXIT_INTERRUPTED,
        controller.EXIT_INTERNAL, controller.EXIT_USAGE)
    assert cli.DEFAULT_UNIT_DIR == bootunit.DEFAULT_UNIT_DIR


def _not_sqlite(path):
    path.write_text("my precious notes\n")


def _other_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()


def _too_new(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    con.execute("INSERT INTO alembic_version VALUES ('9999')")
    for table in ("runs", "tasks", "events"):
        con.execute(f"CREATE TABLE {table} (id INTEGER)")
    con.commit()
    con.close()


def _corrupt(path):
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)


@pytest.mark.parametrize("make, message", [
    (_not_sqlite, "is not a pexen journal (not an SQLite database); refusing to touch it"),
    (_other_db, "is an SQLite database but not a pexen journal; refusing to touch it"),
    (_too_new, "was written by a newer pexen (schema 9999); upgrade pexen to read it"),
    (_corrupt, "is corrupt ("),
], ids=["not-sqlite", "other-db", "too-new", "corrupt"])
def test_a_refused_file_gives_one_line_and_exit_3(tmp_path, make, message):
    path = tmp_path / "bad.sqlite"
    make(path)
    before = path.read_bytes()
    done, loaded = probe(tmp_path, "status", "--journal", str(path))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pexen-harness: error: "), done.stderr
    assert message in lines[0]
    assert path.read_bytes() == before
    assert not tops(loaded) & {"sqlalchemy", "alembic"}


def test_a_missing_journal_is_a_usage_error(tmp_path):
    done, _ = probe(tmp_path, "status", "--journal", str(tmp_path / "nope.sqlite"))
    assert done.returncode == 4
    assert done.stderr.strip() == (f"pexen-harness: error: no journal at "
                                   f"{tmp_path / 'nope.sqlite'}")


def test_status_of_an_unfinished_run_still_tells_a_dead_controller(tmp_path, finished):
    con = sqlite3.connect(finished)
    con.execute("UPDATE runs SET state = 'running', finished_at = NULL, "
                "controller_pid = 999999999")
    con.commit()
    con.close()
    done, _ = probe(tmp_path, "status", "--journal", finished)
    assert done.returncode == 0, done.stderr
    assert "controller gone (pid 999999999); continue with pexen-harness resume 1" in (
        done.stdout)

"""Shared fixtures: every test must leave no process and no pool thread behind."""

import os
import threading
import time

import psutil
import pytest

# The harnesses the tests start see what a user's shell gives them: a
# PYTHONUNBUFFERED in the environment that runs the tests would hide what
# buffering does to a task's output.
os.environ.pop("PYTHONUNBUFFERED", None)


def _leftovers():
    me = psutil.Process()
    procs = me.children(recursive=True)
    threads = [t for t in threading.enumerate()
               if t.name.startswith("pexen-") and t.is_alive()]
    return procs, threads


def _describe(proc):
    try:
        return f"{proc.pid} {proc.status()} {' '.join(proc.cmdline()[:3])}"
    except psutil.Error as exc:
        return f"{proc.pid} ({type(exc).__name__})"


@pytest.fixture(autouse=True)
def no_leftovers():
    """Fail a test that leaves a child process (zombie or not) or a pexen
    thread behind. Waits up to 5 s for things that are on their way out."""
    yield
    deadline = time.monotonic() + 5
    while True:
        procs, threads = _leftovers()
        if not procs and not threads:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    described = [_describe(p) for p in procs]
    for p in procs:  # end them, so one failure does not cascade
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)
    for p in procs:
        try:
            os.waitpid(p.pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
    pytest.fail(f"left behind: processes {described}, threads {[t.name for t in threads]}")


# -- journals on both backends ----------------------------------------------------

@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """The URL of a PostgreSQL server for the tests: $PEXEN_TEST_POSTGRES (what
    .ci/run starts), else one started here for the session and stopped after
    (tests/pgserver.py). Skips, saying why, where none can start."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    url = os.environ.get("PEXEN_TEST_POSTGRES")
    if url:
        yield url
        return
    from . import pgserver

    where = str(tmp_path_factory.mktemp("postgres"))
    try:
        url = pgserver.start(where)
    except pgserver.CannotStart as exc:
        pgserver.stop(where)
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield url
    finally:
        pgserver.stop(where)


@pytest.fixture
def postgres_journal(postgres_server):
    """A journal URL on an empty database of its own."""
    from . import pgserver

    name = f"pexen_test_{os.getpid()}_{os.urandom(4).hex()}"
    url = pgserver.create_database(postgres_server, name)
    try:
        yield url
    finally:
        pgserver.drop_database(postgres_server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_at(request, tmp_path):
    """Where a test's journal is: a new SQLite file, and a new PostgreSQL
    database (the test runs once for each)."""
    if request.param == "sqlite":
        return str(tmp_path / "pexen-journal.sqlite")
    return request.getfixturevalue("postgres_journal")

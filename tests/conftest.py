"""Shared fixtures: every test must leave no process and no pool thread behind."""

import os
import signal
import threading
import time

import psutil
import pytest

# The harnesses the tests start see what a user's shell gives them: a
# PYTHONUNBUFFERED in the environment that runs the tests would hide what
# buffering does to a task's output.
os.environ.pop("PYTHONUNBUFFERED", None)

# Nor what started the tests in the background: a shell without job control
# starts a background command with SIGINT ignored, the processes the tests
# start would inherit that, and a test's ^C (SIGINT) to one would do nothing.
# A handler here is reset to the default in every program they start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: Processes the session's fixtures keep running for many tests (a Dask
#: cluster), with what runs below them: not a test's leftovers.
SERVICES: set = set()


def _services():
    """The pids of the services and of what runs below them."""
    below = set(SERVICES)
    for pid in SERVICES:
        try:
            below.update(p.pid for p in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return below


def _leftovers():
    me = psutil.Process()
    procs = me.children(recursive=True)
    if SERVICES:
        below = _services()
        procs = [p for p in procs if p.pid not in below]
    threads = [t for t in threading.enumerate()
               if t.name.startswith("pexen-") and t.is_alive()]
    return procs, threads


def _describe(proc):
    try:
        return f"{proc.pid} {proc.status()} {' '.join(proc.cmdline()[:3])}"
    except psutil.Error as exc:
        return f"{proc.pid} ({type(exc).__name__})"


#: In the environment of every process a test starts (and so of what those
#: start in turn): which test it belongs to. A process that outlived its
#: parent (the workers and tasks of a controller a test SIGKILLed) is no
#: longer below the tests' process; this finds it.
MARK = "SELFTEST_MARK"


def _marked(mark, since):
    """Processes started since `since` (epoch seconds) whose environment
    holds MARK=`mark`, but for the services' and their children."""
    me = os.getpid()
    services = _services()
    found = []
    for proc in psutil.process_iter(["create_time"]):
        if proc.pid == me or proc.pid in services or (proc.info["create_time"] or 0) < since:
            continue
        try:
            if proc.environ().get(MARK) == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """Fail a test that leaves a process (a child, zombie or not, or one it
    started that outlived its parent) or a pexen thread behind. Waits up to
    5 s for things that are on their way out."""
    mark = f"{os.getpid()}-{os.urandom(6).hex()}"
    since = time.time() - 1
    os.environ[MARK] = mark
    try:
        yield
    finally:
        del os.environ[MARK]
    deadline = time.monotonic() + 5
    while True:
        procs, threads = _leftovers()
        if not procs:
            procs = _marked(mark, since)
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


# -- a Dask cluster on loopback ---------------------------------------------------

def _dask_command(*args):
    import sys

    # (the `dask scheduler` and `dask worker` commands, of this interpreter)
    return [sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:]]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """The address of a Dask scheduler on loopback with two workers (one
    thread each, under a nanny, which starts a worker again if it dies; the
    second has the resource ``gpu=1`` and its files in ``.../gpu``),
    started for the tests of a module as processes and ended after them
    (other tests look for the processes they left). Skips, saying
    why, where Dask is not installed."""
    try:
        import distributed
    except ImportError:
        pytest.skip("dask.distributed is not installed (pip install -e '.[dask]')")
    import json
    import signal
    import subprocess

    where = tmp_path_factory.mktemp("dask")
    info = where / "scheduler.json"
    procs = []

    def start(*args):
        with open(where / f"{args[0]}-{len(procs)}.log", "w") as log:
            proc = subprocess.Popen(_dask_command(*args), stdout=subprocess.DEVNULL,
                                    stderr=log, start_new_session=True, cwd=where)
        procs.append(proc)
        SERVICES.add(proc.pid)
        return proc

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(info))
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        # two workers: one of them has a resource "gpu" (test_dask's
        # resources test finds which ran a task by its local directory)
        start("worker", address, "--nthreads", "1", "--no-dashboard",
              "--local-directory", str(where / "plain"))
        start("worker", address, "--nthreads", "1", "--no-dashboard",
              "--local-directory", str(where / "gpu"), "--resources", "gpu=1")
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            SERVICES.discard(proc.pid)

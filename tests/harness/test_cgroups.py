"""A cgroup (v2) per running task, where the system lets the controller make
them: what a task starts cannot escape it, by leaving its parent, its session
and its environment at once (``setsid env -i sh -c 'sleep 321 &'``). The
cgroup ends it when the task ends, at its deadline, when its worker dies, and
on `resume` after the controller died. Skipped where cgroup v2 is not
writable (the process tree and the token remain there: test_watchdog_cli)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from pexen.sched import _cgroup

from .test_cli import end, harness, spawn, states

JOURNAL = "pexen-journal.sqlite"


def _probe():
    """Why cgroups cannot be used here (None: they can). In a child: opening
    a session sets this process's globals."""
    code = ("from pexen.sched import _cgroup\n"
            "ok = _cgroup.open_session(f'probe-{__import__(\"os\").getpid()}')\n"
            "print('' if ok else _cgroup.unavailable)\n"
            "_cgroup.close_session()\n")
    env = {k: v for k, v in os.environ.items() if k != "PEXEN_CGROUPS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    return out.stdout.strip() or (None if out.returncode == 0 else out.stderr[-200:])


_WHY = _probe()
needs_cgroups = pytest.mark.skipif(_WHY is not None, reason=f"cgroup v2 not usable: {_WHY}")

# A daemon that leaves its parent, its session and the task's environment,
# and says where it is.
DAEMON = "setsid env -i sh -c 'echo $$ > \"$0\"; exec sleep 321' \"$PIDFILE\" &"


def _suite(tmp_path, body, name="leaves.sh"):
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    path = suite / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return suite


def _daemon_pid(pidfile, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(pidfile.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise AssertionError("the task's daemon did not start")


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _end_pid(pid):
    """(Cleanup, whatever the test found.) End a daemon the test made."""
    if pid and _alive(pid):
        try:
            proc = psutil.Process(pid)
            if proc.name() == "sleep":
                proc.kill()
                proc.wait(5)
        except psutil.Error:
            pass


def _our_session_cgroups():
    own = _cgroup.cgroup_of()
    if own is None:
        return []
    return [n for n in os.listdir(own) if n.startswith("pexen-")]


@pytest.fixture
def pidfile(tmp_path):
    path = tmp_path / "daemon.pid"
    yield path
    try:
        _end_pid(int(path.read_text()))
    except (OSError, ValueError):
        pass


@needs_cgroups
def test_thread_pool_executable_cannot_leave_a_daemon_behind(tmp_path, pidfile):
    suite = _suite(tmp_path, f"""\
        {DAEMON}
        sleep 0.2
        exit 0
        """)
    before = _our_session_cgroups()
    out = harness("start", str(suite), "--pool", "thread", "--kill-grace", "1",
                  cwd=tmp_path, env={"PIDFILE": str(pidfile)})
    assert out.returncode == 0, out.stderr
    pid = _daemon_pid(pidfile)
    assert not _alive(pid)
    rows, _ = states(tmp_path / JOURNAL)
    assert rows["leaves"].state == "warn"
    assert f"ended {pid} (sleep)" in rows["leaves"].reason
    assert _our_session_cgroups() == before   # (the session's cgroup is removed)


@needs_cgroups
def test_without_cgroups_such_a_daemon_escapes_the_thread_pool(tmp_path, pidfile):
    """PEXEN_CGROUPS=0 turns them off: what doc/watchdog.md says is then
    not found (this is why the cgroup is there)."""
    suite = _suite(tmp_path, f"""\
        {DAEMON}
        sleep 0.2
        exit 0
        """)
    out = harness("start", str(suite), "--pool", "thread", cwd=tmp_path,
                  env={"PIDFILE": str(pidfile), "PEXEN_CGROUPS": "0"})
    assert out.returncode == 0, out.stderr
    assert _alive(_daemon_pid(pidfile))
    assert states(tmp_path / JOURNAL)[0]["leaves"].state == "pass"


@needs_cgroups
def test_thread_pool_deadline_ends_the_daemon_too(tmp_path, pidfile):
    suite = _suite(tmp_path, f"""\
        {DAEMON}
        sleep 60
        """)
    out = harness("start", str(suite), "--pool", "thread", "--timeout", "1",
                  "--kill-grace", "1", cwd=tmp_path, env={"PIDFILE": str(pidfile)})
    assert out.returncode == 1, out.stderr
    pid = _daemon_pid(pidfile)
    assert not _alive(pid)
    row = states(tmp_path / JOURNAL)[0]["leaves"]
    assert row.state == "timeout"
    assert f"{pid} (sleep)" in row.reason


@needs_cgroups
def test_a_dead_workers_task_leaves_nothing(tmp_path, pidfile):
    """The worker is killed from outside (as the OOM killer would): what its
    task started, the executable and its daemon, is ended with it before the
    task's end is recorded."""
    started = tmp_path / "started"
    suite = _suite(tmp_path, f"""\
        {DAEMON}
        echo $$ > "{started}"
        sleep 60
        """)
    proc = spawn("start", str(suite), "--max-attempts", "1", cwd=tmp_path,
                 env={"PIDFILE": str(pidfile)})
    try:
        daemon = _daemon_pid(pidfile)
        deadline = time.monotonic() + 30
        while not started.exists() or not started.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        script = psutil.Process(int(started.read_text()))
        worker = script.parent()
        assert "python" in worker.name()
        worker.kill()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert not _alive(daemon)
        assert not _alive(script.pid)
        row = states(tmp_path / JOURNAL)[0]["leaves"]
        assert row.state == "error"
        assert "died" in row.reason
    finally:
        end(proc)


@needs_cgroups
def test_resume_ends_what_escaped_a_dead_controller(tmp_path, pidfile):
    """The controller, its fork server and its workers all SIGKILLed (the
    OOM killer, ``kill -9`` of the lot): a daemon without the task's token,
    outside any tree of the run, is ended by `resume` through the dead
    session's cgroup; the task runs again."""
    again = tmp_path / "again"
    suite = _suite(tmp_path, f"""\
        if [ -e "{again}" ]; then exit 0; fi
        touch "{again}"
        {DAEMON}
        sleep 60
        """)
    proc = spawn("start", str(suite), cwd=tmp_path, env={"PIDFILE": str(pidfile)})
    try:
        daemon = _daemon_pid(pidfile)
        below = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if p.pid != daemon]
        proc.send_signal(signal.SIGKILL)
        end(proc)
        for p in below:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(below, timeout=10)
        assert _alive(daemon)   # (escaped everything but its cgroup)
        out = harness("resume", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert not _alive(daemon)
        assert states(tmp_path / JOURNAL)[0]["leaves"].state == "pass"
        spools = tmp_path / f"{JOURNAL}.d" / "1.spool"
        assert not list(spools.glob("*.cgroup"))
    finally:
        end(proc)


@needs_cgroups
def test_sweep_ends_only_session_cgroups(tmp_path):
    """A record names a directory; resume ends what is in it only if it is a
    session cgroup (``pexen-*`` below the cgroup v2 mount)."""
    own = _cgroup.cgroup_of()
    ours, other = os.path.join(own, "pexen-sweep-test"), os.path.join(own, "other-sweep-test")
    procs = []
    try:
        for path in (ours, other):
            os.mkdir(path)
            proc = subprocess.Popen(["sleep", "321"])
            procs.append(proc)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(proc.pid))
        spools = tmp_path / "spools"
        spools.mkdir()
        (spools / "1-a.cgroup").write_text(ours)
        (spools / "2-b.cgroup").write_text(other)
        (spools / "3-c.cgroup").write_text(own)
        assert _cgroup.sweep(str(spools)) == 1
        assert procs[0].wait(10) == -signal.SIGKILL
        assert procs[1].poll() is None
        assert not os.path.exists(ours) and os.path.exists(other)
        assert list(spools.iterdir()) == []   # (records read are dropped)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for path in (ours, other):
            if os.path.isdir(path):
                os.rmdir(path)


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("PEXEN_CGROUPS", "0")
    try:
        assert _cgroup.open_session("off-test") is None
        assert _cgroup.session is None
        assert _cgroup.unavailable == "turned off by PEXEN_CGROUPS=0"
    finally:
        _cgroup.close_session()


@needs_cgroups
def test_a_new_session_removes_empty_sessions_of_dead_controllers():
    """A controller killed and never resumed leaves its session's cgroup:
    the next session removes it if nothing is in it, and leaves it (for the
    run's resume) if something is."""
    own = _cgroup.cgroup_of()
    gone = subprocess.Popen(["true"])
    gone.wait()
    empty = os.path.join(own, f"pexen-7-{gone.pid}")
    busy = os.path.join(own, f"pexen-8-{gone.pid}")
    proc = subprocess.Popen(["sleep", "321"])
    try:
        os.makedirs(os.path.join(empty, "worker-1-1"))
        os.makedirs(os.path.join(busy, "worker-1-1"))
        with open(os.path.join(busy, "worker-1-1", "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        code = ("from pexen.sched import _cgroup\n"
                "assert _cgroup.open_session('tidy-test-1'), _cgroup.unavailable\n"
                "_cgroup.close_session()\n")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "PEXEN_CGROUPS"})
        assert not os.path.exists(empty)
        assert os.path.isdir(os.path.join(busy, "worker-1-1"))
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        for path in (os.path.join(empty, "worker-1-1"), empty,
                     os.path.join(busy, "worker-1-1"), busy):
            deadline = time.monotonic() + 5
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)

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

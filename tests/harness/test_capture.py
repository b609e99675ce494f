"""Each attempt's stdout and stderr go to files next to the journal, for
Python tasks (both pools) and executables; `pexen-harness log` prints them."""

import textwrap
import time

import pytest

from .test_cli import end, harness, spawn, states

SUITE = textwrap.dedent(r'''
    import ctypes
    import os
    import subprocess
    import sys

    from pexen.harness.suite import ExecutableTask
    from pexen.sched import meta

    HERE = os.path.dirname(os.path.abspath(__file__))


    def python_print():
        print("printed by python_print")
        print("warned by python_print", file=sys.stderr)


    def fd_level():
        os.write(1, b"os.write to fd 1\n")
        libc = ctypes.CDLL(None)
        libc.puts(b"puts from C")
        libc.fflush(None)
        subprocess.run(["sh", "-c", "echo from a child; echo child err >&2"], check=True)


    def quiet():
        pass


    def fails_loudly():
        print("about to fail")
        raise RuntimeError("boom")


    def tasks():
        exe = ExecutableTask(os.path.join(HERE, "talks.sh"), "talks")
        return [python_print, fd_level, quiet, fails_loudly, exe]
''')


def make_suite(tmp_path):
    (tmp_path / "capsuite.py").write_text(SUITE)
    talks = tmp_path / "talks.sh"
    talks.write_text("#!/bin/sh\necho exe out\necho exe err >&2\nexit 0\n")
    talks.chmod(0o755)


@pytest.mark.parametrize("pool,workers", [("process", "2"), ("thread", "2"),
                                          ("thread", "1")])
def test_output_goes_to_files_per_attempt(tmp_path, pool, workers):
    make_suite(tmp_path)
    res = harness("start", "capsuite:tasks", "--pool", pool, "-j", workers, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    # the controller's own lines stay on its stdout (one per finished task)
    assert "PASS    python_print" in res.stdout and "ERROR   fails_loudly" in res.stdout
    # the task output is not in the controller's output (the Jenkins console)
    assert "printed by python_print" not in res.stdout + res.stderr
    assert "exe out" not in res.stdout
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    assert (base / "python_print" / "1.out").read_text() == "printed by python_print\n"
    assert (base / "python_print" / "1.err").read_text() == "warned by python_print\n"
    assert (base / "talks" / "1.out").read_text() == "exe out\n"
    assert (base / "talks" / "1.err").read_text() == "exe err\n"
    assert "about to fail" in (base / "fails_loudly" / "1.out").read_text()
    # a quiet task leaves no empty files
    assert not (base / "quiet" / "1.out").exists()
    # and no line of the controller's ended up in a task's file
    for f in base.glob("*/1.*"):
        assert "PASS    " not in f.read_text(errors="replace"), f
    if pool == "process" or workers == "1":
        # fd level: C code and child processes are captured too (under the
        # thread pool when it runs one task at a time)
        out = (base / "fd_level" / "1.out").read_text()
        assert "os.write to fd 1" in out and "puts from C" in out and "from a child" in out
        assert (base / "fd_level" / "1.err").read_text() == "child err\n"


def test_log_prints_an_attempts_output(tmp_path):
    make_suite(tmp_path)
    harness("start", "capsuite:tasks", cwd=tmp_path)
    res = harness("log", "python_print", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("==> stdout of python_print (run 1, attempt 1): ")
    assert lines[1] == "printed by python_print"
    assert lines[2].startswith("==> stderr of python_print (run 1, attempt 1): ")
    assert lines[3] == "warned by python_print"
    raw = harness("log", "talks", "1", "--stderr", "--attempt", "1", cwd=tmp_path)
    assert raw.returncode == 0 and raw.stdout == "exe err\n"
    quiet = harness("log", "quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and "stdout of quiet (run 1, attempt 1): nothing written" \
        in quiet.stdout


@pytest.mark.parametrize("args,message", [
    (("log", "nope"), "run 1 has no task 'nope'"),
    (("log", "quiet", "7"), "has no run 7"),
    (("log", "quiet", "--attempt", "2"), "task quiet of run 1 has attempts 1 to 1, not 2"),
    (("log", "quiet", "--attempt", "0"), "not 0"),
])
def test_log_bad_input(tmp_path, args, message):
    make_suite(tmp_path)
    harness("start", "capsuite:tasks", cwd=tmp_path)
    res = harness(*args, cwd=tmp_path)
    assert res.returncode == 4
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_log_without_a_journal(tmp_path):
    res = harness("log", "anything", cwd=tmp_path)
    assert res.returncode == 4 and "journal" in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()


def test_output_of_each_attempt_is_kept(tmp_path):
    (tmp_path / "again.py").write_text(textwrap.dedent('''
        import os
        import signal
        import time

        import psutil

        import pexen


        def counts():
            print("attempt", pexen.context().attempt, flush=True)
            if pexen.context().attempt == 1:
                # the controller (the fork server's parent) dies under the
                # task, and the task's worker with it (no one records it)
                controller = psutil.Process(os.getppid()).ppid()
                os.kill(controller, signal.SIGKILL)
                time.sleep(0.5)
                os._exit(3)


        def tasks():
            return [counts]
    '''))
    first = harness("start", "again:tasks", cwd=tmp_path)
    assert first.returncode == -9, first.stderr
    second = harness("resume", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["counts"].attempt == 2 and rows["counts"].state == "pass"
    base = tmp_path / "pexen-journal.sqlite.d" / "1" / "counts"
    assert (base / "1.out").read_text() == "attempt 1\n"
    assert (base / "2.out").read_text() == "attempt 2\n"
    old = harness("log", "counts", "--attempt", "1", "--stdout", cwd=tmp_path)
    assert old.stdout == "attempt 1\n"


ENDED = textwrap.dedent(r'''
    import os
    import sys
    import time

    from pexen.sched import meta


    @meta.func_meta(timeout=1)
    def hangs():
        print("before the hang")
        print("on stderr", file=sys.stderr)
        time.sleep(60)


    def dies():
        print("before dying")
        os._exit(3)


    def quiet():
        pass


    def waits():
        print("first line")
        deadline = time.monotonic() + 60
        while not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.05)
        print("last line")


    def tasks():
        return [hangs, dies, quiet, waits]
''')


def test_output_of_a_task_whose_worker_is_gone_is_kept(tmp_path):
    """A worker killed by the watchdog, or dying in its task, leaves what the
    task printed (a line at a time) in the task's files; no spool is left."""
    (tmp_path / "ended.py").write_text(ENDED)
    (tmp_path / "go").write_text("")
    res = harness("start", "ended:tasks", "--kill-grace", "0", "-j", "4", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["hangs"].state == "timeout" and rows["dies"].state == "error"
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    assert (base / "hangs" / "1.out").read_text() == "before the hang\n"
    assert (base / "hangs" / "1.err").read_text() == "on stderr\n"
    assert (base / "dies" / "1.out").read_text() == "before dying\n"
    assert not list((base / "quiet").glob("1.*"))
    assert not (tmp_path / "pexen-journal.sqlite.d" / "1.spool").exists()


def test_log_of_a_running_task_shows_its_output_so_far(tmp_path):
    (tmp_path / "ended.py").write_text(ENDED.replace("return [hangs, dies, quiet, waits]",
                                                     "return [waits]"))
    proc = spawn("start", "ended:tasks", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the task did not start"
            res = harness("log", "waits", cwd=tmp_path)
            if "first line" in res.stdout:
                break
            time.sleep(0.1)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[:2] == [
            "==> stdout of waits (run 1, attempt 1): so far, still running <==", "first line"]
        raw = harness("log", "waits", "--stdout", cwd=tmp_path)
        assert raw.stdout == "first line\n"
        (tmp_path / "go").write_text("")
        assert proc.wait(timeout=60) == 0
    finally:
        end(proc)
    done = harness("log", "waits", "--stdout", cwd=tmp_path)
    assert done.stdout == "first line\nlast line\n"


def test_a_thread_capture_works_out_its_paths_when_the_task_first_writes(tmp_path):
    """A task in a thread that prints nothing costs no path formatting and
    leaves no file; one that prints gets its files where `where` says."""
    from pexen.harness.capture import ThreadCapture

    asked = []

    def where():
        asked.append(1)
        return str(tmp_path / "a" / "1.out"), str(tmp_path / "a" / "1.err")

    quiet = ThreadCapture(where=where)
    assert not quiet.opened
    quiet.close()
    assert asked == [] and not (tmp_path / "a").exists()

    loud = ThreadCapture(where=where)
    loud.stream(0).write("hello\n")
    loud.stream(1).write("oops\n")
    loud.close()
    assert asked == [1]
    assert (tmp_path / "a" / "1.out").read_text() == "hello\n"
    assert (tmp_path / "a" / "1.err").read_text() == "oops\n"


def test_key_path_keeps_a_key_that_can_be_a_path_and_shortens_parts_that_cannot():
    from pexen.harness.capture import key_path

    assert key_path("net/dns/resolve") == "net/dns/resolve"
    assert key_path("t/test_p[a.b]") == "t/test_p[a.b]"
    long = key_path("t/p[" + "y" * 300 + "]")
    head, tail = long.split("/")
    assert head == "t" and tail.startswith("p[yyy") and len(tail.encode()) <= 200
    assert key_path("t/p[" + "y" * 300 + "]") == long   # the same every time
    assert key_path("t/p[" + "y" * 299 + "]") != long   # and one per key
    wide = key_path("t/" + "\u00e9" * 150).split("/")[1]
    assert len(wide.encode()) <= 200 and wide.encode().decode("utf-8")
    for odd in ("../x", "a/../b", "a//b", "/abs", "x/", ".", "a/./b", "nul\0/x"):
        parts = key_path(odd).split("/")
        assert "" not in parts and "." not in parts and ".." not in parts, odd
        assert "\0" not in key_path(odd)

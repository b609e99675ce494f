"""When the journal cannot be written: the run stops at once (its running
tasks ended and, where the journal still takes a write, marked interrupted),
exit status 3 with one line naming the journal, nothing committed before is
lost, and `resume` goes on once the journal can be written again."""

import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import psutil
import pytest

from .test_cli import end, harness, spawn, states

JOURNAL = "pexen-journal.sqlite"

# 120 tasks (a run of 100 or more commits through a process of its own): the
# first two hang on their first attempt, the rest are quick.
MANY = textwrap.dedent("""\
    import os
    import time

    from pexen.sched.meta import func_meta


    def _make(i):
        @func_meta()
        def task():
            if i < 2 and os.environ["PEXEN_ATTEMPT"] == "1":
                open(os.path.join(os.environ["MARKS"], f"hang{i}"), "w").close()
                time.sleep(120)
        task.__name__ = task.__qualname__ = f"t{i:03d}"
        return task


    def tasks():
        return [_make(i) for i in range(120)]
    """)


def _wait(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_dead_journal_writer_stops_the_run_at_once(tmp_path):
    (tmp_path / "many.py").write_text(MANY)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"MARKS": str(marks)}
    proc = spawn("start", "many:tasks", cwd=tmp_path, env=env)
    try:
        _wait("the hanging tasks", lambda: len(list(marks.iterdir())) == 2)
        controller = psutil.Process(proc.pid)
        writer = [p for p in controller.children()
                  if any("_sqlitewriter" in part for part in p.cmdline())]
        assert len(writer) == 1
        below = controller.children(recursive=True)
        writer[0].kill()
        # the tasks would hang for two minutes: the run does not wait for them
        code = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        end(proc)
    assert code == 3
    assert err.strip().splitlines() == [
        f"pexen-harness: error: {tmp_path / JOURNAL}: writing failed: the writer's "
        "process: its process ended (exit code -9)"]
    gone, alive = psutil.wait_procs(below, timeout=10)
    assert not alive
    rows, run = states(tmp_path / JOURNAL)
    assert run.state == "interrupted" and run.exit_code == 3
    for key in ("t000", "t001"):
        assert rows[key].state == "interrupted"
        assert rows[key].reason == "interrupted: the journal could not be written"
    res = harness("resume", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    rows, run = states(tmp_path / JOURNAL)
    assert run.state == "finished" and all(r.state == "pass" for r in rows.values())
    assert rows["t000"].attempt == 2


# -- out of space ----------------------------------------------------------------

def _mount_tmpfs(path, size):
    """Mount a tmpfs of `size` at `path`, or skip the test saying why."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs Linux and mount(8)")
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                          str(path)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


FILLER = textwrap.dedent("""\
    import os
    import sqlite3
    import time

    from pexen.sched.meta import func_meta


    def _make(i):
        @func_meta()
        def task():
            with open(os.environ["RAN"], "a") as log:
                log.write(f"f{i:02d}\\n")
            if i == 5 and not os.path.exists(os.environ["FREED"]):
                # once the first five are committed as passed,
                con = sqlite3.connect(f"file:{os.environ['JOURNAL']}?mode=ro", uri=True)
                for _ in range(400):
                    done = con.execute("SELECT count(*) FROM tasks WHERE state = 'pass'")
                    if done.fetchone()[0] >= 5:
                        break
                    time.sleep(0.025)
                con.close()
                # fill the disk the journal is on, to the last byte
                with open(os.environ["BALLAST"], "wb") as f:
                    try:
                        while True:
                            f.write(b"x" * 65536)
                            f.flush()
                    except OSError:
                        pass
                    try:
                        while True:
                            f.write(b"x")
                            f.flush()
                    except OSError:
                        pass
            return i
        task.__name__ = task.__qualname__ = f"f{i:02d}"
        return task


    def tasks():
        return [_make(i) for i in range(40)]
    """)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_full_disk_under_the_journal_is_exit_3_and_resume_goes_on(tmp_path, pool):
    disk = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    _mount_tmpfs(disk, "3m")
    try:
        (tmp_path / "filler.py").write_text(FILLER)
        journal = disk / JOURNAL
        env = {"BALLAST": str(disk / "ballast"), "FREED": str(tmp_path / "freed"),
               "RAN": str(tmp_path / "ran.log"), "JOURNAL": str(disk / JOURNAL)}
        res = harness("start", "filler:tasks", "--journal", str(journal), "--pool", pool,
                      "-j", "1", cwd=tmp_path, env=env)
        assert res.returncode == 3, (res.stdout, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, res.stderr
        assert str(journal) in lines[0] and "no space left" in lines[0].lower()
        # what was committed before is there
        os.unlink(disk / "ballast")
        (tmp_path / "freed").touch()
        rows, run = states(journal)
        assert run.state != "finished"
        done = {k for k, r in rows.items() if r.state == "pass"}
        assert {"f00", "f01", "f02", "f03", "f04"} <= done and "f05" not in done
        res = harness("resume", "--journal", str(journal), cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        rows, run = states(journal)
        assert run.state == "finished" and all(r.state == "pass" for r in rows.values())
        # what had passed (and was committed) did not run again
        ran = (tmp_path / "ran.log").read_text().split()
        assert all(ran.count(key) == 1 for key in done)
        assert set(ran) == set(rows)
    finally:
        _umount(disk)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_full_disk_under_the_output_is_named(tmp_path, pool):
    """The journal has room, the output directory does not: tasks that cannot
    write their output say why."""
    out = tmp_path / f"out-{uuid.uuid4().hex[:8]}"
    _mount_tmpfs(out, "1m")
    try:
        suite = tmp_path / "suite"
        suite.mkdir()
        (suite / "talks.sh").write_text("#!/bin/sh\nhead -c 3000000 /dev/zero\necho end\n")
        (suite / "talks.sh").chmod(0o755)
        # the task data root sits next to the journal: link it onto the full disk
        (tmp_path / f"{JOURNAL}.d").symlink_to(out)
        res = harness("start", "suite", "--max-output", "0", "--pool", pool, cwd=tmp_path)
        rows, run = states(tmp_path / JOURNAL)
        assert rows["talks"].state in ("fail", "error")
        assert "no space left" in (rows["talks"].reason or "").lower(), rows["talks"].reason
        assert str(out) in rows["talks"].reason or "pexen-journal.sqlite.d" in \
            rows["talks"].reason
        assert res.returncode == 1
    finally:
        _umount(out)


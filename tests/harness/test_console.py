"""What a CI console (Jenkins) shows of a run: a header, one line per
finished task with its duration, a line for a task that runs long, the time
on request."""

import re
import textwrap

from .test_cli import harness


def _suite(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "quick.sh").write_text("#!/bin/sh\nexit 0\n")
    (suite / "slow.sh").write_text("#!/bin/sh\nsleep 5\n")
    (suite / "broken.sh").write_text(textwrap.dedent("""\
        #!/bin/sh
        echo 'link down' >&2
        exit 1
        """))
    for f in suite.iterdir():
        f.chmod(0o755)


def test_the_console_of_a_run(tmp_path):
    _suite(tmp_path)
    res = harness("start", "suite", "--timestamps", cwd=tmp_path,
                  env={"PEXEN_STILL_RUNNING_AFTER": "1"})
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == (f"run 1: 3 tasks of suite, -j 2 (process pool), journal "
                        f"{tmp_path / 'pexen-journal.sqlite'}")
    stamped = [line[9:] for line in lines[1:-1]]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d ", line[:9]) for line in lines[1:-1])
    assert re.fullmatch(r"PASS    quick \[\d+ms\]", next(s for s in stamped if "quick" in s))
    assert re.fullmatch(r"FAIL    broken: exit status 1 \[\d+ms\]",
                        next(s for s in stamped if "broken" in s))
    assert re.fullmatch(r"PASS    slow \[5\.\ds\]", stamped[-1])
    running = [s for s in stamped if s.startswith("RUNNING")]
    assert running and re.fullmatch(r"RUNNING slow: still running after \d\.\ds", running[0])
    assert lines[-1] == "run 1: some failed (pexen-harness status 1)"


def test_the_header_of_a_resumed_run(tmp_path):
    _suite(tmp_path)
    (tmp_path / "suite" / "slow.sh").write_text("#!/bin/sh\nexit 0\n")
    res = harness("start", "suite", "--select", "quick", cwd=tmp_path)
    assert res.returncode == 0
    # a run stopped before its end is resumed: the header says what is left
    import sqlite3

    con = sqlite3.connect(tmp_path / "pexen-journal.sqlite")
    with con:
        con.execute("UPDATE tasks SET state = 'pending', attempt = 0")
        con.execute("UPDATE runs SET state = 'running', finished_at = NULL, "
                    "exit_code = NULL, controller_pid = NULL")
    con.close()
    res = harness("resume", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"run 1 resumed: 1 of 1 tasks to go, -j 2 (process pool), journal "
        f"{tmp_path / 'pexen-journal.sqlite'}")

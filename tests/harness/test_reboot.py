"""Tests that reboot the machine on purpose, simulated: PEXEN_BOOT_ID_FILE
holds the boot id, and the reboot command writes a new one (the controller
exits after running it, as it would die in a real reboot)."""

import signal
import sqlite3
import textwrap
import time

import pexen.journal as journal

from .test_cli import end, harness, spawn, states

SUITE = textwrap.dedent('''
    import os
    import time

    import pexen
    from pexen.harness.suite import ExecutableTask
    from pexen.sched import meta

    HERE = os.path.dirname(os.path.abspath(__file__))
    REBOOTS = int(os.environ.get("TEST_REBOOTS", "2"))


    @meta.func_meta(timeout=60)
    def kernel():
        ctx = pexen.context()
        with open(os.path.join(ctx.data_dir, "seen"), "a") as f:
            f.write(f"{ctx.reboot_count} {os.environ['REBOOTCOUNT']} "
                    f"{os.environ['TMT_REBOOT_COUNT']} {os.environ['RSTRNT_REBOOTCOUNT']} "
                    f"attempt {ctx.attempt}\\n")
        print("boot", ctx.reboot_count)
        pexen.report(f"boot-{ctx.reboot_count}", "pass")
        if ctx.reboot_count < REBOOTS:
            pexen.reboot()


    def finishes_during_drain():
        time.sleep(1.0)


    def too_slow_for_drain():
        if pexen.context().attempt == 1:
            time.sleep(60)


    def tasks():
        return [kernel, finishes_during_drain, too_slow_for_drain,
                ExecutableTask(os.path.join(HERE, "exe_reboot.sh"), "exe_reboot")]
''')

EXE = """#!/bin/sh
echo "exe boot $PEXEN_REBOOT_COUNT"
if [ "$PEXEN_REBOOT_COUNT" -lt 1 ]; then
    pexen-harness report before-reboot pass
    exec pexen-harness reboot
fi
exit 0
"""

REBOOT = """#!/bin/sh
python3 -c "import uuid; print(uuid.uuid4())" > "$PEXEN_BOOT_ID_FILE"
echo rebooted >> "$(dirname "$0")/reboots.log"
"""


def setup(tmp_path, reboots="2", command=None):
    import os
    import sys

    (tmp_path / "rbsuite.py").write_text(SUITE)
    for name, body in (("exe_reboot.sh", EXE), ("reboot.sh", REBOOT)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    (tmp_path / "bootid").write_text("first-boot\n")
    return {"PEXEN_BOOT_ID_FILE": str(tmp_path / "bootid"),
            "PEXEN_REBOOT_COMMAND": command or str(tmp_path / "reboot.sh"),
            "TEST_REBOOTS": reboots,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}


def test_task_reboots_twice_and_carries_on(tmp_path):
    env = setup(tmp_path)
    first = harness("start", "rbsuite:tasks", "--allow-reboot",
                    "--drain-timeout", "5", "--xunit", "r.xml",
                    cwd=tmp_path, env=env)
    assert first.returncode == 2, first.stderr
    assert "rebooting (" in first.stdout and "pexen-harness resume continues" in first.stdout
    # the partial xUnit file was written before the reboot
    partial = (tmp_path / "r.xml").read_text()
    assert 'name="kernel"' in partial and "not finished: rebooting" in partial
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "rebooting"
    assert rows["kernel"].state == "rebooting"
    assert rows["finishes_during_drain"].state == "pass"      # it had time to finish
    assert rows["too_slow_for_drain"].state == "interrupted"  # requeued, not failed
    assert "requeued" in rows["too_slow_for_drain"].reason
    for _ in range(3):
        res = harness("resume", "--xunit", "r.xml", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "reboots.log").read_text() == "rebooted\n" * 2
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished"
    kernel = rows["kernel"]
    assert kernel.state == "pass" and kernel.reboot_count == 2 and kernel.attempt == 1
    data = tmp_path / "pexen-journal.sqlite.d" / "1" / "kernel"
    assert (data / "data" / "seen").read_text() == (
        "0 0 0 0 attempt 1\n1 1 1 1 attempt 1\n2 2 2 2 attempt 1\n")
    assert (data / "1.out").read_text() == "boot 0\nboot 1\nboot 2\n"
    assert rows["exe_reboot"].state == "pass" and rows["exe_reboot"].reboot_count == 1
    assert rows["too_slow_for_drain"].state == "pass"
    # results reported before each reboot are kept
    text = (tmp_path / "r.xml").read_text()
    assert ("pexen: sub-result boot-0: pass\npexen: sub-result boot-1: pass\n"
            "pexen: sub-result boot-2: pass\n\nboot 0\nboot 1\nboot 2\n") in text
    assert "pexen: sub-result before-reboot: pass" in text


def test_reboot_loop_is_capped(tmp_path):
    env = setup(tmp_path, reboots="100")
    res = harness("start", "rbsuite:tasks", "--allow-reboot",
                  "--max-reboots", "1", "--drain-timeout", "0",
                  cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    for _ in range(4):
        res = harness("resume", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["kernel"].state == "error"
    assert rows["kernel"].reason == "reboot loop: 2 reboots (--max-reboots 1)"


def test_reboot_that_did_not_happen(tmp_path):
    env = setup(tmp_path, command="true")  # the boot id stays the same
    res = harness("start", "rbsuite:tasks", "--allow-reboot",
                  "--drain-timeout", "0", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    for _ in range(3):  # (the executable may ask for its own reboot meanwhile)
        res = harness("resume", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["kernel"].state == "error"
    assert rows["kernel"].reason.startswith("reboot did not happen")
    assert rows["exe_reboot"].state == "error"


def test_controller_killed_between_request_and_reboot(tmp_path):
    env = setup(tmp_path, reboots="1")
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "rbsuite:tasks", "--allow-reboot",
                 "--drain-timeout", "30", cwd=tmp_path, env=env)
    try:
        # the request is in the journal; the controller waits for the others
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.1)
            try:
                con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
                asked = con.execute("SELECT count(*) FROM tasks WHERE key = 'kernel' AND "
                                    "reboot_requested_at IS NOT NULL").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if asked:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    assert not (tmp_path / "reboots.log").exists()
    # resume owes the reboot: it does it at once, then the run goes on
    res = harness("resume", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert (tmp_path / "reboots.log").read_text() == "rebooted\n"
    for _ in range(3):
        res = harness("resume", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(journal)
    assert rows["kernel"].state == "pass" and rows["kernel"].reboot_count == 1


def test_reboot_outside_a_task(tmp_path):
    res = harness("reboot", cwd=tmp_path)
    assert res.returncode == 4 and "no task context" in res.stderr


def test_bad_reboot_options(tmp_path):
    setup(tmp_path)
    for args, message in ((("--max-reboots", "-1"), "--max-reboots must be at least 0"),
                          (("--drain-timeout", "x"), "argument --drain-timeout"),
                          (("--reboot-command", " "), "--reboot-command must not be empty")):
        res = harness("start", "rbsuite:tasks", "--allow-reboot", *args, cwd=tmp_path)
        assert res.returncode == 4 and message in res.stderr, (args, res.stderr)
    assert not (tmp_path / "pexen-journal.sqlite").exists()


UNPLANNED = textwrap.dedent('''
    import os
    import time

    import pexen
    from pexen.sched import meta


    def _task(name, opt_in):
        def task():
            ctx = pexen.context()
            with open(os.path.join(ctx.data_dir, "seen"), "a") as f:
                f.write(f"attempt {ctx.attempt} interrupts "
                        f"{os.environ['PEXEN_INTERRUPT_COUNT']}\\n")
            if ctx.attempt == 1:
                time.sleep(60)   # the machine goes down under it
        task.__name__ = task.__qualname__ = name
        if opt_in:
            meta.assign_val(task, rerun_on_interrupt=True)
        return task


    def tasks():
        return [_task("opted_in", True), _task("not_opted", False)]
''')


def crash_then_new_boot(tmp_path, env):
    """Start, kill the controller while both tasks run, change the boot id."""
    journal = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "unplanned:tasks", cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline
            time.sleep(0.1)
            try:
                rows, _ = states(journal)
            except Exception:
                continue
            if rows and all(r.state == "running" for r in rows.values()):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    (tmp_path / "bootid").write_text("second-boot\n")


def test_unplanned_reboot_with_and_without_opt_in(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "unplanned.py").write_text(UNPLANNED)
    crash_then_new_boot(tmp_path, env)
    res = harness("resume", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["not_opted"].state == "error"
    assert rows["not_opted"].reason == "interrupted by reboot"
    assert rows["opted_in"].state == "pass" and rows["opted_in"].attempt == 2
    seen = tmp_path / "pexen-journal.sqlite.d" / "1" / "opted_in" / "data" / "seen"
    assert seen.read_text() == "attempt 1 interrupts 0\nattempt 2 interrupts 1\n"


def test_rerun_interrupted_option_and_its_cap(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "unplanned.py").write_text(UNPLANNED)
    crash_then_new_boot(tmp_path, env)
    res = harness("resume", "--rerun-interrupted", "--max-attempts", "1", cwd=tmp_path,
                  env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    for key in ("opted_in", "not_opted"):    # capped: one attempt allowed, one made
        assert rows[key].state == "error"
        assert rows[key].reason == ("interrupted by reboot (not run again: 1 attempt, "
                                    "--max-attempts 1)")


def test_rerun_interrupted_option_runs_every_task_again(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "unplanned.py").write_text(UNPLANNED)
    crash_then_new_boot(tmp_path, env)
    res = harness("resume", "--rerun-interrupted", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["not_opted"].state == "pass" and rows["not_opted"].attempt == 2


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/systemctl.log"
[ "$FAIL_SYSTEMCTL" = 1 ] && { echo "Failed to connect to bus" >&2; exit 1; }
exit 0
"""


def fake_systemctl(tmp_path, env):
    import os

    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    env["PATH"] = str(bin_dir) + os.pathsep + env["PATH"]
    units = tmp_path / "units"
    units.mkdir()
    return bin_dir / "systemctl.log", units


def test_boot_unit_text_passes_systemd_analyze(tmp_path):
    import shutil

    res = harness("boot-unit", "--journal", str(tmp_path / "j.sqlite"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    first, _, text = res.stdout.partition("\n")
    name = first[2:]
    assert name.startswith("pexen-resume-") and name.endswith(".service")
    assert f'"resume" "--journal" "{tmp_path / "j.sqlite"}"' in text
    assert "After=network-online.target" in text and "Restart=on-failure" in text
    assert "OOMScoreAdjust=-1000" in text and "RestartPreventExitStatus=1 2 4" in text
    if shutil.which("systemd-analyze") is None:
        return  # (the text is checked above; no verifier on this machine)
    (tmp_path / name).write_text(text)
    import subprocess

    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_boot_unit_install_and_remove(tmp_path):
    env = setup(tmp_path)
    log, units = fake_systemctl(tmp_path, env)
    journal = str(tmp_path / "j.sqlite")
    res = harness("boot-unit", "--install", "--journal", journal, "--unit-dir", str(units),
                  cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    [unit] = list(units.iterdir())
    assert journal in unit.read_text()
    assert log.read_text() == f"daemon-reload\nenable {unit.name}\n"
    res = harness("boot-unit", "--remove", "--journal", journal, "--unit-dir", str(units),
                  cwd=tmp_path, env=env)
    assert res.returncode == 0 and "removed" in res.stdout
    assert list(units.iterdir()) == []
    env["FAIL_SYSTEMCTL"] = "1"
    res = harness("boot-unit", "--install", "--journal", journal, "--unit-dir", str(units),
                  cwd=tmp_path, env=env)
    assert res.returncode == 4 and "Failed to connect to bus" in res.stderr


def test_start_boot_unit_is_removed_when_the_run_finishes(tmp_path):
    env = setup(tmp_path, reboots="1")
    log, units = fake_systemctl(tmp_path, env)
    res = harness("start", "rbsuite:tasks", "--allow-reboot",
                  "--boot-unit", "--unit-dir", str(units),
                  "--drain-timeout", "0", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    [unit] = list(units.iterdir())      # kept across the reboot
    for _ in range(3):
        res = harness("resume", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 0, res.stdout + res.stderr
    assert "removed the boot unit" in res.stdout
    assert list(units.iterdir()) == []
    assert log.read_text().splitlines()[-2:] == [f"disable {unit.name}", "daemon-reload"]


BUDGET = textwrap.dedent('''
    import time

    import pexen
    from pexen.sched import meta


    @meta.func_meta(timeout=6)
    def slow_kernel():
        if pexen.context().reboot_count == 0:
            time.sleep(3)
            pexen.reboot()
        time.sleep(60)      # hangs after the reboot


    def tasks():
        return [slow_kernel]
''')


def test_time_budget_counts_across_a_reboot(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "budget.py").write_text(BUDGET)
    res = harness("start", "budget:tasks", "--allow-reboot",
                  "--kill-grace", "0", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    before = rows["slow_kernel"].time_used
    assert before >= 3
    res = harness("resume", "--kill-grace", "0", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    row = rows["slow_kernel"]
    assert row.state == "timeout" and row.reboot_count == 1
    # after the reboot it had what was left of the 6 s, not 6 s again
    assert row.finished_at - row.started_at < 6 - before + 1.5
    assert row.time_used >= 5.5


CRASH_AFTER_REBOOT = textwrap.dedent('''
    import os
    import time

    import pexen


    def kernel():
        ctx = pexen.context()
        with open(os.path.join(ctx.data_dir, "seen"), "a") as f:
            f.write(f"reboots {ctx.reboot_count} attempt {ctx.attempt}\\n")
        if ctx.reboot_count == 0:
            pexen.reboot()
        if ctx.attempt == 1:
            time.sleep(60)   # the controller dies under it


    def tasks():
        return [kernel]
''')


def test_reboot_count_survives_a_controller_crash(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "crashafter.py").write_text(CRASH_AFTER_REBOOT)
    journal = tmp_path / "pexen-journal.sqlite"
    # (under the thread pool: no worker outlives the controller to finish
    # the attempt it ran, so the next one runs)
    res = harness("start", "crashafter:tasks", "--allow-reboot", "--pool", "thread",
                  cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    proc = spawn("resume", cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        seen = tmp_path / "pexen-journal.sqlite.d" / "1" / "kernel" / "data" / "seen"
        while "reboots 1" not in (seen.read_text() if seen.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        end(proc)
    res = harness("resume", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert seen.read_text() == ("reboots 0 attempt 1\nreboots 1 attempt 1\n"
                                "reboots 1 attempt 2\n")
    rows, _ = states(journal)
    assert rows["kernel"].reboot_count == 1


def test_reboots_are_skipped_unless_the_run_allows_them(tmp_path):
    env = setup(tmp_path)
    (tmp_path / "noreboot.py").write_text(textwrap.dedent('''
        import os
        from rbsuite import ExecutableTask, HERE, kernel, finishes_during_drain

        def tasks():
            return [kernel, finishes_during_drain,
                    ExecutableTask(os.path.join(HERE, "exe_reboot.sh"), "exe_reboot")]
    '''))
    res = harness("start", "noreboot:tasks", "--drain-timeout", "5", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "finished" and run.config["allow_reboot"] is False
    why = "asked for a reboot, and the run does not allow reboots (start it with --allow-reboot)"
    assert rows["kernel"].state == "skip" and rows["kernel"].reason == why
    # an executable: `pexen-harness reboot` exits 77, and reports why
    assert rows["exe_reboot"].state == "skip"
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        reported = [(r.name, r.outcome, r.message) for r in j.results(run.id, "exe_reboot")]
    assert ("reboot", "skip", why) in reported
    assert rows["finishes_during_drain"].state == "pass"
    assert not (tmp_path / "reboots.log").exists()
    assert (tmp_path / "bootid").read_text() == "first-boot\n"

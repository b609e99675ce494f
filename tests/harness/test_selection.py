"""start --select/--exclude/--prefer/--no-deps, start --rerun-failed and
list --tasks, as a user runs them on a directory suite."""

import json
import time

import pexen.journal as journal

from .test_cli import end, harness, has_run, spawn, states
from .test_execmeta import exe


def mail_suite(top):
    """A virtual requirement 'mta' with three providers, a failing setup."""
    exe(top / "mail" / "exim.sh", "# pexen: provides=mta priority=5")
    exe(top / "mail" / "postfix.sh", "# pexen: provides=mta priority=5")
    exe(top / "mail" / "sendmail.sh", "# pexen: provides=mta priority=1",
        "echo sendmail >> \"$PEXEN_TASK_DATA/../../ran\"")
    exe(top / "mail" / "send.sh", "# pexen: requires=mta")
    exe(top / "net" / "up.sh", "# pexen: provides=net", "exit 1")
    exe(top / "net" / "ping.sh", "# pexen: requires=net")
    exe(top / "net" / "dns.sh", "# pexen: requires=net")
    exe(top / "disk" / "fsck.sh")
    return top


def selection_events(path):
    with journal.open(str(path), create=False) as j:
        run = j.runs()[-1]
        return [e.detail for e in j.events_to(run.id, "selection")]


def test_select_pulls_in_one_provider_prints_and_journals_it(tmp_path):
    top = mail_suite(tmp_path / "suite")
    done = harness("start", "suite", "--select", "mail/send", "--select", "disk",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("pulled in mail/sendmail provides 'mta' for mail/send (lowest priority value; "
            "over mail/exim, mail/postfix)") in done.stdout
    tasks, run = states(tmp_path / "pexen-journal.sqlite")
    assert sorted(tasks) == ["disk/fsck", "mail/send", "mail/sendmail"]
    assert run.suite["select"] == ["mail/send", "disk"]
    [event] = selection_events(tmp_path / "pexen-journal.sqlite")
    assert event["pulled"] == [{"key": "mail/sendmail", "requirement": "mta",
                                "wanted_by": "mail/send", "rule": "lowest priority value",
                                "candidates": ["mail/sendmail", "mail/exim",
                                               "mail/postfix"]}]
    assert top.exists()


def test_prefer_on_the_command_line_and_in_pexen_toml(tmp_path):
    top = mail_suite(tmp_path / "suite")
    done = harness("start", "suite", "--select", "mail/send", "--prefer", "mail/postfix",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pulled in mail/postfix provides 'mta' for mail/send (preferred" in done.stdout
    (top / "pexen.toml").write_text('prefer = ["mail/exim"]\ntimeout = 60\n')
    done = harness("start", "suite", "--select", "mail/send", "--journal", "two.sqlite",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks, _ = states(tmp_path / "two.sqlite")
    assert sorted(tasks) == ["mail/exim", "mail/send"]
    # the command line comes before the suite's list
    done = harness("list", "--tasks", "suite", "--select", "mail/send", "--prefer",
                   "mail/sendmail", cwd=tmp_path)
    assert "mail/sendmail" in done.stdout and "mail/exim " not in done.stdout


def test_no_deps_skips_unmet_tasks_with_the_reason(tmp_path):
    mail_suite(tmp_path / "suite")
    done = harness("start", "suite", "--select", "mail/send", "--select", "disk",
                   "--no-deps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks, run = states(tmp_path / "pexen-journal.sqlite")
    assert {k: t.state for k, t in tasks.items()} == {"mail/send": "skip",
                                                      "disk/fsck": "pass"}
    assert tasks["mail/send"].reason == ("requires 'mta', which no selected task provides "
                                         "(--no-deps)")
    assert run.state == "finished"
    assert "not run: mail/send: requires 'mta'" in done.stdout


def test_bad_selection_input_exits_4_and_keeps_the_journal(tmp_path):
    top = mail_suite(tmp_path / "suite")
    assert harness("start", "suite", "--select", "disk", cwd=tmp_path).returncode == 0
    before = (tmp_path / "pexen-journal.sqlite").read_bytes()
    cases = [
        (["--select", "nope/*"], "--select 'nope/*' matches no task"),
        (["--select", "net/[ab"], "'[' at position 5 is never closed"),
        (["--exclude", "*"], "--exclude excludes every task"),
        (["--select", "mail/send", "--prefer", "mail/qmail"],
         "--prefer 'mail/qmail': no task has this key"),
        (["--select", "net/ping", "--exclude", "net/up"],
         "every task providing it is excluded (net/up)"),
    ]
    for extra, message in cases:
        done = harness("start", "suite", *extra, cwd=tmp_path)
        assert done.returncode == 4, (extra, done.stderr)
        assert message in done.stderr, (extra, done.stderr)
        assert done.stderr.count("\n") == 1
    (top / "pexen.toml").write_text('prefer = ["mail/qmail"]\n')
    done = harness("start", "suite", "--select", "mail/send", cwd=tmp_path)
    assert done.returncode == 4 and "prefer names 'mail/qmail'" in done.stderr
    (top / "pexen.toml").write_text('prefer = "mail/exim"\n')
    (top / "mail" / "pexen.toml").write_text('timeout = 5\n\nprefer = ["mail/exim"]\n')
    done = harness("start", "suite", "--select", "mail/send", cwd=tmp_path)
    assert done.returncode == 4
    assert "mail/pexen.toml:3: prefer is read only from the pexen.toml at the top" \
        in done.stderr
    assert (tmp_path / "pexen-journal.sqlite").read_bytes() == before


def test_list_tasks_shows_what_would_run_without_running(tmp_path):
    mail_suite(tmp_path / "suite")
    done = harness("list", "--tasks", "suite", "--select", "mail/send", "--select",
                   "net/ping", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["mail/send", "requires=mta"]
    assert lines[1].split() == ["mail/sendmail", "provides=mta", "priority=1"]
    assert lines[2].strip() == ("pulled in: provides 'mta' for mail/send (lowest priority "
                                "value; over mail/exim, mail/postfix)")
    assert lines[-1] == "4 tasks to run (2 selected, 2 pulled in)"
    assert not (tmp_path / "pexen-journal.sqlite").exists()
    data = json.loads(harness("list", "--tasks", "suite", "--select", "net/dns", "--json",
                              cwd=tmp_path).stdout)
    assert [t["key"] for t in data["tasks"]] == ["net/dns", "net/up"]
    assert data["tasks"][1]["pulled_in"]["rule"] == "only provider"
    assert data["tasks"][0]["meta"]["requires"] == ["net"]
    done = harness("list", "--select", "x", cwd=tmp_path)
    assert done.returncode == 4 and "go with --tasks SUITE" in done.stderr
    done = harness("list", "--tasks", "nowhere/at/all", cwd=tmp_path)
    assert done.returncode == 4 and "no such directory" in done.stderr


def test_rerun_failed_runs_what_did_not_pass_and_its_providers(tmp_path):
    top = mail_suite(tmp_path / "suite")
    exe(top / "mail" / "send.sh", "# pexen: requires=mta", "exit 3")
    done = harness("start", "suite", "--prefer", "mail/exim", "--select", "mail/send",
                   "--select", "net", "--select", "disk", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    first, _ = states(tmp_path / "pexen-journal.sqlite")
    assert first["net/ping"].state == "skip" and first["mail/send"].state == "fail"
    exe(top / "net" / "up.sh", "# pexen: provides=net")     # fixed
    done = harness("start", "--rerun-failed", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tasks, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.id == 2
    # failed: net/up, mail/send; skipped because net/up failed: ping, dns;
    # mail/send needs 'mta' again, from the provider the first run used
    assert sorted(tasks) == ["mail/exim", "mail/send", "net/dns", "net/ping", "net/up"]
    assert {k: t.state for k, t in tasks.items() if k.startswith("net/")} == {
        "net/up": "pass", "net/ping": "pass", "net/dns": "pass"}
    done = harness("start", "--rerun-failed", "1", "--journal", "pexen-journal.sqlite",
                   cwd=tmp_path)
    assert done.returncode == 1 and states(tmp_path / "pexen-journal.sqlite")[1].id == 3
    exe(top / "mail" / "send.sh", "# pexen: requires=mta")
    assert harness("start", "--rerun-failed", cwd=tmp_path).returncode == 0
    done = harness("start", "--rerun-failed", cwd=tmp_path)
    assert done.returncode == 4 and "nothing to run again" in done.stderr
    done = harness("start", "suite", "--rerun-failed", cwd=tmp_path)
    assert done.returncode == 4 and "not both" in done.stderr
    done = harness("start", "--rerun-failed", "99", cwd=tmp_path)
    assert done.returncode == 4 and "has no run 99" in done.stderr
    done = harness("start", "--rerun-failed", "--journal", "none.sqlite", cwd=tmp_path)
    assert done.returncode == 4 and "no journal at" in done.stderr
    assert harness("start", cwd=tmp_path).returncode == 4


def test_a_killed_selection_run_resumes_only_its_tasks(tmp_path):
    top = tmp_path / "suite"
    for i in range(6):
        exe(top / "slow" / f"s{i}.sh", "sleep 0.4", "echo x >> \"$PEXEN_TASK_DATA/runs\"")
    exe(top / "other" / "never.sh", "echo ran > \"$PEXEN_TASK_DATA/../../never\"")
    proc = spawn("start", "suite", "--select", "slow", "-j", "1", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        path = tmp_path / "pexen-journal.sqlite"
        while time.monotonic() < deadline:
            if has_run(path) and any(t.state == "pass" for t in states(path)[0].values()):
                break
            time.sleep(0.05)
        proc.kill()
    finally:
        end(proc)
    done = harness("resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "new in the suite" not in done.stdout
    tasks, run = states(tmp_path / "pexen-journal.sqlite")
    assert sorted(tasks) == [f"slow/s{i}" for i in range(6)]
    assert all(t.state == "pass" for t in tasks.values()) and run.state == "finished"
    assert not list(tmp_path.rglob("never"))

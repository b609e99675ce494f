"""The HTML report (`--html FILE`): what the page holds, checked against the
journal, for runs that finished, crashed and resumed, rebooted, and ran
groups; hostile output; bad input. (What a browser shows of it:
test_htmlreport_browser.py.)"""

import json
import os
import re
import signal
import sys
import time

import pytest

import pexen.journal as journal
from pexen.harness import htmlreport

from .suites import SLOW_SUITE
from .test_cli import _start_and_kill, end, harness, has_run, spawn, states
from .test_execmeta import exe
from .test_groups import grouped_suite
from .test_reboot import setup as reboot_setup

#: Output no page may let out of its <pre>: it ends the data's <script>
#: element, starts one of its own, opens a comment, carries ANSI colours,
#: a NUL, a form feed and a byte that is not UTF-8.
HOSTILE = (r'</script><script>document.title="pwned"</script><!-- \033[31mred\033[0m '
           r"\000 \f \377 <img src=x onerror=alert(1)> & &amp;")


def page_data(path):
    """The data the page carries (its <script type="application/json">)."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    found = re.search(r'<script id="pexen-data" type="application/json">(.*?)</script>',
                      text, re.S)
    assert found, "no data in the page"
    return json.loads(found.group(1))


def report_suite(top):
    """A directory suite: passes, a failure with output on both streams, a
    skip, reported results, hostile output, a task that needs the failure."""
    exe(top / "ok.sh", "echo fine")
    exe(top / "bad.sh", "# pexen: provides=bad", "echo on stdout; echo on stderr >&2",
        "exit 1")
    exe(top / "needs_bad.sh", "# pexen: requires=bad")
    exe(top / "skipped.sh", "echo no device; exit 77")
    exe(top / "results.sh", "pexen-harness report lookup pass -m 'found it'",
        "pexen-harness report latency fail -m 'too slow: 3 s'")
    exe(top / "hostile.sh", f"printf '{HOSTILE}'", f"printf '{HOSTILE}' >&2")
    exe(top / "net" / "dns.sh", "sleep 0.2")
    return top


def path_env():
    return {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}


def test_page_of_a_finished_run_holds_what_the_journal_has(tmp_path):
    report_suite(tmp_path / "suite")
    res = harness("start", "suite", "-j", "2", "--html", "report.html", "--xunit", "r.xml",
                  cwd=tmp_path, env=path_env())
    assert res.returncode == 1, res.stderr
    assert "html: report.html (7 tasks: " in res.stdout
    page = tmp_path / "report.html"
    data = page_data(page)
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        assert data["run"]["counts"] == j.counts(run.id)
        in_order = [t.key for t in j.tasks(run.id)]
    tasks = data["tasks"]
    assert tasks["key"] == in_order
    outcomes = data["outcomes"]
    by_key = {key: i for i, key in enumerate(tasks["key"])}
    for key, row in rows.items():
        i = by_key[key]
        assert outcomes[tasks["state"][i]] == row.state
        assert tasks["attempts"][i] == row.attempt
        assert tasks["time"][i] == pytest.approx(row.time_used, abs=0.001)
    assert tasks["message"][by_key["bad"]] == "exit status 1"
    assert tasks["message"][by_key["needs_bad"]].startswith("dependency 'bad' not met")
    run_facts = data["run"]
    assert (run_facts["state"], run_facts["exit_code"], run_facts["suite"]) == (
        "finished", 1, "suite")
    assert run_facts["journal"] == str(tmp_path / "pexen-journal.sqlite")
    # one controller session, finished; no gap
    assert [s["ended"] for s in data["sessions"]] == ["finished"]
    assert data["sessions"][0]["pid"] == run.controller_pid
    assert data["gaps"] == []
    # a bar per attempt that ran, in at most -j lanes, inside the run
    bars = [data["bars"][k:k + 6] for k in range(0, len(data["bars"]), 6)]
    ran = {key for key, row in rows.items() if row.attempt}
    assert sorted(tasks["key"][b[0]] for b in bars) == sorted(ran)
    assert 1 <= data["lanes"] <= 2
    for task, attempt, start, stop, outcome, lane in bars:
        assert attempt == 1 and 0 <= start <= stop <= run_facts["duration"] + 0.001
        assert outcomes[outcome] == rows[tasks["key"][task]].state
    lanes = {}
    for task, attempt, start, stop, outcome, lane in sorted(bars, key=lambda b: b[2]):
        # no two bars of a lane overlap (but for the moment the journal
        # took to hear of the end of one)
        assert lanes.get(lane, 0) <= start + htmlreport.LANE_SLACK
        lanes[lane] = stop
    # output per attempt: text and the path of the whole
    (entry,) = data["output"][str(by_key["bad"])]
    number, outcome, out, out_path, err, err_path = entry
    assert (number, outcomes[outcome], out, err) == (1, "fail", "on stdout\n", "on stderr\n")
    assert out_path.endswith(os.path.join("1", "bad", "1.out"))
    assert str(by_key["net/dns"]) not in data["output"]   # wrote nothing
    # results the task reported, with their attempt
    assert data["results"][str(by_key["results"])] == [
        [1, "lookup", "pass", "found it"], [1, "latency", "fail", "too slow: 3 s"]]
    # hostile output: stays data (no second </script>, no <img>), shown cleaned
    text = page.read_text(encoding="utf-8", errors="surrogateescape")
    assert text.count("</script>") == 2 and "<img" not in text and "<!--" not in text
    (entry,) = data["output"][str(by_key["hostile"])]
    assert '</script><script>document.title="pwned"</script><!-- red ' in entry[2]
    assert "\\x00" in entry[2] and "\\xff" in entry[2] and "\033" not in entry[2]
    assert entry[2] == entry[4]
    # written atomically: nothing left beside it
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".pexen-html-")]
    # export writes the same page of the run, at any time
    res = harness("export", "--html", "again.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("run 1 (finished): again.html (7 tasks: ")
    again = page_data(tmp_path / "again.html")
    assert again["tasks"] == data["tasks"] and again["bars"] == data["bars"]


def test_page_of_a_crashed_run_and_of_its_resume(tmp_path):
    _start_and_kill(tmp_path, {}, "--html", "r.html")
    assert not (tmp_path / "r.html").exists()   # (killed: it wrote nothing)
    res = harness("export", "--html", "dead.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    dead = page_data(tmp_path / "dead.html")
    assert dead["run"]["state"] == "running" and dead["run"]["gone"] is True
    assert [s["ended"] for s in dead["sessions"]] == ["died"]
    assert [(g["kind"], g["end"]) for g in dead["gaps"]] == [("crash", None)]
    outcomes = dead["outcomes"]
    running = [i for i, s in enumerate(dead["tasks"]["state"]) if outcomes[s] == "running"]
    assert running, "the kill came while a task ran"
    for i in running:
        assert "when its controller died" in dead["tasks"]["message"][i]

    res = harness("resume", "--html", "r.html", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    data = page_data(tmp_path / "r.html")
    assert data["run"]["counts"] == {"pass": 8}
    first, second = data["sessions"]
    assert first["ended"] == "died" and second["ended"] == "finished"
    (gap,) = data["gaps"]
    assert gap == {"kind": "crash", "start": first["end"], "end": second["start"]}
    bars = [data["bars"][k:k + 6] for k in range(0, len(data["bars"]), 6)]
    for i in running:
        # it went on in its worker, which journaled its end; or the resume
        # found it cut short and ran it again
        mine = sorted((b for b in bars if b[0] == i), key=lambda b: b[1])
        if len(mine) == 1:
            (task, attempt, start, stop, outcome, lane), = mine
            assert attempt == 1 and outcomes[outcome] == "pass" and start <= first["end"]
        else:
            cut, again = mine
            assert outcomes[cut[4]] == "interrupted" and cut[3] >= second["start"]
            assert outcomes[again[4]] == "pass" and again[2] >= second["start"]


def test_page_of_a_run_still_going_and_stopped_by_a_signal(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_SUITE)
    proc = spawn("start", "slow:tasks", "-j", "2", "--html", "stopped.html", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if has_run(tmp_path / "pexen-journal.sqlite"):
                rows, _ = states(tmp_path / "pexen-journal.sqlite")
                if any(r.state == "pass" for r in rows.values()) and any(
                        r.state == "running" for r in rows.values()):
                    break
            time.sleep(0.02)
        res = harness("export", "--html", "live.html", cwd=tmp_path)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        end(proc)
    assert res.returncode == 0, res.stderr
    live = page_data(tmp_path / "live.html")
    assert live["run"]["state"] == "running" and live["run"]["gone"] is False
    assert [s["ended"] for s in live["sessions"]] == ["running"]
    assert live["gaps"] == []
    outcomes, tasks = live["outcomes"], live["tasks"]
    bars = [live["bars"][k:k + 6] for k in range(0, len(live["bars"]), 6)]
    still = {b[0] for b in bars if outcomes[b[4]] == "running"}
    assert still and still == {i for i, s in enumerate(tasks["state"])
                               if outcomes[s] == "running"}
    for i in still:
        assert tasks["message"][i] == "still running"
    assert any(outcomes[b[4]] == "pass" for b in bars)
    # the session's own page, written as the signal stopped it
    assert proc.returncode == 2
    stopped = page_data(tmp_path / "stopped.html")
    assert stopped["run"]["state"] == "interrupted"
    assert [s["ended"] for s in stopped["sessions"]] == ["stopped"]
    assert stopped["run"]["counts"].get("interrupted")


def test_page_of_a_run_that_rebooted(tmp_path):
    env = reboot_setup(tmp_path)
    res = harness("start", "rbsuite:tasks", "--allow-reboot", "--drain-timeout", "5",
                  "--html", "r.html", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    mid = page_data(tmp_path / "r.html")
    assert mid["run"]["state"] == "rebooting"
    assert [s["ended"] for s in mid["sessions"]] == ["rebooting"]
    assert [(g["kind"], g["end"]) for g in mid["gaps"]] == [("reboot", None)]
    for _ in range(3):
        res = harness("resume", "--html", "r.html", cwd=tmp_path, env=env)
        if res.returncode != 2:
            break
    assert res.returncode == 0, res.stdout + res.stderr
    data = page_data(tmp_path / "r.html")
    assert data["run"]["reboots"] == 2
    assert [s["ended"] for s in data["sessions"]] == ["rebooting", "rebooting", "finished"]
    assert [g["kind"] for g in data["gaps"]] == ["reboot", "reboot"]
    for gap, after in zip(data["gaps"], data["sessions"][1:]):
        assert gap["end"] == after["start"]
    i = data["tasks"]["key"].index("kernel")
    assert data["tasks"]["reboots"][i] == 2
    bars = [data["bars"][k:k + 6] for k in range(0, len(data["bars"]), 6)]
    kernel = [data["outcomes"][b[4]] for b in bars if b[0] == i]
    assert kernel == ["rebooting", "rebooting", "pass"]


def test_groups_are_marked(tmp_path):
    grouped_suite(tmp_path / "suite")
    res = harness("start", "suite", "-j", "2", "--html", "r.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = page_data(tmp_path / "r.html")
    assert data["groups"] == ["vm", "syscalls"]
    keys, group = data["tasks"]["key"], data["tasks"]["group"]
    assert {k: data["groups"][g] for k, g in zip(keys, group) if g >= 0} == {
        "vm/t0": "vm", "vm/t1": "vm", "vm/t2": "vm",
        "sys/s0": "syscalls", "sys/s1": "syscalls", "sys/s2": "syscalls"}
    (vm, vm_start, vm_end), (sys_, sys_start, sys_end) = data["group_spans"]
    assert (vm, sys_) == (0, 1) and vm_start < vm_end <= sys_start < sys_end


def test_output_is_capped_and_the_page_has_a_budget(tmp_path):
    exe(tmp_path / "suite" / "loud.sh", "seq 1 20000", "exit 1")
    exe(tmp_path / "suite" / "quiet.sh", "echo a little")
    assert harness("start", "suite", cwd=tmp_path).returncode == 1
    path = str(tmp_path / "pexen-journal.sqlite")
    with journal.open(path, create=False) as j:
        run = j.newest()
        data = htmlreport.report_data(j, run, path, stream_cap=1000)
        keys = data["tasks"]["key"]
        (loud,) = data["output"][keys.index("loud")]
        assert loud[2].startswith("1\n2\n3\n") and loud[2].endswith("19999\n20000\n")
        assert f"the whole stream is in {loud[3]}" in loud[2] and len(loud[2]) < 1200
        # a budget of a little more: the failure's output first, then no room
        data = htmlreport.report_data(j, run, path, stream_cap=1000,
                                      budget=len(loud[2]) + 5)
        assert data["output"][keys.index("loud")][0][2] is not None
        (quiet,) = data["output"][keys.index("quiet")]
        assert quiet[2] is None and quiet[3].endswith("1.out")   # named, not included


@pytest.mark.parametrize("case", ["directory", "no-such-dir"])
def test_bad_html_targets_are_refused_before_anything_runs(tmp_path, case):
    exe(tmp_path / "suite" / "ok.sh")
    target = {"directory": str(tmp_path), "no-such-dir": str(tmp_path / "nope" / "r.html")}[case]
    res = harness("start", "suite", "--html", target, cwd=tmp_path)
    assert res.returncode == 4
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"pexen-harness: error: --html {target}: ")
    assert not (tmp_path / "pexen-journal.sqlite").exists()
    # export too: the journal is left as it was
    assert harness("start", "suite", cwd=tmp_path).returncode == 0
    before = (tmp_path / "pexen-journal.sqlite").read_bytes()
    res = harness("export", "--html", target, cwd=tmp_path)
    assert res.returncode == 4 and len(res.stderr.splitlines()) == 1
    assert f"--html {target}: " in res.stderr
    assert (tmp_path / "pexen-journal.sqlite").read_bytes() == before


def test_export_needs_a_file_to_write(tmp_path):
    exe(tmp_path / "suite" / "ok.sh")
    assert harness("start", "suite", cwd=tmp_path).returncode == 0
    res = harness("export", cwd=tmp_path)
    assert res.returncode == 4
    assert res.stderr == "pexen-harness: error: export needs --xunit FILE, --html FILE or both\n"
    res = harness("export", "--html", "r.html", "--journal", "nothing.sqlite", cwd=tmp_path)
    assert res.returncode == 4 and "no journal at" in res.stderr
    assert not (tmp_path / "r.html").exists()


def _luminance(colour):
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a, b):
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_colours_have_a_contrast_of_at_least_4_5():
    """Each outcome's colour: badges (white text on it), bars on the white
    page; and the page's text colours on their backgrounds."""
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    for name, colour in htmlreport.PALETTE.items():
        assert contrast(colour, "#ffffff") >= 4.5, name
    page = htmlreport.PAGE_COLOURS
    for fg, bg in (("text", "background"), ("muted", "background"), ("link", "background"),
                   ("gap", "background"), ("tooltip-text", "tooltip-background")):
        assert contrast(page[fg], page[bg]) >= 4.5, (fg, bg)
    # the detail rows' background (#f6f8fa) under text and links
    for fg in ("text", "muted", "link"):
        assert contrast(page[fg], "#f6f8fa") >= 4.5, fg
    assert set(htmlreport.OUTCOMES) >= set(s.value for s in journal.TaskState)


def test_the_page_fetches_nothing():
    """One file: no script, style sheet, image or font from anywhere else."""
    assets = os.path.join(os.path.dirname(htmlreport.__file__), "_report")
    for name in os.listdir(assets):
        with open(os.path.join(assets, name), encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"""(src|href)\s*=|@import|url\(|https?://|fetch\(|XMLHttpRequest""",
                             text), name


def test_a_lane_is_a_worker(tmp_path):
    """Each attempt is in the lane of the worker that ran it (its pid, in the
    journal's `running` event): at -j 2, two lanes, each one worker's
    attempts; a worker that died is replaced in its lane."""
    import sqlite3

    top = tmp_path / "suite"
    for i in range(40):
        exe(top / f"t{i:02d}.sh", f"sleep 0.0{i * 7 % 5}")
    exe(top / "kills_worker.sh", "kill -9 $PPID; sleep 1")
    res = harness("start", str(top), "-j", "2", "--html", "r.html", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    data = page_data(tmp_path / "r.html")
    with sqlite3.connect(tmp_path / "pexen-journal.sqlite") as con:
        pids = dict(con.execute("SELECT key, pid FROM tasks"))
        events = con.execute("SELECT count(*) FROM events WHERE to_state = 'running' "
                             "AND detail LIKE '{\"pid\": %'").fetchone()[0]
    assert events == len(pids)
    keys, bars = data["tasks"]["key"], data["bars"]
    lane_pids = {}
    for b in range(len(bars) // 6):
        lane_pids.setdefault(bars[b * 6 + 5], set()).add(pids[keys[bars[b * 6]]])
    assert data["lanes"] == 2 and sorted(lane_pids) == [0, 1]
    workers = [p for ps in lane_pids.values() for p in ps]
    assert len(workers) == len(set(workers)) >= 3   # (one replaced after the kill)


def test_lanes_follow_the_workers_where_the_times_alone_would_mix_them():
    lanes = htmlreport._Lanes(slots=2)
    a, b = 101, 202
    # A and B start; B ends first; at 1.1 both lanes are free: B's next
    # attempt goes to B's lane, not the lowest free one
    got = [lanes.place(start, stop, pid) for start, stop, pid in
           [(0.0, 1.0, a), (0.2, 0.9, b), (1.1, 2.0, b), (1.2, 1.8, a)]]
    assert got == [0, 1, 1, 0]
    # a new worker (B replaced: it died at 2.0) takes the lane of the worker
    # that ended last
    assert lanes.place(2.5, 3.0, 303) == 1
    assert lanes.place(2.6, 3.0, a) == 0 and lanes.count == 2
    # attempts with no pid: the lowest free lane, as before
    plain = htmlreport._Lanes(slots=2)
    assert [plain.place(s, e, None) for s, e in [(0, 1), (0.2, 0.9), (1.1, 2), (1.2, 2)]] \
        == [0, 1, 0, 1]

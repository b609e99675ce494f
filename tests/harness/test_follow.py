"""pexen-harness follow: a run's transitions and results, printed from another
process while the run goes on, through a crash and a reboot of its
controller, and as the history of a run that has ended."""

import json
import os
import queue
import signal
import socket
import sqlite3
import sys
import threading
import time

import pexen.journal as journal
from pexen.harness import follow as follow_mod

from .test_cli import end, harness, has_run, spawn, states

#: the fields of each kind of line of follow --json (doc/harness.md, "follow")
COMMON = {"schema", "run", "kind", "id", "at", "key"}
FIELDS = {
    "transition": COMMON | {"from", "to", "attempt", "reason", "detail"},
    "result": COMMON | {"attempt", "name", "outcome", "message"},
    "run": COMMON | {"from", "to", "detail", "exit_code"},
}

# Each script waits for the file $GATE/NAME, so that the test says when it ends.
WAIT = 'while [ ! -e "$GATE/{name}" ]; do sleep 0.02; done\n'
SUITE = {
    "net/dns.sh": WAIT.format(name="dns")
    + 'pexen-harness report lookup fail -m "no answer\nfrom 10.0.0.1"\nexit 1\n',
    "net/ping.sh": 'pexen-harness report ping pass\npexen-harness report rtt warn -m slow\n',
    "fs/skipped.sh": "exit 77\n",
}


def make_suite(tmp_path, scripts):
    suite = tmp_path / "suite"
    for name, body in scripts.items():
        path = suite / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"GATE": str(gate),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return suite, gate, env


def wait_for_run(tmp_path, journal_name="pexen-journal.sqlite", timeout=60):
    deadline = time.monotonic() + timeout
    while not has_run(tmp_path / journal_name):
        assert time.monotonic() < deadline, "the run was not created"
        time.sleep(0.02)


class Follow:
    """`pexen-harness follow ARGS` in a process of its own, its lines read
    by a thread as they come."""

    def __init__(self, *args, cwd, env=None):
        self.proc = spawn("follow", *args, cwd=cwd, env=env)
        self.lines = []      # what the test has looked at
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted, timeout=60):
        """Read lines until one whose text (after the time) is `wanted`, or
        for which `wanted(line)` is true (a function)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} from follow: {self.lines}") from None
            if line is None:
                raise AssertionError(f"follow ended before {wanted!r}: {self.lines} "
                                     f"{self.proc.stderr.read()}")
            self.lines.append(line)
            if wanted(line) if callable(wanted) else text(line) == wanted:
                return line

    def finish(self, timeout=120):
        """Wait for follow to end; its exit status (every line is in .lines)."""
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=30)
        while True:
            line = self._queue.get_nowait()
            if line is None:
                return code
            self.lines.append(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._thread.join(timeout=30)
        end(self.proc)

    @property
    def texts(self):
        return [text(line) for line in self.lines]


def text(line):
    """A plain line without its time (HH:MM:SS and a space)."""
    assert line[2] == ":" and line[5] == ":" and line[8] == " ", line
    return line[9:]


def of_task(texts, key):
    return [t for t in texts if t.startswith(key + " ")]


def test_follow_prints_a_run_as_it_goes_and_ends_with_it(tmp_path):
    """Two followers (plain and --json) started while the run goes on see
    the task net/dns run before the test lets it end; the lines of each
    task come in order; both end when the run does, with its exit status;
    following the run once it has ended prints the same lines."""
    suite, gate, env = make_suite(tmp_path, SUITE)
    run = spawn("start", str(suite), "-j", "1", cwd=tmp_path, env=env)
    followers = []
    try:
        wait_for_run(tmp_path)
        plain = Follow(cwd=tmp_path, env=env)
        followers.append(plain)
        as_json = Follow("1", "--json", cwd=tmp_path, env=env)
        followers.append(as_json)
        plain.until("net/dns running (attempt 1)")
        (gate / "dns").touch()
        assert plain.finish() == 1, plain.proc.stderr.read()
        assert as_json.finish() == 1, as_json.proc.stderr.read()
        assert run.wait(timeout=120) == 1
    finally:
        for f in followers:
            f.close()
        end(run)
    texts = plain.texts
    assert texts[0] == "run 1 started (3 tasks)"
    assert texts[-1] == "run 1 finished: exit 1 (some failed)"
    assert of_task(texts, "net/dns") == [
        "net/dns queued (attempt 1)", "net/dns running (attempt 1)",
        "net/dns reported lookup: fail: no answer\\nfrom 10.0.0.1",
        "net/dns fail: exit status 1"]
    assert of_task(texts, "net/ping") == [
        "net/ping queued (attempt 1)", "net/ping running (attempt 1)",
        "net/ping reported ping: pass", "net/ping reported rtt: warn: slow",
        "net/ping warn: reported rtt: warn: slow"]
    assert of_task(texts, "fs/skipped") == [
        "fs/skipped queued (attempt 1)", "fs/skipped running (attempt 1)",
        "fs/skipped skip: exit status 77 (skip)"]
    assert len(texts) == 2 + 4 + 5 + 3
    # the same, as JSON: one object a line, in the same order
    objs = [json.loads(line) for line in as_json.lines]
    assert len(objs) == len(texts)
    assert [o["kind"] for o in objs] == [
        "run" if t.startswith("run ") else "result" if t.split()[1] == "reported"
        else "transition"
        for t in texts]
    # once the run has ended, follow prints its history and ends
    again = harness("follow", cwd=tmp_path)
    assert again.returncode == 1 and not again.stderr
    history = [text(line) for line in again.stdout.splitlines()]
    assert sorted(history) == sorted(texts)
    for key in ("net/dns", "net/ping", "fs/skipped"):
        assert of_task(history, key) == of_task(texts, key)
    assert again.stdout.splitlines() == harness("follow", "1", cwd=tmp_path).stdout.splitlines()


def documented_fields():
    """The fields the --json table of doc/harness.md's `follow` lists, by kind."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[2] / "doc" / "harness.md").read_text()
    section = doc[doc.index("## `follow`"):]
    section = section[section.index("| field | in |"):]
    by_kind = {kind: set() for kind in FIELDS}
    for row in section.splitlines()[2:]:
        if not row.startswith("|"):
            break
        names, kinds = row.split(" | ")[:2]
        kinds = set(FIELDS) if kinds == "every line" else set(re.findall(r"`(\w+)`", kinds))
        for kind in kinds:
            by_kind[kind].update(re.findall(r"`(\w+)`", names))
    return by_kind


def test_follow_json_fields_are_pinned(tmp_path):
    """The fields of each kind of line of follow --json, as doc/harness.md
    lists them, with the schema number; and their values."""
    suite, gate, env = make_suite(tmp_path, SUITE)
    (gate / "dns").touch()
    assert harness("start", str(suite), "-j", "1", cwd=tmp_path, env=env).returncode == 1
    res = harness("follow", "--json", cwd=tmp_path)
    assert res.returncode == 1 and not res.stderr
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert documented_fields() == FIELDS
    for obj in objs:
        assert set(obj) == FIELDS[obj["kind"]], obj
        assert obj["schema"] == 1 and obj["run"] == 1 and isinstance(obj["at"], float)
    first, last = objs[0], objs[-1]
    assert first == {**first, "kind": "run", "key": None, "from": None, "to": "running",
                     "detail": {"tasks": 3, "pid": first["detail"]["pid"]},
                     "exit_code": None}
    assert isinstance(first["detail"]["pid"], int)
    assert last == {**last, "kind": "run", "to": "finished", "exit_code": 1}
    # ids: the events table's and the results table's, each increasing
    for kind in ("transition", "result"):
        ids = [o["id"] for o in objs if o["kind"] == kind or (kind == "transition"
                                                              and o["kind"] == "run")]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    (result,) = [o for o in objs if o["kind"] == "result" and o["key"] == "net/dns"]
    assert result == {**result, "attempt": 1, "name": "lookup", "outcome": "fail",
                      "message": "no answer\nfrom 10.0.0.1"}   # as stored
    dns = [o for o in objs if o["kind"] == "transition" and o["key"] == "net/dns"]
    assert [(o["from"], o["to"], o["attempt"], o["reason"]) for o in dns] == [
        ("pending", "queued", 1, None), ("queued", "running", 1, None),
        ("running", "fail", 1, "exit status 1")]
    # the same facts as the journal's own rows
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        events = j.events(1)
        assert [o["id"] for o in objs if o["kind"] != "result"] == [e.id for e in events]
        assert [(o["key"], o["to"]) for o in objs if o["kind"] != "result"] == [
            (e.key, e.to_state) for e in events]
        assert len([o for o in objs if o["kind"] == "result"]) == len(j.results(1))


def test_a_dead_controller_ends_follow_and_wait_follows_the_resumed_run(tmp_path):
    """The controller is SIGKILLed while a task runs: follow says so and ends
    (exit 2); follow --wait says so, waits, shows the task's result recorded
    by what outlived the controller (the executables' spawner, under the
    thread pool), and follows the run into the controller of `resume` to its
    end."""
    suite, gate, env = make_suite(tmp_path, {"gated.sh": WAIT.format(name="gated")})
    run = spawn("start", str(suite), "--pool", "thread", cwd=tmp_path, env=env)
    followers = []
    resume = None
    try:
        wait_for_run(tmp_path)
        alone = Follow(cwd=tmp_path, env=env)
        followers.append(alone)
        waits = Follow("--wait", cwd=tmp_path, env=env)
        followers.append(waits)
        alone.until("gated running (attempt 1)")
        waits.until("gated running (attempt 1)")
        pid = run.pid
        run.send_signal(signal.SIGKILL)
        end(run)   # (reaped: a zombie's pid would still look alive)
        assert alone.finish() == 2, alone.proc.stderr.read()
        assert alone.texts[-1] == (f"run 1 controller gone (pid {pid}) before the run "
                                   "finished; pexen-harness resume 1 continues it")
        waits.until(f"run 1 controller gone (pid {pid}) before the run finished; "
                    "waiting for pexen-harness resume 1")
        (gate / "gated").touch()
        waits.until("gated pass")
        resume = spawn("resume", cwd=tmp_path, env=env)
        assert waits.finish() == 0, waits.proc.stderr.read()
        assert resume.wait(timeout=120) == 0
    finally:
        for f in followers:
            f.close()
        end(run)
        if resume is not None:
            end(resume)
    texts = waits.texts
    gone = texts.index(f"run 1 controller gone (pid {pid}) before the run finished; "
                       "waiting for pexen-harness resume 1")
    assert texts[gone + 1:gone + 3] == ["gated pass",
                                        f"run 1 resumed (pid {resume.pid})"]
    assert of_task(texts, "gated") == [
        "gated queued (attempt 1)", "gated running (attempt 1)", "gated pass"]
    assert texts[-1] == "run 1 finished: exit 0 (all passed)"
    # the history is the same, but for what follow saw of the controller
    history = harness("follow", cwd=tmp_path)
    assert history.returncode == 0
    assert [text(line) for line in history.stdout.splitlines()] == (
        texts[:gone] + texts[gone + 1:])


REBOOT = """#!/bin/sh
echo second-boot > "$PEXEN_BOOT_ID_FILE"
"""
REBOOTS = """if [ "$PEXEN_REBOOT_COUNT" -lt 1 ]; then
    pexen-harness report before-reboot pass
    exec pexen-harness reboot
fi
pexen-harness report after-reboot pass -m "boot $PEXEN_REBOOT_COUNT"
"""


def test_follow_through_a_reboot(tmp_path):
    """A task asks for a reboot (simulated: the reboot command writes a new
    boot id and the controller ends): follow says the controller is gone
    (exit 2); follow --wait waits through it and follows `resume` after the
    "boot"; the task's attempt goes on through the reboot."""
    suite, _, env = make_suite(tmp_path, {"reboots.sh": REBOOTS})
    (tmp_path / "reboot.sh").write_text(REBOOT)
    (tmp_path / "reboot.sh").chmod(0o755)
    (tmp_path / "bootid").write_text("first-boot\n")
    env.update(PEXEN_BOOT_ID_FILE=str(tmp_path / "bootid"),
               PEXEN_REBOOT_COMMAND=str(tmp_path / "reboot.sh"))
    res = harness("start", str(suite), "--allow-reboot", cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    _, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.state == "rebooting"
    alone = harness("follow", cwd=tmp_path, env=env)
    assert alone.returncode == 2, alone.stderr
    texts = [text(line) for line in alone.stdout.splitlines()]
    assert texts[-4:] == [
        "reboots rebooting (attempt 1)", "run 1 rebooting: reboots asked for a reboot",
        f"run 1 reboot command run: {tmp_path / 'reboot.sh'}",
        f"run 1 controller gone (pid {run.controller_pid}) before the run finished; "
        "pexen-harness resume 1 continues it"]
    waits = Follow("--wait", "--json", cwd=tmp_path, env=env)
    resume = None
    try:
        waits.until(lambda line: json.loads(line).get("to") == "controller-gone")
        resume = spawn("resume", cwd=tmp_path, env=env)
        assert waits.finish() == 0, waits.proc.stderr.read()
        assert resume.wait(timeout=120) == 0
    finally:
        waits.close()
        if resume is not None:
            end(resume)
    objs = [json.loads(line) for line in waits.lines]
    moves = [(o["to"], o["attempt"]) for o in objs if o["kind"] == "transition"]
    assert moves == [("queued", 1), ("running", 1), ("rebooting", 1), ("pending", 1),
                     ("queued", 1), ("running", 1), ("pass", 1)]
    assert [(o["name"], o["attempt"]) for o in objs if o["kind"] == "result"] == [
        ("before-reboot", 1), ("after-reboot", 1)]
    assert [o["to"] for o in objs if o["kind"] == "run"] == [
        "running", "rebooting", "reboot-issued", "controller-gone", "running", "finished"]
    assert objs[-1]["exit_code"] == 0
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["reboots"].attempt == 1 and rows["reboots"].reboot_count == 1


def test_follow_ends_quietly_on_sigint_and_on_a_closed_pipe(tmp_path):
    """^C ends follow with exit status 2 and nothing on stderr; a reader that
    goes away (`follow | head -1`) ends it with 0, also nothing on stderr;
    the run goes on."""
    suite, gate, env = make_suite(tmp_path, {"gated.sh": WAIT.format(name="gated")})
    run = spawn("start", str(suite), cwd=tmp_path, env=env)
    interrupted = piped = None
    try:
        wait_for_run(tmp_path)
        interrupted = Follow(cwd=tmp_path, env=env)
        piped = spawn("follow", cwd=tmp_path, env=env)
        interrupted.until("gated running (attempt 1)")
        while text(piped.stdout.readline().rstrip("\n")) != "gated running (attempt 1)":
            pass
        piped.stdout.close()
        interrupted.proc.send_signal(signal.SIGINT)
        assert interrupted.finish() == 2
        assert interrupted.proc.stderr.read() == ""
        (gate / "gated").touch()   # the run goes on: follow has more to print
        assert piped.wait(timeout=120) == 0
        assert piped.stderr.read() == ""
        assert run.wait(timeout=120) == 0
    finally:
        if interrupted is not None:
            interrupted.close()
        if piped is not None:
            end(piped)
        end(run)


def test_no_journal_no_run_no_such_run_exit_4(tmp_path):
    res = harness("follow", cwd=tmp_path)
    assert res.returncode == 4 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"pexen-harness: error: no journal at {tmp_path / 'pexen-journal.sqlite'}"]
    journal.open(str(tmp_path / "pexen-journal.sqlite")).close()
    res = harness("follow", "--wait", cwd=tmp_path)
    assert res.returncode == 4 and len(res.stderr.strip().splitlines()) == 1
    assert "has no runs yet" in res.stderr
    suite, gate, env = make_suite(tmp_path, {"a.sh": "exit 0\n"})
    assert harness("start", str(suite), cwd=tmp_path, env=env).returncode == 0
    res = harness("follow", "7", "--json", cwd=tmp_path)
    assert res.returncode == 4 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"pexen-harness: error: {tmp_path / 'pexen-journal.sqlite'} has no run 7 "
        "(pexen-harness list shows the runs)"]
    assert harness("follow", "1", cwd=tmp_path).returncode == 0


def test_a_controller_on_another_machine_is_judged_by_its_heartbeat(monkeypatch):
    """A journal at a URL may be followed from another machine, where the
    controller's pid means nothing: it is gone when its heartbeat stops."""
    clock = [1000.0]
    monkeypatch.setattr(follow_mod.time, "monotonic", lambda: clock[0])
    f = follow_mod._Follower(None, journal.RunInfo(
        1, 0.0, None, "running", {}, {}, "h", "b", 1, 0.0, 0.0, None),
        False, False, "", sys.stdout, 0.2)
    f.host = "this machine"

    def run(beat):
        return journal.RunInfo(1, 0.0, None, "running", {}, {}, "the other machine",
                               "boot", 42, 5.0, beat, None)

    now = time.time()
    assert f._alive(run(now))
    clock[0] += follow_mod.REMOTE_STALE - 1
    assert f._alive(run(now))                    # not moved, not for long yet
    clock[0] += 2
    assert not f._alive(run(now))                # not moved for too long
    assert f._alive(run(now + 30))               # it moved
    assert not f._alive(run(now - 3600))         # an hour old when first seen


def test_following_a_finished_run_loads_no_database_layer_and_no_engine(tmp_path):
    from .test_startup import probe, tops

    suite, _, env = make_suite(tmp_path, {"ok.sh": "exit 0\n"})
    assert harness("start", str(suite), cwd=tmp_path, env=env).returncode == 0
    for args in (["follow"], ["follow", "--json"]):
        done, loaded = probe(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        assert not tops(loaded) & {"sqlalchemy", "alembic", "psutil", "typing"}, sorted(loaded)
        assert not {m for m in loaded if m.startswith(("pexen.sched", "pexen.factory"))}
        assert "pexen.harness.controller" not in loaded


def test_a_row_committed_after_one_with_a_higher_id_is_not_passed_over(tmp_path):
    """On PostgreSQL a row's id is taken at its insert, so of two tasks
    reporting at once the higher id may be committed first. Made here by
    hand on SQLite: result 10 is committed, then result 5; follow prints
    both. The run's controller is this (live) process; the run ends when
    it journals "finished"."""
    from pexen.harness.controller import boot_id, process_started

    path = str(tmp_path / "pexen-journal.sqlite")
    with journal.open(path) as j:
        run_id = j.create_run({"kind": "dir", "target": "x", "cwd": str(tmp_path)}, {},
                              [("t", {})], host=socket.gethostname(), boot_id=boot_id(),
                              controller_pid=os.getpid(),
                              controller_started=process_started(os.getpid()))
    follower = Follow("--json", cwd=tmp_path)
    try:
        follower.until(lambda line: json.loads(line)["to"] == "running")
        con = sqlite3.connect(path)
        for id_ in (10, 5):
            with con:
                con.execute("INSERT INTO results (id, run_id, key, attempt, name, outcome, "
                            "message, at) VALUES (?, ?, 't', 1, ?, 'pass', NULL, ?)",
                            (id_, run_id, f"r{id_}", time.time()))
            follower.until(lambda line, name=f"r{id_}": json.loads(line).get("name") == name)
        con.close()
        with journal.open(path) as j:
            w = j.writer(run_id)
            w.run_event("finished", finished_at=time.time(), exit_code=0)
            w.close()
        assert follower.finish() == 0, follower.proc.stderr.read()
    finally:
        follower.close()
    assert [json.loads(line)["id"] for line in follower.lines] == [1, 10, 5, 2]

"""resume() in-process: what it reads back from the journal reaches the run
(the shared dict of a task that passed, the time a task used before, the
attempt)."""

import os
import socket
import textwrap

import pexen.journal as journal
from pexen.harness import run
from pexen.harness.controller import boot_id
from pexen.harness.suite import parse_suite
from pexen.journal import TaskState as S

HANDOFF_SUITE = textwrap.dedent('''
    from pexen.sched.meta import assign_val


    def make(shared):
        shared["image"] = "vmlinuz"


    def boot(shared):
        with open("boot.log", "a") as f:
            f.write(f"{shared.get('image')}\\n")


    def lone():
        pass


    assign_val(make, provides=["img"])
    assign_val(boot, requires=["img"])


    def tasks():
        return [make, boot, lone]
''')


def test_resume_hands_on_shared_state_time_and_attempts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resume_handoff.py").write_text(HANDOFF_SUITE)
    spec = parse_suite("resume_handoff:tasks")
    path = str(tmp_path / "j.sqlite")
    with journal.open(path) as j:
        run_id = j.create_run(spec.to_json(), {"workers": 1, "pool": "thread",
                                               "max_attempts": 3},
                              [("make", {}), ("boot", {}), ("lone", {})], host=socket.gethostname(),
                              boot_id=boot_id(), controller_pid=os.getpid(),
                              controller_started=0.0)
        w = j.writer(run_id)
        # make passed with a shared dict; boot was running when the controller
        # died, having used time before; lone is pending with time used
        w.transition("make", S.QUEUED, attempt=1)
        w.transition("make", S.RUNNING)
        w.transition("make", S.PASS, time_used=0.5, shared='{"image": "vmlinuz"}',
                     shared_restorable=True)
        w.transition("boot", S.QUEUED, attempt=1, time_used=1.5)
        w.transition("boot", S.RUNNING)
        w.update_task("lone", time_used=2.5)
        w.close()

    assert run.resume(path, notify=lambda msg: None) == (run_id, 0)

    assert (tmp_path / "boot.log").read_text() == "vmlinuz\n"
    with journal.open(path, create=False) as j:
        rows = {t.key: t for t in j.tasks(run_id)}
    assert {k: r.state for k, r in rows.items()} == {
        "make": "pass", "boot": "pass", "lone": "pass"}
    assert rows["make"].attempt == 1 and rows["make"].time_used == 0.5  # not run again
    assert rows["boot"].attempt == 2 and rows["boot"].time_used >= 1.5
    assert rows["lone"].attempt == 1 and rows["lone"].time_used >= 2.5


def test_on_end_sees_the_ended_run_in_the_open_journal(tmp_path, monkeypatch):
    """start() and resume() call `on_end(journal, run_id, code)` once the
    session has ended, with the journal still open and the run's end
    committed; what it returns is the exit code (the CLI writes --xunit
    there instead of opening the journal again)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resume_handoff.py").write_text(HANDOFF_SUITE)
    path = str(tmp_path / "j.sqlite")
    seen = []

    def on_end(j, run_id, code):
        info = j.run(run_id)
        seen.append((run_id, code, info.state, sorted(t.state for t in j.tasks(run_id))))
        return 7

    opts = run.Options(workers=1, pool="thread")
    run_id, code = run.start("resume_handoff:tasks", path, opts, notify=lambda m: None,
                             on_end=on_end)
    assert code == 7
    assert seen == [(run_id, 0, "finished", ["pass", "pass", "pass"])]
    with journal.open(path, create=False) as j:   # closed cleanly after it
        assert j.run(run_id).state == "finished"

"""Exclusivity groups in the harness: declared by a directory's pexen.toml
(or TaskGroup objects of a module:function suite), journaled, resumed
inside the group that was running."""

import json
import os
import textwrap
import time

import pexen.journal as journal

from .test_cli import end, harness, has_run, spawn, states
from .test_execmeta import exe


def grouped_suite(top, vm_sleep="0.2", strict=True):
    """Plain tasks, then group 'vm' (process, 1 worker), then 'syscalls'
    (thread, 3 workers) which needs what 'vm' provides."""
    (top / "pexen.toml").parent.mkdir(parents=True, exist_ok=True)
    (top / "pexen.toml").write_text('groups = ["vm", "syscalls"]\n')
    exe(top / "plain.sh", "echo $$ > \"$PEXEN_TASK_DATA/pid\"")
    (top / "vm").mkdir()
    (top / "vm" / "pexen.toml").write_text('[group]\npool = "process"\nworkers = 1\n')
    for i in range(3):
        # fails if another vm test runs at the same time
        exe(top / "vm" / f"t{i}.sh", f"# pexen: provides=vm{i}",
            "echo run >> \"$PEXEN_TASK_DATA/runs\"",
            "mkdir \"$PEXEN_RUN_DATA/vm.busy\" || exit 1" if strict else ":",
            f"sleep {vm_sleep}; touch \"$PEXEN_RUN_DATA/vm{i}.done\"",
            "rmdir \"$PEXEN_RUN_DATA/vm.busy\"" if strict else ":")
    (top / "sys").mkdir()
    (top / "sys" / "pexen.toml").write_text(
        '# many small tests\n[group]\nname = "syscalls"\npool = "thread"\nworkers = 3\n')
    for i in range(3):
        # every vm test is done; then wait (5 s at most) until all three run
        exe(top / "sys" / f"s{i}.sh", "# pexen: requires=vm0",
            "cd \"$PEXEN_RUN_DATA\" && test -e vm0.done -a -e vm1.done -a -e vm2.done "
            "|| exit 1" if strict else "exit 0",
            f"touch s{i}.on; n=0",
            "until [ -e s0.on -a -e s1.on -a -e s2.on ]; do",
            "  n=$((n + 1)); [ $n -lt 100 ] || exit 2; sleep 0.05", "done")
    return top


def group_notes(path, run_id=None):
    with journal.open(str(path), create=False) as j:
        run = j.runs()[-1] if run_id is None else j.run(run_id)
        return [(e.to_state, e.detail) for e in j.events(run.id)
                if e.key is None and e.to_state.startswith("group-")]


def test_groups_run_one_at_a_time_each_with_its_pool(tmp_path):
    grouped_suite(tmp_path / "suite")
    done = harness("start", "suite", "-j", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    path = tmp_path / "pexen-journal.sqlite"
    tasks, run = states(path)
    assert all(t.state == "pass" for t in tasks.values())
    # (the tests themselves fail if two vm tests overlap, if a syscalls test
    # starts before every vm test is done, or if the three do not run at once)
    vm = [tasks[f"vm/t{i}"] for i in range(3)]
    sys_ = [tasks[f"sys/s{i}"] for i in range(3)]
    assert tasks["plain"].finished_at <= min(t.started_at for t in vm)
    # vm: one worker process, not the controller; syscalls: its threads
    assert len({t.pid for t in vm}) == 1 and vm[0].pid != run.controller_pid
    assert {t.pid for t in sys_} == {run.controller_pid}
    assert group_notes(path) == [
        ("group-started", {"group": "", "pool": "process", "workers": 2}),
        ("group-finished", {"group": ""}),
        ("group-started", {"group": "vm", "pool": "process", "workers": 1}),
        ("group-finished", {"group": "vm"}),
        ("group-started", {"group": "syscalls", "pool": "thread", "workers": 3}),
        ("group-finished", {"group": "syscalls"}),
    ]
    with journal.open(str(path), create=False) as j:
        [declared] = [e.detail for e in j.events_to(run.id, "groups")]
        metas = {t.key: json.loads(t.meta) for t in j.tasks(run.id)}
    assert [g["name"] for g in declared["groups"]] == ["vm", "syscalls"]
    assert metas["vm/t0"]["group"] == "vm" and "group" not in metas["plain"]


def test_list_and_selection_keep_groups(tmp_path):
    grouped_suite(tmp_path / "suite", strict=False)
    listed = harness("list", "--tasks", "suite", "--select", "sys/s1", cwd=tmp_path)
    assert listed.returncode == 0 and "2 tasks to run (1 selected, 1 pulled in)" in \
        listed.stdout
    done = harness("start", "suite", "--select", "sys/s1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pulled in vm/t0 provides 'vm0' for sys/s1 (only provider)" in done.stdout
    notes = [d["group"] for s, d in group_notes(tmp_path / "pexen-journal.sqlite")
             if s == "group-started"]
    assert notes == ["vm", "syscalls"]


def test_resume_continues_inside_the_group_that_was_running(tmp_path):
    grouped_suite(tmp_path / "suite", vm_sleep="1.0", strict=False)
    path = tmp_path / "pexen-journal.sqlite"
    proc = spawn("start", "suite", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if has_run(path) and states(path)[0]["vm/t0"].state == "pass":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("vm/t0 never passed")
        proc.kill()
    finally:
        end(proc)
    done = harness("resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks, run = states(path)
    assert all(t.state == "pass" for t in tasks.values())
    runs = {key: len(list((tmp_path / "pexen-journal.sqlite.d" / "1" / key / "data")
                          .glob("runs"))) for key in tasks}
    assert runs["vm/t0"] == 1
    assert (tmp_path / "pexen-journal.sqlite.d/1/vm/t0/data/runs").read_text() == "run\n"
    notes = [(s, d["group"]) for s, d in group_notes(path)]
    resumed = notes[notes.index(("group-started", "vm")) + 1:]
    # the second session starts inside vm: no ungrouped group, no second plain
    assert ("group-started", "vm") in resumed
    assert ("group-started", "") not in resumed[resumed.index(("group-started", "vm")):]
    assert resumed[-1] == ("group-finished", "syscalls")
    assert (tmp_path / "pexen-journal.sqlite.d/1/plain/data/pid").exists()


SUITE_WITH_GROUPS = textwrap.dedent('''
    import os
    from pexen.sched import TaskGroup
    from pexen.sched.meta import func_meta

    @func_meta(provides=["image"])
    def build():
        return os.getpid()

    @func_meta(requires=["image"])
    def boot():
        return os.getpid()

    def check():
        return os.getpid()

    def tasks():
        return [check, TaskGroup("build", [build], pool="thread"),
                TaskGroup("vm", [boot], pool="process", workers=1)]

    def backwards():
        return [TaskGroup("vm", [boot], pool="process"), TaskGroup("build", [build])]

    class MyPool:
        pass

    def custom():
        return [TaskGroup("odd", [check], pool=MyPool)]

    def twice():
        return [TaskGroup("a", [check]), TaskGroup("b", [check])]
''')


def test_function_suite_returns_task_groups(tmp_path):
    (tmp_path / "gsuite.py").write_text(SUITE_WITH_GROUPS)
    done = harness("start", "gsuite:tasks", "--pool", "thread", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks, run = states(tmp_path / "pexen-journal.sqlite")
    assert tasks["build"].pid == run.controller_pid
    assert tasks["boot"].pid != run.controller_pid
    notes = [d["group"] for s, d in group_notes(tmp_path / "pexen-journal.sqlite")
             if s == "group-started"]
    assert notes == ["", "build", "vm"]
    for name, message in (
            ("backwards", "task boot (group 'vm') requires 'image', which only a later "
                          "group provides: task build (group 'build')"),
            ("custom", "group 'odd': the harness runs groups in 'thread' or 'process' "
                       "pools"),
            ("twice", "task check is in two groups: 'a' and 'b'")):
        done = harness("start", f"gsuite:{name}", "--journal", f"{name}.sqlite",
                       cwd=tmp_path)
        assert done.returncode == 4, (name, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        assert not os.path.exists(tmp_path / f"{name}.sqlite")


def test_bad_group_declarations_exit_4_naming_file_and_line(tmp_path):
    cases = [
        ({"a/pexen.toml": '[group]\nworkers = 0\n'},
         "a/pexen.toml:1: [group] workers must be a whole number >= 1, not 0"),
        ({"a/pexen.toml": 'timeout = 5\n[group]\npool = "gpu"\n'},
         "a/pexen.toml:2: [group] pool must be \"thread\" or \"process\", not 'gpu'"),
        ({"a/pexen.toml": '[group]\ncolour = "red"\n'},
         "a/pexen.toml:1: unknown key 'colour' in [group]"),
        ({"pexen.toml": '[group]\npool = "thread"\n'},
         "pexen.toml:1: [group] needs a name"),
        ({"a/pexen.toml": '[group]\nname = "x"\n', "b/pexen.toml": '[group]\nname = "x"\n'},
         "b/pexen.toml:1: group 'x' is declared twice (also at"),
        ({"a/t.sh": "# pexen: group=nope"},
         "a/t.sh:2: unknown group 'nope'; declare it with a [group] table"),
        ({"a/t.sh.pexen.toml": '[group]\nname = "y"\n'},
         "a/t.sh.pexen.toml:1: a [group] is declared in a directory's pexen.toml, not in a "
         "sidecar"),
        ({"pexen.toml": 'groups = ["ghost"]\n'},
         "pexen.toml:1: groups lists 'ghost', which no [group] declares"),
        ({"a/pexen.toml": 'groups = ["a"]\n'},
         "a/pexen.toml:1: groups is read only from the pexen.toml at the top of the suite"),
    ]
    for n, (files, message) in enumerate(cases):
        top = tmp_path / f"s{n}"
        exe(top / "a" / "t.sh", *(["# pexen: group=nope"] if "a/t.sh" in files else []))
        exe(top / "b" / "u.sh")
        for name, text in files.items():
            if name != "a/t.sh":
                (top / name).write_text(text)
        done = harness("start", f"s{n}", cwd=tmp_path)
        assert done.returncode == 4, (files, done.stderr)
        assert message in done.stderr, (files, done.stderr)
        assert done.stderr.count("\n") == 1
    assert not (tmp_path / "pexen-journal.sqlite").exists()


def test_a_task_joins_a_group_declared_elsewhere(tmp_path):
    top = tmp_path / "suite"
    exe(top / "vm" / "boot.sh")
    (top / "vm" / "pexen.toml").write_text('[group]\nname = "vm"\nworkers = 1\n')
    exe(top / "other" / "migrate.sh", "# pexen: group=vm")
    exe(top / "loose.sh")
    done = harness("start", "suite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        metas = {t.key: json.loads(t.meta).get("group") for t in j.tasks(1)}
    assert metas == {"vm/boot": "vm", "other/migrate": "vm", "loose": None}


LAB = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def test_the_lab_example_uses_every_feature(tmp_path):
    import shutil
    import sys

    shutil.copytree(LAB, tmp_path / "examples")
    (tmp_path / "bootid").write_text("boot-1\n")
    (tmp_path / "reboot.sh").write_text(
        "#!/bin/sh\necho boot-2 > \"$PEXEN_BOOT_ID_FILE\"\n")
    (tmp_path / "reboot.sh").chmod(0o755)
    env = {"PEXEN_BOOT_ID_FILE": str(tmp_path / "bootid"),
           "PEXEN_REBOOT_COMMAND": str(tmp_path / "reboot.sh"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    done = harness("start", "examples.lab.suite:tasks", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks, _ = states(tmp_path / "pexen-journal.sqlite")
    assert tasks["kernel/reboot"].state == "skip"
    assert "PEXEN_ALLOW_REBOOT" in tasks["kernel/reboot"].reason
    assert tasks["os/freebsd"].state == "skip" and tasks["os/linux"].state == "pass"
    assert {tasks[k].state for k in ("digest/md5", "digest/sha1", "digest/sha256",
                                     "make_db", "db_read", "db_integrity",
                                     "mail/deliver", "linux_only")} == {"pass"}
    started = [d["group"] for s, d in group_notes(tmp_path / "pexen-journal.sqlite")
               if s == "group-started"]
    assert started == ["", "vm", "syscalls", "db"]
    # the reboot test, allowed: it asks for a reboot, the run resumes after it
    done = harness("start", "examples/lab/shell", "--select", "kernel", "--allow-reboot",
                   "--journal", "r.sqlite", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr   # to be resumed
    assert "rebooting" in done.stdout
    done = harness("resume", "--journal", "r.sqlite", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks, run = states(tmp_path / "r.sqlite")
    assert tasks["kernel/reboot"].state == "pass" and run.state == "finished"
    # a selection pulls in one of the two providers of 'mta'
    done = harness("list", "--tasks", "examples/lab/shell", "--select", "mail/deliver",
                   cwd=tmp_path)
    assert "pulled in: provides 'mta' for mail/deliver (preferred; over mail/pipe-agent)" \
        in done.stdout


def test_the_watchdog_ends_hung_tests_inside_groups(tmp_path):
    top = tmp_path / "suite"
    for name, pool in (("vm", "process"), ("sys", "thread")):
        (top / name).mkdir(parents=True)
        (top / name / "pexen.toml").write_text(f'[group]\npool = "{pool}"\nworkers = 2\n')
        # ignores SIGTERM, and leaves a daemon behind that ignores it too
        exe(top / name / "hang.sh", "# pexen: timeout=1", "trap '' TERM",
            "(trap '' TERM; sleep 300) &", "sleep 300")
        exe(top / name / "ok.sh")
    done = harness("start", "suite", "--kill-grace", "0.5", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    tasks, _ = states(tmp_path / "pexen-journal.sqlite")
    for name in ("vm", "sys"):
        assert tasks[f"{name}/hang"].state == "timeout", tasks[f"{name}/hang"].reason
        assert tasks[f"{name}/ok"].state == "pass"
    started = [d["group"] for s, d in group_notes(tmp_path / "pexen-journal.sqlite")
               if s == "group-started"]
    assert started == ["sys", "vm"]

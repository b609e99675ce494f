"""A task's data directory (PEXEN_TASK_DATA): a Python task finds it made
whenever it reads it (under the process pool also the variable, or a
program it starts); an executable gets its path and makes it; a task that
never uses it makes none."""

import textwrap

import pytest

from .test_cli import harness, states

SUITE = textwrap.dedent(r'''
    import os
    import subprocess

    import pexen
    from pexen.harness.suite import ExecutableTask

    HERE = os.path.dirname(os.path.abspath(__file__))


    def quiet():
        pass


    def reads_environ():
        with open(os.path.join(os.environ["PEXEN_TASK_DATA"], "f"), "w") as f:
            f.write("environ")


    def reads_getenv():
        with open(os.path.join(os.getenv("PEXEN_TASK_DATA"), "f"), "w") as f:
            f.write("getenv")


    def reads_context():
        with open(os.path.join(pexen.context().data_dir, "f"), "w") as f:
            f.write("context")


    def runs_a_shell():
        # the variable is not read here: only the child uses it
        subprocess.run('echo shell > "$PEXEN_TASK_DATA/f"', shell=True, check=True)


    def forks():
        pid = os.fork()
        if pid == 0:
            try:
                os.system('echo forked > "$PEXEN_TASK_DATA/f"')
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


    def copies_environ():
        env = dict(os.environ)
        subprocess.run(["sh", "-c", 'echo copied > "$PEXEN_TASK_DATA/f"'], env=env,
                       check=True)


    def tasks():
        return [quiet, reads_environ, reads_getenv, reads_context, runs_a_shell, forks,
                copies_environ, ExecutableTask(os.path.join(HERE, "exe.sh"), "exe")]
''')

WRITERS = {"reads_environ": "environ", "reads_getenv": "getenv", "reads_context": "context",
           "runs_a_shell": "shell\n", "forks": "forked\n", "copies_environ": "copied\n",
           "exe": "exe\n"}


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_data_directory_is_there_when_used_and_not_made_when_not(tmp_path, pool):
    (tmp_path / "datasuite.py").write_text(SUITE)
    exe = tmp_path / "exe.sh"
    exe.write_text('#!/bin/sh\necho exe > "$PEXEN_TASK_DATA/f"\n')
    exe.chmod(0o755)
    if pool == "thread":
        # the thread pool sets no PEXEN_* variable in its shared environment:
        # only pexen.context() and executables
        keep = ("quiet", "reads_context", "exe")
        text = SUITE.replace("return [quiet,", "return [t for t in [quiet,").replace(
            'ExecutableTask(os.path.join(HERE, "exe.sh"), "exe")]',
            f'ExecutableTask(os.path.join(HERE, "exe.sh"), "exe")] if t.__name__ in {keep}]')
        (tmp_path / "datasuite.py").write_text(text)
    res = harness("start", "datasuite:tasks", "--pool", pool, "-j", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert {row.state for row in rows.values()} == {"pass"}
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    for key in rows:
        if key == "quiet":
            assert not (base / key).exists()   # nothing made for a task that used nothing
        else:
            assert (base / key / "data" / "f").read_text() == WRITERS[key], key


LATE = textwrap.dedent(r'''
    import os
    import sys


    def late_subprocess():
        # subprocess is imported after the task started (nothing imported it
        # before, so the worker's hook cannot have been set on it)
        before = "subprocess" in sys.modules
        import subprocess
        subprocess.run('echo late > "$PEXEN_TASK_DATA/f"', shell=True, check=True)
        return before


    def runs_system():
        assert os.system('echo system > "$PEXEN_TASK_DATA/f"') == 0


    def spawns():
        # an environment read through os.environb: the spawn itself must do it
        env = dict(os.environb.items())
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", 'echo spawned > "$PEXEN_TASK_DATA/f"'],
                             env)
        assert os.waitpid(pid, 0)[1] == 0


    def tasks():
        return [late_subprocess, runs_system, spawns]
''')


def test_programs_started_any_way_find_the_directory(tmp_path):
    """A Python task under the process pool that starts a program with
    subprocess imported only then, os.system or os.posix_spawn, without
    reading the variable itself, finds the directory made for the program."""
    (tmp_path / "latesuite.py").write_text(LATE)
    res = harness("start", "latesuite:tasks", "-j", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert {key: row.state for key, row in rows.items()} == {
        "late_subprocess": "pass", "runs_system": "pass", "spawns": "pass"}
    assert rows["late_subprocess"].ret == "false"   # (subprocess was not loaded before)
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    for key, text in (("late_subprocess", "late\n"), ("runs_system", "system\n"),
                      ("spawns", "spawned\n")):
        assert (base / key / "data" / "f").read_text() == text, key


def _exe(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + "".join(line + "\n" for line in lines))
    path.chmod(0o755)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_an_executable_gets_its_directory_when_it_can_use_it(tmp_path, pool):
    """A script that names PEXEN_TASK_DATA finds it made; one that does not
    gets none (its helper makes it, or `data=true` asks for it);
    `data=false` leaves it to the script."""
    suite = tmp_path / "suite"
    _exe(suite / "names.sh", 'echo names > "$PEXEN_TASK_DATA/f"')
    _exe(suite / "quiet.sh", "exit 0")
    # the variable is used by a program the script runs, not by the script
    _exe(suite / "helper", 'echo helper > "$PEXEN_TASK_DATA/f"')
    (suite / "helper").chmod(0o644)    # (not a task of the suite)
    _exe(suite / "asks.sh", "# pexen: data=true", 'sh "$(dirname "$0")/helper"')
    _exe(suite / "declines.sh", "# pexen: data=false",
         'test ! -e "$PEXEN_TASK_DATA" || exit 3',
         'mkdir -p "$PEXEN_TASK_DATA" && echo declines > "$PEXEN_TASK_DATA/f"')
    _exe(suite / "dir" / "inherits.sh", 'sh "$(dirname "$0")/../helper"')
    (suite / "dir" / "pexen.toml").write_text("data = true\n")
    res = harness("start", "suite", "--pool", pool, "-j", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    assert (base / "names" / "data" / "f").read_text() == "names\n"
    # (under the thread pool an executable's output files are opened before
    # it runs, so its directory is there; empty files are removed)
    assert not (base / "quiet" / "data").exists()
    assert pool == "thread" or not (base / "quiet").exists()
    assert (base / "asks" / "data" / "f").read_text() == "helper\n"
    assert (base / "declines" / "data" / "f").read_text() == "declines\n"
    assert (base / "dir" / "inherits" / "data" / "f").read_text() == "helper\n"


def test_data_must_be_true_or_false(tmp_path):
    _exe(tmp_path / "suite" / "bad.sh", "# pexen: data=maybe", "exit 0")
    res = harness("start", "suite", cwd=tmp_path)
    assert res.returncode == 4
    assert "bad.sh:2: data must be true or false, not 'maybe'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


ODD_KEYS = textwrap.dedent(r'''
    import os

    from pexen.sched._keys import CALLPATH_ATTR_NAME


    def keyed(*callpath):
        def task():
            print("output of", "/".join(callpath))
            with open(os.path.join(os.environ["PEXEN_TASK_DATA"], "f"), "w") as f:
                f.write("/".join(callpath))
        setattr(task, CALLPATH_ATTR_NAME, list(callpath))
        return task


    def tasks():
        return [keyed("t", "p[" + "y" * 300 + "]"), keyed("t", "p[" + "\u00e9" * 150 + "]"),
                keyed("..", "escape"), keyed("a", "", "b"), keyed("plain", "key")]
''')


def test_a_key_part_that_cannot_be_a_file_name_gets_a_directory_in_the_run(tmp_path):
    """A part over 200 bytes (a pytest test's long parameter id), empty, or
    `..`: the task runs, its output and data land inside the run's directory,
    and `log` and the JUnit export find them."""
    (tmp_path / "oddkeys.py").write_text(ODD_KEYS)
    res = harness("start", "oddkeys:tasks", "-j", "2", "--xunit", "r.xml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert len(rows) == 5 and {row.state for row in rows.values()} == {"pass"}
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    made = sorted(str(p.relative_to(base)) for p in base.rglob("f"))
    assert len(made) == 5 and not (tmp_path / "escape").exists()
    assert "plain/key/data/f" in made
    assert all(len(part.encode()) <= 255 for path in made for part in path.split("/"))
    xml = (tmp_path / "r.xml").read_text()
    for key in rows:
        out = harness("log", key, cwd=tmp_path)
        assert out.returncode == 0 and f"output of {key}" in out.stdout, (key, out.stderr)
        assert f"output of {key}" in xml

"""A task's data directory (PEXEN_TASK_DATA): an executable finds it made; a
Python task under the process pool finds it made whenever it reads the
variable or starts a program, and a task that never uses it makes none."""

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

"""The smoke suite with dependencies and a lock: the executables of
examples/smoke and a few Python tasks, as one `module:function` suite.

Run it from the repository root:

    pexen-harness start examples.smoke_suite:tasks

What it shows: `env` runs first and the others need it (requires/provides);
the two tasks that write the scratch file claim the `scratch` lock, the one
that only reads it uses it (shared); `fs/expected-failure` fails on purpose
and `after-failure`, which needs it, ends skipped with the reason;
`hw/needs-gpu` skips (exit 77) on a machine without a GPU.
"""

import os
import sys

import pexen
from pexen.harness.suite import ExecutableTask
from pexen.sched.meta import assign_val, func_meta

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smoke")


def _exe(rel, **meta):
    key = os.path.splitext(rel)[0]
    task = ExecutableTask(os.path.join(HERE, rel), key)
    if meta:
        assign_val(task, **meta)
    return task


def _scratch():
    return os.path.join(pexen.context().data_dir, "..", "..", "scratch.txt")


@func_meta(requires=["env"], provides=["python"])
def python_version():
    assert sys.version_info >= (3, 9), sys.version
    return ".".join(map(str, sys.version_info[:3]))


@func_meta(requires=["python", "tmp"], provides=["scratch-written"], claims=["scratch"])
def write_scratch():
    with open(_scratch(), "w") as f:
        f.write("written by write_scratch\n")
    return "written"


@func_meta(requires=["scratch-written"], uses=["scratch"])
def read_scratch():
    with open(_scratch()) as f:
        text = f.read()
    assert text == "written by write_scratch\n", text
    return "read back"


@func_meta(requires=["scratch-written"], claims=["scratch"], priority=5)
def clean_scratch():
    os.remove(_scratch())
    return "removed"


@func_meta(requires=["expected"])
def after_failure():
    return "never runs: what it needs failed"


def tasks():
    return [
        _exe("00-env.sh", provides=["env"]),
        _exe("fs/tmp-writable.sh", requires=["env"], provides=["tmp"]),
        _exe("net/loopback.sh", requires=["env"]),
        _exe("sys/sqlite-roundtrip.py", requires=["env"]),
        _exe("hw/needs-gpu.sh", requires=["env"]),
        _exe("fs/expected-failure.sh", requires=["env"], provides=["expected"]),
        python_version,
        write_scratch,
        read_scratch,
        clean_scratch,
        after_failure,
    ]

"""A small real suite through the engine: dependencies, locks, a failure.

Run: python examples/engine/suite.py
"""

import os
import subprocess
import sys
import tempfile

from pexen import sched
from pexen.sched import ProcessWorkerPool, Sched, TaskFailError
from pexen.sched.meta import func_meta

WORKDIR = tempfile.mkdtemp(prefix="pexen-example-")


@func_meta(provides=["toolchain"], priority=-1)
def find_compiler(shared):
    for cc in ("cc", "gcc", "clang"):
        path = subprocess.run(["sh", "-c", f"command -v {cc}"],
                              capture_output=True, text=True).stdout.strip()
        if path:
            shared["cc"] = path
            return path
    raise TaskFailError("no C compiler found", deps_ok=False)


@func_meta(requires=["toolchain"], provides=["hello-binary"], claims=["workdir"])
def build_hello(shared):
    src = os.path.join(WORKDIR, "hello.c")
    with open(src, "w") as f:
        f.write('#include <stdio.h>\nint main(void){puts("hello");return 0;}\n')
    out = os.path.join(WORKDIR, "hello")
    subprocess.run([shared["cc"], "-o", out, src], check=True)
    shared["hello"] = out
    return out


@func_meta(requires=["hello-binary"], uses=["workdir"])
def run_hello(shared):
    out = subprocess.run([shared["hello"]], capture_output=True, text=True, check=True)
    assert out.stdout == "hello\n", out.stdout
    return out.stdout.strip()


@func_meta(uses=["workdir"])
def disk_has_space():
    st = os.statvfs(WORKDIR)
    free = st.f_bavail * st.f_frsize
    if free < 10 * 2**20:
        raise TaskFailError(f"only {free} bytes free")
    return free


def main() -> int:
    s = Sched([find_compiler, build_hello, run_hello, disk_has_space],
              listeners=[lambda ev: ev.kind == "skipped" and print(f"skip {ev.key}: {ev.reason}")])
    failed = 0
    for res in s.run(ProcessWorkerPool(workers=2)):
        outcome = sched.outcome_of(res)
        failed += outcome != "pass"
        print(f"{outcome:5} {s.key_of(res.task):16} {res.ret!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Suites the harness tests write into a temporary directory."""

import textwrap

CRASH_SUITE = textwrap.dedent('''
    """50 tasks with dependencies and locks; each logs every execution."""
    import os
    import time

    from pexen.sched.meta import assign_val


    def _make(i):
        def task():
            ctx_dir = os.environ["PEXEN_TASK_DATA"]
            with open(os.path.join(ctx_dir, "runs"), "a") as f:
                f.write(f"{os.environ['PEXEN_ATTEMPT']}\\n")
            time.sleep(0.02 + (i % 7) * 0.01)
            return i
        task.__name__ = task.__qualname__ = f"t{i:02d}"
        meta = {}
        if i % 5:
            meta["requires"] = [f"p{i - 1}"]
        if i % 5 != 4:
            meta["provides"] = [f"p{i}"]
        if i % 3 == 0:
            meta["claims"] = ["disk"]
        elif i % 3 == 1:
            meta["uses"] = ["disk"]
        assign_val(task, **meta)
        return task


    def tasks():
        return [_make(i) for i in range(50)]
''')

SLOW_SUITE = textwrap.dedent('''
    import os
    import time


    def _make(i):
        def task():
            with open(os.path.join(os.environ["PEXEN_TASK_DATA"], "runs"), "a") as f:
                f.write("x\\n")
            time.sleep(0.5)
        task.__name__ = task.__qualname__ = f"slow{i}"
        return task


    def tasks():
        return [_make(i) for i in range(8)]
''')

CONTEXT_SUITE = textwrap.dedent('''
    import os
    import subprocess

    import pexen


    def check_context():
        ctx = pexen.context()
        assert ctx.task == "check_context", ctx
        assert ctx.attempt == 1
        assert os.path.isdir(ctx.data_dir)
        child = subprocess.run(["sh", "-c", "echo $PEXEN_TASK $PEXEN_ATTEMPT"],
                               capture_output=True, text=True).stdout.split()
        return {"journal": ctx.journal, "task": ctx.task, "token": ctx.token,
                "env_token": os.environ.get("PEXEN_TASK_TOKEN"),
                "env_run": os.environ.get("PEXEN_RUN_ID"), "run": ctx.run_id,
                "child": child}


    def tasks():
        return [check_context]
''')

BAD_SUITES = {
    "notasks.py": "def tasks():\n    return 42\n",
    "badtask.py": "def tasks():\n    return [print, 'nope']\n",
    "unmet.py": ("from pexen.sched.meta import func_meta\n"
                 "@func_meta(requires=['ghost'])\n"
                 "def needy():\n    pass\n"
                 "def tasks():\n    return [needy]\n"),
    "broken.py": "import no_such_module_anywhere\n",
}

KILLER_SUITE = textwrap.dedent('''
    """A task that kills its controller the moment it starts (a test that
    takes the machine down), and logs each of its executions."""
    import os
    import signal

    import psutil

    import pexen


    def kills_controller():
        ctx = pexen.context()
        with open(os.path.join(ctx.data_dir, "runs"), "a") as f:
            f.write(f"{ctx.attempt}\\n")
        # worker -> fork server -> controller; the machine going down takes
        # the worker too (else it would outlive the controller and record
        # the task's pass)
        controller = psutil.Process().parent().parent()
        os.kill(controller.pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


    def tasks():
        return [kills_controller]
''')

"""The fork server of a Dask worker's runner (pexen.remote): Python tasks
start as forks of a process that has pexen, and the suite, loaded already,
not as new interpreters (what the process pool's fork server does on the
controller's machine).

The runner starts one per thread of the Dask worker that runs tasks
(``python -m pexen._remote_server``), and talks to it over its stdin and
stdout, one task at a time: a request (pickled: the task's payload file,
its result file, its output files, its environment and directory), and two
answers, the task's pid when it has started, then its wait status when it
has ended. The server ends when its stdin closes (its runner, or the worker,
went away).

Each task's process is a fork of this one: in a session of its own, its
stdout and stderr the files it was given, its environment the one it was
given; it runs `pexen.remote._child`. A suite is loaded in the server the
first time one of its tasks comes (the import of the user's modules is paid
once per worker), and the tasks' processes pick their task from it.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, BinaryIO, Dict, Optional, Tuple

_LEN = struct.Struct("!I")

#: suite JSON -> (tasks by key, or None; the error text when it did not load)
_suites: Dict[str, Tuple[Optional[Dict[str, Any]], Optional[str]]] = {}


def send(stream: BinaryIO, value: Any) -> None:
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(blob)) + blob)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("the other side closed")
    (size,) = _LEN.unpack(head)
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError("the other side closed")
    return pickle.loads(blob)


def _suite(spec_json: Any) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    import json

    name = json.dumps(spec_json, sort_keys=True)
    found = _suites.get(name)
    if found is None:
        try:
            from .harness.suite import SuiteSpec, load_suite_groups

            found = (dict(load_suite_groups(SuiteSpec.from_json(spec_json)).tasks), None)
        except BaseException as exc:   # (the suite does not load on this worker)
            import traceback

            found = (None, f"cannot load the task on this worker: {type(exc).__name__}: "
                           f"{exc}\n{traceback.format_exc()}")
        _suites[name] = found
    return found


def _start(request: Dict[str, Any]) -> int:
    """Fork the process of one task; its pid."""
    preload = None
    with open(request["call"], "rb") as f:
        payload = pickle.load(f)
    if payload.get("kind") == "suite":
        preload = _suite(payload["suite"])
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:   # pragma: no cover (the task's process)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request["out"]), (2, request["err"])):
            new = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(new, fd)
            os.close(new)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from .remote import _child

        code = _child(request["call"], request["result"], preloaded=preload)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Take requests from `inp` until it closes; answer on `out`."""
    while True:
        try:
            request = receive(inp)
        except EOFError:
            return
        try:
            pid = _start(request)
        except Exception as exc:   # (its files: the runner says the task could not run)
            send(out, ("error", f"{type(exc).__name__}: {exc}"))
            continue
        send(out, ("pid", pid))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        send(out, ("exit", status, _left()))


def _left() -> bool:
    """Whether something the task started is left: this process is the
    child subreaper of its tasks, so what outlives a task is its child
    (those already ended are reaped here)."""
    while True:
        try:
            found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if found is None:
            return True   # (a child that has not ended)
        try:
            os.waitpid(found.si_pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":   # pragma: no cover (the server's process)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .sched._zygote import set_subreaper

    set_subreaper()
    # what every task's process runs, loaded once here (a fork inherits it)
    from . import remote  # noqa: F401
    from .sched import _call  # noqa: F401
    # (the answers go on the real stdout; nothing else may write there)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)

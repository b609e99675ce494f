"""Running a task on another host: the runner a Dask worker calls for each
task of a `DaskWorkerPool` (doc/lab.md).

`run(payload, topic, key)` runs in a thread of the Dask worker. It starts the
task in a process of its own and supervises it as a controller's worker
would: it says when the task started (an event on `topic`, which the pool's
client follows), gives it its deadline (at which the task's whole process
tree, its process group and whatever carries its token are ended: SIGTERM,
the grace period, SIGKILL, as the watchdog does), ends what the task left
running when it ends, captures its stdout and stderr in files of the
worker's own and brings back their head and tail (the cap), with the
results the task reported, as a plain dict the controller turns into the
task's result.

The payload says what to run:

- ``{"kind": "call", "task": <a picklable callable>, "shared": {...}}``: a
  Python callable (the library's pool: a function importable on the
  worker, or one Dask's pickling carries by value);
- ``{"kind": "suite", "suite": <SuiteSpec JSON>, "key": KEY, "shared": ...}``:
  task KEY of a pexen-harness suite, which the task's process loads by name
  (the suite must be importable on the worker);
- ``{"kind": "exe", "path": PATH}``: an executable, which must exist at the
  same path on the worker;

and how: ``env`` (the task's PEXEN_* variables), ``token``, ``timeout``
(seconds or None), ``grace``, ``max_output`` (bytes kept of each stream, 0:
all).

The task's process is ``python -m pexen.remote CALLFILE RESULTFILE`` for
Python tasks (the payload and the result go through files, pickled), the
executable itself otherwise.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .util import LazyModule

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

psutil: Any = LazyModule("psutil", globals())

#: The environment variable a task's `pexen.report()` writes its results to
#: (a file, a JSON line each) when it runs on another host.
REPORT_SPOOL = "PEXEN_REPORT_SPOOL"
#: Set in a task's environment on a Dask worker.
REMOTE_VAR = "PEXEN_REMOTE"

#: Exit status of the task process when the task could not even be loaded.
_LOAD_FAILED = 98


def _event(topic: Optional[str], msg: Dict[str, Any]) -> None:
    if not topic:
        return
    try:
        from distributed import get_worker

        get_worker().log_event(topic, msg)
    except Exception:   # (outside a worker: a test calling run() directly)
        pass


def _workdir(worker: Any = None) -> str:
    """Where this worker keeps its tasks' files (`worker`: the Dask worker,
    as `Client.run` gives it; else the worker running this task)."""
    try:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        base = worker.local_directory
    except Exception:
        base = tempfile.gettempdir()
    path = os.path.join(base, "pexen")
    os.makedirs(path, exist_ok=True)
    return path


def _cap(path: str, limit: int) -> Tuple[bytes, int]:
    """The head and tail of file `path` (`limit` bytes in all, 0: all), and
    how many bytes were left out between them."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return b"", 0
    with open(path, "rb") as f:
        if not limit or size <= limit:
            return f.read(), 0
        head = f.read(limit // 2)
        f.seek(size - (limit - limit // 2))
        tail = f.read()
    dropped = size - len(head) - len(tail)
    note = (f"\n[pexen: {dropped} bytes dropped here: the task wrote {size} bytes, "
            f"--max-output keeps {limit}]\n").encode()
    return head + note + tail, dropped


def run(payload: Dict[str, Any], topic: Optional[str] = None,
        key: Optional[str] = None) -> Dict[str, Any]:
    """Run one task as the module docstring says; returns what happened:
    ``status`` (``"done"``, ``"timeout"``, ``"error"``), the task's result
    (``result``: (ret, shared, exception, exception text) of a Python task,
    ``returncode`` of an executable), ``stdout``/``stderr`` (capped bytes),
    ``dropped``, ``reports``, ``killed``/``leaked`` (processes ended at the
    deadline), ``leftovers`` (ended after it ended), ``host``, ``pid``,
    ``started``/``ended`` (time.time())."""
    import socket

    from .watchdog import end_processes

    kind = payload["kind"]
    token = payload.get("token") or os.urandom(8).hex()
    where = tempfile.mkdtemp(prefix=f"{token}-", dir=_workdir())
    out_path, err_path = os.path.join(where, "stdout"), os.path.join(where, "stderr")
    spool = os.path.join(where, "reports")
    env = dict(os.environ)
    env.update(payload.get("env") or {})
    env["PEXEN_TASK_TOKEN"] = token
    env[REPORT_SPOOL] = spool
    env[REMOTE_VAR] = "1"
    # pexen's commands (pexen-harness, rstrnt-report-result, ...) of this
    # worker's install first
    from .harness.capture import key_path
    from .harness.context import task_path

    env["PATH"] = os.pathsep.join([task_path(), os.path.dirname(sys.executable)])
    data = os.path.join(_workdir(), "data", str(env.get("PEXEN_RUN_ID", "0")),
                        key_path(str(env.get("PEXEN_TASK", token))))
    env["PEXEN_TASK_DATA"] = data
    env["PEXEN_RUN_DATA"] = os.path.join(_workdir(), "data", str(env.get("PEXEN_RUN_ID", "0")),
                                         ".shared")
    reply: Dict[str, Any] = {"host": socket.gethostname(), "status": "done", "killed": [],
                             "leaked": [], "leftovers": [], "reports": [], "dropped": 0,
                             "timeout": payload.get("timeout")}
    result_path = os.path.join(where, "result")
    try:
        if kind == "exe":
            path = payload["path"]
            if not os.path.exists(path):
                reply.update(status="error", error=f"cannot execute {path}: not on "
                             f"this worker ({reply['host']})", started=time.time(),
                             ended=time.time(), stdout=b"", stderr=b"")
                return reply
            argv = [path]
            cwd = os.path.dirname(path)
        else:
            call_path = os.path.join(where, "call")
            with open(call_path, "wb") as f:
                f.write(_dumps(payload))
            argv = [sys.executable, "-m", "pexen.remote", call_path, result_path]
            cwd = payload.get("cwd") or where
            if not os.path.isdir(cwd):
                cwd = where
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            began = time.time()
            try:
                if kind == "exe":
                    proc: Any = subprocess.Popen(argv, cwd=cwd, env=env,
                                                 stdin=subprocess.DEVNULL, stdout=out,
                                                 stderr=err, start_new_session=True)
                else:   # a fork of this thread's fork server (_remote_server)
                    proc = _forked({"call": call_path, "result": result_path,
                                    "out": out_path, "err": err_path, "env": env,
                                    "cwd": cwd})
            except OSError as exc:
                reply.update(status="error", error=f"cannot execute {argv[0]}: "
                             f"{exc.strerror or exc}", started=began, ended=time.time(),
                             stdout=b"", stderr=b"")
                return reply
        reply["pid"] = proc.pid
        reply["started"] = began
        _event(topic, {"key": key, "pid": proc.pid, "host": reply["host"], "at": began})
        timeout = payload.get("timeout")
        grace = float(payload.get("grace", 10.0))
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed, leaked = end_processes([(proc.pid, None)], [token], grace, since=began)
            proc.wait()
            reply.update(status="timeout", killed=killed, leaked=leaked)
        reply["ended"] = time.time()
        if reply["status"] == "done" and getattr(proc, "left", True):
            # (a Python task's fork server says whether anything is left: its
            # orphans are its children; an executable's are looked for)
            roots: List[Tuple[int, Optional[float]]] = []
            server = getattr(proc, "server", None)
            if server is not None:
                try:
                    roots = [(c.pid, None) for c in psutil.Process(server.pid).children()]
                except psutil.Error:
                    pass
            ended, leaked = end_processes(roots, [token], grace, since=began)
            reply["leftovers"] = ended + leaked
        reply["returncode"] = proc.returncode
        if kind != "exe":
            try:
                with open(result_path, "rb") as f:
                    reply["result"] = f.read()   # (unpickled by the controller)
            except OSError:
                reply["result"] = None
        limit = int(payload.get("max_output") or 0)
        reply["stdout"], dropped_out = _cap(out_path, limit)
        reply["stderr"], dropped_err = _cap(err_path, limit)
        reply["dropped"] = dropped_out + dropped_err
        try:
            with open(spool) as f:
                reply["reports"] = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            pass
        if key is not None and _orphaned(key):
            # Its controller is gone (Dask released the task): keep what it
            # did for the run's `resume` (collect_orphans), which records it
            # instead of running the task again.
            _keep(reply, token, str(env.get("PEXEN_ATTEMPT", "0")))
        return reply
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _orphaned(key: str) -> bool:
    """Whether this worker no longer holds task `key` for a client (its
    client, the controller, went away while it ran)."""
    try:
        from distributed import get_worker

        found = get_worker().state.tasks.get(key)
    except Exception:   # (not in a worker, or another Dask: nothing kept)
        return False
    return found is None or found.state in ("cancelled", "released", "forgotten")


def _orphans_dir(worker: Any = None) -> str:
    return os.path.join(_workdir(worker), "orphans")


def _keep(reply: Dict[str, Any], token: str, attempt: str) -> None:
    try:
        os.makedirs(_orphans_dir(), exist_ok=True)
        path = os.path.join(_orphans_dir(), f"{token}-{attempt}")
        with open(path + ".tmp", "wb") as f:
            pickle.dump(reply, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def collect_orphans(tokens: List[str], dask_worker: Any = None
                    ) -> Dict[str, Dict[str, Any]]:
    """(On a worker, through `Client.run`, for `resume`.) What tasks of
    `tokens` did on this worker while their controller was gone, by
    ``TOKEN-ATTEMPT``; taken (removed) from the worker."""
    found: Dict[str, Dict[str, Any]] = {}
    wanted = set(tokens)
    where = _orphans_dir(dask_worker)
    try:
        names = os.listdir(where)
    except OSError:
        return found
    for name in names:
        token, _, attempt = name.rpartition("-")
        if token not in wanted or not attempt.isdigit():
            continue
        path = os.path.join(where, name)
        try:
            with open(path, "rb") as f:
                found[name] = pickle.load(f)
            os.unlink(path)
        except (OSError, pickle.UnpicklingError, EOFError):
            continue
    return found


_servers = threading.local()


class _Forked:
    """A task's process forked by this thread's fork server: waited for as a
    `subprocess.Popen` is (`wait(timeout)`, `returncode` as Popen has it)."""

    def __init__(self, server: subprocess.Popen, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: Optional[int] = None
        self.left = True   # (until the server says nothing is left)
        self._answers = server.stdout

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is not None:
            return self.returncode
        import select

        from ._remote_server import receive

        fd = self._answers.fileno()   # type: ignore[union-attr]
        if timeout is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(f"task {self.pid}", timeout)
        kind, status, self.left = receive(self._answers)   # type: ignore[arg-type]
        if kind != "exit":
            raise OSError(f"the fork server answered {kind!r}")
        self.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                           else os.WEXITSTATUS(status))
        return self.returncode


def _forked(request: Dict[str, Any]) -> _Forked:
    """Start a Python task's process through this thread's fork server
    (started the first time)."""
    from ._remote_server import receive, send

    server = getattr(_servers, "proc", None)
    if server is None or server.poll() is not None:
        server = subprocess.Popen([sys.executable, "-m", "pexen._remote_server"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  start_new_session=True)
        _servers.proc = server
    try:
        send(server.stdin, request)   # type: ignore[arg-type]
        kind, value = receive(server.stdout)   # type: ignore[arg-type]
    except (OSError, EOFError) as exc:
        _servers.proc = None
        raise OSError(f"the fork server ended: {exc}") from None
    if kind != "pid":
        raise OSError(str(value))
    return _Forked(server, value)


def end_token(token: Any, grace: float = 10.0) -> List[Dict[str, Any]]:
    """(On a worker, through `Client.run`.) End every process of this host
    that carries `token` (or one of the tokens, a list) : a task taken over
    by the controller's watchdog, or left by a controller that died; what
    was ended."""
    from .watchdog import end_processes

    tokens = [token] if isinstance(token, str) else list(token)
    ended, leaked = end_processes((), tokens, grace)
    return ended + leaked


def end_on_cluster(address: str, tokens: List[str], grace: float = 10.0,
                   timeout: float = 30.0) -> int:
    """(`resume` of a run on a Dask cluster, its controller dead.) End what
    the old run's tasks still run on every worker; how many processes. A
    cluster that cannot be reached ends nothing (its workers' runners end
    their tasks at their deadlines)."""
    if not tokens:
        return 0
    try:
        import distributed

        with distributed.Client(address, timeout=timeout, set_as_default=False) as client:
            found = client.run(end_token, list(tokens), grace)
    except Exception:
        return 0
    return sum(len(v) for v in found.values())


def _child(call_path: str, result_path: str,
           preloaded: Optional[Tuple[Optional[Dict[str, Any]], Optional[str]]] = None) -> int:
    """The task's process for a Python task: load it, run it, write what it
    gave (pickled) to `result_path`. `preloaded`: the suite's tasks as the
    fork server loaded them (or why they did not load)."""
    with open(call_path, "rb") as f:
        payload = pickle.load(f)
    os.unlink(call_path)
    if preloaded is not None and preloaded[0] is None:
        _write(result_path, (None, None, None, preloaded[1]))
        return _LOAD_FAILED
    try:
        if payload["kind"] == "suite":
            if preloaded is not None and preloaded[0] is not None:
                tasks = preloaded[0]
            else:
                from .harness.suite import SuiteSpec, load_suite_groups

                tasks = dict(load_suite_groups(SuiteSpec.from_json(payload["suite"])).tasks)
            task = tasks[payload["key"]]
        else:
            task = payload["task"]
    except BaseException as failed:   # (the suite does not load here)
        import traceback

        _write(result_path, (None, None, None, f"cannot load the task on this worker: "
                             f"{type(failed).__name__}: {failed}\n{traceback.format_exc()}"))
        return _LOAD_FAILED
    from .sched._call import _worker_flag, call_task, run_worker_exit

    _worker_flag[0] = True
    res = call_task(task, payload.get("shared") or {})
    # This process runs one task: what the task set up to last as long as
    # its worker (a pytest session's fixtures) ends with it.
    run_worker_exit()
    sys.stdout.flush()
    sys.stderr.flush()
    exc = res.excinfo.val if res.excinfo is not None else None
    text = res.excinfo.text if res.excinfo is not None else None
    _write(result_path, (res.ret, res.shared, exc, text))
    return 0


def _dumps(value: Any) -> bytes:
    """Pickled as Dask sends it: functions not importable by name (defined
    in a test, say) by value, where cloudpickle is installed (it comes with
    Dask)."""
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _write(path: str, value: Tuple[Any, ...]) -> None:
    try:
        blob = _dumps(value)
    except Exception as exc:   # (a value that does not pickle)
        ret, shared, err, text = value
        blob = pickle.dumps((None, None, None, (text or "") + f"\n(the task's result cannot "
                             f"be sent back: {type(exc).__name__}: {exc})"))
    with open(path, "wb") as f:
        f.write(blob)


if __name__ == "__main__":   # pragma: no cover (the task's process)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_child(sys.argv[1], sys.argv[2]))

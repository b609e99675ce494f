"""The fork server ("zygote") and the worker processes it forks, and the
framing of their channels. The controller's side is `_procpool.py`; why a
zygote at all, and the channels, are said there.
"""

from __future__ import annotations

import _socket
import array
import os
import pickle
import selectors
import signal
import struct
import sys
import time
import warnings

from ..util import start_ticks as _start_ticks
from . import _call, _cgroup
from ._keys import describe
from .common import ExceptionInfo, TaskFailError, TaskRes
from .pool import PoolError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

_HDR = struct.Struct("!I")
#: A task message on a worker's task socket starts with its seq (0: stop).
SEQ = struct.Struct("!Q")
#: The marker of a message whose body travels in a memfd (too big to send).
BIG = b"M"
#: Bodies longer than this travel in a memfd.
BIG_AFTER = 1 << 16
#: The largest message read from a task socket (a seq, a marker, a body).
RECV_SIZE = BIG_AFTER + 64
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# In a worker process: the channel `Sched.add_tasks` uses from inside a task.
worker_channel: Optional[_WorkerChannel] = None
# In the zygote and its workers: the pid of the controller that forked it,
# and when that started (see `_start_ticks`).
_controller_pid = 0
_controller_stat: Optional[bytes] = None
#: A task's object may have this method: a worker whose controller died
#: while it ran the task calls it with (result, started, ended) (wall clock
#: times) once the task has ended, to keep the result (see `_orphaned`).
SURVIVOR_HOOK = "pexen_survivor_"
#: How many of its last results a worker offers to the hook: those its dead
#: controller may have read but not yet recorded.
_RECENT = 4


# -- framing ---------------------------------------------------------------

def _write_frame(fd: int, payload: bytes) -> None:
    _write_all(fd, _frame(payload))


def _read_exact(fd: int, n: int) -> Optional[bytes]:
    chunks = []
    while n:
        try:
            chunk = os.read(fd, n)
        except InterruptedError:
            continue
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Optional[bytes]:
    head = _read_exact(fd, _HDR.size)
    if head is None:
        return None
    return _read_exact(fd, _HDR.unpack(head)[0])


class _FrameBuffer:
    """Frames from a non-blocking pipe, as they arrive."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, fd: int) -> Tuple[List[bytes], bool]:
        """Read what is there; return the complete frames and whether EOF was seen."""
        eof = False
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            self.buf += chunk
            if len(chunk) < 1 << 16:
                break
        frames = []
        buf = self.buf
        while len(buf) >= _HDR.size:
            (size,) = _HDR.unpack_from(buf)
            if len(buf) < _HDR.size + size:
                break
            frames.append(bytes(buf[_HDR.size:_HDR.size + size]))
            del buf[:_HDR.size + size]
        return frames, eof


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _fork() -> int:
    # Python 3.12+ warns when forking a process that has threads. The zygote is
    # forked before this pool starts any thread; other threads of the program
    # (if any) are the program's business, and the zygote touches none of
    # their locks. The warning must not become an exception under -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


_libc_handle: Any = None


def _libc() -> Any:
    """The C library, through ctypes (imported when first needed: the fork
    server loads it once for all its workers, the controller never)."""
    global _libc_handle
    if _libc_handle is None:
        import ctypes

        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def _set_pdeathsig(sig: int) -> None:
    try:
        libc = _libc()
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the zygote's EOF check remains
        pass


def set_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux): an
    orphan among them (a double-forked daemon of a task) becomes its child,
    not init's, so a supervisor finds it among its descendants. False where
    the system does not allow it."""
    try:
        libc = _libc()
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_exited() -> None:
    """Reap children that have exited (orphans a task left; between tasks,
    so no wait of a task is taken from it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


# -- the zygote --------------------------------------------------------------

def _zygote_main(ctl: _socket.socket, tasks: List[Any]) -> None:
    """Fork workers on request; report their exits. Told to die (the pool
    ends), kill the workers left and exit; so too when the controller dies
    (its end of `ctl` closes with no word), unless the tasks have a survivor
    hook (`SURVIVOR_HOOK`): then let the workers finish what they run (see
    `_orphaned`), and exit when the last has."""
    global _controller_pid, _controller_stat
    _fresh_stdio()
    _controller_pid = os.getppid()
    _controller_stat = _start_ticks(_controller_pid)
    survivors = any(hasattr(task, SURVIVOR_HOOK) for task in tasks)
    # Out of the controller's process group: a ^C on the terminal goes to the
    # controller, which decides what happens to running tasks.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    try:
        _libc()   # (for the workers: they set their parent-death signal with it)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Not the controller's handler (it may have one by now): a SIGTERM to a
    # worker, from the watchdog say, ends it, unless its task says otherwise.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: Dict[int, int] = {}   # pid -> worker id
    by_wid: Dict[int, int] = {}     # worker id -> pid
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            wid = children.pop(pid, None)
            if wid is None:
                continue
            by_wid.pop(wid, None)
            try:
                ctl.send(_dumps(("exited", wid, pid, status)))
            except OSError:
                pass

    def orphaned() -> None:
        # The workers finish the tasks they run and exit (their task
        # sockets are closed too); reap them, then go.
        sel.unregister(ctl)
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.pop(pid, None)
        os._exit(0)

    def die() -> None:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        os._exit(0)

    while True:
        try:
            events = sel.select()
        except InterruptedError:
            continue
        for key, _ in events:
            if key.fileobj == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except OSError:
                    pass
                reap()
                continue
            try:
                msg, fds = recv_message(ctl, 0, 1 << 16)
            except OSError:
                msg, fds = b"", []
            if not msg:
                if survivors:
                    orphaned()
                die()
            req = pickle.loads(msg)
            if req[0] == "die":
                die()
            if req[0] == "spawn":
                wid = req[1]
                task_sock, result_w, ack_r = fds
                pid = os.fork()
                if pid == 0:
                    try:
                        sel.close()
                        ctl.close()
                        os.close(wake_r)
                        os.close(wake_w)
                        signal.set_wakeup_fd(-1)
                        _worker_main(wid, task_sock, result_w, ack_r, tasks)
                    finally:
                        os._exit(70)
                for fd in fds:
                    os.close(fd)
                children[pid] = wid
                by_wid[wid] = pid
            elif req[0] == "kill":
                victim = by_wid.get(req[1])
                if victim is not None:
                    try:
                        os.kill(victim, req[2])
                    except OSError:
                        pass
            reap()


# -- a worker ----------------------------------------------------------------

class _WorkerChannel:
    """Lets a task in a worker add tasks to the run (Sched.add_tasks)."""

    def __init__(self, ack_fd: int, result_fd: int) -> None:
        self.ack_fd = ack_fd
        self.result_fd = result_fd

    def add_tasks(self, tasks: List[Any], group: Optional[str] = None) -> None:
        """Send tasks (and groups) to the controller's Sched.add_tasks; `group`:
        the name of the group they join (None: the usual place)."""
        blobs = []
        for task in tasks:
            try:
                blobs.append(_dumps(task))
            except Exception as exc:
                raise PoolError(
                    f"task {describe(task)} cannot be added from inside a task under "
                    f"the process pool: it cannot be pickled ({exc}); define it at "
                    "module level", task) from None
        _write_frame(self.result_fd, _dumps(("add", blobs, group)))
        frame = _read_frame(self.ack_fd)
        if frame is None:
            os._exit(0)
        _, error = pickle.loads(frame)
        if error is not None:
            raise error


_FD_SPACE = _socket.CMSG_LEN(4 * array.array("i").itemsize)


def send_fds(sock: _socket.socket, data: bytes, fds: List[int]) -> None:
    """Send `data` and the file descriptors `fds` in one message."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])


def recv_message(sock: _socket.socket, flags: int = 0,
                 size: int = RECV_SIZE) -> Tuple[bytes, List[int]]:
    """One message of a SEQPACKET socket and the file descriptors it carried
    (up to 4; `socket.recv_fds`, which ignores its `flags` before Python 3.12).
    The sockets here are `_socket.socket` objects: the module `socket` costs
    4 ms to import (its enums), and only wraps them."""
    data, ancdata, _, _ = sock.recvmsg(size, _FD_SPACE, flags)
    fds = array.array("i")
    for level, kind, cdata in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(cdata[:len(cdata) - (len(cdata) % fds.itemsize)])
    return data, list(fds)


_GONE = (-1, b"")


def _receive(sock: _socket.socket, wait: bool) -> Optional[Tuple[int, bytes]]:
    """The next task message: (seq, body); (0, b"") to stop; `_GONE` when the
    other end has closed (the controller is gone, or ends the pool); None if
    there is none now (`wait` False)."""
    while True:
        try:
            data, fds = recv_message(sock, 0 if wait else _socket.MSG_DONTWAIT)
            break
        except InterruptedError:
            continue
        except BlockingIOError:
            return None
        except OSError:
            return _GONE
    if not data:
        return _GONE
    (seq,) = SEQ.unpack_from(data)
    body = data[SEQ.size:]
    if fds:
        with os.fdopen(fds[0], "rb") as big:   # the body, in a memfd
            body = big.read()
        for fd in fds[1:]:
            os.close(fd)
    return seq, body


def _worker_main(wid: int, task_fd: int, result_fd: int, ack_fd: int, tasks: List[Any]) -> None:
    """Run task after task from the worker's task socket. Each message taken
    starts at once, and says so (a `start` frame) before it runs: what the
    controller can still take back from the socket never started. The `done`
    frame of a task and the `start` of the next go out in one write."""
    global worker_channel
    _set_pdeathsig(signal.SIGKILL)
    set_subreaper()
    # A cgroup of its own, where the session has them: what its tasks start
    # stays in it, whatever happens to this process (see _cgroup.py).
    _cgroup.join(_cgroup.worker_name(wid, os.getpid()))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _call._worker_flag[0] = True
    worker_channel = _WorkerChannel(ack_fd, result_fd)
    sock = _socket.socket(fileno=task_fd)
    pid = os.getpid()
    clock = time.perf_counter
    _write_frame(result_fd, _dumps(("hello", pid)))
    out = b""
    # (task, result, started, ended) of the last tasks run: see `_orphaned`
    recent: List[Tuple[Any, TaskRes, float, float]] = []
    wall = time.time
    msg = _receive(sock, True)
    while msg is not None and msg[0] > 0:
        seq, body = msg
        # (what the task costs this worker, its start frame and the pickles
        # included: the pool hands out ahead by these durations)
        began = clock()
        out += _frame(_dumps(("start", seq)))
        try:
            _write_all(result_fd, out)
        except BrokenPipeError:   # the controller is gone: this one never starts
            _orphaned(recent)
        try:
            _, key, idx, task_blob, shared_blob = pickle.loads(body)
            task = tasks[idx] if idx is not None else pickle.loads(task_blob)
            shared = pickle.loads(shared_blob)
        except Exception as exc:
            key = "?"
            res = TaskRes(None, None, None, _call.exc_info_of(exc))
            task = None
        else:
            started = wall()
            res = _call.call_task(task, shared)
            recent.append((task, res, started, wall()))
            if len(recent) > _RECENT:
                del recent[0]
        _flush_stdio()
        reap_exited()
        out = _frame(_encode_result(seq, key, res, clock() - began))
        msg = _receive(sock, False)
        if msg is None:   # nothing queued: say so now, then wait
            try:
                _write_all(result_fd, out)
            except BrokenPipeError:
                _orphaned(recent)
            out = b""
            msg = _receive(sock, True)
    try:
        if out:
            _write_all(result_fd, out)
    except BrokenPipeError:
        _orphaned(recent)
    if msg is _GONE:
        _orphaned(recent)
    elif _call.at_worker_exit:
        _call.run_worker_exit()
    _flush_stdio()
    os._exit(0)


def _controller_gone() -> bool:
    """Has the controller that forked this worker's zygote died (or become a
    zombie)? (Its pid may be another process's by now: the start time says.)"""
    try:
        with open(f"/proc/{_controller_pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):   # (ESRCH: it is exiting)
        return True
    except OSError:   # (no /proc here)
        try:
            os.kill(_controller_pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return True
    return _controller_stat is not None and fields[19] != _controller_stat


#: How long a worker whose channel closed waits to see its controller gone:
#: a process being killed closes its files first and becomes a zombie a
#: moment later (if the controller ended the pool instead, its fork server
#: kills the worker meanwhile).
_DYING = 2.0


def _controller_dies() -> bool:
    """Whether the controller is gone, or goes within `_DYING` seconds."""
    deadline = time.monotonic() + _DYING
    while not _controller_gone():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _orphaned(recent: List[Tuple[Any, TaskRes, float, float]]) -> None:
    """The controller's end of this worker's channels has closed. If the
    controller died (rather than ending the pool), what the worker ran last
    may not be in its record: each of the last tasks that has the survivor
    hook is offered its result (the hook records it where no one did yet).
    Then the worker exits."""
    hooked = [(hook, res, started, ended) for task, res, started, ended in recent
              for hook in (getattr(task, SURVIVOR_HOOK, None),) if hook is not None]
    if hooked and _controller_pid and _controller_dies():
        for hook, res, started, ended in hooked:
            try:
                hook(res, started, ended)
            except BaseException:   # (nothing to tell it to: the next one may go)
                pass
    _flush_stdio()
    os._exit(0)


def _frame(payload: bytes) -> bytes:
    return _HDR.pack(len(payload)) + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


_old_stdio: List[Any] = []


def _fresh_stdio() -> None:
    """(In the fork server, just forked from the controller.) New objects for
    the standard streams on the same fds: another thread of the controller
    (the one printing the console's lines) may have held the lock of a
    stream's buffer at the moment of the fork, and the copy of a held lock
    is never released here (a worker's first flush would wait for good);
    and what the controller had buffered is the controller's to write, not
    this process's too."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        old = getattr(sys, f"__{name}__", None)
        if old is None:
            continue
        try:
            new = open(fd, "w", encoding=getattr(old, "encoding", None) or "utf-8",
                       errors=getattr(old, "errors", None) or "strict", closefd=False,
                       buffering=1 if fd == 2 else -1)
        except (OSError, ValueError):
            continue
        _old_stdio.append(old)   # (never finalized here: that would flush it)
        setattr(sys, f"__{name}__", new)
        current = getattr(sys, name, None)
        if current is old:
            setattr(sys, name, new)
        elif getattr(current, "_original", None) is old:   # (a per-thread switch)
            current._original = new  # type: ignore[union-attr]


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _try_dumps(obj: Any) -> Tuple[Optional[bytes], Optional[Exception]]:
    try:
        return _dumps(obj), None
    except Exception as exc:
        return None, exc


def _encode_result(seq: int, key: str, res: TaskRes, duration: float) -> bytes:
    ret_blob, ret_err = _try_dumps(res.ret)
    shared_blob, shared_err = _try_dumps(res.shared)
    excinfo = res.excinfo
    if excinfo is None and (ret_err or shared_err):
        what, err = (("return value", ret_err) if ret_err
                     else ("shared state", shared_err))
        both = " (and its shared state)" if ret_err and shared_err else ""
        exc = AttributeError(f"Can't pickle the {what}{both} of task {key}: {err}")
        excinfo = ExceptionInfo(AttributeError, exc, None,
                                f"AttributeError: {exc}\n")
    exc_parts = None
    if excinfo is not None:
        type_blob, _ = _try_dumps(excinfo.type)
        val_blob, _ = _try_dumps(excinfo.val)
        val = excinfo.val
        if (type_blob is None or val_blob is None) and isinstance(val, TaskFailError):
            # A local TaskFailError subclass cannot cross: send a TaskFailError
            # with the same message and flags, so the failure stays controlled.
            stand_in = TaskFailError(f"{type(val).__qualname__}: {val}",
                                     deps_ok=val.deps_ok, locks_ok=val.locks_ok)
            type_blob, _ = _try_dumps(TaskFailError)
            val_blob, _ = _try_dumps(stand_in)
        exc_parts = (type_blob, val_blob, excinfo.text,
                     getattr(excinfo.type, "__name__", "Exception"))
    return _dumps(("done", seq, ret_blob, shared_blob, exc_parts, duration))


def _loads_or_none(blob: Optional[bytes]) -> Any:
    if blob is None:
        return None
    try:
        return pickle.loads(blob)
    except Exception:
        return None

"""Executables of the thread pool, started by a process that outlives the
controller.

Under the process pool a task's worker process supervises it, and when the
controller dies the worker finishes the task and records its result
(`pexen.sched._zygote`). Under the thread pool the task's supervisor is a
thread of the controller, which dies with it: an executable it started would
run to its end unwatched, and `resume` would run it again. So the controller
starts its executables through a small process forked when the session
starts (`Spawner`): it starts each one (in a session of its own, as before)
and tells the controller's thread its exit status. When the controller dies
it waits for those still running and records each one's finish, as the
controller would have (exit status, reported results, leftovers ended, the
output capped), unless a controller has claimed the run since
(`controller.finish_survivor`, through a fresh process).
"""

from __future__ import annotations

import _socket
import os
import pickle
import selectors
import signal
import struct
import threading
import time

from ..sched import _cgroup
from ..sched._zygote import recv_message, send_fds

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

_STATUS = struct.Struct("!qq")   # (kind, value): (0, pid) started, (1, status) ended,
#                                  (2, errno) could not start

#: How many of its last finishes the spawner offers for recording when its
#: controller dies (those the controller may have read but not recorded).
_RECENT = 8

_current: Optional[Spawner] = None
_BYE = b"bye"   # (the controller ends the spawner: no word means it died)


def current() -> Optional[Spawner]:
    """The spawner of this process's session, if it has one."""
    spawner = _current
    if spawner is not None and spawner.owner == os.getpid() and spawner.alive:
        return spawner
    return None


class Spawner:
    """The controller's side: `run` starts an executable through the spawner
    process and returns its exit status as `subprocess.Popen.returncode`
    would (negative: killed by that signal)."""

    def __init__(self, record: Any) -> None:
        """`record(info, status, started, ended)`: what the spawner calls to
        record a finish once its controller is gone (in the spawner)."""
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:   # pragma: no cover (the spawner process)
            try:
                ours.close()
                _main(theirs, record)
            finally:
                os._exit(70)
        theirs.close()
        self.pid = pid
        self.sock = ours
        self.owner = os.getpid()
        self.alive = True
        self.lock = threading.Lock()

    def run(self, argv: List[str], cwd: str, env: Optional[Dict[str, str]],
            out: Optional[int], err: Optional[int], info: Dict[str, Any]) -> int:
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            fds = [theirs.fileno()]
            fds += [out] if out is not None else []
            fds += [err] if err is not None else []
            msg = pickle.dumps((argv, cwd, env, out is not None, err is not None, info))
            with self.lock:
                send_fds(self.sock, msg, fds)
            theirs.close()
            pid = 0
            while True:
                data = mine.recv(64)
                if not data:
                    raise OSError("the executables' spawner ended")
                kind, value = _STATUS.unpack(data)
                if kind == 0:
                    pid = value
                elif kind == 1:
                    return value
                else:
                    raise OSError(value, os.strerror(value))
        except BaseException:
            if pid:
                try:   # (a stop: nothing of it is left running)
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise
        finally:
            mine.close()
            try:
                theirs.close()
            except OSError:
                pass

    def close(self) -> None:
        """Let the spawner go (it ends once what it started has ended)."""
        self.alive = False
        try:
            self.sock.send(_BYE)
        except OSError:
            pass
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def start(record: Any) -> Spawner:
    """Start this process's spawner (see `Spawner`)."""
    global _current
    _current = Spawner(record)
    return _current


def stop() -> None:
    global _current
    spawner, _current = _current, None
    if spawner is not None and spawner.owner == os.getpid():
        spawner.close()


# -- the spawner process -------------------------------------------------------


#: Signals an executable starts with at their default (this process ignores
#: some, and a program started from Python would have them reset).
_DEFAULTED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGCHLD",
                                                     "SIGPIPE", "SIGXFSZ", "SIGXFZ")
                   if hasattr(signal, name))


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _main(ctl: _socket.socket, record: Any) -> None:   # pragma: no cover (a fork)
    """Start what the controller asks for; tell it when each ends. When the
    controller goes without a word, record what it may not have."""
    controller = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # (the controller decides)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    devnull = os.open(os.devnull, os.O_RDONLY)
    running: Dict[int, Tuple[Any, Dict[str, Any], float]] = {}   # pid -> (reply, info, t0)
    recent: List[Tuple[Dict[str, Any], int, float, float]] = []
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    orphaned = False

    def reap() -> None:
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = running.pop(pid, None)
            if entry is None:
                continue
            reply, info, began = entry
            code = _returncode(status)
            ended = time.time()
            if orphaned:
                _record(record, info, code, began, ended)
            else:
                recent.append((info, code, began, ended))
                del recent[:-_RECENT]
                try:
                    reply.send(_STATUS.pack(1, code))
                except OSError:
                    pass
            reply.close()

    while True:
        if orphaned and not running:
            os._exit(0)
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
                msg, fds = recv_message(ctl, 0, 1 << 20)
            except OSError:
                msg, fds = b"", []
            if not msg:
                # The controller is gone (or closed us): what it may not have
                # recorded is offered for recording once it is surely gone;
                # what still runs is waited for.
                sel.unregister(ctl)
                orphaned = _gone(controller)
                if not orphaned:
                    os._exit(0)   # (closed by a live controller: nothing left to do)
                for item in recent:
                    _record(record, *item)
                recent = []
                reap()
                continue
            if msg == _BYE:
                for fd in fds:
                    os.close(fd)
                os._exit(0)
            argv, cwd, env, has_out, has_err, info = pickle.loads(msg)
            reply = _socket.socket(fileno=fds[0])
            out = fds[1] if has_out else None
            err = fds[1 + has_out] if has_err else None
            for fd in fds:   # (received open in this process only)
                os.set_inheritable(fd, False)
            try:
                actions = [(os.POSIX_SPAWN_DUP2, devnull, 0)]
                if out is not None:
                    actions.append((os.POSIX_SPAWN_DUP2, out, 1))
                if err is not None:
                    actions.append((os.POSIX_SPAWN_DUP2, err, 2))
                os.chdir(cwd)
                # In a cgroup of its own, where the session has them: this
                # process moves into it to start the executable there (the
                # executable's first fork is then in it too), and back.
                cgroup = _cgroup.make(_cgroup.task_name(info.get("token") or ""))
                if cgroup is not None and not _cgroup.enter(cgroup):
                    _cgroup.remove(cgroup)
                    cgroup = None
                try:
                    pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                                         file_actions=actions, setsid=True,
                                         setsigdef=_DEFAULTED, setsigmask=())
                finally:
                    if cgroup is not None and not _cgroup.leave():
                        # (cannot go back: stay, and the cgroup stays the
                        # spawner's, not a task's)
                        os._exit(71)
            except OSError as exc:
                reply.send(_STATUS.pack(2, exc.errno or 0))
                reply.close()
            else:
                running[pid] = (reply, info, time.time())
                reply.send(_STATUS.pack(0, pid))
            finally:
                for fd in fds[1:]:
                    os.close(fd)
            reap()


def _record(record: Any, *args: Any) -> None:   # pragma: no cover (a fork)
    """Record one finish; a failure of one must not stop the others."""
    try:
        record(*args)
    except Exception:
        pass


def _gone(pid: int, wait: float = 2.0) -> bool:
    """Whether process `pid` (the controller) is gone or a zombie, waiting up
    to `wait` seconds for it: a killed process closes its files before it
    dies."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):   # (ESRCH: it is exiting)
            return True
        except OSError:
            return False
        if stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] in (b"Z", b"X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)

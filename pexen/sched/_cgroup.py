"""A control group (cgroup v2) for each running task, where the system lets
this process make them: nothing a task starts leaves its cgroup (a process
can leave its parent, its session and its environment, not its cgroup), so
ending a task through its cgroup ends all of it, also after its supervisor
died.

A controller opens one cgroup for its session (`open_session`), below its
own: ``<its cgroup>/pexen-<name>``. A worker process of the process pool
moves itself, as the first thing it does, into a cgroup of its own below
the session's (``worker-<id>-<pid>``, `join`): it runs one task at a time, so
while a task runs that cgroup holds the worker and what the task started.
The thread pool's spawner starts each executable in ``task-<token>``. Each
is removed when its worker or executable ends (`remove`: what is left in it
killed first); the session's when the session ends, or, when the controller
died, by `resume` (`sweep`), which finds it by the record the session left
beside the run's spools.

Where cgroup v2 is not mounted, or its directory not writable (not root,
no delegated cgroup), or ``PEXEN_CGROUPS=0``, there is no session and every
function here is a no-op: the process tree and the task token remain (see
doc/watchdog.md).

The cost: a worker's move, once per worker (not per task); an executable of
the thread pool, two moves of the spawner and a directory made and removed.
"""

from __future__ import annotations

import os
import signal
import time
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import List, Optional

#: The session's cgroup of this process (inherited by the processes it forks).
session: Optional[str] = None
#: The cgroup this process was in when it opened its session.
home: Optional[str] = None
#: Why there is no session (for `pexen-harness` to say in its docs and tests).
unavailable: Optional[str] = None

_SESSION_PREFIX = "pexen-"
_mount: Optional[str] = None


def mount_point() -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on most
    systems, ``/sys/fs/cgroup/unified`` on hybrid ones), or None."""
    global _mount
    if _mount is None:
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE ...
                    fields = line.split(" - ", 1)
                    if len(fields) == 2 and fields[1].startswith("cgroup2 "):
                        _mount = fields[0].split()[4].replace("\\040", " ")
                        break
        except OSError:
            return None
    return _mount


def cgroup_of(pid: int | str = "self") -> Optional[str]:
    """The directory of process `pid`'s cgroup v2, or None."""
    mount = mount_point()
    if mount is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    rel = line[3:].strip()
                    if rel.endswith(" (deleted)"):
                        return None
                    return mount + rel.rstrip("/") if rel != "/" else mount
    except OSError:
        pass
    return None


def open_session(name: str) -> Optional[str]:
    """Make this process's session cgroup, ``pexen-<name>`` below its own
    cgroup, and return it; None (and `unavailable` says why) where that
    cannot be done."""
    global session, home, unavailable
    session = home = None
    if os.environ.get("PEXEN_CGROUPS", "").strip() in ("0", "no", "off", "false"):
        unavailable = "turned off by PEXEN_CGROUPS=0"
        return None
    own = cgroup_of()
    if own is None:
        unavailable = "no cgroup v2 hierarchy is mounted"
        return None
    _tidy(own)
    path = os.path.join(own, _SESSION_PREFIX + name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as exc:
        unavailable = f"cannot make a cgroup in {own}: {exc.strerror}"
        return None
    # A process can be moved only where its cgroup's tree allows it: try it
    # with a child of this process (moving this one would move its threads).
    probe = os.path.join(path, "probe")
    try:
        os.mkdir(probe)
        pid = _fork()
        if pid == 0:   # pragma: no cover (a fork)
            code = 0 if enter(probe) else 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        os.rmdir(probe)
        if status != 0:
            raise PermissionError(13, "a process cannot be moved into it")
    except OSError as exc:
        _rmdir(probe)
        _rmdir(path)
        unavailable = f"cannot move processes into a cgroup below {own}: {exc.strerror}"
        return None
    session, home, unavailable = path, own, None
    return path


def _tidy(own: str) -> None:
    """Remove the empty session cgroups below `own` whose controllers are
    gone (killed, and their runs never resumed). Nothing is killed here: a
    cgroup with a process in it (or below it) cannot be removed, and stays
    for the run's `resume`."""
    try:
        names = [n for n in os.listdir(own) if n.startswith(_SESSION_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name.rpartition("-")[2]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        for top, _dirs, _ in os.walk(os.path.join(own, name), topdown=False):
            _rmdir(top)


def _fork() -> int:
    # (the child only writes a file and exits: no lock of another thread is
    # touched; Python 3.12+ warns of forks in a process that has threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def close_session() -> None:
    """Remove this process's session cgroup with everything left in it."""
    global session
    path, session = session, None
    if path is not None:
        remove(path)


def enter(path: str) -> bool:
    """Move this process into the cgroup `path`."""
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")
        return True
    except OSError:
        return False


def leave() -> bool:
    """Move this process back to where it was when the session opened (or,
    failing that, into the session's own cgroup)."""
    return any(path is not None and enter(path) for path in (home, session))


def join(name: str) -> Optional[str]:
    """(In a forked worker.) Make cgroup `name` below the session's and move
    this process into it; its path, or None."""
    if session is None:
        return None
    path = os.path.join(session, name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError:
        return None
    if enter(path):
        return path
    _rmdir(path)
    return None


def make(name: str) -> Optional[str]:
    """Make cgroup `name` below the session's; its path, or None."""
    if session is None:
        return None
    path = os.path.join(session, name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError:
        return None
    return path


def worker_name(wid: int, pid: int) -> str:
    return f"worker-{wid}-{pid}"


def task_name(token: str) -> str:
    return f"task-{token}"


def path_of(name: str) -> Optional[str]:
    """The path of cgroup `name` of this session (None: no session)."""
    return None if session is None else os.path.join(session, name)


def task_cgroup(pid: int) -> Optional[str]:
    """The cgroup of a session that process `pid` runs in (a worker's, or an
    executable's), or None if it is in none."""
    path = cgroup_of(pid)
    if path is None:
        return None
    parent = os.path.dirname(path)
    while parent and parent != "/":
        if os.path.basename(parent).startswith(_SESSION_PREFIX):
            return path
        path, parent = parent, os.path.dirname(parent)
    return None


def pids(path: str) -> List[int]:
    """The processes in cgroup `path` and below it."""
    found: List[int] = []
    for top, _dirs, _ in os.walk(path):
        try:
            with open(os.path.join(top, "cgroup.procs")) as f:
                found.extend(int(line) for line in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def populated(path: str) -> bool:
    """Whether a process is in cgroup `path` or below it."""
    try:
        with open(os.path.join(path, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except OSError:
        return False


def kill(path: str) -> None:
    """SIGKILL every process in cgroup `path` and below it (with
    ``cgroup.kill``, which no fork escapes; each pid where the kernel
    has none)."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
        return
    except OSError:
        pass
    for pid in pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def discard(path: str) -> bool:
    """Remove the empty cgroup `path` (no cgroup below it); False if it
    cannot be removed (a process is in it)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def remove(path: str, wait: float = 5.0) -> bool:
    """Kill what is left in cgroup `path` (see `kill`) and remove it with the
    cgroups below it. False if something was still in it after `wait`
    seconds (then it stays)."""
    if not os.path.isdir(path):
        return True
    if populated(path):
        deadline = time.monotonic() + wait
        delay = 0.0005
        while True:
            kill(path)
            if not populated(path):
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    for top, _, _ in os.walk(path, topdown=False):
        _rmdir(top)
    return not os.path.isdir(path)


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


# -- records: a dead controller's session, found by `resume` ---------------------

_RECORD_SUFFIX = ".cgroup"


def record(directory: str, tag: str) -> Optional[str]:
    """Write this session's cgroup path into `directory` (the run's spools),
    in a file named after `tag`; its path, or None."""
    if session is None:
        return None
    path = os.path.join(directory, tag + _RECORD_SUFFIX)
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, "w") as f:
            f.write(session)
    except OSError:
        return None
    return path


def sweep(directory: str) -> int:
    """(Resume, the old controllers gone.) End and remove the session cgroups
    recorded in `directory`, and their records. Returns how many processes
    were in them."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(_RECORD_SUFFIX)]
    except OSError:
        return 0
    count = 0
    for name in names:
        rec = os.path.join(directory, name)
        try:
            with open(rec) as f:
                path = f.read().strip()
        except OSError:
            continue
        mount = mount_point()
        # (only a session cgroup of ours: the record is a file anyone may write)
        if (path and mount and path.startswith(mount + "/")
                and os.path.basename(path).startswith(_SESSION_PREFIX)
                and ".." not in path.split("/")):
            count += len(pids(path))
            if not remove(path):
                continue
        try:
            os.unlink(rec)
        except OSError:
            pass
    return count

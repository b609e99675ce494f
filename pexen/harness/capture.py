"""Each task attempt's stdout and stderr, in files next to the journal.

``<journal>.d/<run>/<key>/<attempt>.out`` and ``.err`` (the task's data
directory is ``<journal>.d/<run>/<key>/data``; a key part that cannot be a
directory name is shortened: `key_path`). A stream a task does not
write to leaves no file.

- In a worker process (the process pool) the capture is at the file
  descriptor level, through the worker's spool (`WorkerSpool`): fds 1 and 2
  point at two files of the worker's own for its whole life, so what C code
  and child processes write is captured too; when a task ends, what it
  wrote there is moved to its attempt's files. A task that writes nothing
  costs no file and no directory (creating files is the costly part of a
  small task: see doc/results.md). A worker that dies in a task (killed by
  the watchdog, by a stop, with its controller) leaves its spool behind,
  and whoever learns of the death moves it (`salvage`).
- In the controller (the thread pool) tasks share the process's fds. With
  one worker (-j 1) one task runs at a time, and it gets the fd-level
  capture too (`FdCapture` under `FD_LOCK`; the controller's own lines go to
  a saved copy of its stdout). With several workers, what a Python task
  writes to `sys.stdout`/`sys.stderr` goes to its files through a
  per-thread switch, and an executable's output goes to them directly; a
  child process a Python task starts itself writes to the controller's
  output (see doc/results.md).
"""

from __future__ import annotations

import errno
import os
import sys
import threading

from ..util import start_ticks as _start_ticks
from ._outcap import DEFAULT_MAX_OUTPUT, copy_capped, read_capped, settle, trimmer

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import IO, Any, Callable, Dict, List, Optional, Tuple

_NAMES = ("stdout", "stderr")
_local = threading.local()
_install_lock = threading.Lock()
#: Held by the one task whose capture is at the fd level in the controller
#: (the thread pool with one worker). A task that finds it taken (the thread
#: that replaced a hung one) falls back to the per-thread capture.
FD_LOCK = threading.Lock()


#: A key's part longer than this (bytes) is not a directory name as it is:
#: a file name has at most 255 bytes.
_PART_MAX = 200


def key_path(key: str) -> str:
    """The path of a task's directory under its run's: the key, each of its
    ``/``-parts a directory, but for a part that cannot be one (empty, ``.``
    or ``..``, over 200 bytes, holding a NUL), which is written as its first
    bytes, ``~`` and a hash of it (a pytest test's long parameter id)."""
    raw = key.encode("utf-8", "surrogateescape")
    if (len(raw) <= _PART_MAX and b"\0" not in raw and b"//" not in raw
            and not raw.startswith(b"/") and not raw.endswith(b"/")
            and (b"." not in raw or not any(p in (".", "..") for p in key.split("/")))):
        return key
    return "/".join(_safe_part(part) for part in key.split("/"))


def _safe_part(part: str) -> str:
    raw = part.encode("utf-8", "surrogateescape")
    if part not in ("", ".", "..") and len(raw) <= _PART_MAX and b"\0" not in raw:
        return part
    import hashlib

    head = raw[:100].decode("utf-8", "ignore").replace("\0", "")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


def log_paths(attempt_dir: str, attempt: int) -> Tuple[str, str]:
    """The stdout and stderr files of one attempt, in the task's directory."""
    base = os.path.join(attempt_dir, str(attempt))
    return base + ".out", base + ".err"


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def _drop_if_empty(path: str) -> None:
    try:
        if os.stat(path).st_size == 0:
            os.unlink(path)
    except OSError:
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


class FdCapture:
    """Point fds 1 and 2 at the attempt's files while a task runs (in a worker
    process, where nothing else runs; or in the controller, holding FD_LOCK,
    when only one task runs at a time)."""

    def __init__(self, out_path: str, err_path: str, lock: Any = None,
                 limit: int = DEFAULT_MAX_OUTPUT) -> None:
        self.paths = (out_path, err_path)
        self.saved: Optional[Tuple[int, int]] = None
        self.lock = lock   # released on exit
        self.limit = limit   # the cap on what each stream keeps (0: none)

    def __enter__(self) -> FdCapture:
        os.makedirs(os.path.dirname(self.paths[0]), exist_ok=True)
        _flush()
        self.saved = (os.dup(1), os.dup(2))
        for fd, path in zip((1, 2), self.paths):
            new = _open(path)
            os.dup2(new, fd)
            os.close(new)
            if self.limit:
                trimmer(self.limit).watch(path, fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        _flush()
        cuts = ([trimmer(self.limit).forget(path) for path in self.paths] if self.limit
                else (0, 0))
        if self.saved is not None:
            for fd, old in zip((1, 2), self.saved):
                os.dup2(old, fd)
                os.close(old)
            self.saved = None
        for path, cut, name in zip(self.paths, cuts, _NAMES):
            _drop_if_empty(path)
            if self.limit:
                settle(path, self.limit, cut, name)
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class _Switch:
    """Stands in for sys.stdout or sys.stderr: writes go to the calling
    thread's capture file if it has one, else to the stream it replaced."""

    def __init__(self, index: int, original: IO[str]) -> None:
        self._index = index
        self._original = original

    def _target(self) -> Any:
        files = getattr(_local, "files", None)
        if files is None:
            return self._original
        return files.stream(self._index)

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class ThreadCapture:
    """Give the calling thread its own capture files (opened on the first
    write); `sys.stdout`/`sys.stderr` are switched per thread while any
    ThreadCapture is installed (see `install`)."""

    def __init__(self, out_path: str = "", err_path: str = "",
                 where: Optional[Callable[[], Tuple[str, str]]] = None,
                 limit: int = DEFAULT_MAX_OUTPUT) -> None:
        # `where`: gives the two paths when the task first writes (most tasks
        # in threads write nothing: their paths are never made)
        self._paths = None if where is not None else (out_path, err_path)
        self._where = where
        self._streams: list = [None, None]
        #: whether the task wrote anything (a file was opened)
        self.opened = False
        self.limit = limit   # the cap on what each stream keeps (0: none)

    @property
    def paths(self) -> Tuple[str, str]:
        """The stdout and stderr files (worked out on first use with `where`)."""
        paths = self._paths
        if paths is None:
            paths = self._paths = self._where()  # type: ignore[misc]
        return paths

    def stream(self, index: int) -> IO[str]:
        stream = self._streams[index]
        if stream is None:
            path = self.paths[index]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            stream = os.fdopen(_open(path), "w", encoding="utf-8", errors="backslashreplace",
                               buffering=1)
            self._streams[index] = stream
            self.opened = True
            if self.limit:
                trimmer(self.limit).watch(path, stream.fileno())
        return stream

    def fds(self) -> Tuple[int, int]:
        """File descriptors for a child process's stdout and stderr (the
        files are opened now if they were not)."""
        out, err = self.stream(0), self.stream(1)
        out.flush()
        err.flush()
        return out.fileno(), err.fileno()

    def __enter__(self) -> ThreadCapture:
        _local.files = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.files = None
        self.close()

    def close(self) -> None:
        """Close the files opened; an empty one goes, one past the cap is cut
        to its head and tail."""
        if not self.opened:
            return
        limit = self.limit
        for index, stream in enumerate(self._streams):
            if stream is not None:
                try:
                    stream.flush()
                except Exception:
                    pass
                cut = trimmer(limit).forget(self.paths[index]) if limit else 0
                try:
                    stream.close()
                except Exception:
                    pass
                path = self.paths[index]
                _drop_if_empty(path)
                if limit:
                    settle(path, limit, cut, _NAMES[index])


def current() -> Optional[ThreadCapture]:
    """The calling thread's ThreadCapture, if it has one."""
    return getattr(_local, "files", None)


class install:
    """While in use, `sys.stdout` and `sys.stderr` are per-thread switches
    (nested uses are counted; the last one restores the streams)."""

    _depth = 0
    _saved: Optional[Tuple[Any, Any]] = None

    def __enter__(self) -> install:
        with _install_lock:
            if install._depth == 0:
                install._saved = (sys.stdout, sys.stderr)
                sys.stdout = _Switch(0, sys.stdout)  # type: ignore[assignment]
                sys.stderr = _Switch(1, sys.stderr)  # type: ignore[assignment]
            install._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with _install_lock:
            install._depth -= 1
            if install._depth == 0 and install._saved is not None:
                sys.stdout, sys.stderr = install._saved
                install._saved = None


# -- the worker's spool --------------------------------------------------------

#: What a spool's owner record starts with (its format's version).
_OWNER_MAGIC = b"pexen-spool-1"
_SPOOL_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20


def spool_tag(pid: int) -> str:
    """The TAG of a spool of process `pid` (``PID-TAG``): when the process
    started (clock ticks after boot, as /proc says) and a random part, so
    that `resume` tells the process that made it from a later one with its
    pid (`started_tag`)."""
    ticks = _start_ticks(pid)
    return f"{ticks.decode() if ticks else '0'}.{os.urandom(4).hex()}"


def started_tag(name: str) -> Optional[int]:
    """The pid of the process that made the spool named `name` (``PID-TAG``,
    its path without the suffix), if that process is still alive; else None."""
    pid_text, _, tag = os.path.basename(name).partition("-")
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    ticks = _start_ticks(pid)
    if ticks is None or tag.split(".", 1)[0] != ticks.decode():
        return None
    return pid


def spool_dir(run_root: str) -> str:
    """Where the workers of run `run_root` (``ROOT/RUN``) keep their spools:
    ``ROOT/RUN.spool``, beside the run's directory (no task key can name it)."""
    return run_root + ".spool"


def _append_range(src: int, size: int, path: str, start: int = 0) -> None:
    """Append `size` bytes of file `src` from offset `start` to the file at
    `path` (made, with its directory, if need be). In the kernel where it can
    (copy_file_range: no copy through this process)."""
    try:
        _append(src, size, path, start)
    except OSError as exc:
        if exc.filename is None:   # (name the file: a full disk is found by it)
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def _append(src: int, size: int, path: str, start: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC   # (copy_file_range refuses O_APPEND)
    try:
        dst = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        dst = os.open(path, flags, 0o600)
    try:
        at = os.fstat(dst).st_size
        offset = 0
        in_kernel = True
        while offset < size:
            want = min(size - offset, _COPY_CHUNK)
            n = 0
            if in_kernel:
                try:
                    n = os.copy_file_range(src, dst, want, start + offset, at + offset)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                         errno.EOPNOTSUPP, errno.EBADF):
                        raise
                    in_kernel = False
            if n <= 0:   # (not supported here, or the source shrank): by hand
                data = os.pread(src, want, start + offset)
                if not data:
                    return
                view = memoryview(data)
                written = 0
                while written < len(data):
                    written += os.pwrite(dst, view[written:], at + offset + written)
                n = len(data)
            offset += n
    finally:
        os.close(dst)


class WorkerSpool:
    """A worker process's capture: fds 1 and 2 point, for the worker's whole
    life, at two files of its own in the run's spool directory
    (``PID-TAG.out``, ``PID-TAG.err``; TAG is the process's start time and a
    random part (`spool_tag`), so a later process with the same pid never
    meets them, and `resume` knows the worker is still the one that made
    them), opened for appending; a third
    (``PID-TAG.own``) names the task and attempt the output belongs to.

    A task's capture (`task()`) writes the owner record (one `pwrite`), runs
    the task, and at its end moves what the two files hold to the attempt's
    files, if anything, and empties them. So a quiet task makes no file, and
    a worker's files are made once, not once per task.
    """

    def __init__(self, directory: str, limit: int = DEFAULT_MAX_OUTPUT) -> None:
        self.pid = os.getpid()
        self.limit = 0
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except FileExistsError:
            pass
        base = os.path.join(directory, f"{self.pid}-{spool_tag(self.pid)}")
        self.base = base
        self.own = os.open(base + ".own", _SPOOL_FLAGS & ~os.O_APPEND, 0o600)
        os.write(self.own, _OWNER_MAGIC + b"\0\0")
        self.fds = (os.open(base + ".out", _SPOOL_FLAGS, 0o600),
                    os.open(base + ".err", _SPOOL_FLAGS, 0o600))
        self.cap(limit)
        _flush()
        for fd, spool in zip((1, 2), self.fds):
            os.dup2(spool, fd)
        # A line a task prints is in the spool at once, not in a buffer of
        # this process: it survives the task's hang (the watchdog kills this
        # process), its reboot, or its controller's death.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                pass

    def cap(self, limit: int) -> None:
        """Keep at most `limit` bytes of each stream of a task (0: all)."""
        if limit == self.limit:
            return
        if self.limit:
            old = trimmer(self.limit)
            for suffix in (".out", ".err"):
                old.forget(self.base + suffix)
        self.limit = limit
        if limit:
            for fd, suffix in zip(self.fds, (".out", ".err")):
                trimmer(limit).watch(self.base + suffix, fd)

    def task(self, out_path: str, err_path: str, key: str, attempt: int) -> _SpoolCapture:
        """The capture of one attempt of task `key` (a context manager)."""
        return _SpoolCapture(self, (out_path, err_path), key, attempt)

    def _own(self, key: Optional[str], attempt: int) -> None:
        record = (_OWNER_MAGIC + b"\0" + b"%d" % attempt + b"\0"
                  + os.fsencode(key) + b"\0") if key is not None else _OWNER_MAGIC + b"\0\0"
        os.pwrite(self.own, record, 0)

    def _move(self, paths: Tuple[str, str]) -> None:
        """Append what the spool holds to `paths` (what the cap keeps of it)
        and empty it."""
        _flush()
        limit = self.limit
        if not limit:
            for fd, path in zip(self.fds, paths):
                size = os.fstat(fd).st_size
                if size:
                    try:
                        _append_range(fd, size, path)
                    finally:
                        os.ftruncate(fd, 0)
            return
        trim = trimmer(limit)
        with trim.lock:   # (not while the trimmer is at it)
            for fd, path, suffix, name in zip(self.fds, paths, (".out", ".err"), _NAMES):
                if os.fstat(fd).st_size:
                    spool = self.base + suffix
                    try:
                        copy_capped(fd, path, limit, trim.cut(spool), name)
                    finally:
                        os.ftruncate(fd, 0)
                        trim.reset(spool)

    def close(self) -> None:
        """The worker ends: its (empty) files go."""
        self.cap(0)
        for suffix in (".out", ".err", ".own"):
            try:
                os.unlink(self.base + suffix)
            except OSError:
                pass


class _SpoolCapture:
    __slots__ = ("spool", "paths", "key", "attempt")

    def __init__(self, spool: WorkerSpool, paths: Tuple[str, str], key: str,
                 attempt: int) -> None:
        self.spool = spool
        self.paths = paths
        self.key = key
        self.attempt = attempt

    def __enter__(self) -> _SpoolCapture:
        self.spool._own(self.key, self.attempt)
        return self

    def __exit__(self, *exc: Any) -> None:
        # The owner record keeps naming this attempt until the next task's
        # replaces it: the spool is empty once moved, and what a move that
        # failed (a full disk) left there is still the attempt's.
        self.spool._move(self.paths)


_spool: Optional[WorkerSpool] = None


def worker_spool(directory: str, limit: int = DEFAULT_MAX_OUTPUT) -> WorkerSpool:
    """This worker process's spool (made on the first task it runs), keeping
    at most `limit` bytes of each stream of a task (0: all)."""
    global _spool
    spool = _spool
    if spool is None or spool.pid != os.getpid():
        spool = _spool = WorkerSpool(directory, limit)
    elif spool.limit != limit:
        spool.cap(limit)
    return spool


def close_worker_spool() -> None:
    """Remove this process's spool files, if it has any (a worker that ends)."""
    global _spool
    spool = _spool
    if spool is not None and spool.pid == os.getpid():
        _spool = None
        spool.close()


def _read_owner(path: str) -> Optional[Tuple[str, int]]:
    """(key, attempt) the owner record at `path` names, or None (no task)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return None
    parts = data.split(b"\0")
    if len(parts) < 4 or parts[0] != _OWNER_MAGIC or not parts[2]:
        return None
    try:
        return os.fsdecode(parts[2]), int(parts[1])
    except ValueError:
        return None


def _spool_bases(directory: str, pid: Optional[int] = None) -> List[str]:
    """The spools in `directory` (their paths without the suffix); of worker
    `pid` only, if given."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    prefix = f"{pid}-" if pid is not None else ""
    return sorted(os.path.join(directory, name[:-4]) for name in names
                  if name.endswith(".own") and name.startswith(prefix))


def salvage_spool(base: str, run_root: str,
                  expect: Optional[Tuple[str, int]] = None,
                  limit: int = DEFAULT_MAX_OUTPUT) -> Optional[str]:
    """Move what a dead worker's spool (`base`: its path without the suffix)
    holds to the attempt files of the task it names, under `run_root`, and
    remove the spool; only if it names (key, attempt) `expect`, when given.
    Returns the task's key, or None if it named none (or another one).
    Of each stream, what cap `limit` keeps is moved (0: all).

    The owner record is first renamed to a name of this caller's own, so of
    two callers salvaging one spool only one moves its output."""
    claimed = f"{base}.own.{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(base + ".own", claimed)
    except OSError:
        return None   # salvaged already (or being salvaged)
    owner = _read_owner(claimed)
    if expect is not None and owner != expect:
        try:
            os.rename(claimed, base + ".own")   # not the one wanted: leave it be
        except OSError:
            pass
        return None
    if owner is not None:
        key, attempt = owner
        paths = log_paths(os.path.join(run_root, key_path(key)), attempt)
        for suffix, path, name in zip((".out", ".err"), paths, _NAMES):
            try:
                fd = os.open(base + suffix, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_size:
                    copy_capped(fd, path, limit, 0, name)
            finally:
                os.close(fd)
    for path in (base + ".out", base + ".err", claimed):
        try:
            os.unlink(path)
        except OSError:
            pass
    return owner[0] if owner is not None else None


def salvage(run_root: str, pid: Optional[int] = None,
            expect: Optional[Tuple[str, int]] = None,
            limit: int = DEFAULT_MAX_OUTPUT) -> List[str]:
    """Salvage the workers' spools of run `run_root` (of worker `pid` only, if
    given; naming `expect` only, if given): the keys of the tasks whose
    output was moved. The caller makes sure the workers are gone."""
    keys = []
    for base in _spool_bases(spool_dir(run_root), pid):
        try:
            key = salvage_spool(base, run_root, expect, limit)
        except OSError:   # (a full disk, say): what is left is moved next time
            continue
        if key is not None:
            keys.append(key)
    return keys


def spooled(run_root: str, key: str, attempt: int,
            limit: int = DEFAULT_MAX_OUTPUT) -> Dict[str, bytes]:
    """What a running attempt of task `key` has written so far, still in a
    worker's spool: {".out": bytes, ".err": bytes} (what cap `limit` would
    keep of it); empty if none has it."""
    for base in _spool_bases(spool_dir(run_root)):
        if _read_owner(base + ".own") == (key, attempt):
            found = {}
            for suffix, name in zip((".out", ".err"), _NAMES):
                try:
                    fd = os.open(base + suffix, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    found[suffix] = b""
                    continue
                try:
                    found[suffix] = read_capped(fd, limit, name)
                finally:
                    os.close(fd)
            return found
    return {}

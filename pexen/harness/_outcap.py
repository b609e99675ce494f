"""The cap on what one attempt's output keeps (``--max-output``).

A test that floods its stdout (``yes``) writes gigabytes a second; the
capture files share a disk with the journal. Each stream of an attempt
keeps its first half of the cap (the head) and its last half (the tail);
what lies between is dropped, and one line where it was says how much.

The task keeps writing to its file directly (no pipe and no reader in its
way: a flood runs at the disk's speed, and what was written survives the
death of whoever watches it). A watcher thread (`Trimmer`) looks at the
sizes of the files being written, and where one has grown past the cap it
gives the middle back to the file system by punching a hole in it
(``fallocate(PUNCH_HOLE)``): the writer's offset and the head and the tail
stay as they are, only the blocks between go. Where a file system cannot
punch holes the file is cut back to its head instead (a writer appending
goes on at the new end) and the bytes cut are counted. When the attempt
ends its file is made whole: head, the line, tail (`view`).

How far past the cap a file gets between two looks is bounded by how fast
it is written: the watcher looks every 20 ms, and every 5 ms while a file
grows.
"""

from __future__ import annotations

import errno
import os
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

#: What an attempt's stream keeps by default: 64 MiB.
DEFAULT_MAX_OUTPUT = 64 << 20

_BLOCK = 4096
#: Holes smaller than this are not worth a system call (a file this far past
#: its cap is left as it is until it grows more, or the attempt ends).
_MIN_PUNCH = 1 << 20
_IDLE = 0.02    # seconds between looks when nothing grows
_BUSY = 0.005   # and while a file grows past its cap

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def split(limit: int) -> Tuple[int, int]:
    """(head, tail): the bytes a stream keeps from its start and from its end
    under cap `limit` (the head a whole number of blocks where it can be, so
    the hole after it starts on a block)."""
    head = limit // 2
    if head >= _BLOCK:
        head -= head % _BLOCK
    return head, limit - head


def marker(dropped: int, limit: int, stream: str = "output") -> bytes:
    """The line that stands where `dropped` bytes of a stream were."""
    head, tail = split(limit)
    return (f"\n[pexen: {dropped} bytes of {stream} dropped here: --max-output "
            f"{format_size(limit)} keeps the first {format_size(head)} and the last "
            f"{format_size(tail)}]\n").encode()


def format_size(size: int) -> str:
    """`size` bytes as a person reads it (64MiB, 1.5GiB, 100B)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"


def view(size: int, limit: int, cut: int = 0) -> Tuple[int, int, int, int]:
    """What a stream's file of `size` bytes keeps under cap `limit`, when
    `cut` bytes were already cut at the head's end (no holes here):
    (head length, tail start, tail length, bytes dropped in all). The file is
    head + a marker (if anything was dropped) + tail."""
    if not limit:
        return size, size, 0, 0
    head, tail = split(limit)
    if size <= head:
        return size, size, 0, cut
    rest = size - head
    if rest > tail:
        return head, size - tail, tail, cut + rest - tail
    return head, head, rest, cut


_fallocate: Any = None


def _punch(fd: int, offset: int, length: int) -> bool:
    """Give the blocks of `fd` in [offset, offset + length) back (the size
    stays); False where the file system cannot."""
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            func = libc.fallocate
            func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
            func.restype = ctypes.c_int
            _fallocate = (func, ctypes)
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return False
    func, ctypes = _fallocate
    if func(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err))


class _Watched:
    __slots__ = ("fd", "own", "punched", "cut", "can_punch")

    def __init__(self, fd: int, own: bool) -> None:
        self.fd = fd
        self.own = own          # whether the fd is closed when it is forgotten
        self.punched = 0        # holes are made up to here
        self.cut = 0            # bytes cut at the head's end (no hole punching)
        self.can_punch = True


class Trimmer:
    """Keeps files that tasks write to within cap `limit` while they are
    written (a thread of its own, started with the first file watched)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head, self.tail = split(limit)
        self.min_punch = min(_MIN_PUNCH, max(4 * _BLOCK, limit))
        self.lock = threading.Lock()   # held while a file is trimmed or taken
        self._files: Dict[str, _Watched] = {}
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def watch(self, path: str, fd: Optional[int] = None) -> None:
        """Watch the file at `path` (through `fd` if given: one that stays
        open as long as it is watched, not closed here)."""
        if fd is None:
            watched = _Watched(os.open(path, os.O_RDWR | os.O_CLOEXEC), True)
        else:
            watched = _Watched(fd, False)
        with self.lock:
            old = self._files.pop(path, None)
            self._files[path] = watched
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="pexen-outcap",
                                                daemon=True)
                self._thread.start()
        if old is not None:
            _close(old)

    def cut(self, path: str) -> int:
        """Bytes cut from the watched file at `path` so far (0 where holes were
        punched: those are counted from its size)."""
        watched = self._files.get(path)
        return watched.cut if watched is not None else 0

    def reset(self, path: str) -> None:
        """The file at `path` was emptied: start counting again (hold `lock`)."""
        watched = self._files.get(path)
        if watched is not None:
            watched.punched = watched.cut = 0

    def forget(self, path: str) -> int:
        """Stop watching `path`; the bytes cut from it (see `cut`)."""
        with self.lock:
            watched = self._files.pop(path, None)
        if watched is None:
            return 0
        _close(watched)
        return watched.cut

    def _run(self) -> None:
        """Look at the watched files until none is left (the next `watch`
        starts the thread again)."""
        pause = _IDLE
        while True:
            time.sleep(pause)
            grew = False
            with self.lock:
                if not self._files:
                    self._thread = None
                    return
                for watched in list(self._files.values()):
                    try:
                        grew = self._trim(watched) or grew
                    except OSError:
                        pass   # (a file removed under us, a full disk: look again)
            pause = _BUSY if grew else _IDLE

    def _trim(self, watched: _Watched) -> bool:
        """Trim one file if it is past its cap; whether it was."""
        fd = watched.fd
        size = os.fstat(fd).st_size
        end = size - self.tail
        if end - self.head < self.min_punch:
            return False
        if watched.can_punch:
            start = max(watched.punched, self.head + (-self.head) % _BLOCK)
            end -= end % _BLOCK
            if end - start < self.min_punch:
                return True
            if _punch(fd, start, end - start):
                watched.punched = end
                return True
            watched.can_punch = False
            if watched.punched:   # (it could before: leave the holes be)
                return True
        # No holes here: cut back to the head (a writer appending goes on at
        # the new end; one writing at its own offset leaves a gap of zeros
        # that the next cut takes).
        os.ftruncate(fd, self.head)
        watched.cut += size - self.head
        return True


def _close(watched: _Watched) -> None:
    if watched.own:
        try:
            os.close(watched.fd)
        except OSError:
            pass


_trimmers: Dict[Tuple[int, int], Trimmer] = {}
_trimmers_lock = threading.Lock()


def trimmer(limit: int) -> Trimmer:
    """This process's trimmer for cap `limit` (one per cap and process)."""
    pid = os.getpid()
    found = _trimmers.get((pid, limit))
    if found is None:
        with _trimmers_lock:
            found = _trimmers.get((pid, limit))
            if found is None:
                found = _trimmers[pid, limit] = Trimmer(limit)
    return found


def ranges(fd: int, limit: int, cut: int = 0) -> List[Tuple[int, int]]:
    """The (offset, length) parts of the file `fd` a capped copy keeps, and
    between them (as (-1, dropped)) where the marker goes."""
    size = os.fstat(fd).st_size
    head, tail_at, tail, dropped = view(size, limit, cut)
    parts = [(0, head)] if head else []
    if dropped:
        parts.append((-1, dropped))
    if tail:
        parts.append((tail_at, tail))
    return parts


def copy_capped(fd: int, path: str, limit: int, cut: int = 0,
                stream: str = "output") -> int:
    """Append what the cap keeps of file `fd` to the file at `path`: head,
    the marker, tail; the bytes dropped."""
    from .capture import _append_range

    dropped = 0
    for at, n in ranges(fd, limit, cut):
        if at >= 0:
            _append_range(fd, n, path, start=at)
            continue
        dropped = n
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(out, marker(n, limit, stream))
        finally:
            os.close(out)
    return dropped


def settle(path: str, limit: int, cut: int = 0, stream: str = "output") -> int:
    """Make the file at `path` (no longer written) what the cap keeps: head,
    the marker, tail; the bytes dropped (0: it is left as it was)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        if not view(os.fstat(fd).st_size, limit, cut)[3]:
            return 0
        tmp = f"{path}.{os.getpid()}.capped"
        try:
            os.unlink(tmp)
        except OSError:
            pass
        dropped = copy_capped(fd, tmp, limit, cut, stream)
        os.replace(tmp, path)
        return dropped
    finally:
        os.close(fd)


def read_capped(fd: int, limit: int, stream: str = "output") -> bytes:
    """What the file `fd` holds as a capped copy would (for a running
    attempt's output in `log`)."""
    out = []
    for at, n in ranges(fd, limit):
        out.append(marker(n, limit, stream) if at < 0 else os.pread(fd, n, at))
    return b"".join(out)


def dropped_in(path: str) -> int:
    """The bytes a settled stream file says it dropped (its marker line), 0
    where it has none. (Read through: the cap of the attempt's session may
    not be the run's cap now, so the marker is looked for, not at an offset.)"""
    import re

    pattern = re.compile(rb"\n\[pexen: (\d+) bytes of [a-z]+ dropped here: --max-output ")
    keep = 200
    try:
        f = open(path, "rb")
    except OSError:
        return 0
    with f:
        carry = b""
        while True:
            block = f.read(1 << 20)
            if not block:
                return 0
            found = pattern.search(carry + block)
            if found:
                return int(found.group(1))
            carry = (carry + block)[-keep:]

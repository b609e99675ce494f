"""Each task attempt's stdout and stderr, in files next to the journal.

``<journal>.d/<run>/<key>/<attempt>.out`` and ``.err`` (the task's data
directory is ``<journal>.d/<run>/<key>/data``). A file that stays empty is
removed, so a quiet task leaves none.

- In a worker process (the process pool) the capture is at the file
  descriptor level: fds 1 and 2 point at the files while the task runs, so
  what C code and child processes write is captured too.
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

import os
import sys
import threading
from typing import IO, Any, Optional, Tuple

_local = threading.local()
_install_lock = threading.Lock()
#: Held by the one task whose capture is at the fd level in the controller
#: (the thread pool with one worker). A task that finds it taken (the thread
#: that replaced a hung one) falls back to the per-thread capture.
FD_LOCK = threading.Lock()


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

    def __init__(self, out_path: str, err_path: str, lock: Any = None) -> None:
        self.paths = (out_path, err_path)
        self.saved: Optional[Tuple[int, int]] = None
        self.lock = lock   # released on exit

    def __enter__(self) -> FdCapture:
        os.makedirs(os.path.dirname(self.paths[0]), exist_ok=True)
        _flush()
        self.saved = (os.dup(1), os.dup(2))
        for fd, path in zip((1, 2), self.paths):
            new = _open(path)
            os.dup2(new, fd)
            os.close(new)
        return self

    def __exit__(self, *exc: Any) -> None:
        _flush()
        if self.saved is not None:
            for fd, old in zip((1, 2), self.saved):
                os.dup2(old, fd)
                os.close(old)
            self.saved = None
        for path in self.paths:
            _drop_if_empty(path)
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

    def __init__(self, out_path: str, err_path: str) -> None:
        self.paths = (out_path, err_path)
        self._streams: list = [None, None]

    def stream(self, index: int) -> IO[str]:
        stream = self._streams[index]
        if stream is None:
            path = self.paths[index]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            stream = os.fdopen(_open(path), "w", encoding="utf-8", errors="backslashreplace",
                               buffering=1)
            self._streams[index] = stream
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

    @property
    def opened(self) -> bool:
        """Whether the task wrote anything (a file was opened)."""
        return self._streams[0] is not None or self._streams[1] is not None

    def close(self) -> None:
        """Close the files opened; an empty one goes."""
        for stream in self._streams:
            if stream is not None:
                try:
                    stream.close()
                except Exception:
                    pass
        for path, stream in zip(self.paths, self._streams):
            if stream is not None:
                _drop_if_empty(path)


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

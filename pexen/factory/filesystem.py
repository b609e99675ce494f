"""FilesystemFactory: a task per executable file under a directory."""

from __future__ import annotations

import os

from .base import BaseFactory

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, FrozenSet, Iterator

if TYPE_CHECKING:
    import subprocess


class FilesystemFactory(BaseFactory):
    """Walks a directory (skipping hidden files and directories, in name
    order) and yields, per executable file, a callable that runs it with its
    directory as cwd, returns the `CompletedProcess`, and raises
    `CalledProcessError` on a non-zero exit.

    Extra keyword arguments go to `subprocess.run` (e.g. `stdout=PIPE` to
    capture, `stdout=DEVNULL` to discard). `follow` follows symlinked
    directories (a symlink back to a directory the walk is inside of is not
    followed, so loops end). Callpath: the directory path split on '/' plus
    the file name.
    """

    def __init__(self, follow: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.follow_symlinks = follow
        self.extra_args = kwargs

    def wrap_executable(self, dirpath: str, fname: str) -> Callable[[], Any]:
        full = os.path.join(dirpath, fname)
        # Absolute now: a relative start path must not be resolved against
        # whatever the cwd is when the task runs.
        absdir = os.path.abspath(dirpath)
        absfull = os.path.join(absdir, fname)
        extra = dict(self.extra_args)

        def run_exec() -> subprocess.CompletedProcess[Any]:
            import subprocess  # (when a task runs: not to collect them)

            return subprocess.run([fname], cwd=absdir, executable=absfull,
                                  check=True, **extra)

        run_exec.__name__ = fname
        run_exec.__qualname__ = f"FilesystemFactory:{full}"
        parts = [p for p in dirpath.strip("/").split("/") if p not in ("", ".")]
        self.callpath_burn(run_exec, fname, path=parts)
        return run_exec

    def valid_executable(self, dirpath: str, fname: str) -> bool:
        full = os.path.join(dirpath, fname)
        return os.path.isfile(full) and os.access(full, os.X_OK)

    def __call__(self, startpath: str) -> Iterator[Callable[[], Any]]:  # type: ignore[override]
        if not os.path.isdir(startpath):
            raise NotADirectoryError(f"not a directory: {startpath}")
        # The real paths of the directories each pending directory is inside
        # of: with follow, a symlink to one of them would walk in circles.
        inside: Dict[str, FrozenSet[str]] = {}
        for dirpath, dirs, files in os.walk(startpath, followlinks=self.follow_symlinks,
                                            topdown=True):
            keep = sorted(d for d in dirs if not d.startswith("."))
            if self.follow_symlinks:
                chain = inside.pop(dirpath, frozenset()) | {os.path.realpath(dirpath)}
                keep = [d for d in keep
                        if os.path.realpath(os.path.join(dirpath, d)) not in chain]
                for d in keep:
                    inside[os.path.join(dirpath, d)] = chain
            # Pruning in place works because topdown=True.
            dirs[:] = keep
            for fname in sorted(f for f in files if not f.startswith(".")):
                if self.valid_executable(dirpath, fname):
                    yield self.wrap_executable(dirpath, fname)

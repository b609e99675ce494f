"""Progress on the console: a live one-line counter on a terminal, one plain
line per finished task otherwise (what a CI console wants)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import IO, Any, List, Optional, Tuple

FAILED = {"fail", "timeout", "error"}

_unsafe = None   # (compiled when first needed: most text needs nothing)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: Optional[str]) -> str:
    """`text` as one line of the console shows it: ANSI escape sequences
    removed (as the JUnit export does), newlines, tabs and every other
    control character written as escapes (``\\n``, ``\\x1b``), a byte that
    was not UTF-8 as ``\\xNN``. What tasks say (keys, reasons, report names
    and messages) goes through it before it is printed: a test's output may
    not rewrite the terminal or break the one-line-per-task log."""
    if not text:
        return ""
    if text.isprintable():
        return text
    global _unsafe
    if _unsafe is None:
        import re

        _unsafe = (re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)"
                              r"|[@-Z\\-_])"),
                   re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]"))
    ansi, controls = _unsafe
    return controls.sub(_escape, ansi.sub("", text))


def _escape(match: Any) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:   # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def to_devnull(stream: IO[str]) -> None:
    """Point `stream`'s file descriptor at /dev/null (its reader went away):
    what is written to it from now on is dropped without an error."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def format_duration(seconds: float) -> str:
    """A task's duration as a console line shows it: 12ms, 3.4s, 2m 05s, 1h 02m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class Progress:
    """Called with (key, final state, reason, duration) as each task ends.

    Once a journal writer watches it (`taken`, `committed`: see
    `JournalWriter.watch`), a task's line is printed only when its finish is
    committed: what the console says is what the journal holds."""

    def __init__(self, total: int, done: int = 0, stream: Optional[IO[str]] = None,
                 tty: Optional[bool] = None, timestamps: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = done
        self.failed = 0
        self.start = time.monotonic()
        self.done_at_start = done
        self.timestamps = timestamps
        self._last_draw = 0.0
        self.gone = False   # the reader went away: nothing more is printed
        # (key, state, reason, duration) not yet committed, once a writer
        # watches (None: printed at once)
        self._pending: Optional[List[Tuple[str, str, Optional[str], Optional[float]]]] = None
        self._lock = threading.Lock()

    def __call__(self, key: str, state: str, reason: Optional[str],
                 duration: Optional[float] = None) -> None:
        pending = self._pending
        if pending is not None:
            pending.append((key, state, reason, duration))   # (atomic)
            return
        self._count_and_show(key, state, reason, duration)

    # -- a journal writer's side ----------------------------------------------

    def watched(self) -> None:
        """A writer calls `taken` and `committed` from now on."""
        self._pending = []

    def taken(self) -> int:
        """(The writer, before it takes a batch.) A mark: the lines added
        before it are of finishes in that batch (or an earlier one)."""
        pending = self._pending
        return len(pending) if pending is not None else 0

    def committed(self, mark: int) -> None:
        """(The writer, once the batch taken after `mark` is committed.) Print
        the lines up to it."""
        pending = self._pending
        if pending is None or not mark:
            return
        with self._lock:
            lines = pending[:mark]
            del pending[:mark]
        for line in lines:
            self._count_and_show(*line)

    def release(self) -> None:
        """Print what is still held (everything is committed now) and stop
        holding lines back."""
        with self._lock:
            pending, self._pending = self._pending, None
        for line in pending or ():
            self._count_and_show(*line)

    def still_running(self, key: str, seconds: float) -> None:
        """A line for a task that has run for `seconds` and goes on."""
        if self.gone:
            return
        try:
            text = f"{'RUNNING':7} {one_line(key)}: still running after " \
                   f"{format_duration(seconds)}"
            with self._lock:
                if self.tty:
                    self._line(self._stamp(text))
                    self._draw(one_line(key))
                else:
                    self.stream.write(self._stamp(text) + "\n")
                    self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    # -- the lines ----------------------------------------------------------------

    def _count_and_show(self, key: str, state: str, reason: Optional[str],
                        duration: Optional[float]) -> None:
        self.done += 1
        if state in FAILED:
            self.failed += 1
        if self.gone:
            return
        try:
            self._show(key, state, reason, duration)
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """The lines go to a pipe whose reader went away (`... | head`): the
        run goes on, and what it prints from now on (these lines, the
        verdict) goes to /dev/null; its exit code is the run's."""
        self.gone = True
        to_devnull(self.stream)
        try:
            self.stream.flush()   # (what was buffered goes to /dev/null)
        except (OSError, ValueError):
            pass

    def _stamp(self, text: str) -> str:
        if not self.timestamps:
            return text
        return time.strftime("%H:%M:%S ") + text

    def _text(self, key: str, state: str, reason: Optional[str],
              duration: Optional[float]) -> str:
        text = f"{state.upper():7} {key}"
        if reason and state != "pass":
            text += f": {one_line(reason)}"
        if duration is not None:
            text += f" [{format_duration(duration)}]"
        return self._stamp(text)

    def _show(self, key: str, state: str, reason: Optional[str],
              duration: Optional[float]) -> None:
        if self.tty:
            now = time.monotonic()
            key = one_line(key)
            if state in FAILED:
                self._line(self._text(key, state, reason, duration))
            if now - self._last_draw > 0.1 or self.done == self.total or state in FAILED:
                self._last_draw = now
                self._draw(key)
        else:
            stream = self.stream
            stream.write(self._text(one_line(key), state, reason, duration) + "\n")
            # A console sees the lines within a tenth of a second, and a
            # failure at once; a run of short tests does not pay a write
            # per test.
            now = time.monotonic()
            if now - self._last_draw > 0.1 or state in FAILED or self.done == self.total:
                self._last_draw = now
                stream.flush()

    def eta(self) -> Optional[float]:
        ran = self.done - self.done_at_start
        if ran <= 0:
            return None
        rate = ran / max(time.monotonic() - self.start, 1e-9)
        return (self.total - self.done) / rate

    def _draw(self, key: str) -> None:
        eta = self.eta()
        eta_text = f", ETA {eta:.0f}s" if eta is not None and self.done < self.total else ""
        line = self._stamp(f"[{self.done}/{self.total}] {self.failed} failed{eta_text}  {key}")
        # (no wider than the terminal: a longer line wraps, and the next
        # redraw would leave the wrapped part behind)
        width = shutil.get_terminal_size((120, 24)).columns - 1
        self.stream.write(f"\r\x1b[K{line[:max(width, 20)]}")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(f"\r\x1b[K{text}\n")

    def close(self) -> None:
        """The end of the lines (what is still held back was never committed,
        unless `release` printed it: it is not printed)."""
        if self.gone:
            return
        try:
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

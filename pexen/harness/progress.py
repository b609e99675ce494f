"""Progress on the console: a live one-line counter on a terminal, one plain
line per finished task otherwise (what a CI console wants)."""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import IO, Any, Optional

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


class Progress:
    """Called with (key, final state, reason) as each task ends."""

    def __init__(self, total: int, done: int = 0, stream: Optional[IO[str]] = None,
                 tty: Optional[bool] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = done
        self.failed = 0
        self.start = time.monotonic()
        self.done_at_start = done
        self._last_draw = 0.0
        self.gone = False   # the reader went away: nothing more is printed

    def __call__(self, key: str, state: str, reason: Optional[str]) -> None:
        self.done += 1
        if state in FAILED:
            self.failed += 1
        if self.gone:
            return
        try:
            self._show(key, state, reason)
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

    def _show(self, key: str, state: str, reason: Optional[str]) -> None:
        if self.tty:
            now = time.monotonic()
            key = one_line(key)
            if state in FAILED:
                self._line(f"{state.upper():7} {key}"
                           + (f": {one_line(reason)}" if reason else ""))
            if now - self._last_draw > 0.1 or self.done == self.total or state in FAILED:
                self._last_draw = now
                self._draw(key)
        else:
            text = f"{state.upper():7} {one_line(key)}"
            if reason and state != "pass":
                text += f": {one_line(reason)}"
            stream = self.stream
            stream.write(text + "\n")
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
        line = (f"[{self.done}/{self.total}] {self.failed} failed{eta_text}  {key}")[:120]
        self.stream.write(f"\r\x1b[K{line}")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(f"\r\x1b[K{text}\n")

    def close(self) -> None:
        if self.gone:
            return
        try:
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

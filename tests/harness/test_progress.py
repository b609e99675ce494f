"""Progress output: a live counter on a terminal, plain lines otherwise."""

import io
import os
import re

import pytest

from pexen.harness.progress import Progress


def test_plain_lines_when_not_a_tty():
    out = io.StringIO()
    p = Progress(3, stream=out, tty=False)
    p("a/b", "pass", None)
    p("a/c", "fail", "exit status 1")
    p("a/d", "skip", "dependency 'x' not met")
    assert out.getvalue().splitlines() == [
        "PASS    a/b",
        "FAIL    a/c: exit status 1",
        "SKIP    a/d: dependency 'x' not met",
    ]


def test_one_live_line_on_a_tty():
    out = io.StringIO()
    p = Progress(4, done=1, stream=out, tty=True)
    p("a", "pass", None)
    p("b", "error", "boom")
    p("c", "pass", None)
    p.close()
    text = out.getvalue()
    assert "\r\x1b[K" in text
    assert "[4/4] 1 failed" in text
    assert "ERROR   b: boom\n" in text   # failures stay on screen
    assert text.count("\n") == 2          # the failure line and the final newline
    assert p.eta() == 0


class _Console(io.StringIO):
    """Records what had been flushed, at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed = ""

    def flush(self):
        super().flush()
        self.flushed = self.getvalue()


def test_plain_lines_of_a_failure_and_the_last_task_reach_the_console_at_once():
    out = _Console()
    p = Progress(3, stream=out, tty=False)
    p._last_draw = 1e18   # as if it had just flushed
    p("a", "pass", None)
    assert "a" not in out.flushed          # a pass waits for the next flush
    p("b", "fail", "exit status 1")
    assert "FAIL    b: exit status 1" in out.flushed and "PASS    a" in out.flushed
    p("c", "pass", None)                   # the last one
    assert out.flushed.endswith("PASS    c\n")
    p("d", "pass", None)                   # (more than announced: close flushes)
    p.close()
    assert out.flushed.endswith("PASS    d\n")


def test_what_tasks_say_cannot_rewrite_the_console():
    """Keys and reasons come from tasks: escape sequences go, control
    characters and newlines are shown as escapes, one line per task stays
    one line."""
    from pexen.harness.progress import one_line

    assert one_line("plain ünïcode 👍") == "plain ünïcode 👍"
    assert one_line("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert one_line("\x1b[2J\x1b]0;title\x07red\x1b[0m") == "red"
    assert one_line("nul\x00 bell\x07 del\x7f c1\x85") == "nul\\x00 bell\\x07 del\\x7f c1\\x85"
    assert one_line("not utf-8 \udcff") == "not utf-8 \\xff"
    assert one_line(None) == ""
    out = io.StringIO()
    p = Progress(2, stream=out, tty=False)
    p("dir/evil\x1b[2J\nname", "fail", "AssertionError: one\ntwo\x00")
    p("ok", "pass", None)
    assert out.getvalue().splitlines() == [
        "FAIL    dir/evil\\nname: AssertionError: one\\ntwo\\x00",
        "PASS    ok",
    ]


def test_each_line_ends_with_the_tasks_duration_and_may_start_with_the_time():
    out = io.StringIO()
    p = Progress(4, stream=out, tty=False, timestamps=True)
    p("quick", "pass", None, 0.0123)
    p("slow", "fail", "exit status 1", 75.2)
    p("long", "pass", None, 3725.0)
    p("never", "skip", "dependency 'x' not met")
    lines = out.getvalue().splitlines()
    assert [line[9:] for line in lines] == [
        "PASS    quick [12ms]",
        "FAIL    slow: exit status 1 [1m 15s]",
        "PASS    long [1h 02m]",
        "SKIP    never: dependency 'x' not met",
    ]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d ", line[:9]) for line in lines)


def test_a_task_still_running_is_said_so():
    out = io.StringIO()
    p = Progress(2, stream=out, tty=False)
    p.still_running("net/dns", 61.5)
    assert out.getvalue() == "RUNNING net/dns: still running after 1m 01s\n"


def test_the_live_line_fits_the_terminal(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size(
        (40, 24)))
    out = io.StringIO()
    p = Progress(2, stream=out, tty=True)
    p("a" * 100, "pass", None)
    drawn = out.getvalue().split("\r\x1b[K")[-1]
    assert len(drawn) == 39 and drawn.startswith("[1/2] 0 failed")


def test_a_line_is_printed_once_the_journal_holds_the_finish(tmp_path):
    """Watched by a journal writer, the progress prints a task's line after
    the commit that holds its finish; a finish never committed is never
    printed."""
    from pexen import journal
    from pexen.journal import TaskState

    path = str(tmp_path / "j.sqlite")
    with journal.open(path) as j:
        run_id = j.create_run({"kind": "dir"}, {}, [("a", {}), ("b", {})], host="h",
                              boot_id="b", controller_pid=os.getpid(),
                              controller_started=0.0)
        out = io.StringIO()
        p = Progress(2, stream=out, tty=False)
        writer = j.writer(run_id)
        p.watched()
        writer.watch = p
        writer.transition("a", TaskState.QUEUED)
        writer.transition("a", TaskState.RUNNING)
        writer.transition("a", TaskState.PASS)
        p("a", "pass", None, 0.5)
        writer.flush()
        assert out.getvalue() == "PASS    a [500ms]\n"
        # the journal cannot take the next commit: its line never shows

        def full(*args):
            raise OSError(28, "No space left on device")

        writer._commit = full
        writer.transition("b", TaskState.QUEUED)
        p("b", "fail", "exit status 1", 0.1)
        with pytest.raises(journal.JournalError, match="no space left"):
            writer.flush()
        with pytest.raises(journal.JournalError):
            writer.close()
        p.close()   # (nothing more: b's finish was never committed)
        assert out.getvalue() == "PASS    a [500ms]\n"

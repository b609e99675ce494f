"""Progress output: a live counter on a terminal, plain lines otherwise."""

import io

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

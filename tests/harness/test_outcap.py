"""--max-output: each stream of an attempt keeps its head and its tail, the
middle is dropped (and counted) while the task writes, so a flood cannot
fill the disk; executables and Python tasks, both pools."""

import os
import re
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pexen.harness import _outcap
from pexen.harness.capture import ThreadCapture
from pexen.util import parse_size

from .test_cli import harness, states

MiB = 1 << 20
FLOOD = 40_000_000   # bytes a flooding test writes between its first and last line

FLOOD_SH = textwrap.dedent(f"""\
    #!/bin/sh
    echo START
    yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {FLOOD}
    echo END
    # what the disk holds of stdout now, while the test still runs
    sleep 0.5
    echo "blocks $(stat -L -c %b /proc/self/fd/1)" >&2
    """)

PY_SUITE = textwrap.dedent("""\
    import sys

    from pexen.sched.meta import func_meta


    @func_meta()
    def pyflood():
        print("PYSTART")
        line = "z" * 99 + "\\n"
        for _ in range(200_000):      # 20 MB
            sys.stdout.write(line)
        print("PYEND")
        print("to stderr", file=sys.stderr)
    """)


def _marker_count(data: bytes) -> int:
    found = re.findall(rb"\[pexen: (\d+) bytes of stdout dropped here: --max-output", data)
    assert len(found) == 1, data[-300:]
    return int(found[0])


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _expect(total: int, limit: int) -> int:
    head, tail = _outcap.split(limit)
    return total - head - tail


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_flooding_executable_keeps_head_and_tail(tmp_path, pool):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "flood.sh").write_text(FLOOD_SH)
    (suite / "flood.sh").chmod(0o755)
    res = harness("start", "suite", "--pool", pool, "--max-output", "1MiB", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert rows["flood"].state == "pass"
    out = tmp_path / "pexen-journal.sqlite.d" / str(run.id) / "flood" / "1.out"
    data = out.read_bytes()
    assert data.startswith(b"START\n0123456789")
    assert data.endswith(b"END\n")
    total = len(b"START\n") + FLOOD + len(b"END\n")
    assert _marker_count(data) == _expect(total, MiB)
    assert len(data) < MiB + 300
    # while the test ran, its stdout held about the cap on disk, not 40 MB
    err = (out.parent / "1.err").read_text()
    blocks = int(err.split()[1])
    assert blocks * 512 < 4 * MiB, err
    log = harness("log", "flood", cwd=tmp_path)
    assert f"({_marker_count(data)} bytes dropped by --max-output) <==" in log.stdout
    assert "bytes of stdout dropped here" in log.stdout
    assert "dropped by" not in log.stdout.split("==> stderr")[1].splitlines()[0]


@pytest.mark.parametrize("pool,workers", [("process", "2"), ("thread", "2"), ("thread", "1")])
def test_a_flooding_python_task_keeps_head_and_tail(tmp_path, pool, workers):
    (tmp_path / "pyflood.py").write_text(PY_SUITE)
    res = harness("start", "pyflood", "--pool", pool, "-j", workers, "--max-output", "256K",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    _, run = states(tmp_path / "pexen-journal.sqlite")
    task = tmp_path / "pexen-journal.sqlite.d" / str(run.id) / "pyflood"
    data = (task / "1.out").read_bytes()
    assert data.startswith(b"PYSTART\nzzz") and data.endswith(b"zz\nPYEND\n")
    total = len(b"PYSTART\n") + 200_000 * 100 + len(b"PYEND\n")
    assert _marker_count(data) == _expect(total, 256 << 10)
    # a stream under the cap is kept whole
    assert (task / "1.err").read_bytes() == b"to stderr\n"


def test_max_output_0_keeps_everything_and_resume_keeps_the_runs_cap(tmp_path):
    (tmp_path / "pyflood.py").write_text(PY_SUITE)
    res = harness("start", "pyflood", "--max-output", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.config["max_output"] == 0
    out = tmp_path / "pexen-journal.sqlite.d" / str(run.id) / "pyflood" / "1.out"
    assert out.stat().st_size == len(b"PYSTART\n") + 200_000 * 100 + len(b"PYEND\n")
    res = harness("start", "pyflood", cwd=tmp_path)
    _, run = states(tmp_path / "pexen-journal.sqlite")
    assert run.config["max_output"] == 64 * MiB


@pytest.mark.parametrize("value", ["abc", "-1", "1x", "M"])
def test_a_bad_max_output_is_a_usage_error(tmp_path, value):
    res = harness("start", "pyflood", f"--max-output={value}", cwd=tmp_path)
    assert res.returncode == 4
    assert "--max-output" in res.stderr and "not a size" in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()


# -- the pieces ------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 40_000), limit=st.integers(1, 20_000),
       cut=st.integers(0, 3))
def test_a_capped_copy_is_head_marker_tail(tmp_path_factory, size, limit, cut):
    content = bytes((i * 7 + i // 251) % 256 for i in range(size))
    path = tmp_path_factory.mktemp("cap") / "src"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        _outcap.copy_capped(fd, str(path) + ".copy", limit, cut, "stdout")
    finally:
        os.close(fd)
    dropped = _outcap.settle(str(path), limit, cut, "stdout")
    head, tail = _outcap.split(limit)
    assert head + tail == limit
    copy_path = str(path) + ".copy"
    copy = _read(copy_path) if os.path.exists(copy_path) else b""
    if size <= limit and not cut:
        assert dropped == 0 and path.read_bytes() == content
        assert copy == content
        return
    kept_tail = content[max(head, size - tail):] if size > head else b""
    expect_dropped = cut + max(0, size - head - tail)
    want = content[:head] + _outcap.marker(expect_dropped, limit, "stdout") + kept_tail
    assert dropped == expect_dropped
    assert path.read_bytes() == want == copy


def _write_for(fd: int, total: int) -> None:
    block = b"x" * 65536
    written = 0
    while written < total:
        written += os.write(fd, block)


def test_the_trimmer_keeps_a_file_being_written_small(tmp_path):
    path = str(tmp_path / "out")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    trim = _outcap.Trimmer(MiB)
    trim.watch(path)
    try:
        for _ in range(40):
            _write_for(fd, MiB)
            time.sleep(0.01)
        time.sleep(0.5)
        st_ = os.fstat(fd)
        assert st_.st_size == 40 * MiB      # the writer's offset is untouched
        assert st_.st_blocks * 512 < 4 * MiB
    finally:
        cut = trim.forget(path)
        os.close(fd)
    assert cut == 0
    assert _outcap.settle(path, MiB, cut, "stdout") == 39 * MiB
    assert os.path.getsize(path) < MiB + 200


def test_without_holes_the_file_is_cut_back_and_the_cut_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(_outcap, "_punch", lambda fd, offset, length: False)
    path = str(tmp_path / "out")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    trim = _outcap.Trimmer(MiB)
    trim.watch(path)
    try:
        for _ in range(40):
            _write_for(fd, MiB)
            time.sleep(0.01)
        time.sleep(0.5)
        assert os.fstat(fd).st_size < 4 * MiB
        os.write(fd, b"LAST\n")
    finally:
        cut = trim.forget(path)
        os.close(fd)
    assert cut > 0
    dropped = _outcap.settle(path, MiB, cut, "stdout")
    data = _read(path)
    assert data.endswith(b"LAST\n") and data.startswith(b"x" * 1000)
    # every byte written is either kept or counted (the tail kept is what
    # came after the last cut: shorter than half the cap)
    kept = len(data) - len(_outcap.marker(dropped, MiB, "stdout"))
    assert dropped + kept == 40 * MiB + 5
    assert _marker_count(data) == dropped


def test_a_thread_capture_settles_its_files_when_closed(tmp_path):
    out, err = str(tmp_path / "1.out"), str(tmp_path / "1.err")
    with ThreadCapture(out, err, limit=64 << 10) as capture:
        stream = capture.stream(0)
        for i in range(10_000):
            stream.write(f"line {i:05d}\n")
    data = _read(out)
    assert data.startswith(b"line 00000\n") and data.endswith(b"line 09999\n")
    assert _marker_count(data) == 10_000 * 11 - (64 << 10)
    assert not os.path.exists(err)


@pytest.mark.parametrize("text,value", [("0", 0), ("100", 100), ("64MiB", 64 * MiB),
                                        ("64M", 64 * MiB), ("64MB", 64_000_000),
                                        ("1.5G", 3 << 29), ("500k", 500 << 10)])
def test_sizes_as_people_write_them(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-5", "5X", "nan", "inf", "1e400"])
def test_sizes_that_are_not(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)

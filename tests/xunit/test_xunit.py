"""pexen.xunit: JUnit XML that the schema Jenkins validates against accepts,
whatever the tests printed."""

import os
import pathlib

import pytest
import xmlschema
from junitparser import JUnitXml

from pexen.xunit import Attempt, Case, SubResult, clean, names, read_capped, write

XSD = pathlib.Path(__file__).resolve().parents[1] / "junit-10.xsd"


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(XSD))  # the schema Jenkins' xUnit plugin uses


def check(path, schema, tests, failures, errors, skipped):
    """Valid against the schema, and junitparser reads back the counts."""
    schema.validate(str(path))
    xml = JUnitXml.fromfile(str(path))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (tests, failures, errors,
                                                                   skipped)
    return xml


def test_mapping_of_each_outcome(tmp_path, schema):
    out = tmp_path / "t.out"
    out.write_text("some output\n")
    cases = [
        Case("net/dns/resolve", "pass", time=0.12345, stdout=str(out)),
        Case("net/dns/slow", "warn", "took 3 s"),
        Case("disk/smart", "skip", "dependency 'disk' not met: its provider disk/fmt failed"),
        Case("disk/fmt", "fail", "exit status 1", exc_type="TaskOutcome",
             details="Traceback ...\nTaskOutcome: exit status 1"),
        Case("hw/hang", "timeout", "still running after its 2 s limit"),
        Case("boom", "error", "RuntimeError: boom", exc_type="RuntimeError"),
    ]
    path = tmp_path / "results.xml"
    counts = write(str(path), "smoke", cases, timestamp=0.0, hostname="box")
    assert counts == {"tests": 6, "failures": 1, "errors": 2, "skipped": 1}
    xml = check(path, schema, 6, 1, 2, 1)
    suite = next(iter(xml))
    assert suite.name == "smoke" and suite.timestamp == "1970-01-01T00:00:00.000+00:00"
    by_name = {case.name: case for case in suite}
    assert by_name["resolve"].classname == "net.dns"
    assert by_name["resolve"].time == pytest.approx(0.123)
    assert 'time="0.123"' in path.read_text()
    assert by_name["resolve"].system_out == "some output\n"
    assert by_name["boom"].classname == "smoke"  # a one-part key gets the suite's name
    slow = by_name["slow"]
    assert slow.is_passed and slow.system_out.startswith("pexen: warn: took 3 s")
    [skipped] = by_name["smart"].result
    assert "disk/fmt failed" in skipped.message
    [failure] = by_name["fmt"].result
    assert failure.type == "TaskOutcome" and failure.message == "exit status 1"
    assert "Traceback" in failure.text
    [timeout] = by_name["hang"].result
    assert timeout._tag == "error" and timeout.type == "timeout"
    assert "timeout" in timeout.message


def test_an_assert_is_a_failure_and_an_exit_status_shows_the_end_of_stderr(tmp_path, schema):
    """As pytest: a Python `assert` that does not hold is a <failure> (the
    journal says `error`). A failure without a traceback (an executable's
    exit status) has the message, then the end of its stderr, as its text."""
    err = tmp_path / "t.err"
    err.write_text("".join(f"line {i}\n" for i in range(2000)) + "disk full\x1b[0m\n")
    cases = [
        Case("py/assert", "error", "AssertionError: 1 == 2", exc_type="AssertionError",
             details="Traceback ...\nAssertionError: 1 == 2"),
        Case("py/boom", "error", "RuntimeError: boom", exc_type="RuntimeError"),
        Case("sh/fmt", "fail", "exit status 1", exc_type="TaskOutcome", stderr=str(err)),
        Case("sh/quiet", "fail", "exit status 2", exc_type="TaskOutcome"),
    ]
    path = tmp_path / "r.xml"
    counts = write(str(path), "s", cases)
    assert counts == {"tests": 4, "failures": 3, "errors": 1, "skipped": 0}
    by_name = {case.name: case for case in next(iter(check(path, schema, 4, 3, 1, 0)))}
    [failure] = by_name["assert"].result
    assert failure._tag == "failure" and failure.type == "AssertionError"
    assert "Traceback" in failure.text
    [error] = by_name["boom"].result
    assert error._tag == "error"
    [failure] = by_name["fmt"].result
    assert failure.message == "exit status 1"
    assert failure.text.startswith("exit status 1\n\nits stderr ends:\n")
    assert failure.text.endswith("line 1999\ndisk full")
    assert "line 0\n" not in failure.text and "\x1b" not in failure.text
    [failure] = by_name["quiet"].result
    assert failure.text == "exit status 2"


HOSTILE_BYTES = (b"NUL\x00 BEL\x07 ESC-colour \x1b[31mred\x1b[0m bad-utf8 \xff\xfe "
                 b"half-seq \xe2\x82 cdata ]]> lt < amp & quote \" non-ascii \xc3\xa9\xe2\x82\xac"
                 b" vt\x0b ff\x0c del\x7f\n")


def test_hostile_output_and_messages(tmp_path, schema):
    out = tmp_path / "hostile.out"
    out.write_bytes(HOSTILE_BYTES)
    surrogate = "lone surrogate \ud800 and escaped byte \udcff"
    cases = [
        Case("ünïcödé/tëst \x1b[1mbold\x1b[0m", "fail", "]]> <tag> & \x00 " + surrogate,
             details="trace \x1b[31m]]>\x00", stdout=str(out), stderr=str(out)),
        Case("ok/πασσ", "pass", stdout=str(out)),
    ]
    path = tmp_path / "hostile.xml"
    write(str(path), "hostile \x00 suite", cases)
    xml = check(path, schema, 2, 1, 0, 0)
    suite = next(iter(xml))
    case = next(c for c in suite if c.classname.startswith("ünïcödé"))
    assert case.name == "tëst bold"           # ANSI stripped from names
    [failure] = case.result
    assert failure.message.startswith("]]> <tag> & \\x00 lone surrogate \\ud800")
    assert "escaped byte \\xff" in failure.message
    text = case.system_out
    assert "NUL\\x00 BEL\\x07" in text and "ESC-colour red bad-utf8 \\xff\\xfe" in text
    assert "half-seq \\xe2\\x82" in text and "]]> lt < amp & quote \"" in text
    assert "non-ascii é€" in text and "vt\\x0b ff\\x0c" in text
    assert "\x1b" not in path.read_text(encoding="utf-8")


def test_big_output_is_capped_head_and_tail(tmp_path, schema):
    out = tmp_path / "big.out"
    with open(out, "w") as f:
        f.write("HEAD-MARK\n")
        for _ in range(10 * 1024 * 1024 // 80):
            f.write("y" * 79 + "\n")
        f.write("TAIL-MARK\n")
    path = tmp_path / "big.xml"
    write(str(path), "big", [Case("floods", "error", "hung", stdout=str(out))], cap=100_000)
    xml = check(path, schema, 1, 0, 1, 0)
    text = next(iter(next(iter(xml)))).system_out
    assert text.startswith("HEAD-MARK") and text.rstrip().endswith("TAIL-MARK")
    assert len(text) < 101_000
    assert f"bytes here; the whole stream is in {out}" in text
    assert os.path.getsize(path) < 200_000


def test_attempts_become_flaky_or_rerun_children(tmp_path, schema):
    first = tmp_path / "1.out"
    first.write_text("attempt one said this\n")
    cases = [
        Case("flaky", "pass", attempts=[Attempt(1, "interrupted", "its controller died",
                                                str(first))]),
        Case("broken", "fail", "exit status 1",
             attempts=[Attempt(1, "interrupted", "its controller died"),
                       Attempt(2, "interrupted", "stopped by a signal")]),
    ]
    path = tmp_path / "attempts.xml"
    write(str(path), "s", cases)
    check(path, schema, 2, 1, 0, 0)
    text = path.read_text()
    assert ('<flakyFailure type="interrupted" message="attempt 1: interrupted: its controller '
            'died"><system-out>attempt one said this\n</system-out></flakyFailure>') in text
    assert text.count("<rerunFailure") == 2


def test_subresults_in_the_message_or_as_cases(tmp_path, schema):
    case = Case("hw/net", "fail", "link down", subresults=[
        SubResult("ping", "pass"), SubResult("iperf", "fail", "12 Mbit/s < 100")])
    path = tmp_path / "in-message.xml"
    write(str(path), "s", [case])
    xml = check(path, schema, 1, 1, 0, 0)
    tc = next(iter(next(iter(xml))))
    [failure] = tc.result
    assert failure.message == "link down; sub-results: ping: pass; iperf: fail (12 Mbit/s < 100)"
    assert tc.system_out.startswith("pexen: sub-result ping: pass\n"
                                    "pexen: sub-result iperf: fail: 12 Mbit/s < 100")
    path = tmp_path / "as-cases.xml"
    write(str(path), "s", [case], subresults="cases")
    xml = check(path, schema, 3, 2, 0, 0)
    got = {(c.classname, c.name) for c in next(iter(xml))}
    assert got == {("hw", "net"), ("hw.net", "ping"), ("hw.net", "iperf")}
    with pytest.raises(ValueError, match="subresults must be"):
        write(str(tmp_path / "x.xml"), "s", [case], subresults="everything")


def test_write_is_atomic(tmp_path, schema):
    path = tmp_path / "r.xml"
    path.write_text("old contents")

    class Boom(Exception):
        pass

    class Exploding(Case):
        """Fails half-way through writing (its output is read then)."""

        @property
        def stdout(self):
            raise Boom()

        @stdout.setter
        def stdout(self, value):
            pass

    with pytest.raises(Boom):
        write(str(path), "s", [Case("a", "pass"), Exploding("b", "pass")])
    assert path.read_text() == "old contents"       # the old file stays whole
    assert os.listdir(tmp_path) == ["r.xml"]         # no temporary file left
    write(str(path), "s", [Case("a", "pass")])
    check(path, schema, 1, 0, 0, 0)


def test_helpers():
    assert names("a/b/c", "s") == ("a.b", "c")
    assert names("single", "s") == ("s", "single")
    assert clean("\x1b[32mok\x1b[0m\x01") == "ok\\x01"
    assert read_capped(None) == "" and read_capped("/nonexistent/file") == ""

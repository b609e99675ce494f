"""JUnit XML (xUnit) for Jenkins, from stored results.

A function over plain rows, not live objects (the harness reads them from
the journal): `write(path, suite, cases)` writes one ``<testsuites>`` file
with one ``<testsuite>``, atomically (a temporary file in the same
directory, then a rename). Each `Case` is one task with its final outcome:

====================  ===========================================================
outcome               element
====================  ===========================================================
pass                  (none)
warn                  (none: passed) ``pexen: warn: MESSAGE`` atop system-out
skip                  ``<skipped message=REASON>``
fail                  ``<failure type=... message=...>`` with the traceback
timeout               ``<error type="timeout" message="timeout: ...">``
error                 ``<error type=... message=...>`` with the traceback
                      (an ``AssertionError``: ``<failure>``, as pytest has it)
====================  ===========================================================

A failure without a traceback (an executable's exit status: the journal
keeps none, it would be pexen's own) has the message, then the end of the
test's stderr, as its text.

Earlier attempts of the task (a controller died under them) become
``<flakyFailure>`` (the final attempt passed) or ``<rerunFailure>`` children.
Sub-results (reported by the task) are listed in the message and atop
system-out, or become test cases of their own (``subresults="cases"``).

Text is cleaned for XML 1.0: characters it cannot hold are shown as
``\\xNN`` (``\\uNNNN`` above U+00FF), bytes that were not UTF-8 as ``\\xNN``,
ANSI escape sequences are removed; each output stream is capped (head and
tail kept, the cut said in place with the path of the whole log).

Built with the standard library's ElementTree, one test case at a time, so
a run of 100k tasks does not sit in memory as one tree.
"""

from __future__ import annotations

import datetime
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .util import write_atomically

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import IO, Iterable, List, Optional, Sequence

#: Characters kept from each captured stream, by default.
DEFAULT_CAP = 100_000

FAILING = {"fail": "failure", "timeout": "error", "error": "error"}

#: The end of a failed test's stderr given as its failure's text when there
#: is no traceback (an executable's exit status), in characters.
STDERR_TAIL = 4000


def _kind(case: Case) -> Optional[str]:
    """"failure", "error" or None: an `assert` that does not hold is the test
    failing, as pytest reports it, though the journal says `error`."""
    kind = FAILING.get(case.outcome)
    if kind == "error" and case.exc_type == "AssertionError":
        return "failure"
    return kind

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class SubResult:
    """A result a task reported besides its own (`pexen.report`)."""

    name: str
    outcome: str
    message: Optional[str] = None


@dataclass
class Attempt:
    """An earlier attempt of a task, cut short (its controller died, the
    machine rebooted): `outcome` is what became of it ("interrupted")."""

    number: int
    outcome: str
    message: Optional[str] = None
    stdout: Optional[str] = None     # path of its captured output, if any
    stderr: Optional[str] = None


@dataclass
class Case:
    """One task: its key (``a/b/c``), final outcome and what explains it."""

    key: str
    outcome: str
    message: Optional[str] = None
    time: float = 0.0
    exc_type: Optional[str] = None
    details: Optional[str] = None    # a traceback, say
    stdout: Optional[str] = None     # path of the last attempt's output
    stderr: Optional[str] = None
    attempts: List[Attempt] = field(default_factory=list)
    subresults: List[SubResult] = field(default_factory=list)


def clean(text: Optional[str]) -> str:
    """`text` as XML 1.0 can hold it: ANSI escapes removed; other characters
    it cannot hold (control characters, lone surrogates) shown as escapes;
    bytes decoded with surrogateescape shown as ``\\xNN``."""
    if not text:
        return ""
    text = _ANSI.sub("", text)
    return _NOT_XML.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:          # a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def read_capped(path: Optional[str], cap: int = DEFAULT_CAP) -> str:
    """A captured stream, cleaned, at most about `cap` characters: the head
    and the tail, the cut said in place with the whole file's path."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= cap:
                return clean(f.read().decode("utf-8", "surrogateescape"))
            half = max(cap // 2, 1)
            head = f.read(half)
            f.seek(size - half)
            tail = f.read(half)
    except OSError:
        return ""
    cut = size - 2 * half
    return (clean(head.decode("utf-8", "surrogateescape"))
            + f"\n[... pexen cut {cut:,} bytes here; the whole stream is in {path} ...]\n"
            + clean(tail.decode("utf-8", "surrogateescape")))


def names(key: str, suite: str) -> tuple:
    """(classname, name) of a task key: ``net/dns/resolve`` ->
    (``net.dns``, ``resolve``); a one-part key gets the suite's name. In a
    name's parameter id (``test_x[...]``), ``%2F`` and ``%25`` are ``/``
    and ``%`` (as pexen.harness.pytestsuite.node_key writes them), so a
    pytest test keeps the name ``pytest --junitxml`` gives it."""
    parts = [p for p in clean(key).split("/") if p] or [clean(key) or "?"]
    name = parts[-1]
    if "[" in name:   # a parameter id of a pytest test: '/' and '%' as its key has them
        head, _, param = name.partition("[")
        name = head + "[" + param.replace("%2F", "/").replace("%25", "%")
    if len(parts) == 1:
        return suite, name
    return ".".join(parts[:-1]), name


def _time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def _message(case: Case) -> str:
    message = case.message or ""
    if case.subresults:
        listed = "; ".join(f"{r.name}: {r.outcome}" + (f" ({r.message})" if r.message else "")
                           for r in case.subresults)
        message = f"{message}; sub-results: {listed}" if message else f"sub-results: {listed}"
    return clean(message)


def _case_element(case: Case, suite: str, cap: int, with_subresults: bool) -> ET.Element:
    classname, name = names(case.key, suite)
    el = ET.Element("testcase", classname=classname, name=name, time=_time(case.time))
    message = _message(case) if with_subresults else clean(case.message)
    kind = _kind(case)
    if kind is not None:
        if case.outcome == "timeout":
            kind_type = "timeout"
            if "timeout" not in message:
                message = f"timeout: {message}" if message else "timeout"
        else:
            kind_type = clean(case.exc_type) or case.outcome
        sub = ET.SubElement(el, kind, type=kind_type, message=message)
        sub.text = clean(case.details) or _with_stderr_tail(message, case.stderr)
    elif case.outcome == "skip":
        ET.SubElement(el, "skipped", message=message).text = message
    final_ok = case.outcome in ("pass", "warn", "skip")
    for attempt in case.attempts:
        tag = "flakyFailure" if final_ok else "rerunFailure"
        rerun = ET.SubElement(el, tag, type=clean(attempt.outcome),
                              message=clean(f"attempt {attempt.number}: {attempt.outcome}"
                                            + (f": {attempt.message}" if attempt.message
                                               else "")))
        out = read_capped(attempt.stdout, cap)
        if out:
            ET.SubElement(rerun, "system-out").text = out
        err = read_capped(attempt.stderr, cap)
        if err:
            ET.SubElement(rerun, "system-err").text = err
    head = []
    if case.outcome == "warn":
        head.append(f"pexen: warn: {clean(case.message)}")
    if with_subresults:
        for r in case.subresults:
            head.append(clean(f"pexen: sub-result {r.name}: {r.outcome}"
                              + (f": {r.message}" if r.message else "")))
    out = read_capped(case.stdout, cap)
    if head:
        out = "\n".join(head) + ("\n\n" + out if out else "\n")
    if out:
        ET.SubElement(el, "system-out").text = out
    err = read_capped(case.stderr, cap)
    if err:
        ET.SubElement(el, "system-err").text = err
    return el


def _with_stderr_tail(message: str, stderr: Optional[str]) -> str:
    """A failure's text without a traceback (an executable's exit status):
    the message, then the end of what the test wrote to stderr."""
    if not stderr:
        return message
    try:
        with open(stderr, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - STDERR_TAIL))
            tail = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return message
    tail = clean(tail).strip("\n")
    if not tail:
        return message
    said = "its stderr ends" if size > STDERR_TAIL else "its stderr"
    return f"{message}\n\n{said}:\n{tail}"


def _expand(cases: Iterable[Case], subresults: str) -> Iterable[tuple]:
    """(case, with sub-results in its message) pairs; with "cases", each
    sub-result also as a case of its own, ``KEY/NAME``."""
    for case in cases:
        if subresults != "cases" or not case.subresults:
            yield case, True
            continue
        yield case, False
        for r in case.subresults:
            yield Case(key=f"{case.key}/{r.name}", outcome=r.outcome, message=r.message), True


_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"})


def _attr(name: str, value: str) -> str:
    return f' {name}="{value.translate(_ATTR_ESCAPES)}"'


def write(path: str, suite: str, cases: Sequence[Case], *, timestamp: Optional[float] = None,
          hostname: Optional[str] = None, cap: int = DEFAULT_CAP,
          subresults: str = "message", properties: Sequence[tuple] = ()) -> dict:
    """Write the JUnit XML file; return the counts written (tests, failures,
    errors, skipped). `subresults`: "message" (listed in the case's message
    and system-out) or "cases" (each its own test case too)."""
    if subresults not in ("message", "cases"):
        raise ValueError(f"subresults must be 'message' or 'cases', not {subresults!r}")
    suite = clean(suite) or "pexen"
    expanded = list(_expand(cases, subresults))
    counts = {"tests": len(expanded), "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for case, _ in expanded:
        kind = _kind(case)
        if kind == "failure":
            counts["failures"] += 1
        elif kind == "error":
            counts["errors"] += 1
        elif case.outcome == "skip":
            counts["skipped"] += 1
        total += max(case.time, 0.0)
    write_atomically(path, lambda f: _write_to(f, suite, expanded, counts, total, timestamp,
                                               hostname, cap, properties),
                     ".pexen-xunit-", ".xml")
    return counts


def _write_to(f: IO[str], suite: str, expanded: List[tuple], counts: dict, total: float,
              timestamp: Optional[float], hostname: Optional[str], cap: int,
              properties: Sequence[tuple]) -> None:
    f.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites')
    for name in ("tests", "failures", "errors"):
        f.write(_attr(name, str(counts[name])))
    f.write(_attr("time", _time(total)) + _attr("name", suite) + ">\n<testsuite")
    f.write(_attr("name", suite))
    for name in ("tests", "failures", "errors", "skipped"):
        f.write(_attr(name, str(counts[name])))
    f.write(_attr("time", _time(total)))
    if timestamp is not None:
        when = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
        f.write(_attr("timestamp", when.isoformat(timespec="milliseconds")))
    if hostname:
        f.write(_attr("hostname", clean(hostname)))
    f.write(">\n")
    if properties:
        props = ET.Element("properties")
        for name, value in properties:
            ET.SubElement(props, "property", name=clean(str(name)), value=clean(str(value)))
        f.write(ET.tostring(props, encoding="unicode") + "\n")
    write = f.write
    for case, with_sub in expanded:
        if (case.outcome == "pass" and case.stdout is None and case.stderr is None
                and not case.attempts and not case.subresults):
            # Most cases of a big run: a bare element, the same text ElementTree
            # writes for it, without building one.
            classname, name = names(case.key, suite)
            write(f'<testcase{_attr("classname", classname)}{_attr("name", name)}'
                  f'{_attr("time", _time(case.time))} />\n')
            continue
        el = _case_element(case, suite, cap, with_sub)
        write(ET.tostring(el, encoding="unicode"))
        write("\n")
    f.write("</testsuite>\n</testsuites>\n")


__all__ = ["Attempt", "Case", "DEFAULT_CAP", "SubResult", "clean", "names", "read_capped",
           "write"]

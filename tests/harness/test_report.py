"""Several results per task: pexen.report() and pexen-harness report. The
final outcome is the worst; the results are journaled and exported."""

import os
import pathlib
import sys
import textwrap

import pytest
import xmlschema
from junitparser import JUnitXml

import pexen
import pexen.journal as journal

from .test_cli import harness, states

XSD = pathlib.Path(__file__).resolve().parents[1] / "junit-10.xsd"
BIN = os.path.dirname(sys.executable)

SUITE = textwrap.dedent('''
    import os

    import pexen
    from pexen.harness.outcome import TaskOutcome
    from pexen.harness.suite import ExecutableTask
    from pexen.sched import meta

    HERE = os.path.dirname(os.path.abspath(__file__))


    @meta.func_meta(provides=["link"])
    def checks():
        pexen.report("ping", "pass")
        pexen.report("iperf", "fail", "12 Mbit/s < 100")


    @meta.func_meta(requires=["link"])
    def after_checks():
        pass


    @meta.func_meta(provides=["disk"])
    def warns_only():
        pexen.report("slow", "warn", "took long")
        return "value"


    @meta.func_meta(requires=["disk"])
    def after_warn():
        pass


    def own_error_wins():
        pexen.report("minor", "fail")
        raise RuntimeError("own error")


    def skip_beaten_by_fail():
        pexen.report("precheck", "fail", "broken")
        raise TaskOutcome("skip", "nothing to do")


    def bad_reports():
        try:
            pexen.report("x", "nonsense")
        except ValueError as exc:
            print("ValueError:", exc)
        try:
            pexen.report("", "pass")
        except ValueError as exc:
            print("ValueError:", exc)


    def reports_from_a_child():
        # another process reports for this task (under the thread pool the
        # task's variables are not in os.environ: hand them over)
        import subprocess
        import sys
        subprocess.run([sys.executable, "-m", "pexen.harness.cli", "report", "child-check",
                        "fail", "-m", "from a child"], check=True,
                       env={**os.environ, **pexen.context().env()})


    def tasks():
        exe = ExecutableTask(os.path.join(HERE, "exe.sh"), "exe")
        return [checks, after_checks, warns_only, after_warn, own_error_wins,
                skip_beaten_by_fail, bad_reports, exe, reports_from_a_child]
''')

EXE = """#!/bin/sh
pexen-harness report disk-a pass
pexen-harness report disk-b error -m "no such device"
pexen-harness report bad-one nonsense
echo "bad outcome: exit $?"
exit 0
"""


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_reported_results_decide_the_outcome(tmp_path, pool):
    (tmp_path / "repsuite.py").write_text(SUITE)
    (tmp_path / "exe.sh").write_text(EXE)
    (tmp_path / "exe.sh").chmod(0o755)
    env = {"PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    res = harness("start", "repsuite:tasks", "--pool", pool, "--xunit", "r.xml",
                  cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stderr
    rows, run = states(tmp_path / "pexen-journal.sqlite")
    assert rows["checks"].state == "fail"
    assert rows["checks"].reason == "reported iperf: fail: 12 Mbit/s < 100"
    assert rows["after_checks"].state == "skip"          # a failed result fails dependents
    assert rows["warns_only"].state == "warn"
    assert rows["after_warn"].state == "pass"            # warn still satisfies them
    assert rows["own_error_wins"].state == "error"
    assert rows["own_error_wins"].reason == "RuntimeError: own error"
    assert rows["skip_beaten_by_fail"].state == "fail"
    assert rows["bad_reports"].state == "pass"
    assert rows["exe"].state == "error" and "disk-b" in rows["exe"].reason
    assert rows["reports_from_a_child"].state == "fail"
    assert rows["reports_from_a_child"].reason == "reported child-check: fail: from a child"
    base = tmp_path / "pexen-journal.sqlite.d" / "1"
    bad = (base / "bad_reports" / "1.out").read_text()
    assert "ValueError: unknown outcome 'nonsense'" in bad and "needs a name" in bad
    assert (base / "exe" / "1.out").read_text() == "bad outcome: exit 4\n"
    assert "unknown outcome 'nonsense'" in (base / "exe" / "1.err").read_text()
    with journal.open(str(tmp_path / "pexen-journal.sqlite"), create=False) as j:
        got = [(r.key, r.attempt, r.name, r.outcome, r.message) for r in j.results(run.id)]
    assert ("checks", 1, "iperf", "fail", "12 Mbit/s < 100") in got
    assert ("exe", 1, "disk-b", "error", "no such device") in got
    assert not any(name == "bad-one" for _, _, name, _, _ in got)
    # exported: in the message and atop system-out
    xmlschema.XMLSchema(str(XSD)).validate(str(tmp_path / "r.xml"))
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "r.xml"))))
    cases = {c.name: c for c in suite}
    [failure] = cases["checks"].result
    assert failure.message == ("reported iperf: fail: 12 Mbit/s < 100; sub-results: "
                               "ping: pass; iperf: fail (12 Mbit/s < 100)")
    assert cases["checks"].system_out.startswith("pexen: sub-result ping: pass\n")
    as_cases = harness("export", "--xunit", "c.xml", "--xunit-subresults", "cases",
                       cwd=tmp_path)
    assert as_cases.returncode == 0, as_cases.stderr
    names = {(c.classname, c.name) for c in next(iter(JUnitXml.fromfile(
        str(tmp_path / "c.xml"))))}
    assert ("checks", "iperf") in names and ("exe", "disk-b") in names


def test_report_outside_a_task(tmp_path):
    res = harness("report", "x", "pass", cwd=tmp_path)
    assert res.returncode == 4
    assert "no task context" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bad = harness("report", "x", "nonsense", cwd=tmp_path)
    assert bad.returncode == 4 and "unknown outcome 'nonsense'" in bad.stderr
    with pytest.raises(pexen.PexenError, match="no task context"):
        pexen.report("x", "pass")
    with pytest.raises(ValueError, match="unknown outcome"):
        pexen.report("x", "bogus")

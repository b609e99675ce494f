"""Real projects' own pytest suites, from their sdists on PyPI, run through
``pytest:`` and compared, test by test, with plain pytest of the same
checkout: the same tests, the same outcomes, the same JUnit names."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests import sdists

from .test_cli import harness, states


def junit_outcomes(path):
    """(classname, name) -> passed/failure/error/skipped of a JUnit file."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case
                 if child.tag in ("failure", "error", "skipped")]
        out[(case.get("classname"), case.get("name"))] = kinds[0] if kinds else "passed"
    return out


@pytest.fixture(scope="module", params=sorted(sdists.PROJECTS))
def checkout(request, tmp_path_factory):
    project = sdists.PROJECTS[request.param]
    try:
        top = sdists.unpack(project, tmp_path_factory.mktemp(project.name))
    except sdists.Unavailable as exc:
        pytest.skip(f"{project.name} {project.version} from PyPI: {exc}")
    return project, top


def test_a_real_suite_runs_as_under_pytest(checkout, tmp_path):
    project, top = checkout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEXEN_")}
    for i, (path, args) in enumerate(project.suites):
        theirs_xml, ours_xml = tmp_path / f"pytest{i}.xml", tmp_path / f"pexen{i}.xml"
        journal = tmp_path / f"journal{i}.sqlite"
        plain = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--junitxml", str(theirs_xml), *args.split(), path],
            cwd=top, env=env, capture_output=True, text=True, timeout=300)
        assert plain.returncode in (0, 1), plain.stdout[-2000:] + plain.stderr[-2000:]
        res = harness("start", f"pytest:{path}", "-j", "2", "--journal", str(journal),
                      "--xunit", str(ours_xml),
                      *([f"--pytest-args={args}"] if args else []),
                      cwd=top, env=env, timeout=300)
        assert res.returncode == plain.returncode, res.stdout[-3000:] + res.stderr[-3000:]
        theirs, ours = junit_outcomes(theirs_xml), junit_outcomes(ours_xml)
        assert len(theirs) > 100, (path, len(theirs))
        assert ours == theirs, (path, set(ours.items()) ^ set(theirs.items()))
        rows, run = states(journal)
        assert len(rows) == len(theirs)
        assert {row.state for row in rows.values()} <= {"pass", "skip"}, \
            {k: (r.state, r.reason) for k, r in rows.items() if r.state not in ("pass", "skip")}

"""Tests written for restraint or tmt, run unchanged: rstrnt-report-result,
rhts-report-result and tmt-report-result record results of the task (the
worst wins), rstrnt-reboot, rhts-reboot and tmt-reboot ask for a reboot.
The commands come from pexen's own entry on the task's PATH: the PATH the
runs here are given does not lead to the virtual environment's bin."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import pexen.journal as journal
from pexen.harness import compat
from pexen.harness.context import COMPAT_BIN

from .test_cli import harness, states

# no virtual environment's bin, no pexen-harness: what a task finds is pexen's own
PATH = "/usr/bin:/bin"
COMMANDS = ("rstrnt-report-result", "rhts-report-result", "tmt-report-result",
            "rstrnt-reboot", "rhts-reboot", "tmt-reboot")

SCRIPTS = {
    "rstrnt.sh": """
        case "$(command -v rstrnt-report-result)" in
            */pexen/harness/_compat_bin/rstrnt-report-result) ;;
            *) echo "not pexen's: $(command -v rstrnt-report-result)" >&2; exit 1 ;;
        esac
        rstrnt-report-result setup PASS || exit 1
        rstrnt-report-result --message "slow disk" disk WARN 42 || exit 1
        """,
    "rhts.sh": """
        rhts-report-result legacy PASS "" || exit 1
        rhts-report-result legacy-log FAIL "$0" 7 || exit 1
        """,
    "tmt.sh": """
        tmt-report-result -o "$0" check SKIP || exit 1
        tmt-report-result --message=fine ok pass || exit 1
        """,
    "worst.sh": """
        rstrnt-report-result a PASS && rstrnt-report-result b WARN &&
        tmt-report-result c SKIP && rhts-report-result d FAIL "" &&
        rstrnt-report-result e NONE || exit 1
        """,
    "none.sh": """
        rstrnt-report-result -- note NONE || exit 1
        tmt-report-result / info || exit 1
        rstrnt-report-result "$TEST" NONE -t "no TEST" || exit 1
        """,
    "usage.sh": """
        n=0
        try() { n=$((n+1)); "$@" 2>"$OUT/err$n"; echo $? > "$OUT/rc$n"; }
        try rstrnt-report-result
        try rstrnt-report-result only-a-name
        try rstrnt-report-result name MAYBE
        try rstrnt-report-result --bogus name PASS
        try tmt-report-result name PASS -o
        try rhts-report-result only-a-name
        try rstrnt-report-result a PASS 1 x y
        try tmt-reboot -c "dnf system-upgrade reboot"
        try tmt-reboot -s
        exit 0
        """,
}

# (what the errors of usage.sh say, in order: the command, then a part of its line)
USAGE_ERRORS = [
    ("rstrnt-report-result", "TESTNAME and RESULT are needed; usage: rstrnt-report-result "
                             "[OPTION...] TESTNAME RESULT [SCORE]"),
    ("rstrnt-report-result", "RESULT is missing"),
    ("rstrnt-report-result", "unknown result 'MAYBE'; one of PASS, WARN, FAIL, SKIP, ERROR, "
                             "NONE, INFO"),
    ("rstrnt-report-result", "unknown option --bogus"),
    ("tmt-report-result", "option -o needs a value"),
    ("rhts-report-result", "RESULT is missing; usage: rhts-report-result TESTNAME RESULT "
                           "[LOGFILE [METRIC]]"),
    ("rstrnt-report-result", "too many arguments (5)"),
    ("tmt-reboot", "-c COMMAND is not supported"),
    ("tmt-reboot", "-s (soft reboot) is not supported"),
]


def write_suite(where, scripts):
    where.mkdir()
    for name, body in scripts.items():
        path = where / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(0o755)


def results(path, key):
    with journal.open(str(path), create=False) as j:
        run = j.runs()[-1]
        return [(r.name, r.outcome, r.message) for r in j.results(run.id, key)]


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_restraint_and_tmt_commands_record_results(tmp_path, pool):
    suite = tmp_path / "suite"
    write_suite(suite, SCRIPTS)
    out = tmp_path / "out"
    out.mkdir()
    res = harness("start", str(suite), "--pool", pool, "--xunit", "r.xml", cwd=tmp_path,
                  env={"PATH": PATH, "OUT": str(out), "TEST": ""})
    assert res.returncode == 1, res.stdout + res.stderr
    db = tmp_path / "pexen-journal.sqlite"
    rows, _ = states(db)
    assert results(db, "rstrnt") == [("setup", "pass", None),
                                      ("disk", "warn", "slow disk; score 42")]
    assert rows["rstrnt"].state == "warn"
    assert rows["rstrnt"].reason == "reported disk: warn: slow disk; score 42"
    assert results(db, "rhts") == [("legacy", "pass", None),
                                    ("legacy-log", "fail", f"score 7; log {suite}/rhts.sh")]
    assert rows["rhts"].state == "fail"
    assert results(db, "tmt") == [("check", "skip", f"log {suite}/tmt.sh"),
                                   ("ok", "pass", "fine")]
    assert rows["tmt"].state == "skip"
    # the worst of them wins; NONE is informational (pexen's mildest outcome)
    assert [r[:2] for r in results(db, "worst")] == [
        ("a", "pass"), ("b", "warn"), ("c", "skip"), ("d", "fail"), ("e", "pass")]
    assert rows["worst"].state == "fail" and rows["worst"].reason == "reported d: fail"
    # an empty name or "/" (tmt's "the test itself") is the task's
    assert results(db, "none") == [("note", "pass", "NONE (informational)"),
                                   ("none", "pass", "INFO (informational)"),
                                   ("none", "pass", "NONE (informational); no TEST")]
    assert rows["none"].state == "pass"
    # bad usage: one line on stderr, exit 4, nothing recorded
    for n, (prog, text) in enumerate(USAGE_ERRORS, 1):
        err = (out / f"err{n}").read_text()
        assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and text in err, err
        assert (out / f"rc{n}").read_text() == "4\n", (n, err)
    assert results(db, "usage") == [] and rows["usage"].state == "pass"
    xml = (tmp_path / "r.xml").read_text()
    assert "pexen: sub-result disk: warn: slow disk; score 42" in xml
    assert "pexen: sub-result d: fail" in xml


PY_SUITE = textwrap.dedent('''
    import os
    import subprocess

    import pexen


    def py_report():
        # under the thread pool the task's variables (PATH among them) are not
        # in os.environ: hand them over, as for pexen-harness report
        subprocess.run(["rstrnt-report-result", "-t", "from python", "py", "WARN"],
                       env={**os.environ, **pexen.context().env()}, check=True)


    def py_plain():
        # a worker process's environment is the task's
        subprocess.run(["tmt-report-result", "plain", "FAIL"], check=True)


    def tasks():
        return [py_report] + ([py_plain] if os.environ["TEST_POOL"] == "process" else [])
''')


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_python_task_reports_through_the_commands(tmp_path, pool):
    (tmp_path / "pysuite.py").write_text(PY_SUITE)
    res = harness("start", "pysuite:tasks", "--pool", pool, cwd=tmp_path,
                  env={"PATH": PATH, "TEST_POOL": pool})
    db = tmp_path / "pexen-journal.sqlite"
    rows, _ = states(db)
    assert results(db, "py_report") == [("py", "warn", "from python")]
    assert rows["py_report"].state == "warn"
    if pool == "process":
        assert res.returncode == 1, res.stdout + res.stderr
        assert results(db, "py_plain") == [("plain", "fail", None)]
        assert rows["py_plain"].state == "fail"
    else:
        assert res.returncode == 0, res.stdout + res.stderr


REBOOTING = {
    "boot.sh": """
        echo "boot $REBOOTCOUNT $TMT_REBOOT_COUNT $RSTRNT_REBOOTCOUNT"
        if [ "$TMT_REBOOT_COUNT" -eq 0 ]; then
            tmt-report-result before PASS
            tmt-reboot -t 600
            echo "tmt-reboot returned $?" >&2
            exit 1
        fi
        rstrnt-report-result after PASS
        """,
}

FAKE_REBOOT = """#!/bin/sh
cat /proc/sys/kernel/random/uuid > "$PEXEN_BOOT_ID_FILE"
"""


def test_tmt_reboot_reboots_and_the_test_carries_on(tmp_path):
    write_suite(tmp_path / "suite", REBOOTING)
    (tmp_path / "reboot.sh").write_text(FAKE_REBOOT)
    (tmp_path / "reboot.sh").chmod(0o755)
    (tmp_path / "bootid").write_text("first-boot\n")
    env = {"PATH": PATH, "PEXEN_BOOT_ID_FILE": str(tmp_path / "bootid"),
           "PEXEN_REBOOT_COMMAND": str(tmp_path / "reboot.sh")}
    first = harness("start", "suite", "--allow-reboot", cwd=tmp_path, env=env)
    assert first.returncode == 2, first.stdout + first.stderr
    second = harness("resume", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    db = tmp_path / "pexen-journal.sqlite"
    rows, _ = states(db)
    assert rows["boot"].state == "pass" and rows["boot"].reboot_count == 1
    assert results(db, "boot") == [("before", "pass", None), ("after", "pass", None)]
    log = tmp_path / "pexen-journal.sqlite.d" / "1" / "boot" / "1.out"
    assert log.read_text() == "boot 0 0 0\nboot 1 1 1\n"


def test_reboots_are_skips_in_a_run_that_does_not_allow_them(tmp_path):
    write_suite(tmp_path / "suite", {"rstrnt.sh": "rstrnt-reboot\necho returned $?\n",
                                     "rhts.sh": "exec rhts-reboot\n"})
    res = harness("start", "suite", cwd=tmp_path, env={"PATH": PATH})
    assert res.returncode == 0, res.stdout + res.stderr
    db = tmp_path / "pexen-journal.sqlite"
    rows, _ = states(db)
    # it carried on and exited 0, but the skip it reported stands
    assert rows["rstrnt"].state == "skip" and rows["rstrnt"].reason.startswith(
        "reported reboot: skip: asked for a reboot, and the run does not allow reboots")
    assert (tmp_path / "pexen-journal.sqlite.d" / "1" / "rstrnt" / "1.out").read_text() == (
        "returned 77\n")
    assert rows["rhts"].state == "skip" and rows["rhts"].reason == "exit status 77 (skip)"
    for key in ("rstrnt", "rhts"):
        assert [r[:2] for r in results(db, key)] == [("reboot", "skip")]


# -- outside a task ------------------------------------------------------------


def outside(command, *args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("PEXEN_")}
    full.update(env)
    return subprocess.run([os.path.join(COMPAT_BIN, command), *args], env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_outside_a_task_each_command_says_so(tmp_path, command):
    args = [] if command.endswith("reboot") else ["name", "PASS"]
    res = outside(command, *args)   # not even PEXEN_PYTHON
    assert res.returncode == 4
    assert res.stderr == (f"{command}: error: not run by a task of pexen-harness "
                          "(PEXEN_PYTHON is not set)\n")
    res = outside(command, *args, PEXEN_PYTHON=sys.executable)
    assert res.returncode == 4 and res.stdout == ""
    assert res.stderr.startswith(f"{command}: error: no task context")
    assert res.stderr.count("\n") == 1


def test_the_scripts_are_executable_and_named_in_compat():
    assert sorted(os.listdir(COMPAT_BIN)) == sorted(COMMANDS) == sorted(compat.COMMANDS)
    for name in COMMANDS:
        assert os.access(os.path.join(COMPAT_BIN, name), os.X_OK)


def test_a_task_has_the_commands_first_on_its_path_once(monkeypatch):
    from pexen.harness.context import TaskContext, task_path

    monkeypatch.setenv("PATH", "/somewhere:/usr/bin")
    ctx = TaskContext("j", 1, "t", 1, "tok", "/d/1/t/data")
    env = ctx.variables()
    assert env["PATH"] == f"{COMPAT_BIN}:/somewhere:/usr/bin"
    assert env["PEXEN_PYTHON"] == sys.executable
    monkeypatch.setenv("PATH", env["PATH"])   # (a worker's, after the first task)
    assert task_path() == env["PATH"]
    monkeypatch.setenv("PATH", "/elsewhere")  # changed since: followed
    assert task_path() == f"{COMPAT_BIN}:/elsewhere"


@pytest.mark.parametrize("args, options, positional", [
    (["n", "PASS"], {}, ["n", "PASS"]),
    (["-t", "m", "n", "PASS", "5"], {"--message": "m"}, ["n", "PASS", "5"]),
    (["n", "-tm x", "PASS"], {"--message": "m x"}, ["n", "PASS"]),
    (["--message=a=b", "n", "--outputfile", "f", "PASS"],
     {"--message": "a=b", "--outputfile": "f"}, ["n", "PASS"]),
    (["--no-plugins", "-p", "10_avc_check", "--port", "8081", "-s", "http://x", "n", "FAIL"],
     {"--no-plugins": "", "--disable-plugin": "10_avc_check", "--port": "8081",
      "--server": "http://x"}, ["n", "FAIL"]),
    (["--", "-n", "PASS"], {}, ["-n", "PASS"]),
])
def test_options_are_parsed_as_restraint_does(args, options, positional):
    assert compat.parse_options(args, compat._REPORT_OPTIONS) == (options, positional)


def test_help_and_a_wrong_first_argument(capsys):
    assert compat.main(["tmt-report-result", "--help"]) == 0
    assert "TESTNAME RESULT [SCORE]" in capsys.readouterr().out
    assert compat.main(["nonsense"]) == 4
    assert capsys.readouterr().err.count("\n") == 1


def test_the_scripts_ship_in_the_package_data():
    setup = (pathlib.Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "pexen.harness = _compat_bin/*" in setup


def test_an_installed_wheel_brings_the_commands(tmp_path):
    """The scripts travel in the wheel with their mode, and an installed copy
    (not the checkout) puts them on its tasks' PATH."""
    import zipfile

    root = pathlib.Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path / "wheel"), str(root)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = (tmp_path / "wheel").glob("pexen-*.whl")
    modes = {i.filename.rsplit("/", 1)[1]: i.external_attr >> 16 & 0o777
             for i in zipfile.ZipFile(whl).infolist()
             if i.filename.startswith("pexen/harness/_compat_bin/")}
    assert modes == {name: 0o755 for name in COMMANDS}
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--target", str(site), str(whl)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    write_suite(tmp_path / "suite", {"t.sh": """
        command -v rstrnt-report-result
        rstrnt-report-result installed WARN
        """})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEXEN_")}
    env.update(PYTHONPATH=str(site), PATH=PATH)
    res = subprocess.run([sys.executable, "-m", "pexen.harness.cli", "start", "suite"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    out = (tmp_path / "pexen-journal.sqlite.d" / "1" / "t" / "1.out").read_text()
    assert out == f"{site}/pexen/harness/_compat_bin/rstrnt-report-result\n"
    assert results(tmp_path / "pexen-journal.sqlite", "t") == [("installed", "warn", None)]

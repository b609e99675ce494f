"""Metadata for the executables of a directory suite: the comment block, the
sidecar TOML file, the directory's pexen.toml; malformed entries are errors
naming the file and the line."""

import pytest

from pexen.harness.suite import SuiteError, load_suite, parse_suite
from pexen.sched import meta

from .test_cli import harness, states


def exe(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + "".join(line + "\n" for line in lines) + "exit 0\n")
    path.chmod(0o755)
    return path


def write_suite(top, files):
    """Executables (name -> comment lines) and other files (name -> text)."""
    for name, body in files.items():
        if name.endswith(".sh"):
            exe(top / name, *body)
        else:
            (top / name).write_text(body)


def tasks_of(top):
    return dict(load_suite(parse_suite(str(top))))


def test_comment_sidecar_and_directory_defaults(tmp_path):
    top = tmp_path / "suite"
    exe(top / "net" / "up.sh", "# set up the link", "# pexen: provides=net,link priority=1")
    dns = exe(top / "net" / "dns.sh", "# pexen: requires=net timeout=30",
              "# pexen: rerun_on_interrupt=yes uses=dns-server")
    (top / "net" / "pexen.toml").write_text('claims = ["nic"]\ntimeout = 600\n')
    (top / "pexen.toml").write_text('priority = 5\nclaims = ["machine"]\n')
    (tmp_path / "suite" / "net" / "dns.sh.pexen.toml").write_text("timeout = 2.5\n")
    exe(top / "plain.sh")
    tasks = tasks_of(top)
    up, d, plain = tasks["net/up"], tasks["net/dns"], tasks["plain"]
    assert meta.get_provides(up) == {"net", "link"} and meta.get_priority(up) == 1
    assert meta.get_claims(up) == {"nic"}                 # the nearer pexen.toml wins
    assert meta.get_timeout(up) == 600
    assert meta.get_requires(d) == {"net"} and meta.get_uses(d) == {"dns-server"}
    assert meta.get_timeout(d) == 2.5                      # the sidecar wins
    assert meta.get_rerun_on_interrupt(d) is True
    assert meta.get_priority(plain) == 5 and meta.get_claims(plain) == {"machine"}
    assert "net/dns.sh.pexen.toml" not in tasks and dns.exists()


def test_metadata_drives_the_run(tmp_path):
    top = tmp_path / "suite"
    exe(top / "a-needs.sh", "# pexen: requires=thing")
    exe(top / "b-gives.sh", "# pexen: provides=thing", "exit 1")
    res = harness("start", str(top), cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows, _ = states(tmp_path / "pexen-journal.sqlite")
    assert rows["b-gives"].state == "fail"
    assert rows["a-needs"].state == "skip" and "b-gives failed" in rows["a-needs"].reason


@pytest.mark.parametrize("files,message", [
    ({"t.sh": ["# pexen: requires"]}, "t.sh:2: expected field=value, not 'requires'"),
    ({"t.sh": ["# pexen: color=blue"]}, "t.sh:2: unknown field 'color'"),
    ({"t.sh": ["# pexen: timeout=soon"]}, "t.sh:2: timeout must be a duration > 0 (seconds, "
     "or e.g. '5m', '1h 30m'), not 'soon'"),
    ({"t.sh": ["# pexen: timeout=-1"]}, "t.sh:2: timeout must be a duration > 0"),
    ({"t.sh": [], "t.sh.pexen.toml": "timeout = '5 fortnights'\n"},
     "t.sh.pexen.toml:1: timeout must be a duration > 0"),
    ({"t.sh": ["# pexen: rerun_on_interrupt=maybe"]}, "t.sh:2: rerun_on_interrupt must be"),
    ({"t.sh": ["# pexen: requires=a", "# pexen: requires=b"]},
     "t.sh:3: requires given twice (first at"),
    ({"t.sh": ["# pexen: requires=,"]}, "t.sh:2: requires must be a list of names"),
    ({"t.sh": [], "t.sh.pexen.toml": "timeout = [1\n"}, "t.sh.pexen.toml: "),
    ({"t.sh": [], "t.sh.pexen.toml": "\n\npriority = 'high'\n"},
     "t.sh.pexen.toml:3: priority must be a number"),
    ({"t.sh": [], "pexen.toml": "requires = [1, 2]\n"}, "pexen.toml:1: requires must be"),
    ({"t.sh": [], "pexen.toml": "colour = 'red'\n"}, "pexen.toml:1: unknown field 'colour'"),
])
def test_malformed_metadata_is_an_error_naming_file_and_line(tmp_path, files, message):
    top = tmp_path / "suite"
    write_suite(top, files)
    with pytest.raises(SuiteError) as info:
        tasks_of(top)
    assert message in str(info.value) and "\n" not in str(info.value)
    res = harness("start", str(top), cwd=tmp_path)
    assert res.returncode == 4 and message in res.stderr
    assert not (tmp_path / "pexen-journal.sqlite").exists()


def test_timeouts_as_durations(tmp_path):
    """`5m`, `1h 30m` (as tmt and restraint write them) in comments and TOML."""
    top = tmp_path / "suite"
    write_suite(top, {"a.sh": ["# pexen: timeout=5m"], "b.sh": ['# pexen: timeout="1h 30m"'],
                      "c.sh": ["# pexen: timeout=90"], "d.sh": [],
                      "d.sh.pexen.toml": "timeout = '1.5h'\n"})
    got = {key: meta.get_timeout(t) for key, t in tasks_of(top).items()}
    assert got == {"a": 300, "b": 5400, "c": 90, "d": 5400}


def test_binary_executables_have_no_comment_block(tmp_path):
    top = tmp_path / "suite"
    top.mkdir()
    binary = top / "prog"
    binary.write_bytes(b"\x7fELF\x00\x00# pexen: nonsense\n")
    binary.chmod(0o755)
    assert "prog" in tasks_of(top)

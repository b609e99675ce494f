"""The wheel carries what an installed pexen needs: the migrations (as
pexen.migrations), the CLI entry point; and the installed copy can create a
journal and run a suite."""

import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(out), str(ROOT)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"building the wheel failed: {res.stderr[-2000:]}")
    (whl,) = out.glob("pexen-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("pexen/migrations/env.py", "pexen/migrations/script.py.mako",
                   "pexen/migrations/versions/0001_initial.py", "pexen/harness/cli.py",
                   "pexen/journal/models.py", "pexen/sched/_zygote.py",
                   "pexen/harness/_report/report.html", "pexen/harness/_report/report.js",
                   "pexen/harness/_report/report.css"):
        assert needed in names, needed
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "pexen-harness = pexen.harness.cli:main" in text
    # the licence travels with the wheel, and the metadata says which
    (lic,) = [n for n in names if n.endswith("/LICENSE")]
    assert "MIT License" in zipfile.ZipFile(wheel).read(lic).decode()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    for line in ("Classifier: Programming Language :: Python :: 3.11",
                 "Project-URL: Source, https://github.com/comps/pexen"):
        assert line in text, line
    assert ("License-Expression: MIT" in text or "License: MIT" in text), text[:800]


def test_installed_copy_runs_a_suite(wheel, tmp_path):
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("PEXEN_JOURNAL", None)
    res = subprocess.run([sys.executable, "-c", "import pexen.migrations, sys; "
                          "print(pexen.migrations.__file__)"], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.stdout.startswith(str(target)), res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "pexen.harness.cli", "start",
                          str(ROOT / "examples" / "smoke")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "run 1: some failed" in res.stdout


def test_the_install_puts_pexen_alone_on_the_path(tmp_path):
    """Installed (editable too: the checkout's .pkgroot holds only a link to
    pexen/), pexen brings no top-level name of its checkout with it: a
    project's own `tests` package (pexen 0.0.x's test suite, say) must not
    find ours. Run from another directory, with nothing on PYTHONPATH."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    code = ("import importlib.util as u, pexen; "
            "print([n for n in ('tests', 'bench', 'examples', 'migrations', 'doc') "
            "if u.find_spec(n) is not None]); print(pexen.__file__)")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    found, where = res.stdout.splitlines()
    assert found == "[]"
    assert where.endswith(os.path.join("pexen", "__init__.py"))

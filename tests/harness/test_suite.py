"""Suites: parse_suite, SuiteSpec, load_suite for the three kinds, ExecutableTask."""

import json
import os
import pathlib
import pickle
import subprocess
import sys
import time

import psutil
import pytest

from pexen.harness.context import TaskContext, set_context
from pexen.harness.outcome import TaskOutcome
from pexen.harness.suite import (
    ExecutableTask,
    SuiteError,
    SuiteSpec,
    load_suite,
    parse_suite,
)
from pexen.sched import ProcessWorkerPool, Sched
from pexen.sched._keys import CALLPATH_ATTR_NAME

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SMOKE = ROOT / "examples" / "smoke"


# -- helpers ---------------------------------------------------------------------


def make_exec(path, body="exit 0", mode=0o755, shebang="#!/bin/sh"):
    """Write a script at `path` (creating directories) and chmod it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{shebang}\n{body}\n")
    os.chmod(path, mode)
    return path


def make_py_exec(path, body):
    """An executable Python script run by the interpreter running the tests."""
    return make_exec(path, body, shebang=f"#!{sys.executable}")


def suite_error(func, *args):
    """Call func(*args), which must raise SuiteError; return its one-line message."""
    with pytest.raises(SuiteError) as info:
        func(*args)
    assert type(info.value) is SuiteError
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


def write_tree(base, files):
    """Write {relative path: text} under `base`."""
    for rel, text in files.items():
        path = pathlib.Path(base, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def sched_keys(pairs):
    s = Sched([task for _, task in pairs])
    return [s.key_of(task) for _, task in pairs]


@pytest.fixture
def isolated_imports():
    """Modules imported and sys.path entries added by the test are dropped after it."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]


@pytest.fixture
def no_pexen_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith("PEXEN_"):
            monkeypatch.delenv(var)


@pytest.fixture
def task_context(tmp_path, no_pexen_env):
    """A task context set for this thread (and cleared after the test)."""
    data = tmp_path / "taskdata"
    data.mkdir()
    ctx = TaskContext(journal=str(tmp_path / "journal.db"), run_id=7, task="some/task",
                      attempt=2, token="tok-123", data_path=str(data), reboot_count=1)
    set_context(ctx)
    try:
        yield ctx
    finally:
        set_context(None)


# -- parse_suite -----------------------------------------------------------------


def test_parse_dir_relative_to_cwd(tmp_path):
    (tmp_path / "tests" / "net").mkdir(parents=True)
    spec = parse_suite("tests/net", cwd=str(tmp_path))
    assert spec == SuiteSpec("dir", str(tmp_path / "tests" / "net"), str(tmp_path))


def test_parse_dir_absolute_and_normalised(tmp_path):
    (tmp_path / "d").mkdir()
    spec = parse_suite(f"{tmp_path}/d/../d/", cwd="/")
    assert spec == SuiteSpec("dir", str(tmp_path / "d"), "/")
    assert parse_suite(".", cwd=str(tmp_path)).target == str(tmp_path)


def test_parse_default_cwd_is_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "suite").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_suite("suite") == SuiteSpec("dir", str(tmp_path / "suite"), str(tmp_path))
    assert parse_suite("some.module") == SuiteSpec("module", "some.module", str(tmp_path))


def test_parse_relative_cwd_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "sub" / "suite").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = parse_suite("suite", cwd="sub")
    assert spec == SuiteSpec("dir", str(tmp_path / "sub" / "suite"), str(tmp_path / "sub"))


@pytest.mark.parametrize("arg", ["mysuite", "my.suite", "pkg.sub.mod", "_private", "ünï"])
def test_parse_module(tmp_path, arg):
    assert parse_suite(arg, cwd=str(tmp_path)) == SuiteSpec("module", arg, str(tmp_path))


@pytest.mark.parametrize("arg", ["mod:make_tasks", "a.b.c:f", "m:_f"])
def test_parse_function(tmp_path, arg):
    assert parse_suite(arg, cwd=str(tmp_path)) == SuiteSpec("function", arg, str(tmp_path))


def test_parse_an_existing_directory_wins_over_a_module_name(tmp_path):
    (tmp_path / "mysuite").mkdir()
    assert parse_suite("mysuite", cwd=str(tmp_path)).kind == "dir"


@pytest.mark.parametrize("arg", ["no/such/dir", "a:b:c", "1abc", "a..b", ".rel", "a.",
                                 ":f", "m:", "m:f.g", "m:1f", "class", "a.def:f", "m:if",
                                 "a-b", "a b", "m:f()"])
def test_parse_bad(tmp_path, arg):
    msg = suite_error(parse_suite, arg, str(tmp_path))
    assert msg == f"suite {arg!r}: no such directory, and not a module name"


def test_parse_bad_exact_message(tmp_path):
    msg = suite_error(parse_suite, "no/such/dir", str(tmp_path))
    assert msg == "suite 'no/such/dir': no such directory, and not a module name"


def test_parse_empty(tmp_path):
    msg = suite_error(parse_suite, "", str(tmp_path))
    assert msg.startswith("suite '': ")


def test_parse_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    msg = suite_error(parse_suite, "notes.txt", str(tmp_path))
    assert msg == "suite 'notes.txt': a file, not a directory, module name or module:function"
    (tmp_path / "tool").write_text("x")
    msg = suite_error(parse_suite, "tool", str(tmp_path))
    assert msg == "suite 'tool': a file, not a directory, module name or module:function"


def test_parse_a_package_directory_by_its_name_is_the_package(tmp_path):
    write_tree(tmp_path, {"mysuite/__init__.py": "", "mysuite/sub/__init__.py": "",
                          "a.b/__init__.py": "", "plain/x.sh": ""})
    cwd = str(tmp_path)
    assert parse_suite("mysuite", cwd) == SuiteSpec("module", "mysuite", cwd)
    # Given as a path, it is a directory.
    for arg in ["./mysuite", "mysuite/", "mysuite/sub", str(tmp_path / "mysuite")]:
        assert parse_suite(arg, cwd).kind == "dir", arg
    # Not a package; a directory that cannot be imported by its name.
    assert parse_suite("plain", cwd) == SuiteSpec("dir", str(tmp_path / "plain"), cwd)
    assert parse_suite("a.b", cwd) == SuiteSpec("dir", str(tmp_path / "a.b"), cwd)


def test_parse_a_python_file_suggests_its_module_name(tmp_path):
    write_tree(tmp_path, {"pkg/tests.py": ""})
    msg = suite_error(parse_suite, "pkg/tests.py", str(tmp_path))
    assert msg.startswith("suite 'pkg/tests.py': a Python file is not a suite")
    assert "'pkg.tests'" in msg


def test_parse_a_name_with_a_newline_gives_one_line(tmp_path):
    msg = suite_error(parse_suite, "a\nb", str(tmp_path))
    assert "'a\\nb'" in msg


# -- SuiteSpec JSON --------------------------------------------------------------


@pytest.mark.parametrize("spec", [SuiteSpec("dir", "/x/suite", "/x"),
                                  SuiteSpec("module", "pkg.mod", "/x"),
                                  SuiteSpec("function", "pkg.mod:make", "/")])
def test_spec_json_round_trip(spec):
    data = spec.to_json()
    assert data == {"kind": spec.kind, "target": spec.target, "cwd": spec.cwd}
    assert SuiteSpec.from_json(json.loads(json.dumps(data))) == spec


def test_spec_is_frozen():
    spec = SuiteSpec("module", "m", "/")
    with pytest.raises(AttributeError):
        spec.kind = "dir"


@pytest.mark.parametrize("data", [
    None,
    ["dir", "/x", "/"],
    "dir:/x",
    {},
    {"kind": "dir", "target": "/x"},
    {"kind": "dir", "target": "/x", "cwd": 3},
    {"kind": "dir", "target": None, "cwd": "/"},
    {"kind": "file", "target": "/x", "cwd": "/"},
    {"kind": "dir", "target": "/x", "cwd": "rel"},
    {"kind": "dir", "target": "rel/x", "cwd": "/"},
    {"kind": "module", "target": "no/such/dir", "cwd": "/"},
    {"kind": "module", "target": "m:f", "cwd": "/"},
    {"kind": "function", "target": "m", "cwd": "/"},
    {"kind": "function", "target": "a:b:c", "cwd": "/"},
    {"kind": "module", "target": "m", "cwd": "/", "extra": 1},
])
def test_spec_from_json_bad(data):
    msg = suite_error(SuiteSpec.from_json, data)
    assert "malformed suite record" in msg
    if isinstance(data, dict) and isinstance(data.get("target"), str):
        assert msg.startswith(f"suite {data['target']!r}: ")


# -- load_suite: directories -----------------------------------------------------


def test_load_dir(tmp_path):
    top = tmp_path / "suite"
    make_exec(top / "top.sh")
    make_exec(top / "noext")
    make_exec(top / "net" / "ping.sh")
    make_exec(top / "net" / "sub" / "deep.py")
    make_exec(top / "a.b" / "c.d.sh")
    make_exec(top / ".hidden.sh")
    make_exec(top / ".hiddendir" / "x.sh")
    make_exec(top / "notexec.sh", mode=0o644)
    (top / "data").mkdir()
    (top / "data" / "input.txt").write_text("not a test")
    # A symlinked directory is not followed; a symlinked executable is a test.
    make_exec(tmp_path / "outside" / "elsewhere.sh")
    (top / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    (top / "link.sh").symlink_to(tmp_path / "outside" / "elsewhere.sh")
    (top / "broken.sh").symlink_to(tmp_path / "nowhere")

    pairs = load_suite(parse_suite("suite", cwd=str(tmp_path)))
    keys = [key for key, _ in pairs]
    assert keys == ["link", "noext", "top", "a.b/c.d", "net/ping", "net/sub/deep"]
    for key, task in pairs:
        assert isinstance(task, ExecutableTask)
        assert task.key == key
        assert task.__name__ == key
        assert getattr(task, CALLPATH_ATTR_NAME) == key.split("/")
        assert os.path.isabs(task.path)
    paths = {key: task.path for key, task in pairs}
    assert paths["net/ping"] == str(top / "net" / "ping.sh")
    assert paths["link"] == str(top / "link.sh")
    assert sched_keys(pairs) == keys


def test_load_dir_order_is_stable(tmp_path):
    for name in ["b.sh", "a.sh", "c/z.sh", "c/a.sh", "B.sh"]:
        make_exec(tmp_path / name)
    spec = parse_suite(str(tmp_path))
    first = [key for key, _ in load_suite(spec)]
    assert first == ["B", "a", "b", "c/a", "c/z"]
    assert [key for key, _ in load_suite(spec)] == first


def test_load_dir_without_executables(tmp_path):
    (tmp_path / "suite").mkdir()
    write_tree(tmp_path / "suite", {"README": "x", "sub/notes.txt": "y"})
    make_exec(tmp_path / "suite" / ".hidden.sh")
    msg = suite_error(load_suite, parse_suite("suite", cwd=str(tmp_path)))
    assert msg == ("suite 'suite': no executable files in the directory "
                   "(2 files without the executable bit)")


def test_load_dir_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = suite_error(load_suite, parse_suite("empty", cwd=str(tmp_path)))
    assert msg == "suite 'empty': no executable files in the directory"


def test_load_dir_key_collision_names_both_files(tmp_path):
    make_exec(tmp_path / "suite" / "net" / "a.sh")
    make_exec(tmp_path / "suite" / "net" / "a.py")
    msg = suite_error(load_suite, parse_suite("suite", cwd=str(tmp_path)))
    assert msg == "suite 'suite': net/a.py and net/a.sh both give the task key 'net/a'"


def test_load_dir_gone_since_parsed(tmp_path):
    (tmp_path / "suite").mkdir()
    spec = parse_suite("suite", cwd=str(tmp_path))
    (tmp_path / "suite").rmdir()
    assert suite_error(load_suite, spec) == "suite 'suite': no such directory"


def test_load_dir_outside_cwd_is_named_by_its_absolute_path(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "elsewhere").mkdir()
    spec = parse_suite("../empty", cwd=str(tmp_path / "elsewhere"))
    msg = suite_error(load_suite, spec)
    assert msg.startswith(f"suite {str(tmp_path / 'empty')!r}: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_load_dir_unreadable_subdirectory(tmp_path):
    make_exec(tmp_path / "suite" / "ok.sh")
    locked = tmp_path / "suite" / "locked"
    make_exec(locked / "hidden-from-us.sh")
    os.chmod(locked, 0)
    try:
        msg = suite_error(load_suite, parse_suite("suite", cwd=str(tmp_path)))
    finally:
        os.chmod(locked, 0o755)
    assert msg.startswith("suite 'suite': cannot read ")
    assert "locked" in msg


def test_load_dir_unreadable_subdirectory_simulated(tmp_path, monkeypatch):
    make_exec(tmp_path / "suite" / "ok.sh")
    locked = tmp_path / "suite" / "locked"
    make_exec(locked / "x.sh")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    msg = suite_error(load_suite, parse_suite("suite", cwd=str(tmp_path)))
    assert msg == f"suite 'suite': cannot read {locked}: Permission denied"


# -- load_suite: modules ---------------------------------------------------------

PKG_FILES = {
    "mysuite/__init__.py": (
        "from pexen.sched.meta import func_meta\n"
        "@func_meta\n"
        "def top():\n    return 'top'\n"
        "def helper():\n    return 'not a task'\n"),
    "mysuite/mod.py": (
        "from pexen.sched.meta import func_meta\n"
        "@func_meta(priority=1)\n"
        "def b():\n    return 'b'\n"
        "@func_meta\n"
        "def a():\n    return 'a'\n"),
    "mysuite/sub/__init__.py": "",
    "mysuite/sub/inner.py": (
        "from pexen.sched.meta import func_meta\n"
        "from mysuite.mod import a as imported_a\n"
        "@func_meta\n"
        "def c():\n    return 'c'\n"),
}


@pytest.mark.usefixtures("isolated_imports")
def test_load_package_only_importable_from_cwd(tmp_path):
    proj = tmp_path / "proj"
    write_tree(proj, PKG_FILES)
    assert str(proj) not in sys.path
    spec = parse_suite("mysuite", cwd=str(proj))
    assert spec == SuiteSpec("module", "mysuite", str(proj))
    pairs = load_suite(spec)
    assert sys.path[0] == str(proj)
    keys = [key for key, _ in pairs]
    # `a` is also imported into sub.inner (as imported_a): it is one task, in
    # the place it was first found, keyed where it was found last, as the
    # engine keys it.
    assert [(key, task()) for key, task in pairs] == [
        ("top", "top"), ("sub/inner/imported_a", "a"), ("mod/b", "b"), ("sub/inner/c", "c")]
    assert sched_keys(pairs) == keys
    # Loading again gives the same.
    assert [key for key, _ in load_suite(spec)] == keys


@pytest.mark.usefixtures("isolated_imports")
def test_load_package_keys(tmp_path):
    files = {k: v for k, v in PKG_FILES.items()}
    files["mysuite/sub/inner.py"] = files["mysuite/sub/inner.py"].replace(
        "from mysuite.mod import a as imported_a\n", "")
    write_tree(tmp_path, files)
    pairs = load_suite(parse_suite("mysuite", cwd=str(tmp_path)))
    assert [(key, task()) for key, task in pairs] == [
        ("top", "top"), ("mod/a", "a"), ("mod/b", "b"), ("sub/inner/c", "c")]


@pytest.mark.usefixtures("isolated_imports")
def test_load_plain_module(tmp_path):
    write_tree(tmp_path, {"flat.py": (
        "from pexen.sched.meta import func_meta\n"
        "@func_meta\n"
        "def one():\n    return 1\n"
        "@func_meta\n"
        "def two():\n    return 2\n")})
    pairs = load_suite(parse_suite("flat", cwd=str(tmp_path)))
    assert [(key, task()) for key, task in pairs] == [("one", 1), ("two", 2)]
    assert sched_keys(pairs) == ["one", "two"]


@pytest.mark.usefixtures("isolated_imports")
def test_load_module_that_is_not_there(tmp_path):
    msg = suite_error(load_suite, parse_suite("no_such_mod_xyz", cwd=str(tmp_path)))
    assert msg == ("suite 'no_such_mod_xyz': cannot import no_such_mod_xyz: "
                   "ModuleNotFoundError: No module named 'no_such_mod_xyz'")


@pytest.mark.usefixtures("isolated_imports")
@pytest.mark.parametrize("source, summary", [
    ("def broken(:\n", "SyntaxError: "),
    ("raise RuntimeError('boom\\nsecond line')\n", "RuntimeError: boom"),
    ("import no_such_dependency_xyz\n",
     "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
])
def test_load_module_that_does_not_import(tmp_path, source, summary):
    write_tree(tmp_path, {"badmod.py": source})
    msg = suite_error(load_suite, parse_suite("badmod", cwd=str(tmp_path)))
    assert msg.startswith(f"suite 'badmod': cannot import badmod: {summary}")
    assert "second line" not in msg


@pytest.mark.usefixtures("isolated_imports")
def test_load_package_with_a_submodule_that_does_not_import(tmp_path):
    write_tree(tmp_path, {"brokenpkg/__init__.py": "",
                          "brokenpkg/ok.py": "",
                          "brokenpkg/zbad.py": "raise ValueError('bad submodule')\n"})
    msg = suite_error(load_suite, parse_suite("brokenpkg", cwd=str(tmp_path)))
    assert msg == "suite 'brokenpkg': cannot walk brokenpkg: ValueError: bad submodule"


@pytest.mark.usefixtures("isolated_imports")
def test_load_module_without_tasks(tmp_path):
    write_tree(tmp_path, {"notasks/__init__.py": "def helper():\n    pass\n",
                          "notasks/more.py": "X = 1\n"})
    msg = suite_error(load_suite, parse_suite("notasks", cwd=str(tmp_path)))
    assert msg == ("suite 'notasks': no tasks: no functions decorated with @func_meta and no "
                   "test_* functions or unittest.TestCase classes in notasks or its submodules")


# -- load_suite: factory functions -----------------------------------------------

FACTORY_MOD = """\
import functools

from pexen.factory import ModuleFactory
from pexen.harness.suite import ExecutableTask
from pexen.sched.meta import func_meta


@func_meta
def named():
    return "named"


def plain():
    return "plain"


def make_tasks():
    import sys
    ModuleFactory()(sys.modules[__name__]) # burns callpath ['named'] on `named`
    named.pexen_factory_callpath_ = ["group", "named"]
    return [plain, named, plain]


def make_gen():
    yield plain
    yield named


def returns_none():
    pass


def returns_int():
    return 5


def returns_str():
    return "plain"


def returns_dict():
    return {"a": plain}


def returns_empty():
    return []


def with_non_callable():
    return [plain, 42]


def raises():
    raise KeyError("no config")


def gen_raises():
    yield plain
    raise OSError("disk gone")


def _twin():
    def plain():
        return "other plain"
    return plain


def duplicates():
    return [plain, _twin()]


def anonymous():
    return [lambda: 1, lambda: 2]


def callable_objects():
    return [functools.partial(plain)]


NOT_CALLABLE = [plain]
"""


@pytest.fixture
def factory_mod(tmp_path, isolated_imports):
    write_tree(tmp_path, {"factmod.py": FACTORY_MOD})
    return tmp_path


def load_function(cwd, name):
    return load_suite(parse_suite(f"factmod:{name}", cwd=str(cwd)))


def test_load_function(factory_mod):
    spec = parse_suite("factmod:make_tasks", cwd=str(factory_mod))
    assert spec == SuiteSpec("function", "factmod:make_tasks", str(factory_mod))
    pairs = load_suite(spec)
    assert [(key, task()) for key, task in pairs] == [("plain", "plain"),
                                                      ("group/named", "named")]
    assert sched_keys(pairs) == ["plain", "group/named"]
    assert sys.path[0] == str(factory_mod)


def test_load_function_returning_a_generator(factory_mod):
    pairs = load_function(factory_mod, "make_gen")
    assert [key for key, _ in pairs] == ["plain", "named"]


def test_load_function_with_no_name_uses_the_type_name(factory_mod):
    pairs = load_function(factory_mod, "callable_objects")
    assert [key for key, _ in pairs] == ["partial"]
    assert sched_keys(pairs) == ["partial"]


@pytest.mark.parametrize("name, returned", [("returns_none", "None"),
                                            ("returns_int", "5"),
                                            ("returns_str", "'plain'"),
                                            ("returns_dict", "{'a': <function ")])
def test_load_function_returning_no_tasks(factory_mod, name, returned):
    msg = suite_error(load_function, factory_mod, name)
    assert msg.startswith(f"suite 'factmod:{name}': {name}() returned {returned}")
    assert msg.endswith(", not tasks")


def test_load_function_returning_nothing(factory_mod):
    msg = suite_error(load_function, factory_mod, "returns_empty")
    assert msg == "suite 'factmod:returns_empty': no tasks"


def test_load_function_non_callable_item(factory_mod):
    msg = suite_error(load_function, factory_mod, "with_non_callable")
    assert msg == "suite 'factmod:with_non_callable': task 1 is not callable: 42"


def test_load_function_duplicate_keys_names_both(factory_mod):
    msg = suite_error(load_function, factory_mod, "duplicates")
    assert msg == ("suite 'factmod:duplicates': two tasks have the key 'plain': "
                   "factmod:plain and factmod:_twin.<locals>.plain")


def test_load_function_lambdas_clash(factory_mod):
    msg = suite_error(load_function, factory_mod, "anonymous")
    assert msg.startswith("suite 'factmod:anonymous': two tasks have the key '<lambda>': ")


def test_load_function_that_raises(factory_mod):
    msg = suite_error(load_function, factory_mod, "raises")
    assert msg == "suite 'factmod:raises': calling raises() raised KeyError: 'no config'"


def test_load_function_whose_generator_raises(factory_mod):
    msg = suite_error(load_function, factory_mod, "gen_raises")
    assert msg == ("suite 'factmod:gen_raises': iterating what gen_raises() returned "
                   "raised OSError: disk gone")


def test_load_function_missing(factory_mod):
    msg = suite_error(load_function, factory_mod, "nope")
    assert msg == "suite 'factmod:nope': module factmod has no attribute 'nope'"


def test_load_function_not_callable(factory_mod):
    msg = suite_error(load_function, factory_mod, "NOT_CALLABLE")
    assert msg.startswith("suite 'factmod:NOT_CALLABLE': NOT_CALLABLE is not callable: [")


@pytest.mark.usefixtures("isolated_imports")
def test_load_function_module_that_does_not_import(tmp_path):
    msg = suite_error(load_suite, parse_suite("no_such_mod_xyz:f", cwd=str(tmp_path)))
    assert msg == ("suite 'no_such_mod_xyz:f': cannot import no_such_mod_xyz: "
                   "ModuleNotFoundError: No module named 'no_such_mod_xyz'")


@pytest.mark.usefixtures("isolated_imports")
def test_load_function_of_executables(tmp_path):
    """A factory function can build on a directory suite (Python as configuration)."""
    make_exec(tmp_path / "bin" / "one.sh")
    make_exec(tmp_path / "bin" / "two.sh", "exit 1")
    write_tree(tmp_path, {"conf.py": (
        "import os\n"
        "from pexen.harness.suite import load_suite, parse_suite\n"
        "def tasks():\n"
        "    here = os.path.dirname(os.path.abspath(__file__))\n"
        "    return [t for _, t in load_suite(parse_suite('bin', cwd=here))]\n")})
    pairs = load_suite(parse_suite("conf:tasks", cwd=str(tmp_path)))
    assert [key for key, _ in pairs] == ["one", "two"]
    assert all(isinstance(task, ExecutableTask) for _, task in pairs)


@pytest.mark.parametrize("kind", ["file", "", "DIR"])
def test_load_unknown_kind(kind):
    msg = suite_error(load_suite, SuiteSpec(kind, "x", "/"))
    assert msg == f"suite 'x': unknown suite kind {kind!r}"


# -- ExecutableTask --------------------------------------------------------------


def test_exec_pass(tmp_path):
    task = ExecutableTask(str(make_exec(tmp_path / "ok.sh")), "ok")
    assert task() == {"returncode": 0}


@pytest.mark.parametrize("body, outcome, message", [
    ("exit 1", "fail", "exit status 1"),
    ("exit 3", "fail", "exit status 3"),
    ("exit 255", "fail", "exit status 255"),
    ("exit 77", "skip", "exit status 77 (skip)"),
    ("exit 99", "error", "exit status 99 (error)"),
    ("kill -KILL $$", "error", "killed by signal 9 (SIGKILL)"),
    ("kill -TERM $$", "error", "killed by signal 15 (SIGTERM)"),
    ("kill -SEGV $$", "error", "killed by signal 11 (SIGSEGV)"),
])
def test_exec_outcomes(tmp_path, body, outcome, message):
    task = ExecutableTask(str(make_exec(tmp_path / "t.sh", body)), "t")
    with pytest.raises(TaskOutcome) as info:
        task()
    assert info.value.outcome == outcome
    assert str(info.value) == message
    # A controlled ending: locks are released; only a pass or warn satisfies provides.
    assert info.value.locks_ok is True
    assert info.value.deps_ok is False


def test_exec_that_cannot_start(tmp_path):
    path = make_exec(tmp_path / "bad.sh", shebang="#!/no/such/interpreter")
    with pytest.raises(TaskOutcome) as info:
        ExecutableTask(str(path), "bad")()
    assert info.value.outcome == "error"
    assert str(info.value) == f"cannot execute {path}: No such file or directory"


def test_exec_gone(tmp_path):
    path = make_exec(tmp_path / "gone.sh")
    task = ExecutableTask(str(path), "gone")
    path.unlink()
    with pytest.raises(TaskOutcome) as info:
        task()
    assert info.value.outcome == "error"
    assert str(info.value).startswith(f"cannot execute {path}: ")


REPORT = """\
import json, os, sys
with open(sys.argv[0] + ".json", "w") as f:
    json.dump({"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
               "cwd": os.getcwd(), "argv0": sys.argv[0], "stdin": sys.stdin.read(),
               "env": dict(os.environ)}, f)
"""


def run_report(path, key="report"):
    """Run a script writing what it sees to <path>.json; return that."""
    task = ExecutableTask(str(path), key)
    assert task() == {"returncode": 0}
    return json.loads(pathlib.Path(f"{path}.json").read_text())


def test_exec_environment_with_a_context(tmp_path, task_context, monkeypatch):
    monkeypatch.setenv("SUITE_TEST_MARK", "inherited")
    seen = run_report(make_py_exec(tmp_path / "report.py", REPORT))
    assert {k: v for k, v in seen["env"].items() if k.startswith("PEXEN_")} == {
        "PEXEN_JOURNAL": str(tmp_path / "journal.db"),
        "PEXEN_RUN_ID": "7",
        "PEXEN_TASK": "some/task",
        "PEXEN_ATTEMPT": "2",
        "PEXEN_TASK_TOKEN": "tok-123",
        "PEXEN_TASK_DATA": str(tmp_path / "taskdata"),
        "PEXEN_REBOOT_COUNT": "1", "PEXEN_INTERRUPT_COUNT": "0",
        "PEXEN_ALLOW_REBOOT": "0",
        "PEXEN_PYTHON": sys.executable,   # (restraint's and tmt's commands run on it)
        # without a run data path: "shared" beside the task's directory
        "PEXEN_RUN_DATA": str(tmp_path / "shared"),
    }
    assert seen["env"]["SUITE_TEST_MARK"] == "inherited"
    assert "PEXEN_TASK" not in os.environ  # the test's own environment is left alone


def test_exec_environment_without_a_context(tmp_path, no_pexen_env, monkeypatch):
    set_context(None)
    monkeypatch.setenv("SUITE_TEST_MARK", "inherited")
    seen = run_report(make_py_exec(tmp_path / "report.py", REPORT))
    assert not [k for k in seen["env"] if k.startswith("PEXEN_")]
    assert seen["env"]["SUITE_TEST_MARK"] == "inherited"


def test_exec_own_session_cwd_and_stdin(tmp_path):
    path = make_py_exec(tmp_path / "sub" / "report.py", REPORT)
    seen = run_report(path)
    assert seen["sid"] == seen["pid"] == seen["pgid"]
    assert seen["sid"] != os.getsid(0)
    assert seen["pgid"] != os.getpgid(0)
    assert seen["cwd"] == str(tmp_path / "sub")
    assert seen["argv0"] == str(path)
    assert seen["stdin"] == ""


def test_exec_relative_path_is_made_absolute(tmp_path, monkeypatch):
    make_exec(tmp_path / "rel.sh")
    monkeypatch.chdir(tmp_path)
    task = ExecutableTask("rel.sh", "rel")
    assert task.path == str(tmp_path / "rel.sh")
    monkeypatch.chdir("/")
    assert task() == {"returncode": 0}


def test_exec_output_is_not_captured(tmp_path, capfd):
    task = ExecutableTask(str(make_exec(tmp_path / "talk.sh", "echo out; echo err >&2")), "talk")
    task()
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert err == "err\n"


def test_exec_pickles_and_reads(tmp_path):
    path = make_exec(tmp_path / "net" / "ping.sh")
    task = ExecutableTask(str(path), "net/ping")
    assert repr(task) == f"ExecutableTask({str(path)!r}, key='net/ping')"
    assert task.__name__ == "net/ping"
    copy = pickle.loads(pickle.dumps(task))
    assert (copy.path, copy.key, copy.__name__) == (task.path, task.key, task.__name__)
    assert getattr(copy, CALLPATH_ATTR_NAME) == ["net", "ping"]
    assert copy() == {"returncode": 0}


def test_exec_interrupted_while_waiting_kills_its_group(tmp_path, monkeypatch):
    pidfile = tmp_path / "bg.pid"
    path = make_exec(tmp_path / "hang.sh", f"sleep 60 &\necho $! > {pidfile}\nwait")
    real_wait = subprocess.Popen.wait
    calls = []

    def interrupted_wait(self, timeout=None):
        calls.append(self.pid)
        if len(calls) == 1:
            deadline = time.monotonic() + 10
            while not (pidfile.exists() and pidfile.read_text().strip()):
                assert time.monotonic() < deadline, "the script did not start"
                time.sleep(0.01)
            raise KeyboardInterrupt
        return real_wait(self, timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        ExecutableTask(str(path), "hang")()
    assert len(calls) == 2  # the leader was reaped
    bg = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while True:  # the background sleep (now init's child) is gone too
        try:
            if psutil.Process(bg).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the background process survived"
        time.sleep(0.02)


def test_exec_tasks_through_the_engine(tmp_path):
    """Directory tasks run in forked workers; the engine keys them as load_suite."""
    make_exec(tmp_path / "a" / "ok.sh")
    make_exec(tmp_path / "a" / "bad.sh", "exit 2")
    make_exec(tmp_path / "skip.sh", "exit 77")
    pairs = load_suite(parse_suite(str(tmp_path)))
    s = Sched([task for _, task in pairs])
    got = {}
    for res in s.run(ProcessWorkerPool(workers=2)):
        key = s.key_of(res.task)
        got[key] = res.ret if res.excinfo is None else (res.excinfo.val.outcome,
                                                        str(res.excinfo.val))
    assert got == {"skip": ("skip", "exit status 77 (skip)"),
                   "a/bad": ("fail", "exit status 2"),
                   "a/ok": {"returncode": 0}}


# -- the smoke example -----------------------------------------------------------


def test_smoke_example_loads():
    spec = parse_suite("examples/smoke", cwd=str(ROOT))
    assert spec == SuiteSpec("dir", str(SMOKE), str(ROOT))
    keys = [key for key, _ in load_suite(spec)]
    assert keys == ["00-env", "fs/expected-failure", "fs/tmp-writable", "hw/needs-gpu",
                    "net/loopback", "sys/sqlite-roundtrip"]


def test_smoke_example_runs(tmp_path, no_pexen_env, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    expected = {"00-env": "pass", "fs/expected-failure": "fail", "fs/tmp-writable": "pass",
                "hw/needs-gpu": "pass" if os.path.exists("/dev/nvidia0") else "skip",
                "net/loopback": "pass", "sys/sqlite-roundtrip": "pass"}
    got = {}
    for key, task in load_suite(parse_suite(str(SMOKE))):
        data = tmp_path / "data" / key
        data.mkdir(parents=True)
        set_context(TaskContext(journal=str(tmp_path / "journal.db"), run_id=1, task=key,
                                attempt=1, token="t", data_path=str(data)))
        try:
            task()
            got[key] = "pass"
        except TaskOutcome as exc:
            got[key] = exc.outcome
        finally:
            set_context(None)
    assert got == expected
    log = (tmp_path / "data" / "00-env" / "attempts.log").read_text()
    assert log == "run 1 attempt 1 reboots 0\n"
    assert os.listdir(tmp_path) == ["data"]  # the tests clean up their $TMPDIR files


def test_smoke_env_check_fails_outside_the_harness(no_pexen_env):
    set_context(None)
    task = dict(load_suite(parse_suite(str(SMOKE))))["00-env"]
    with pytest.raises(TaskOutcome) as info:
        task()
    assert info.value.outcome == "fail"


def test_smoke_scripts_are_executable_in_git():
    """git keeps the mode: the scripts must be committed executable."""
    out = subprocess.run(["git", "ls-files", "-s", "--", "examples/smoke"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip("not in a git checkout, or the example is not added yet")
    modes = dict((line.split()[3], line.split()[0]) for line in out.stdout.splitlines())
    for key, task in load_suite(parse_suite(str(SMOKE))):
        rel = os.path.relpath(task.path, ROOT)
        if rel in modes:
            assert modes[rel] == "100755", rel


def test_file_name_that_is_not_utf8_is_refused(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    bad = os.path.join(os.fsencode(suite), b"caf\xe9.sh")
    with open(bad, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(bad, 0o755)
    with pytest.raises(SuiteError, match=r"task key 'caf\\udce9' is not valid UTF-8"):
        load_suite(parse_suite(str(suite)))

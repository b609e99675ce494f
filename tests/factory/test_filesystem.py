"""FilesystemFactory: a task per executable file under a directory."""

import os
import subprocess

import pytest

from pexen.factory import FilesystemFactory, get_callpath
from tests.factory.conftest import make_exec


def names(tasks):
    return ["/".join(get_callpath(t)) for t in tasks]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """tmp_path/tree with executables, non-executables and hidden things;
    the cwd is tmp_path, so 'tree' is a relative start path."""
    root = tmp_path / "tree"
    # created out of name order on purpose
    make_exec(root / "zdir" / "z1")
    make_exec(root / "c")
    make_exec(root / "adir" / "deep" / "d1")
    make_exec(root / "a")
    make_exec(root / "b")
    make_exec(root / "adir" / "a1")
    make_exec(root / "plain", mode=0o644)            # not executable
    make_exec(root / ".hidden")                      # hidden file
    make_exec(root / ".hdir" / "inside")             # in a hidden directory
    make_exec(root / "adir" / ".hidden2")
    make_exec(root / "adir" / ".hdir2" / "inside2")
    (root / "emptydir").mkdir()
    monkeypatch.chdir(tmp_path)
    return root


ALL = ["tree/a", "tree/b", "tree/c", "tree/adir/a1", "tree/adir/deep/d1",
       "tree/zdir/z1"]


def test_executables_only_hidden_skipped_in_name_order(tree):
    tasks = list(FilesystemFactory()("tree"))
    # files of a directory first, then its subdirectories, each in name order
    assert names(tasks) == ALL


def test_callpath_is_directory_split_plus_name(tree, monkeypatch):
    by_name = {t.__name__: t for t in FilesystemFactory()("tree")}
    assert get_callpath(by_name["d1"]) == ["tree", "adir", "deep", "d1"]
    assert get_callpath(by_name["a"]) == ["tree", "a"]
    # './tree' and 'tree/' give the same callpaths
    assert names(FilesystemFactory()("./tree")) == ALL
    assert names(FilesystemFactory()("tree/")) == ALL
    # from inside the tree, '.' contributes nothing
    monkeypatch.chdir(tree)
    assert names(FilesystemFactory()(".")) == [n[len("tree/"):] for n in ALL]
    # an absolute start path: its components (without the leading '/')
    absolute = list(FilesystemFactory()(str(tree)))
    prefix = str(tree).strip("/").split("/")
    assert get_callpath(absolute[0]) == prefix + ["a"]
    assert get_callpath(absolute[-1]) == prefix + ["zdir", "z1"]


def test_deterministic(tree):
    f = FilesystemFactory()
    assert names(f("tree")) == names(f("tree")) == ALL


def test_returns_completed_process(tree):
    task = next(FilesystemFactory()("tree"))
    res = task()
    assert isinstance(res, subprocess.CompletedProcess)
    assert res.returncode == 0
    assert res.stdout is None  # not captured unless asked


def test_cwd_is_the_files_directory(tmp_path, monkeypatch):
    make_exec(tmp_path / "t" / "sub" / "where", "pwd -P; touch marker")
    monkeypatch.chdir(tmp_path)
    (task,) = FilesystemFactory(stdout=subprocess.PIPE)("t")
    assert task().stdout.decode().strip() == os.path.realpath(tmp_path / "t" / "sub")
    assert (tmp_path / "t" / "sub" / "marker").exists()
    assert not (tmp_path / "marker").exists()


def test_runs_from_any_cwd_later(tmp_path, monkeypatch):
    # Found through a relative path; run after the cwd has changed.
    make_exec(tmp_path / "t" / "where", "pwd -P")
    monkeypatch.chdir(tmp_path)
    (task,) = FilesystemFactory(stdout=subprocess.PIPE)("t")
    monkeypatch.chdir("/")
    assert task().stdout.decode().strip() == os.path.realpath(tmp_path / "t")


def test_nonzero_exit_raises(tmp_path):
    make_exec(tmp_path / "fails", "echo oops >&2; exit 3")
    (task,) = FilesystemFactory(stderr=subprocess.PIPE)(str(tmp_path))
    with pytest.raises(subprocess.CalledProcessError) as info:
        task()
    assert info.value.returncode == 3
    assert info.value.stderr == b"oops\n"


def test_popen_kwargs_are_passed(tmp_path):
    make_exec(tmp_path / "talk", 'echo "out $PEXEN_TEST_VAR"; echo err >&2')
    f = FilesystemFactory(stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={"PEXEN_TEST_VAR": "value", "PATH": os.defpath})
    (task,) = f(str(tmp_path))
    res = task()
    assert res.stdout == b"out value\nerr\n"
    assert res.stderr is None
    assert res.args == ["talk"]


def test_each_call_runs_again(tmp_path):
    make_exec(tmp_path / "count", "echo x >> log")
    (task,) = FilesystemFactory()(str(tmp_path))
    task()
    task()
    assert (tmp_path / "log").read_text() == "x\nx\n"


def test_follow_symlinked_directories(tmp_path, monkeypatch):
    make_exec(tmp_path / "tree" / "a")
    make_exec(tmp_path / "elsewhere" / "outside", "pwd -P")
    os.symlink("../elsewhere", tmp_path / "tree" / "linked")
    monkeypatch.chdir(tmp_path)
    assert names(FilesystemFactory()("tree")) == ["tree/a"]
    tasks = list(FilesystemFactory(follow=True, stdout=subprocess.PIPE)("tree"))
    assert names(tasks) == ["tree/a", "tree/linked/outside"]
    assert tasks[1]().stdout.decode().strip() == os.path.realpath(
        tmp_path / "elsewhere")


def test_follow_ends_on_symlink_loops(tmp_path, monkeypatch):
    make_exec(tmp_path / "tree" / "sub" / "x")
    os.symlink("..", tmp_path / "tree" / "sub" / "up")
    os.symlink(".", tmp_path / "tree" / "sub" / "self")
    os.symlink("../..", tmp_path / "tree" / "sub" / "upup")
    monkeypatch.chdir(tmp_path)
    assert names(FilesystemFactory(follow=True)("tree")) == ["tree/sub/x"]


def test_symlinked_executable_file_is_found(tmp_path):
    target = make_exec(tmp_path / "real" / "prog")
    (tmp_path / "t").mkdir()
    os.symlink(target, tmp_path / "t" / "alias")
    (task,) = FilesystemFactory()(str(tmp_path / "t"))
    assert task.__name__ == "alias"
    assert task().returncode == 0


def test_start_path_not_a_directory(tmp_path):
    exe = make_exec(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        list(FilesystemFactory()(str(exe)))


def test_empty_directory(tmp_path):
    assert list(FilesystemFactory()(str(tmp_path))) == []

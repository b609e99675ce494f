"""Every ```python block in doc/*.md and README.md runs, so the docs cannot rot.

Blocks of one file run in order in one namespace, in a fresh temporary
directory, with the repository root importable. Output is shown in ```text
blocks (not checked); shell snippets are ```sh (not run).
"""

import pathlib
import re
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "doc").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path):
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_doc_examples_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip("no python blocks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace = {"__name__": f"doc_{path.stem.replace('-', '_')}"}
    for n, code in enumerate(blocks, 1):
        with warnings.catch_warnings():
            # Examples may show the scheduler's warnings; they are not errors here.
            warnings.simplefilter("ignore")
            try:
                exec(compile(code, f"{path.name}[block {n}]", "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{path.name} block {n} failed: {type(exc).__name__}: {exc}")


def test_docs_exist_and_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in ("sched.md", "task-meta.md", "factory.md", "architecture.md"):
        assert (ROOT / "doc" / name).is_file(), name
        assert f"doc/{name}" in readme, name


def test_no_machine_paths_in_docs():
    for path in FILES:
        text = path.read_text()
        assert "/work/" not in text and "/tmp/venv" not in text, path

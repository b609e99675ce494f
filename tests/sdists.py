"""Real projects' own pytest suites, from their sdists on PyPI (pinned by
version and sha256), for the test and the bench that run them through
``pytest:`` beside plain pytest.

The sdists are downloaded once into ``~/.cache/pexen-sdists`` (or
``$PEXEN_SDIST_CACHE``) and unpacked where the caller says.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    sha256: str
    #: the suites run: (pytest:PATH, --pytest-args)
    suites: Tuple[Tuple[str, str], ...]
    #: what the suite is a test of (said in the docs)
    why: str

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}.tar.gz"


PROJECTS: Dict[str, Project] = {p.name: p for p in (
    Project("boltons", "26.2.0",
            "d39cfd15c1a1c3bd4d705c82252fa9edb8e4f5e8cc039f8e39afac7b1b47e92c",
            (("tests", ""), ("boltons", "--doctest-modules")),
            "a conftest, fixtures, parametrised tests, doctests"),
    Project("more-itertools", "11.2.1",
            "cbf08fd0af284dc69718b9b76a8e6203df624d70209ea511e4219d350c856f63",
            (("tests", ""),),
            "unittest TestCase classes with 21,000 subtests"),
)}


class Unavailable(Exception):
    """The sdist could not be had (no network, no such file on the index)."""


def cache_dir() -> Path:
    return Path(os.environ.get("PEXEN_SDIST_CACHE")
                or Path.home() / ".cache" / "pexen-sdists")


def download(project: Project) -> Path:
    """The project's sdist, from the cache or PyPI, its sha256 checked."""
    path = cache_dir() / project.filename
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == project.sha256:
        return path
    try:
        with urllib.request.urlopen(f"{INDEX}/{project.name}/", timeout=60) as page:
            html = page.read().decode()
        links = [link for link in re.findall(r'href="([^"]+)"', html)
                 if link.split("#")[0].endswith("/" + project.filename)]
        if not links:
            raise Unavailable(f"{project.filename} is not on {INDEX}/{project.name}/")
        with urllib.request.urlopen(links[0].split("#")[0], timeout=120) as f:
            data = f.read()
    except OSError as exc:
        raise Unavailable(f"downloading {project.filename}: {exc}") from exc
    got = hashlib.sha256(data).hexdigest()
    if got != project.sha256:
        raise ValueError(f"{project.filename}: sha256 {got}, expected {project.sha256}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".part{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def unpack(project: Project, into: Path) -> Path:
    """The project's sdist unpacked under ``into``: its top directory."""
    with tarfile.open(download(project)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # (a Python before the filters: the sdist's sha256 was checked)
            tar.extractall(into)
    top = into / project.filename[:-len(".tar.gz")]
    if not top.is_dir():
        raise ValueError(f"{project.filename} has no {top.name}/")
    return top

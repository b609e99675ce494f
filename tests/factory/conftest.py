"""Helpers for the factory tests: executable trees and a fresh test package."""

import os
import sys

import pytest

DATA = "tests.factory.data"


def make_exec(path, body="exit 0", mode=0o755):
    """Write a /bin/sh script at `path` (creating directories) and chmod it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    os.chmod(path, mode)
    return path


def _drop(prefix):
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture
def unimported():
    """The test data packages are not imported before the test, nor after."""
    _drop(f"{DATA}.sample")
    _drop(f"{DATA}.clash")
    yield
    _drop(f"{DATA}.sample")
    _drop(f"{DATA}.clash")

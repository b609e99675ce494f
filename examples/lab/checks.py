"""The Python tests of the lab suite, and a factory that makes some of them.

`DigestFactory` is a small `pexen.factory.BaseFactory`: one test per hash
algorithm, each with its own key (`digest/sha256`, ...). The database tests
share a SQLite file made by `make_db`, which provides `db`; `linux_only`
runs only where its `when` condition holds.
"""

import hashlib
import os
import platform
import sqlite3

import pexen
from pexen.factory import BaseFactory
from pexen.sched.meta import assign_val, func_meta

#: Known answers: the digest of b"abc" (FIPS 180 and RFC 1321 test vectors).
KNOWN = {
    "md5": "900150983cd24fb0d6963f7d28e17f72",
    "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d",
    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
}


class DigestFactory(BaseFactory):
    """Yields one test per algorithm of `known` (name -> hex digest of b"abc")."""

    def __init__(self, known):
        super().__init__()
        self.known = dict(known)

    def _make(self, name, expected):
        def test():
            got = hashlib.new(name, b"abc").hexdigest()
            assert got == expected, f"{name}(b'abc') = {got}, not {expected}"
            return got
        test.__name__ = test.__qualname__ = f"digest_{name}"
        assign_val(test, timeout=30)
        return test

    def __call__(self):
        self.callpath_push("digest")
        try:
            for name, expected in sorted(self.known.items()):
                task = self._make(name, expected)
                self.callpath_burn(task, name)
                yield task
        finally:
            self.callpath_pop()


def _db_path():
    return os.path.join(pexen.context().run_data_dir, "lab.sqlite")


@func_meta(provides=["db"], claims=["db-file"])
def make_db(shared):
    """Create the database the other db tests use; its path goes to them."""
    path = _db_path()
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")
        con.execute("INSERT OR REPLACE INTO kv VALUES ('answer', '42')")
    shared["db"] = path


@func_meta(requires=["db"], uses=["db-file"])
def db_read(shared):
    with sqlite3.connect(shared["db"]) as con:
        assert con.execute("SELECT v FROM kv WHERE k = 'answer'").fetchone() == ("42",)


@func_meta(requires=["db"], uses=["db-file"])
def db_integrity(shared):
    with sqlite3.connect(shared["db"]) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _on_linux():
    return platform.system() == "Linux"


@func_meta(when=_on_linux)
def linux_only():
    """Runs on Linux only (elsewhere: skip, 'condition not met: ...')."""
    with open("/proc/self/status") as f:
        assert any(line.startswith("Pid:") for line in f)

"""A throwaway PostgreSQL server for the tests (and for `.ci/run`).

    python -m tests.pgserver start DIR    # prints the server's URL
    python -m tests.pgserver stop DIR

`start` makes a cluster in DIR with ``initdb`` (as the user ``postgres``
when run as root: the server refuses to run as root), trust authentication,
listening on loopback only at a free port, and starts it; `stop` stops it
(immediate) and removes DIR. The tests use the server named by
``$PEXEN_TEST_POSTGRES`` (the URL printed by `start`), or start one of their
own for the session with `start` (tests/conftest.py); each test gets a
database of its own on it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from typing import List, Optional

#: Where Debian puts the server's programs (not on PATH there).
_DEBIAN = "/usr/lib/postgresql"


def _program(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    if os.path.isdir(_DEBIAN):
        for version in sorted(os.listdir(_DEBIAN), reverse=True):
            path = os.path.join(_DEBIAN, version, "bin", name)
            if os.access(path, os.X_OK):
                return path
    return None


def _as_server_user(argv: List[str]) -> List[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CannotStart(Exception):
    """Why no server could be started here."""


def start(directory: str) -> str:
    """Make and start a cluster in `directory`; its URL."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise CannotStart("PostgreSQL's initdb and pg_ctl are not installed "
                          "(Debian: apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise CannotStart("running as root and there is no user postgres to run "
                              "the server as") from None
    os.makedirs(directory, exist_ok=True)
    data = os.path.join(directory, "data")
    if os.geteuid() == 0:
        os.chown(directory, user.pw_uid, user.pw_gid)
    port = _free_port()
    log = os.path.join(directory, "server.log")
    steps = [
        [initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--no-instructions"],
        [pg_ctl, "-D", data, "-l", log, "-w", "-t", "60", "-o",
         f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
         "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
         "start"],
    ]
    for argv in steps:
        out = subprocess.run(_as_server_user(argv), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
        if out.returncode != 0:
            tail = out.stdout.strip().splitlines()[-3:]
            try:
                with open(log) as f:
                    tail += f.read().strip().splitlines()[-3:]
            except OSError:
                pass
            raise CannotStart(f"{os.path.basename(argv[0])} failed: {' | '.join(tail)}")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def stop(directory: str) -> None:
    """Stop the server of `directory` and remove it."""
    pg_ctl = _program("pg_ctl")
    data = os.path.join(directory, "data")
    if pg_ctl is not None and os.path.isdir(data):
        subprocess.run(_as_server_user([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


def _admin(url: str) -> object:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                           autocommit=True)


def create_database(url: str, name: str) -> str:
    """Make database `name` on the server of `url`; the URL of it."""
    with _admin(url) as con:   # type: ignore[attr-defined]
        con.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str, name: str) -> None:
    """Drop database `name` (its connections ended first)."""
    deadline = time.monotonic() + 30
    with _admin(url) as con:   # type: ignore[attr-defined]
        while True:
            con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            try:
                con.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def main(argv: List[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pgserver start|stop DIR", file=sys.stderr)
        return 4
    if argv[0] == "start":
        try:
            print(start(os.path.abspath(argv[1])))
        except CannotStart as exc:
            print(f"cannot start PostgreSQL: {exc}", file=sys.stderr)
            return 1
        return 0
    stop(os.path.abspath(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

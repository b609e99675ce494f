#!/usr/bin/env python3
"""SQLite works on this filesystem: a database written, closed and opened
again holds what was written and passes its integrity check (pexen's journal
is a SQLite file). Skips (exit status 77) if Python has no sqlite3 module."""

import os
import sys
import tempfile

try:
    import sqlite3
except ImportError:
    print("sqlite-roundtrip: this Python has no sqlite3 module, skipping")
    sys.exit(77)

ROWS = 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pexen-smoke-") as tmp:
        path = os.path.join(tmp, "roundtrip.db")
        db = sqlite3.connect(path)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        with db:
            db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, sq INTEGER NOT NULL)")
            db.executemany("INSERT INTO t VALUES (?, ?)", ((n, n * n) for n in range(ROWS)))
        db.close()

        db = sqlite3.connect(path)
        try:
            count, total = db.execute("SELECT count(*), sum(sq) FROM t").fetchone()
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()

    expected = sum(n * n for n in range(ROWS))
    if (count, total) != (ROWS, expected):
        print(f"sqlite-roundtrip: read back {count} rows summing to {total}, "
              f"expected {ROWS} rows summing to {expected}", file=sys.stderr)
        return 1
    if check != "ok":
        print(f"sqlite-roundtrip: integrity check says {check!r}", file=sys.stderr)
        return 1
    print(f"sqlite-roundtrip: SQLite {sqlite3.sqlite_version}, journal mode {mode}, "
          f"{count} rows read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())

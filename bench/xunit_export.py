#!/usr/bin/env python3
"""How long `pexen-harness export --xunit` takes on a big run, and its memory.

Builds a journal with one finished run of ``--tasks`` tasks (default
100,000; keys ``areaA/suiteB/testC``), of which 1% failed with ``--output``
bytes (default 5 KB) of captured stdout each, the rest passed quietly;
then, in a fresh interpreter per repetition (``--one``), times
``pexen.harness.export.export_run`` (reading the journal, building the
cases, writing the file) and reports the peak RSS of that process
(``ru_maxrss``). The file is validated against the JUnit schema when
``xmlschema`` is installed and the schema is found (``--xsd``).

Printed: the median seconds of ``--reps`` runs (default 3) split into
reading the rows and writing the XML, the peak RSS, the file's size, and
the targets: at most 3 s and 300 MB for 100k tasks. Also, as a baseline in
the same invocation, the time to read the same rows with the plain sqlite3
module (the floor any exporter from this journal pays).

    python bench/xunit_export.py
    python bench/xunit_export.py --tasks 10000

A report: exit 0 whatever the figures, 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_XSD = os.path.join(HERE, "..", "tests", "junit-10.xsd")


def build(journal: str, n: int, output: int) -> None:
    from pexen.harness.controller import data_root
    from pexen.journal import open_journal

    keys = [f"area{i % 10}/suite{(i // 10) % 100}/test{i}" for i in range(n)]
    j = open_journal(journal, create=True)
    try:
        run_id = j.create_run({"kind": "function", "target": "big:tasks", "cwd": "/"},
                              {"data_root": data_root(journal)}, [(k, {}) for k in keys],
                              host="bench", boot_id="b", controller_pid=1,
                              controller_started=0.0)
    finally:
        j.close()
    root = data_root(journal)
    now = time.time()
    line = "x" * 99 + "\n"
    body = (line * (output // 100 + 1))[:output]
    con = sqlite3.connect(journal)
    try:
        failing = []
        for i, key in enumerate(keys):
            if i % 100 == 0:
                failing.append((now, now + 0.5, 0.5, "exit status 1", key))
                d = os.path.join(root, str(run_id), key)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "1.out"), "w") as f:
                    f.write(body)
        con.execute("UPDATE tasks SET state='pass', attempt=1, started_at=?, finished_at=?, "
                    "time_used=0.01 WHERE run_id=?", (now, now + 0.01, run_id))
        con.executemany("UPDATE tasks SET state='fail', started_at=?, finished_at=?, "
                        "time_used=?, reason=?, exc_type='TaskOutcome', "
                        "exc_text='TaskOutcome: exit status 1' WHERE key=?", failing)
        con.execute("UPDATE runs SET state='finished', exit_code=1, finished_at=?", (now,))
        con.commit()
    finally:
        con.close()


def one(journal: str, out: str) -> dict:
    from pexen import xunit
    from pexen.harness import export
    from pexen.journal import open_journal

    j = open_journal(journal, create=False)
    try:
        run = j.newest()
        t0 = time.perf_counter()
        cases = export.cases_of(j, run, journal)
        t1 = time.perf_counter()
        counts = xunit.write(out, export.suite_name(run), cases, timestamp=run.created_at,
                             hostname=run.host)
        t2 = time.perf_counter()
    finally:
        j.close()
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    t3 = time.perf_counter()
    rows = con.execute("SELECT * FROM tasks").fetchall()
    t4 = time.perf_counter()
    con.close()
    return {"read": t1 - t0, "write": t2 - t1, "total": t2 - t0, "sqlite3": t4 - t3,
            "rows": len(rows), "counts": counts,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "size": os.path.getsize(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--output", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--xsd", default=DEFAULT_XSD)
    parser.add_argument("--one", nargs=2, metavar=("JOURNAL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return 0
    print(f"xunit_export: {args.tasks:,} tasks, 1% failing with {args.output:,} bytes of "
          f"output; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="pexen-xunit-") as where:
        journal = os.path.join(where, "big.sqlite")
        t0 = time.perf_counter()
        build(journal, args.tasks, args.output)
        print(f"  journal built in {time.perf_counter() - t0:.1f} s (not timed below)")
        results = []
        out = os.path.join(where, "results.xml")
        for _ in range(args.reps):
            proc = subprocess.run([sys.executable, __file__, "--one", journal, out],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"  FAILED:\n{proc.stderr}")
                return 1
            results.append(json.loads(proc.stdout))
        med = {k: statistics.median(r[k] for r in results)
               for k in ("read", "write", "total", "sqlite3", "rss_mib")}
        last = results[-1]
        print(f"  export: {med['total']:.2f} s median of {args.reps} (read + build cases "
              f"{med['read']:.2f} s, write XML {med['write']:.2f} s); peak RSS "
              f"{med['rss_mib']:.0f} MiB; file {last['size'] / 1e6:.1f} MB; "
              f"counts {last['counts']}")
        print(f"  baseline: all task rows with plain sqlite3 {med['sqlite3']:.2f} s "
              f"(export is {med['total'] / med['sqlite3']:.1f}x that)")
        if os.path.exists(args.xsd):
            try:
                import xmlschema
            except ImportError:
                print("  (xmlschema not installed: not validated)")
            else:
                t0 = time.perf_counter()
                xmlschema.XMLSchema(args.xsd).validate(out)
                print(f"  valid against {os.path.basename(args.xsd)} "
                      f"({time.perf_counter() - t0:.1f} s to check)")
        if args.tasks >= 100_000:
            print(f"  target <= 3 s: {'PASS' if med['total'] <= 3 else 'FAIL'}; "
                  f"target <= 300 MB: {'PASS' if med['rss_mib'] <= 300 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

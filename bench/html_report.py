#!/usr/bin/env python3
"""How long `pexen-harness export --html` takes on a big run, and how soon a
browser shows the page.

Builds a journal with one finished run of ``--tasks`` tasks (default
100,000; keys ``areaA/suiteB/testC``) that ran at -j 4 and whose controller
died once half-way (the tasks it was running interrupted, run again after
the resume); 1% failed with ``--output`` bytes (default 5 KB) of captured
stdout each, the rest passed quietly. Every task has its events (queued,
running, its end), as a real run journals them.

Then:

- the export, in a fresh interpreter per repetition: `export_html` (read the
  journal, build the page's data, write the file), its peak RSS, the file's
  size; beside it, as the baseline in the same invocation, the JUnit export
  of the same run (`export_run`), and plain sqlite3 reading every task and
  event row (the floor of any exporter from this journal);
- with Debian's chromium and chromedriver and Selenium installed: the page
  opened ``--reps`` times in headless chromium, each a fresh load, timing
  from the navigation's start until the page says it is drawn (its data
  parsed, the summary, the first page of the table and the timeline
  drawn), then one filter (only the failures), one sort (by duration) and a
  zoom of the timeline, each timed in the page.

Targets (issue 17): export <= 5 s and first render <= 3 s at 100k tasks.

    python bench/html_report.py
    python bench/html_report.py --tasks 10000 --reps 5

A report: exit 0 whatever the figures, 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time


def build(journal: str, n: int, output: int, workers: int = 4) -> None:
    """The run: `workers` lanes of tasks back to back, a controller death at
    the middle (its running tasks interrupted at the resume, 2 s later)."""
    from pexen.harness.controller import data_root
    from pexen.journal import open_journal

    keys = [f"area{i % 10}/suite{(i // 10) % 100}/test{i}" for i in range(n)]
    j = open_journal(journal, create=True)
    try:
        run_id = j.create_run({"kind": "function", "target": "big:tasks", "cwd": "/"},
                              {"data_root": data_root(journal), "workers": workers,
                               "pool": "process"}, [(k, {}) for k in keys],
                              host="bench", boot_id="b", controller_pid=1,
                              controller_started=0.0)
    finally:
        j.close()
    root = os.path.join(data_root(journal), str(run_id))
    t0 = time.time() - n * 0.01
    line = "x" * 99 + "\n"
    body = (line * (output // 100 + 1))[:output]
    events = []
    tasks = []
    lane_free = [t0] * workers
    crash_at = n // 2
    for i, key in enumerate(keys):
        lane = i % workers
        start = lane_free[lane]
        took = 0.5 if i % 100 == 0 else 0.01 + (i % 7) * 0.002
        if i == crash_at:
            # the controller dies: the tasks running then are interrupted
            # at the resume, 2 s later, and run again
            resumed = max(lane_free) + 2.0
            events.append((run_id, None, "running", "running", resumed,
                           json.dumps({"resumed_by": 2})))
            lane_free = [resumed] * workers
            start = resumed
        attempt = 1
        if crash_at - workers <= i < crash_at:
            events += [(run_id, key, "pending", "queued", start, None),
                       (run_id, key, "queued", "running", start, None),
                       (run_id, key, "running", "interrupted", max(lane_free) + 2.0,
                        '{"by": "controller death"}')]
            attempt = 2
            continue   # (run again below, after the resume: appended at the end)
        state = "fail" if i % 100 == 0 else "pass"
        events += [(run_id, key, "pending", "queued", start, None),
                   (run_id, key, "queued", "running", start + 0.0005, None),
                   (run_id, key, "running", state, start + took, None)]
        tasks.append((state, attempt, start, start + took, took,
                      "exit status 1" if state == "fail" else None, run_id, key))
        lane_free[lane] = start + took
        if state == "fail":
            d = os.path.join(root, key)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "1.out"), "w") as f:
                f.write(body)
    end = max(lane_free)
    for i in range(crash_at - workers, crash_at):
        key = keys[i]
        events += [(run_id, key, "interrupted", "queued", end, None),
                   (run_id, key, "queued", "running", end, None),
                   (run_id, key, "running", "pass", end + 0.02, None)]
        tasks.append(("pass", 2, end, end + 0.02, 0.02, None, run_id, key))
        end += 0.02
    events.append((run_id, None, "running", "finished", end, None))
    con = sqlite3.connect(journal)
    try:
        con.executemany("UPDATE tasks SET state=?, attempt=?, started_at=?, finished_at=?, "
                        "time_used=?, reason=? WHERE run_id=? AND key=?", tasks)
        con.executemany("INSERT INTO events (run_id, key, from_state, to_state, at, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)", events)
        con.execute("UPDATE runs SET state='finished', exit_code=1, finished_at=?, "
                    "created_at=?", (end, t0))
        con.execute("UPDATE events SET at=? WHERE key IS NULL AND from_state IS NULL", (t0,))
        con.commit()
    finally:
        con.close()


def one(journal: str, out: str, kind: str) -> dict:
    from pexen.harness import export, htmlreport
    from pexen.journal import open_journal

    j = open_journal(journal, create=False)
    try:
        run = j.newest()
        t0 = time.perf_counter()
        if kind == "html":
            data = htmlreport.report_data(j, run, journal)
            t1 = time.perf_counter()
            htmlreport.write(out, data)
        else:
            cases = export.cases_of(j, run, journal)
            t1 = time.perf_counter()
            from pexen import xunit

            xunit.write(out, export.suite_name(run), cases, timestamp=run.created_at,
                        hostname=run.host)
        t2 = time.perf_counter()
    finally:
        j.close()
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    t3 = time.perf_counter()
    rows = len(con.execute("SELECT * FROM tasks").fetchall())
    rows += len(con.execute("SELECT * FROM events").fetchall())
    t4 = time.perf_counter()
    con.close()
    return {"read": t1 - t0, "write": t2 - t1, "total": t2 - t0, "sqlite3": t4 - t3,
            "rows": rows, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "size": os.path.getsize(out)}


def browser(page: str, reps: int) -> dict:
    """Load `page` `reps` times in headless chromium; the page's own timings."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="pexen-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")
                                              or "/usr/bin/chromedriver"), options=options)
    try:
        loads, scripts = [], []
        for _ in range(reps):
            driver.get("about:blank")
            driver.get("file://" + os.path.abspath(page))
            deadline = time.monotonic() + 30
            while True:   # (the load event may come before a big page is drawn)
                ready = driver.execute_script(
                    "return !!document.body && document.body.getAttribute('data-ready') "
                    "=== '1' && [window.pexenReport.readyAt, window.pexenReport.renderMs]")
                if ready or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if not ready:
                raise RuntimeError("the page did not draw (no data-ready)")
            loads.append(ready[0] / 1000)
            scripts.append(ready[1] / 1000)
        timed = driver.execute_script("""
            var t = performance.now();
            document.querySelector('#counts button[data-outcome=fail]').click();
            var filter = performance.now() - t;
            var shown = document.querySelectorAll('#tasks tbody tr').length;
            t = performance.now();
            document.querySelector('th[data-col=time] button').click();
            var sort = performance.now() - t;
            t = performance.now();
            document.getElementById('zoom-in').click();
            var zoom = performance.now() - t;
            return [filter, sort, zoom, shown];""")
        return {"load": statistics.median(loads), "script": statistics.median(scripts),
                "loads": loads, "filter": timed[0] / 1000, "sort": timed[1] / 1000,
                "zoom": timed[2] / 1000, "rows": timed[3]}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--output", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--one", nargs=3, metavar=("JOURNAL", "OUT", "KIND"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return 0
    print(f"html_report: {args.tasks:,} tasks at -j 4, one controller death, 1% failing with "
          f"{args.output:,} bytes of output; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="pexen-html-") as where:
        journal = os.path.join(where, "big.sqlite")
        t0 = time.perf_counter()
        build(journal, args.tasks, args.output)
        print(f"  journal built in {time.perf_counter() - t0:.1f} s (not timed below)")
        med = {}
        for kind, out in (("html", os.path.join(where, "report.html")),
                          ("xunit", os.path.join(where, "results.xml"))):
            results = []
            for _ in range(args.reps):
                proc = subprocess.run([sys.executable, __file__, "--one", journal, out, kind],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"  FAILED ({kind}):\n{proc.stderr}")
                    return 1
                results.append(json.loads(proc.stdout))
            med[kind] = {k: statistics.median(r[k] for r in results)
                         for k in ("read", "write", "total", "sqlite3", "rss_mib", "size")}
        h, x = med["html"], med["xunit"]
        print(f"  export --html: {h['total']:.2f} s median of {args.reps} (journal to data "
              f"{h['read']:.2f} s, page written {h['write']:.2f} s); peak RSS "
              f"{h['rss_mib']:.0f} MiB; page {h['size'] / 1e6:.1f} MB")
        print(f"  baseline export --xunit of the same run: {x['total']:.2f} s, peak RSS "
              f"{x['rss_mib']:.0f} MiB (html is {h['total'] / x['total']:.2f}x); every task "
              f"and event row with plain sqlite3: {h['sqlite3']:.2f} s")
        page = os.path.join(where, "report.html")
        try:
            import selenium  # noqa: F401
            have = bool(shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver"))
        except ImportError:
            have = False
        b = None
        if not have:
            print("  browser: not measured (needs selenium, and Debian's chromium and "
                  "chromium-driver)")
        else:
            b = browser(page, args.reps)
            print(f"  chromium (headless): first render {b['load']:.2f} s median of "
                  f"{args.reps} fresh loads (navigation start to drawn; the page's script "
                  f"{b['script']:.2f} s of it); loads {', '.join(f'{v:.2f}' for v in b['loads'])}")
            print(f"  in the page: only failures {b['filter'] * 1000:.0f} ms ({b['rows']} rows "
                  f"shown), sort by duration {b['sort'] * 1000:.0f} ms, zoom "
                  f"{b['zoom'] * 1000:.0f} ms")
        if args.tasks >= 100_000:
            print(f"  target export <= 5 s: {'PASS' if h['total'] <= 5 else 'FAIL'}"
                  + ("" if b is None else
                     f"; target first render <= 3 s: {'PASS' if b['load'] <= 3 else 'FAIL'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

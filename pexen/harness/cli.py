"""`pexen-harness`: a thin CLI; each verb is a short function over the library
that returns an exit code (0 all passed, 1 some failed, 2 interrupted,
3 internal or journal error, 4 usage or suite error).

Each verb imports what it needs when it runs: `status`, `list`, `log` and
`export` read a journal with the standard library's sqlite3 and load
neither the engine, the suites nor SQLAlchemy; `start` and `resume` load
the engine and the controller (see doc/journal.md, "What is loaded when").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from .. import __version__ as pexen_version
from ..journal import JournalError
from ..util import PexenError, parse_duration, parse_size
from ._journal import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, HarnessError, journal_path, pick_run
from ._journal import open_for_verb as _open
from .progress import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, List, Optional, Tuple

#: bootunit.DEFAULT_UNIT_DIR, for the parser (built before a verb imports bootunit;
#: tests/harness/test_startup.py holds them equal)
DEFAULT_UNIT_DIR = "/etc/systemd/system"


def _progress(total: int, done: int, timestamps: bool = False) -> Any:
    from .progress import Progress

    return Progress(total, done, timestamps=timestamps)


def _progress_of(args: argparse.Namespace) -> Callable[[int, int], Any]:
    """The progress lines start and resume print, as `args` ask."""
    stamps = bool(getattr(args, "timestamps", False))
    return lambda total, done: _progress(total, done, stamps)


def _check_xunit(args: argparse.Namespace) -> None:
    if args.xunit or args.html:   # (the exporters: only for --xunit, --html)
        from .export import check_target

        check_target(args.xunit)
        check_target(args.html, "--html")


def cmd_start(args: argparse.Namespace) -> int:
    from .run import Options, Pick, start

    grace = Options.kill_grace if args.kill_grace is None else args.kill_grace
    dask = args.dask if args.dask is not None else (os.environ.get("PEXEN_DASK") or None)
    workers = args.workers if args.workers is not None else (0 if dask else Options.workers)
    options = Options(workers, args.pool, args.max_attempts, args.timeout, grace,
                      args.run_timeout,
                      Options.max_reboots if args.max_reboots is None else args.max_reboots,
                      (Options.drain_timeout if args.drain_timeout is None
                       else args.drain_timeout), args.reboot_command, args.allow_reboot,
                      Options.max_output if args.max_output is None else args.max_output,
                      dask)
    _check_xunit(args)
    if args.boot_unit and "://" in journal_path(args.journal):
        raise HarnessError("--boot-unit needs a journal file, not a database URL")
    installed = _boot_unit_at_start(args)
    pick = Pick(tuple(args.select or ()), tuple(args.exclude or ()), tuple(args.prefer or ()),
                not args.no_deps, args.pytest_args)
    ended = _Ended(args)
    start(args.suite, args.journal, options, _progress_of(args),
          extra_config={"boot_unit": installed} if installed else None,
          pick=pick, rerun_failed=args.rerun_failed, on_end=ended)
    return ended.after()


def cmd_resume(args: argparse.Namespace) -> int:
    from .run import resume

    given = {name: getattr(args, name)
             for name in ("workers", "pool", "max_attempts", "timeout", "kill_grace",
                          "run_timeout", "max_reboots", "drain_timeout", "reboot_command",
                          "max_output", "dask")
             if getattr(args, name) is not None}
    if args.allow_reboot:
        given["allow_reboot"] = True
    _check_xunit(args)
    ended = _Ended(args)
    resume(args.journal, args.run, given, _progress_of(args),
           rerun_interrupted=args.rerun_interrupted, on_end=ended)
    return ended.after()


class _Ended:
    """What start/resume do when the session has ended, however it ended
    (finished, failed, interrupted, about to reboot): the verdict line and
    --xunit (`__call__`, with the session's journal still open), then the
    boot unit's removal and the reboot a task asked for (`after`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run: Any = None
        self.code = EXIT_INTERNAL

    def __call__(self, j: Any, run_id: int, code: int) -> int:
        args = self.args
        self.run = run = j.run(run_id)
        if run.state != "rebooting":
            _say(f"run {run_id}: {_verdict(code)} (pexen-harness status {run_id}"
                 f"{_journal_hint(args)})")
        for option in ("xunit", "html"):
            target = getattr(args, option)
            if not target:
                continue
            try:
                summary = _export(option, j, run, journal_path(args.journal), args)
            except OSError as exc:
                print(f"pexen-harness: error: cannot write --{option} {target}: "
                      f"{exc.strerror or exc}", file=sys.stderr)
                code = EXIT_INTERNAL
            else:
                _say(f"{option}: {target} ({summary})")
        self.code = code
        return code

    def after(self) -> int:
        assert self.run is not None, "the session did not end"
        return _after_end(self.args, self.run, self.code)


def _journal_hint(args: argparse.Namespace) -> str:
    """` --journal PATH` for a command the user is told to run next, when
    this one was given its journal with --journal (from $PEXEN_JOURNAL or
    the default, the next command finds it the same way)."""
    path = getattr(args, "journal", None)
    if not path:
        return ""
    import shlex

    from ..journal._open import shown

    return f" --journal {shlex.quote(shown(path))}"


def _say(text: str, flush: bool = False) -> None:
    """Print a line of `start`/`resume` to stdout. If its reader went away
    (`... | head`), what is printed from now on goes to /dev/null: the run's
    --xunit file, its reboot and its exit code do not depend on a reader."""
    try:
        print(text, flush=flush)
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    from .progress import to_devnull

    to_devnull(sys.stdout)


def _after_end(args: argparse.Namespace, run: Any, code: int) -> int:
    """Once the journal is closed: remove the boot unit of a finished run;
    run the reboot command if a task asked for a reboot."""
    path = journal_path(args.journal)
    run_id = run.id
    unit = run.config.get("boot_unit")
    if run.state == "finished" and unit and os.path.exists(unit):
        from . import bootunit

        try:
            bootunit.remove(path, os.path.dirname(unit))
            _say(f"removed the boot unit {unit} (the run has finished)")
        except OSError as exc:
            print(f"pexen-harness: warning: could not remove the boot unit {unit}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
    if run.state == "rebooting":
        from .reboot import reboot_command

        command = reboot_command(run.config.get("reboot_command"))
        j = _open(path, create=False)
        try:
            # so that resume, with the same boot id, tells "the reboot did not
            # happen" from "the controller died before it asked for it"
            j.add_run_event(run_id, "reboot-issued", {"command": command})
        finally:
            j.close()
        _say(f"run {run_id}: rebooting ({command}); after the boot, pexen-harness resume"
             f"{_journal_hint(args)} continues the run", flush=True)
        sys.stderr.flush()
        import subprocess

        done = subprocess.run(command, shell=True)
        if done.returncode != 0:
            print(f"pexen-harness: error: the reboot command failed (exit "
                  f"{done.returncode}): {command}", file=sys.stderr)
            return EXIT_INTERNAL
    return code


def cmd_boot_unit(args: argparse.Namespace) -> int:
    from . import bootunit

    path = journal_path(args.journal)
    if "://" in path:
        raise HarnessError("boot-unit needs a journal file, not a database URL")
    try:
        if args.install:
            print(f"installed and enabled {bootunit.install(path, args.unit_dir)}")
        elif args.remove:
            done = bootunit.remove(path, args.unit_dir)
            print(f"removed {done}" if done else
                  f"no unit for {path} in {args.unit_dir}")
        else:
            sys.stdout.write(f"# {bootunit.unit_name(path)}\n" + bootunit.unit_text(path))
    except OSError as exc:
        raise HarnessError(f"boot-unit: {exc.strerror or exc}") from None
    return EXIT_OK


def _boot_unit_at_start(args: argparse.Namespace) -> Optional[str]:
    """start --boot-unit: install the unit before the run (so a reboot in its
    first minute is covered); it is removed when the run finishes."""
    if not args.boot_unit:
        return None
    from . import bootunit

    path = journal_path(args.journal)
    try:
        return bootunit.install(path, args.unit_dir)
    except OSError as exc:
        raise HarnessError(f"--boot-unit: {exc.strerror or exc}") from None


def cmd_reboot(args: argparse.Namespace) -> int:
    from .outcome import EXIT_SKIP, TaskOutcome
    from .reboot import reboot
    from .report import report

    try:
        reboot()  # never returns: the controller ends this process before the reboot
    except TaskOutcome as exc:  # the run does not allow reboots: the task skips
        print(f"pexen-harness reboot: {exc}", file=sys.stderr)
        report("reboot", "skip", str(exc))  # the reason, beside "exit status 77"
        return EXIT_SKIP


def _counted(counts: Dict[str, int]) -> str:
    return (f"{counts['tests']} tests, {counts['failures']} failures, {counts['errors']} "
            f"errors, {counts['skipped']} skipped")


def _export(option: str, j: Any, run: Any, journal: str, args: argparse.Namespace) -> str:
    """Write run `run`'s --xunit or --html file (`option`) as `args` ask;
    what it holds, in a few words. OSError if it cannot be written."""
    if option == "xunit":
        from .export import export_run

        return _counted(export_run(j, run, journal, args.xunit, args.xunit_subresults))
    from .htmlreport import export_html

    return _by_state(export_html(j, run, journal, args.html))


def _by_state(counts: Dict[str, int]) -> str:
    """`{"pass": 3, "fail": 1}` as "4 tasks: 3 pass, 1 fail"."""
    return (f"{sum(counts.values())} tasks: "
            + ", ".join(f"{n} {state}" for state, n in sorted(counts.items(),
                                                              key=lambda kv: -kv[1])))


def cmd_export(args: argparse.Namespace) -> int:
    from .export import check_target

    if not args.xunit and not args.html:
        raise HarnessError("export needs --xunit FILE, --html FILE or both", EXIT_USAGE)
    check_target(args.xunit)
    check_target(args.html, "--html")
    path = journal_path(args.journal)
    if "://" not in path and not os.path.exists(path):
        raise HarnessError(f"no journal at {path} (give --journal)")
    j = _open(path, create=False)
    lines = []
    try:
        run = _run_or_newest(j, args.run)
        for option in ("xunit", "html"):
            target = getattr(args, option)
            if not target:
                continue
            try:
                summary = _export(option, j, run, path, args)
            except OSError as exc:
                raise HarnessError(f"cannot write --{option} {target}: "
                                   f"{exc.strerror or exc}", EXIT_INTERNAL) from None
            lines.append(f"run {run.id} ({run.state}): {target} ({summary})")
    finally:
        j.close()
    for line in lines:
        print(line)
    return EXIT_OK


def _verdict(code: int) -> str:
    return {0: "all passed", 1: "some failed", 2: "interrupted; resume with "
            "pexen-harness resume"}.get(code, f"exit {code}")


def _heartbeat_seconds() -> float:
    from .controller import HEARTBEAT_SECONDS

    return HEARTBEAT_SECONDS


#: The version of the fields `status --json`, `list --json` and `list --tasks
#: --json` print (doc/harness.md): raised when one changes meaning or goes
#: away, not when one is added.
JSON_SCHEMA = 1


def _status_data(j: Any, run: Any) -> Dict[str, Any]:
    counts = j.counts(run.id)
    age = time.time() - run.heartbeat_at if run.heartbeat_at else None
    if run.state == "finished":
        controller = "finished"   # (whether its last controller lives does not matter)
    else:
        from ._journal import controller_alive

        controller = "alive" if controller_alive(run) else "dead"
    return {
        "schema": JSON_SCHEMA,
        "run": run.id, "state": run.state, "suite": run.suite.get("target"),
        "created_at": run.created_at, "finished_at": run.finished_at,
        "exit_code": run.exit_code, "controller_pid": run.controller_pid,
        "controller": controller,
        "heartbeat_age": round(age, 1) if age is not None else None,
        "heartbeat_stale": bool(age is not None and run.state == "running"
                                and age > 3 * _heartbeat_seconds()),
        "tasks": sum(counts.values()), "counts": counts,
    }


def cmd_status(args: argparse.Namespace) -> int:
    j = _open(journal_path(args.journal), create=False)
    try:
        run = _run_or_newest(j, args.run)
        data = _status_data(j, run)
        if args.json:
            data["tasks_detail"] = [
                {"key": t.key, "state": t.state, "attempt": t.attempt,
                 "reason": t.reason, "time_used": t.time_used} for t in j.tasks(run.id)]
            print(json.dumps(data, indent=2))
            return EXIT_OK
        counts = ", ".join(f"{n} {s}" for s, n in sorted(data["counts"].items()))
        print(f"run {run.id} ({run.state}): {data['tasks']} tasks: {counts}")
        print(f"suite: {data['suite']}")
        if data["controller"] == "alive":
            beat = data["heartbeat_age"]
            line = f"controller alive (pid {run.controller_pid})"
            if beat is not None:
                line += f", last heartbeat {beat:.0f} s ago"
                if data["heartbeat_stale"]:
                    line += (f": stale (expected every {_heartbeat_seconds():g} s; the "
                             "controller may be hung or stopped)")
            print(line)
        elif data["controller"] == "dead":
            print(f"controller gone (pid {run.controller_pid}); continue with "
                  f"pexen-harness resume {run.id}{_journal_hint(args)}")
        for t in j.tasks(run.id):
            if t.state in ("fail", "timeout", "error"):
                print(f"  {t.state.upper():7} {one_line(t.key)}"
                      + (f": {one_line(t.reason)}" if t.reason else ""))
        return EXIT_OK
    finally:
        j.close()


def cmd_follow(args: argparse.Namespace) -> int:
    from .follow import follow

    j = _open(journal_path(args.journal), create=False)
    try:
        run = _run_or_newest(j, args.run)
        return follow(j, run, as_json=args.json, wait=args.wait, hint=_journal_hint(args))
    finally:
        j.close()


def _run_or_newest(j: Any, run_id: Optional[int]) -> Any:
    """Run RUN of the journal, or its newest run (finished or not)."""
    if run_id is not None:
        return pick_run(j, run_id)
    run = j.newest()
    if run is None:
        raise HarnessError(f"{j.where} has no runs yet")
    return run


def cmd_log(args: argparse.Namespace) -> int:
    path = journal_path(args.journal)
    j = _open(path, create=False)
    try:
        run = _run_or_newest(j, args.run)
        row = next((t for t in j.tasks(run.id) if t.key == args.key), None)
    finally:
        j.close()
    if row is None:
        raise HarnessError(f"run {run.id} has no task {args.key!r} (pexen-harness status "
                           f"{run.id}{_journal_hint(args)} --json lists them)")
    attempt = row.attempt if args.attempt is None else args.attempt
    if row.attempt == 0:
        raise HarnessError(f"task {args.key} of run {run.id} has not run yet")
    if not 1 <= attempt <= row.attempt:
        raise HarnessError(f"task {args.key} of run {run.id} has attempts 1 to "
                           f"{row.attempt}, not {attempt}")
    from ._outcap import DEFAULT_MAX_OUTPUT, dropped_in
    from .capture import key_path, log_paths, spooled

    root = run.config.get("data_root")
    if not root:   # (a run from before the config held it)
        from .controller import data_root

        root = data_root(path)
    run_root = os.path.join(root, str(run.id))
    paths = log_paths(os.path.join(run_root, key_path(args.key)), attempt)
    # A running attempt's latest output is still in its worker's spool.
    cap = int(run.config.get("max_output", DEFAULT_MAX_OUTPUT))
    live = (spooled(run_root, args.key, attempt, cap)
            if row.state in ("queued", "running") else {})
    streams = [("stdout", paths[0], live.get(".out")), ("stderr", paths[1], live.get(".err"))]
    if args.stdout or args.stderr:
        streams = [s for s, wanted in zip(streams, (args.stdout, args.stderr)) if wanted]
    out = sys.stdout.buffer
    for name, log, spool in streams:
        exists = os.path.exists(log)
        if not exists and not spool:
            if not (args.stdout or args.stderr):
                print(f"==> {name} of {one_line(args.key)} (run {run.id}, attempt "
                      f"{attempt}): nothing written <==", flush=True)
            continue
        if not (args.stdout or args.stderr):
            where = log if exists else "so far, still running"
            dropped = dropped_in(log) if exists else 0
            if dropped:
                where += f" ({dropped} bytes dropped by --max-output)"
            print(f"==> {name} of {one_line(args.key)} (run {run.id}, attempt {attempt}): "
                  f"{where} <==", flush=True)
        if exists:
            with open(log, "rb") as f:
                _copy(f, out)
        if spool:
            out.write(spool)
        out.flush()
    return EXIT_OK


def _copy(src: Any, dst: Any) -> None:
    import shutil

    shutil.copyfileobj(src, dst)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    try:
        report(args.name, args.outcome, args.message)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    if args.tasks is not None:
        return _list_tasks(args)
    if args.select or args.exclude or args.prefer or args.no_deps:
        raise HarnessError("--select, --exclude, --prefer and --no-deps go with --tasks SUITE")
    j = _open(journal_path(args.journal), create=False)
    try:
        runs = j.runs()
        if args.json:
            print(json.dumps([_status_data(j, r) for r in runs], indent=2))
            return EXIT_OK
        if not runs:
            print(f"no runs in {j.where}")
        for run in runs:
            counts = j.counts(run.id)
            failed = sum(counts.get(s, 0) for s in ("fail", "timeout", "error"))
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at))
            print(f"{run.id:5}  {when}  {run.state:11}  {sum(counts.values()):6} tasks  "
                  f"{failed:4} failed  {run.suite.get('target')}")
        return EXIT_OK
    finally:
        j.close()


def _list_tasks(args: argparse.Namespace) -> int:
    """list --tasks SUITE: what start would run, without running it."""

    from ..journal import task_meta
    from .selection import choose
    from .suite import SuiteError, load_suite_groups, parse_suite

    try:
        spec = parse_suite(args.tasks).replace(select=tuple(args.select or ()),
                       exclude=tuple(args.exclude or ()), prefer=tuple(args.prefer or ()),
                       deps=not args.no_deps, pytest_args=args.pytest_args)
        if spec.pytest_args and spec.kind != "pytest":
            raise HarnessError("--pytest-args is for a pytest:PATH suite")
        loaded = load_suite_groups(spec)
        tasks = loaded.tasks
        chosen = choose(spec, tasks)
    except SuiteError as exc:
        raise HarnessError(str(exc)) from None
    pulled = {p.key: p for p in chosen.pulled}
    group_of = loaded.group_of()
    if args.json:
        out = []
        for key, task in chosen.tasks:
            item: Dict[str, Any] = {"key": key, "meta": task_meta(task),
                                    "group": group_of.get(key)}
            if key in pulled:
                item["pulled_in"] = pulled[key].to_json()
            out.append(item)
        print(json.dumps({"schema": JSON_SCHEMA, "tasks": out, "unmet": chosen.unmet},
                         indent=2))
        return EXIT_OK
    width = min(max((len(k) for k, _ in chosen.tasks), default=0), 40)
    for key, task in chosen.tasks:
        meta = task_meta(task)
        parts = [f"{name}={','.join(map(str, meta[name]))}"
                 for name in ("requires", "provides", "claims", "uses") if meta.get(name)]
        parts += [f"{name}={meta[name]}" for name in ("priority", "timeout")
                  if meta.get(name)]
        if key in group_of:
            parts.append(f"group={group_of[key]}")
        if meta.get("when"):
            parts.append(f"when={json.dumps(meta['when'])}")
        line = f"{one_line(key):{width}}  {one_line(' '.join(parts))}".rstrip()
        print(line)
        if key in pulled:
            print(f"    pulled in: {one_line(pulled[key].why())}")
    for key, why in chosen.unmet.items():
        print(f"{one_line(key):{width}}  not run: {one_line(why)}")
    print(f"{len(chosen.tasks)} tasks to run ({len(chosen.tasks) - len(pulled)} selected, "
          f"{len(pulled)} pulled in)" + (f", {len(chosen.unmet)} not run"
                                          if chosen.unmet else ""))
    return EXIT_OK


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select", action="append", metavar="PATTERN",
                   help="run the tasks whose key matches this glob (repeatable; '*' also "
                        "matches '/', and 'net' matches every key under net/)")
    p.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="leave out the tasks whose key matches this glob (repeatable)")
    p.add_argument("--prefer", action="append", metavar="KEY",
                   help="where several tasks provide what a selected task requires, add "
                        "this one (repeatable; first wins)")
    p.add_argument("--no-deps", action="store_true",
                   help="add no providers: selected tasks whose requirements are not "
                        "met end skip")
    p.add_argument("--pytest-args", metavar="ARGS", type=_shell_words, default=(),
                   help="for a pytest:PATH suite: arguments for pytest, as one string "
                        "(\"-k net -p no:randomly\"); see doc/pytest.md")


def _shell_words(text: str) -> Tuple[str, ...]:
    import shlex

    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from None


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, made with a fixed width while the parser is
    built: argparse makes one for every argument it adds (to check its
    metavar), and each looked up the terminal's width (importing shutil, a
    system call). Help itself is laid out for the terminal."""

    building = False

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        if width is None and _Formatter.building:
            width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


def build_parser(verb: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of `pexen-harness`; with `verb`, only that verb's arguments
    are added (the other verbs are there, with their help line): argparse
    makes a help formatter for every argument it adds, and all of them cost
    as much as a reading verb's own work. While it is built, argparse's
    message catalogue is not looked up (each lookup searched the disk for
    translations: argparse's own messages, ten for each verb, not shown)."""
    translate = argparse._  # type: ignore[attr-defined]
    argparse._ = str  # type: ignore[attr-defined]
    _Formatter.building = True
    try:
        return _build_parser(verb)
    finally:
        argparse._ = translate  # type: ignore[attr-defined]
        _Formatter.building = False


def _build_parser(verb: Optional[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pexen-harness", formatter_class=_Formatter,
        description="Run test suites that survive crashes and reboots, with every "
                    "result kept in a journal.")
    parser.add_argument("-V", "--version", action="version",
                        version=f"pexen-harness {pexen_version} (Python "
                                f"{sys.version.split()[0]})",
                        help="print the version of pexen and of Python, and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    def add(name: str, **kw: Any) -> Any:
        made = sub.add_parser(name, formatter_class=_Formatter, **kw)
        return made if verb is None or verb == name else _Unused()

    journal_help = ("the journal: a file, or a database URL such as "
                    "postgresql+psycopg://host/db (default: $PEXEN_JOURNAL, else "
                    "./pexen-journal.sqlite)")

    p = add("start", help="start a new run of a suite",
                       description="Start a new run of SUITE: a directory of "
                                   "executables, a Python package or module name, or "
                                   "module:function returning tasks.")
    p.add_argument("suite", metavar="SUITE", nargs="?")
    p.add_argument("--journal", help=journal_help)
    _selection_arguments(p)
    p.add_argument("--rerun-failed", nargs="?", const=0, type=int, metavar="RUN",
                   help="instead of SUITE: a new run of the tasks that did not pass in "
                        "RUN (default: the newest run), and what they need")
    p.add_argument("-j", "--workers", type=int,
                   help="tasks run in parallel (default 2; with --dask, the cluster's "
                        "threads)")
    p.add_argument("--pool", choices=("process", "thread"), default="process",
                   help="run Python tasks in worker processes (default) or threads")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the tasks on the workers of this Dask scheduler "
                        "(tcp://host:8786; default: $PEXEN_DASK, else here); see doc/lab.md")
    p.add_argument("--max-attempts", type=int, default=3,
                   help="attempts of a task whose controller died under it (default 3)")
    _watchdog_arguments(p, "none", "10", "none")
    _reboot_arguments(p, "10", "600", "$PEXEN_REBOOT_COMMAND, else systemctl reboot")
    p.add_argument("--boot-unit", action="store_true",
                   help="install the systemd unit that resumes the run at boot (see "
                        "boot-unit); it is removed when the run finishes")
    p.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, help=argparse.SUPPRESS)
    _xunit_arguments(p, required=False)
    p.set_defaults(func=cmd_start)

    p = add("resume", help="continue a run after its controller died",
                       description="Continue the newest unfinished run (or RUN).")
    p.add_argument("run", metavar="RUN", nargs="?", type=int)
    p.add_argument("--journal", help=journal_help)
    p.add_argument("-j", "--workers", type=int, help="(default: as the run started)")
    p.add_argument("--pool", choices=("process", "thread"),
                   help="(default: as the run started)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="the Dask scheduler to run the rest on (default: as the run "
                        "started)")
    p.add_argument("--max-attempts", type=int, help="(default: as the run started)")
    _watchdog_arguments(p, "as the run started", "as the run started",
                        "the run's own limit")
    _reboot_arguments(p, "as the run started", "as the run started", "as the run started")
    p.add_argument("--rerun-interrupted", action="store_true",
                   help="after an unplanned reboot, run the tasks it cut short again "
                        "(as if each had rerun_on_interrupt metadata), up to --max-attempts")
    _xunit_arguments(p, required=False)
    p.set_defaults(func=cmd_resume)

    p = add("export", help="write a run's results as JUnit XML or an HTML page",
                       description="Write RUN (default: the newest run), as the journal "
                                   "has it now, as a JUnit XML file for Jenkins (--xunit) "
                                   "and/or one self-contained HTML page (--html).")
    p.add_argument("run", metavar="RUN", nargs="?", type=int)
    p.add_argument("--journal", help=journal_help)
    _xunit_arguments(p, required=False, export=True)
    p.set_defaults(func=cmd_export)

    p = add("status", help="show a run (default: the newest)",
                       description="Show the state of RUN (default: the newest run).")
    p.add_argument("run", metavar="RUN", nargs="?", type=int)
    p.add_argument("--journal", help=journal_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = add("follow", help="print a run's transitions and results as they happen",
                       description="Print what RUN (default: the newest run) has journaled "
                                   "so far, one line per task transition and reported "
                                   "result, then each new one as it is journaled, until "
                                   "the run finishes (or its controller is gone).")
    p.add_argument("run", metavar="RUN", nargs="?", type=int)
    p.add_argument("--journal", help=journal_help)
    p.add_argument("--json", action="store_true", help="print one JSON object a line")
    p.add_argument("--wait", action="store_true",
                   help="when the run's controller is gone before the run finished "
                        "(a crash, a reboot), wait for resume to take the run over and "
                        "follow it on")
    p.set_defaults(func=cmd_follow)

    p = add("log", help="print what a task wrote to stdout and stderr",
                       description="Print the stdout and stderr files of task KEY in "
                                   "RUN (default: the newest run), of its last attempt "
                                   "or of --attempt N.")
    p.add_argument("key", metavar="KEY")
    p.add_argument("run", metavar="RUN", nargs="?", type=int)
    p.add_argument("--attempt", type=int, help="(default: the last)")
    p.add_argument("--stdout", action="store_true",
                   help="only the stdout file, as it is (no header)")
    p.add_argument("--stderr", action="store_true",
                   help="only the stderr file, as it is (no header)")
    p.add_argument("--journal", help=journal_help)
    p.set_defaults(func=cmd_log)

    p = add("report", help="(from inside a task) record a result of the task",
                       description="Record a result of the running task besides its own "
                                   "(the task's final outcome is the worst of them). Run "
                                   "from inside a task started by pexen-harness: the "
                                   "journal and the task come from its PEXEN_* variables.")
    p.add_argument("name", metavar="NAME", help="what was checked")
    p.add_argument("outcome", metavar="OUTCOME",
                   help="pass, warn, skip, fail, timeout or error")
    p.add_argument("-m", "--message", help="what to say about it")
    p.set_defaults(func=cmd_report)

    p = add("boot-unit", help="print, install or remove the systemd unit that "
                                         "resumes the run at boot",
                       description="Print (default), install and enable (--install), or "
                                   "disable and remove (--remove) a systemd unit that runs "
                                   "pexen-harness resume for the journal at boot, after "
                                   "the network is up.")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--install", action="store_true",
                       help="write the unit to --unit-dir and enable it (needs root)")
    group.add_argument("--remove", action="store_true",
                       help="disable the unit and delete it")
    p.add_argument("--journal", help=journal_help)
    p.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR,
                   help="where units go (default: %(default)s)")
    p.set_defaults(func=cmd_boot_unit)

    p = add("reboot", help="(from inside a task) reboot the machine, then "
                                      "run the task again",
                       description="Ask for a reboot of the machine and wait for it (the "
                                   "controller ends this command). After the boot, "
                                   "pexen-harness resume runs the task again with "
                                   "PEXEN_REBOOT_COUNT one higher.")
    p.set_defaults(func=cmd_reboot)

    p = add("list", help="list the runs of a journal, or the tasks of a suite",
                       description="List the runs of the journal; with --tasks SUITE, the "
                                   "tasks `start SUITE` would run (with the same selection "
                                   "options), their metadata and what was pulled in and "
                                   "why, without running anything.")
    p.add_argument("--journal", help=journal_help)
    p.add_argument("--tasks", metavar="SUITE", help="list the tasks of SUITE instead")
    _selection_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
    return parser


class _Unused:
    """Stands for the parser of a verb that is not run: what is added to it
    goes nowhere."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> _Unused:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        return None


def _verb_of(argv: List[str]) -> str:
    """The verb of a command line ("" if none: the parser needs no verb's
    arguments to say what is wrong, or to print its help)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""


def _seconds(positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = parse_duration(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"not a duration {'> 0' if positive else '>= 0'} (seconds, or e.g. 5m, "
                f"1h 30m): {text!r}")
        return value

    return parse


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reboot_arguments(p: argparse.ArgumentParser, loops: str, drain: str,
                      command: str) -> None:
    p.add_argument("--allow-reboot", action="store_true",
                   help="let tasks reboot the machine (pexen.reboot(), pexen-harness "
                        "reboot); without it such a task ends skip" + (
                            "" if loops == "10" else " (default: as the run started)"))
    p.add_argument("--max-reboots", type=int, metavar="N",
                   help=f"reboots one task may ask for (default: {loops})")
    p.add_argument("--drain-timeout", type=_seconds(False), metavar="SECONDS",
                   help="how long the other running tasks may go on before a reboot; "
                        f"then they are ended and requeued (default: {drain})")
    p.add_argument("--reboot-command", metavar="COMMAND",
                   help=f"what reboots the machine (default: {command})")


def _xunit_arguments(p: argparse.ArgumentParser, required: bool,
                     export: bool = False) -> None:
    when = "" if export else " when the session ends (also when stopped)"
    p.add_argument("--xunit", metavar="FILE", required=required,
                   help="the JUnit XML file to write" + when)
    p.add_argument("--xunit-subresults", choices=("message", "cases"), default="message",
                   help="sub-results in the task's message (default), or as test cases "
                        "of their own")
    p.add_argument("--html", metavar="FILE",
                   help="the HTML report to write" + when + " (one file: the run, a "
                        "timeline, every task with its output; see doc/report.md)")


def _watchdog_arguments(p: argparse.ArgumentParser, timeout: str, grace: str,
                        run_timeout: str) -> None:
    p.add_argument("--timeout", type=_seconds(True), metavar="SECONDS",
                   help="limit of a task without `timeout` metadata "
                        f"(default: {timeout})")
    p.add_argument("--kill-grace", type=_seconds(False), metavar="SECONDS",
                   help="from SIGTERM to SIGKILL when a task is ended "
                        f"(default: {grace})")
    p.add_argument("--run-timeout", type=_seconds(True), metavar="SECONDS",
                   help="limit of the whole run: running tasks are ended, the rest "
                        f"skipped (default: {run_timeout})")
    p.add_argument("--timestamps", action="store_true",
                   help="begin each progress line with the time (HH:MM:SS)")
    p.add_argument("--max-output", type=_size, metavar="SIZE",
                   help="what each of an attempt's stdout and stderr keeps: its first "
                        "and last half of SIZE, with a line saying how much was dropped "
                        "between (e.g. 64MiB, 500K; 0: everything; default: "
                        + ("64MiB" if run_timeout == "none" else "as the run started") + ")")


def main(argv: Optional[List[str]] = None) -> int:
    """`pexen-harness ARGV...` (without `argv`: the program, its arguments
    from sys.argv, the process ending when this returns)."""
    program = argv is None
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_verb_of(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2; ours is 4
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    code = run_verb(args.func, args)
    if program:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End the program with `code` now: the exit handlers run and the
    standard streams are flushed, as in the interpreter's own exit, but its
    ~200 modules and every object the verb made are not torn down one by one
    (10-20 ms after a `start`; the journal, its writer and the pool are
    closed by then). Returns, leaving it to the interpreter's exit, where a
    thread that is not a daemon still runs (that exit waits for it) or a
    stream cannot be flushed (that exit reports it)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        main_thread = threading.main_thread()
        if any(t is not main_thread and not t.daemon and t.is_alive()
               for t in threading.enumerate()):
            return
    import atexit
    import gc

    # (for the fallback: nothing left is in a cycle that must be finalized)
    gc.freeze()
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None:
        return
    try:
        try:
            sys.stdout.flush()
        except BrokenPipeError:   # nobody reads it any more: nothing to report
            _stdout_to_devnull()
            sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    run_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def run_verb(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except HarnessError as exc:
        print(f"pexen-harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except JournalError as exc:
        print(f"pexen-harness: error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except PexenError as exc:
        if _is_scheduler_error(exc):  # the engine failed: not the user's doing
            print(f"pexen-harness: internal error: {exc} (this is a bug in pexen)",
                  file=sys.stderr)
            return EXIT_INTERNAL
        print(f"pexen-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly
        _stdout_to_devnull()
        return EXIT_OK
    except KeyboardInterrupt:
        print("pexen-harness: interrupted", file=sys.stderr)
        return 2
    except Exception:
        import traceback

        traceback.print_exc()
        print("pexen-harness: internal error (this is a bug in pexen)", file=sys.stderr)
        return EXIT_INTERNAL


def _is_scheduler_error(exc: BaseException) -> bool:
    # only the engine raises these: if it was not loaded, this is not one
    sched = sys.modules.get("pexen.sched")
    return sched is not None and isinstance(exc, sched.SchedulerError)


if __name__ == "__main__":
    sys.exit(main())

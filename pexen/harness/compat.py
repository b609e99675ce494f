"""The commands of restraint and tmt that tests written for them call, so
that such tests run unchanged under pexen (doc/restraint-tmt.md):

- ``rstrnt-report-result``, ``tmt-report-result`` (the same options) and
  the legacy ``rhts-report-result`` record a result of the running task, as
  `pexen-harness report` does (`pexen.harness.report.report`);
- ``rstrnt-reboot``, ``rhts-reboot`` and ``tmt-reboot`` ask for a reboot,
  as `pexen-harness reboot` does.

Each is a small shell script in ``_compat_bin/`` (first on every task's
PATH: see `context.task_path`) that runs ``$PEXEN_PYTHON`` (the
controller's interpreter) on `main` with the command's name first. What is
imported here is only what a report needs: a test may report often.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Callable, Dict, List, Optional, Tuple

#: RESULT (in any case) -> pexen outcome. restraint's results are PASS, WARN,
#: FAIL, SKIP and NONE; tmt's also ERROR and INFO; Beaker's also PANIC.
RESULTS = {
    "PASS": "pass",
    "WARN": "warn",
    "FAIL": "fail",
    "SKIP": "skip",
    "SKIPPED": "skip",
    "ERROR": "error",
    "PANIC": "error",
    # informational: no verdict. pexen's mildest outcome, so that they never
    # make the task's worse; the message says what was reported.
    "NONE": "pass",
    "INFO": "pass",
}
INFORMATIONAL = ("NONE", "INFO")

#: Exit statuses: as `pexen-harness` (usage and no task context 4, the
#: journal 3), and 77 (skip) for a reboot the run does not allow.
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_SKIP = 0, 3, 4, 77

REPORT_USAGE = "[OPTION...] TESTNAME RESULT [SCORE]"
RHTS_USAGE = "TESTNAME RESULT [LOGFILE [METRIC]]"

#: rstrnt-report-result's options (tmt-report-result's are the same): name
#: -> (its long name, whether it takes a value). Only --message and
#: --outputfile mean something here; the others (a restraint server, its
#: plugins) are accepted and ignored.
_REPORT_OPTIONS = {
    "--server": ("--server", True), "-s": ("--server", True),
    "--port": ("--port", True),
    "--message": ("--message", True), "-t": ("--message", True),
    "--outputfile": ("--outputfile", True), "-o": ("--outputfile", True),
    "--disable-plugin": ("--disable-plugin", True), "-p": ("--disable-plugin", True),
    "--no-plugins": ("--no-plugins", False),
    "--help": ("--help", False), "-h": ("--help", False),
}
#: tmt-reboot's (getopts "c:t:esh")
_REBOOT_OPTIONS = {"-c": ("-c", True), "-t": ("-t", True), "-e": ("-e", False),
                   "-s": ("-s", False), "-h": ("--help", False)}


class UsageError(Exception):
    """The command was called wrong: one line on stderr, exit 4."""


def parse_options(args: List[str], options: Dict[str, Tuple[str, bool]]
                  ) -> Tuple[Dict[str, str], List[str]]:
    """Options (as glib parses them: anywhere among the arguments,
    ``--name VALUE``, ``--name=VALUE``, ``-n VALUE``, ``-nVALUE``; ``--``
    ends them) by their long names, and the positional arguments. An
    option's last value wins; one that takes no value maps to ""."""
    found: Dict[str, str] = {}
    positional: List[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", "")
        if not arg.startswith("--") and len(arg) > 2:   # -tVALUE
            eq, value = "=", arg[2:]
        known = options.get(name)
        if known is None:
            raise UsageError(f"unknown option {name}")
        long_name, takes = known
        if takes:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                value = args[i]
                i += 1
        elif eq:
            raise UsageError(f"option {name} takes no value")
        found[long_name] = value
    return found, positional


def outcome_of(result: str) -> str:
    """The pexen outcome of a restraint or tmt RESULT."""
    outcome = RESULTS.get(result.upper())
    if outcome is None:
        raise UsageError(f"unknown result {result!r}; one of PASS, WARN, FAIL, SKIP, ERROR, "
                         "NONE, INFO")
    return outcome


def message_of(result: str, message: Optional[str], score: Optional[str],
               logfile: Optional[str]) -> Optional[str]:
    """The message of the result: an informational RESULT, the message, the
    score and the log file (where it is: the file is not copied), each if
    there is one."""
    parts = []
    if result.upper() in INFORMATIONAL:
        parts.append(f"{result.upper()} (informational)")
    if message:
        parts.append(message)
    if score:
        parts.append(f"score {score}")
    if logfile and os.path.isfile(logfile):
        parts.append(f"log {os.path.abspath(logfile)}")
    return "; ".join(parts) or None


def record(name: str, result: str, message: Optional[str] = None,
           score: Optional[str] = None, logfile: Optional[str] = None) -> None:
    """Record a result of the running task as `pexen-harness report` does.
    An empty name, or ``/`` (tmt's "the test itself"), is the task's key.
    Raises UsageError for an unknown RESULT, NoContextError outside a task."""
    outcome = outcome_of(result)
    from .context import context
    from .report import report

    ctx = context()   # (first: outside a task, that is the error to tell)
    if not name.strip() or name == "/":
        name = ctx.task
    report(name, outcome, message_of(result, message, score, logfile))


def _count(args: List[str]) -> str:
    if len(args) < 2:
        return "TESTNAME and RESULT are needed" if not args else "RESULT is missing"
    return f"too many arguments ({len(args)})"


def report_result(prog: str, args: List[str]) -> int:
    """rstrnt-report-result / tmt-report-result [OPTION...] TESTNAME RESULT [SCORE]
    (restraint takes a fourth positional argument, and ignores it)."""
    options, positional = parse_options(args, _REPORT_OPTIONS)
    if "--help" in options:
        print(f"usage: {prog} {REPORT_USAGE}\n(pexen: records a result of the running "
              "task; --message and --outputfile are kept, the other options ignored)")
        return EXIT_OK
    if not 2 <= len(positional) <= 4:
        raise UsageError(f"{_count(positional)}; usage: {prog} {REPORT_USAGE}")
    score = positional[2] if len(positional) > 2 else None
    record(positional[0], positional[1], options.get("--message"), score,
           options.get("--outputfile", os.environ.get("OUTPUTFILE")))
    return EXIT_OK


def rhts_report_result(prog: str, args: List[str]) -> int:
    """rhts-report-result TESTNAME RESULT LOGFILE [METRIC]: positional only,
    as restraint's --rhts mode (an argument may start with "-"). LOGFILE
    may be left out ($OUTPUTFILE then), or empty."""
    if not 2 <= len(args) <= 4:
        raise UsageError(f"{_count(args)}; usage: {prog} {RHTS_USAGE}")
    logfile = args[2] if len(args) > 2 else os.environ.get("OUTPUTFILE")
    record(args[0], args[1], None, args[3] if len(args) > 3 else None, logfile)
    return EXIT_OK


def reboot(prog: str, args: List[str]) -> int:
    """rstrnt-reboot, rhts-reboot: `pexen-harness reboot` (arguments, which
    restraint's ignores, are ignored)."""
    from .outcome import TaskOutcome
    from .reboot import reboot as ask
    from .report import report

    try:
        ask()   # never returns: the controller ends this process before the reboot
    except TaskOutcome as exc:   # the run does not allow reboots: the task skips
        print(f"{prog}: {exc}", file=sys.stderr)
        report("reboot", "skip", str(exc))   # the reason, beside "exit status 77"
    return EXIT_SKIP


def tmt_reboot(prog: str, args: List[str]) -> int:
    """tmt-reboot [-t TIMEOUT] [-e] [-h]: -c COMMAND (a reboot command of the
    task's own) and -s (a systemd soft reboot, which keeps the boot id pexen
    tells a reboot by) are refused; -t (how long tmt waits for the machine
    to come back) and -e (a no-op in tmt) are ignored."""
    options, positional = parse_options(args, _REBOOT_OPTIONS)
    if "--help" in options:
        print(f"usage: {prog} [-t TIMEOUT]\n(pexen: reboots with the run's reboot command, "
              "see doc/reboot.md; -t is ignored, -c and -s are not supported)")
        return EXIT_OK
    if "-c" in options:
        raise UsageError("-c COMMAND is not supported: pexen reboots with the run's "
                         "reboot command (--reboot-command)")
    if "-s" in options:
        raise UsageError("-s (soft reboot) is not supported: pexen tells a reboot by a "
                         "new boot id, which a soft reboot keeps")
    if positional:
        raise UsageError(f"unexpected argument {positional[0]!r}")
    return reboot(prog, [])


COMMANDS: Dict[str, Callable[[str, List[str]], int]] = {
    "rstrnt-report-result": report_result,
    "tmt-report-result": report_result,
    "rhts-report-result": rhts_report_result,
    "rstrnt-reboot": reboot,
    "rhts-reboot": reboot,
    "tmt-reboot": tmt_reboot,
}


def main(argv: Optional[List[str]] = None) -> int:
    """``COMMAND ARG...`` (default: sys.argv[1:]) -> its exit status; an
    error is one line on stderr."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"pexen.harness.compat: error: the first argument is one of "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    prog, args = argv[0], argv[1:]
    from ..util import PexenError

    try:
        return COMMANDS[prog](prog, args)
    except (UsageError, ValueError) as exc:   # (ValueError: report's own checks)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PexenError as exc:   # no task context (4), the journal's (3)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        # (if the journal was not loaded, this is not one of its errors)
        journal = sys.modules.get("pexen.journal")
        return (EXIT_INTERNAL if journal is not None and isinstance(exc, journal.JournalError)
                else EXIT_USAGE)
    except Exception:
        import traceback

        traceback.print_exc()
        print(f"{prog}: internal error (this is a bug in pexen)", file=sys.stderr)
        return EXIT_INTERNAL


def run() -> None:
    """`main`, then end the process at once (what the scripts call): the
    exit handlers run and the streams are flushed, but the interpreter's
    modules are not torn down one by one (a few milliseconds of every
    report; as `pexen-harness` does)."""
    code = main()
    threading = sys.modules.get("threading")
    if threading is not None and any(not t.daemon and t is not threading.main_thread()
                                     and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)   # (the interpreter's exit waits for them)
    import atexit

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)   # (the interpreter's exit reports it)
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None:
        sys.exit(code)
    run_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


if __name__ == "__main__":
    run()

"""Records the finish of a task whose controller died, for the worker that
ran it (`controller.finish_survivor`), in a process of its own.

Why a process: the worker was forked from the controller while the
controller had the journal open, and SQLite's state for an open database
file (its locks, its memory map of the write-ahead log's index) does not
carry over a fork: a second connection opened in the worker can crash it
(SIGBUS, when another process rebuilds that index). A fresh interpreter
opens the journal cleanly. It costs a start-up, once, only when a
controller has died.

Reads one JSON object on stdin; exit status 0 if it recorded the finish,
1 if it did not have to (a controller claimed the run, the task moved on),
3 on an error.
"""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict


def main() -> int:
    record = json.load(sys.stdin)
    from ..journal import open_journal
    from ._journal import controller_alive

    j = open_journal(record["journal"], create=False)
    try:
        if record.get("reported"):
            _worst_reported(j, record)
        done = j.finish_survivor(record["run_id"], record["key"], record["attempt"],
                                 record["token"], record["state"], record["at"],
                                 record["fields"], record["used"], record["started"],
                                 record["detail"], is_alive=controller_alive)
    finally:
        j.close()
    return 0 if done else 1


def _worst_reported(j: Any, record: Dict[str, Any]) -> None:
    """A result the attempt reported that is worse than its own outcome is
    its outcome (as the controller would have made it)."""
    from ._words import OUTCOMES

    rank = {outcome: n for n, outcome in enumerate(OUTCOMES)}
    found = [r for r in j.results(record["run_id"], record["key"], record["attempt"])]
    if not found:
        return
    worst = max(found, key=lambda r: rank[r.outcome])
    if rank[worst.outcome] > rank[record["state"]]:
        text = f"reported {worst.name}: {worst.outcome}"
        if worst.message:
            text += f": {worst.message}"
        record["state"] = worst.outcome
        record["fields"]["reason"] = text


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:   # (the worker's stderr: its task's spool)
        print(f"pexen: recording a survivor's result failed: {exc}", file=sys.stderr)
        sys.exit(3)

"""The journal's schema at head, for creating a new journal without Alembic.

The schema is made and changed by the Alembic migrations in `migrations/`;
running them all on an empty SQLite file takes SQLAlchemy and Alembic,
about half a second of imports. A new journal (`pexen-harness start` into a
fresh file, the everyday case) is given these statements instead: they are
what the migrations leave in ``sqlite_master``, as SQLite keeps them, and
`tests/journal/test_schema.py` holds them to what Alembic makes from
`migrations/` (and `REVISIONS` to its revisions), so they cannot drift. A
new migration changes them: the test says so, and prints the new text.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Tuple

#: Every revision of `migrations/versions`, oldest first; the last is head.
REVISIONS: Tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005")
HEAD = REVISIONS[-1]

#: The statements that make an empty SQLite file a journal at HEAD, in the
#: order the migrations leave them (the order of ``sqlite_master``).
SQLITE_SCHEMA: Tuple[str, ...] = (
    ("CREATE TABLE alembic_version (\n"
     "\tversion_num VARCHAR(32) NOT NULL, \n"
     "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
     ")"),
    ("CREATE TABLE runs (\n"
     "\tid INTEGER NOT NULL, \n"
     "\tcreated_at FLOAT NOT NULL, \n"
     "\tfinished_at FLOAT, \n"
     "\tstate VARCHAR(16) NOT NULL, \n"
     "\tsuite TEXT NOT NULL, \n"
     "\tconfig TEXT NOT NULL, \n"
     "\thost VARCHAR(255) NOT NULL, \n"
     "\tboot_id VARCHAR(64) NOT NULL, \n"
     "\tcontroller_pid INTEGER, \n"
     "\tcontroller_started FLOAT, \n"
     "\theartbeat_at FLOAT, \n"
     "\texit_code INTEGER, \n"
     "\tPRIMARY KEY (id)\n"
     ")"),
    ("CREATE TABLE tasks (\n"
     "\tid INTEGER NOT NULL, \n"
     "\trun_id INTEGER NOT NULL, \n"
     '\t"key" TEXT NOT NULL, \n'
     "\tstate VARCHAR(16) NOT NULL, \n"
     "\tattempt INTEGER DEFAULT '0' NOT NULL, \n"
     "\treboot_count INTEGER DEFAULT '0' NOT NULL, \n"
     "\tqueued_at FLOAT, \n"
     "\tstarted_at FLOAT, \n"
     "\tfinished_at FLOAT, \n"
     "\ttime_used FLOAT DEFAULT '0' NOT NULL, \n"
     "\tpid INTEGER, \n"
     "\tpid_started FLOAT, \n"
     "\tboot_id VARCHAR(64), \n"
     "\ttoken VARCHAR(64), \n"
     "\tret TEXT, \n"
     "\tret_restorable BOOLEAN, \n"
     "\tshared TEXT, \n"
     "\tshared_restorable BOOLEAN, \n"
     "\texc_type VARCHAR(255), \n"
     "\texc_text TEXT, \n"
     "\treason TEXT, \n"
     "\tmeta TEXT, reboot_requested_at FLOAT, reboot_boot_id VARCHAR(64), "
     "interrupt_count INTEGER DEFAULT '0' NOT NULL, spared_count INTEGER DEFAULT '0' NOT NULL, "
     "\n"
     "\tPRIMARY KEY (id), \n"
     '\tUNIQUE (run_id, "key"), \n'
     "\tFOREIGN KEY(run_id) REFERENCES runs (id)\n"
     ")"),
    ("CREATE TABLE events (\n"
     "\tid INTEGER NOT NULL, \n"
     "\trun_id INTEGER NOT NULL, \n"
     '\t"key" TEXT, \n'
     "\tfrom_state VARCHAR(16), \n"
     "\tto_state VARCHAR(16) NOT NULL, \n"
     "\tat FLOAT NOT NULL, \n"
     "\tdetail TEXT, \n"
     "\tPRIMARY KEY (id), \n"
     "\tFOREIGN KEY(run_id) REFERENCES runs (id)\n"
     ")"),
    "CREATE INDEX ix_events_run_id_id ON events (run_id, id)",
    ("CREATE TABLE results (\n"
     "\tid INTEGER NOT NULL, \n"
     "\trun_id INTEGER NOT NULL, \n"
     '\t"key" TEXT NOT NULL, \n'
     "\tattempt INTEGER NOT NULL, \n"
     "\tname TEXT NOT NULL, \n"
     "\toutcome VARCHAR(16) NOT NULL, \n"
     "\tmessage TEXT, \n"
     "\tat FLOAT NOT NULL, \n"
     "\tPRIMARY KEY (id), \n"
     "\tFOREIGN KEY(run_id) REFERENCES runs (id)\n"
     ")"),
    'CREATE INDEX ix_results_run_id_key ON results (run_id, "key")',
)

SQLITE_HEAD_ROW = "INSERT INTO alembic_version (version_num) VALUES (?)"

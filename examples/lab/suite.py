"""The lab suite: the shell tests of examples/lab/shell and the Python tests
of examples/lab/checks.py, as one `module:function` suite. Run it from the
repository root:

    pexen-harness start examples.lab.suite:tasks

See examples/lab/README.md for what each part shows.
"""

import os

from pexen.harness.suite import directory_tasks
from pexen.sched import TaskGroup

from . import checks

HERE = os.path.dirname(os.path.abspath(__file__))


def tasks():
    return [
        # the shell tree: its ungrouped tests, then its groups 'vm' and 'syscalls'
        *directory_tasks(os.path.join(HERE, "shell")),
        checks.linux_only,
        # one more group: the database tests, one at a time in a thread
        TaskGroup("db", [checks.make_db, checks.db_read, checks.db_integrity],
                  pool="thread", workers=1),
        # made by a factory: digest/md5, digest/sha1, digest/sha256
        *checks.DigestFactory(checks.KNOWN)(),
    ]

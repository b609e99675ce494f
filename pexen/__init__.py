"""pexen: Python EXecution ENvironment, a scheduler grown into a resumable test harness.

The error tree::

    PexenError
     +-- SchedulerError               (pexen.sched)
          +-- DepcheckError           a `requires` no task `provides`
          +-- MutexError              the same lock in `claims` and `uses`
          +-- TaskKeyError            two tasks with one key
          +-- PoolError               a worker pool used the wrong way
"""

from . import factory, sched, util
from .harness.context import TaskContext, context
from .harness.reboot import reboot
from .harness.report import report
from .util import PexenError, PexenWarning

__version__ = "0.1.0.dev0"

__all__ = ["PexenError", "PexenWarning", "TaskContext", "context", "factory", "reboot", "report",
           "sched",
           "util", "__version__"]

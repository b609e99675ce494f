"""pexen: Python EXecution ENvironment, a scheduler grown into a resumable test harness.

The error tree::

    PexenError
     +-- SchedulerError               (pexen.sched)
          +-- DepcheckError           a `requires` no task `provides`
          +-- MutexError              the same lock in `claims` and `uses`
          +-- TaskKeyError            two tasks with one key
          +-- PoolError               a worker pool used the wrong way

The names below other than the errors are imported on first use (`pexen.sched`,
`pexen.context`, ...), so that `import pexen` (which every `pexen-harness`
verb does) costs almost nothing: a verb that only reads a journal loads
neither the engine nor its pools.
"""

from __future__ import annotations

from . import util
from .util import PexenError, PexenWarning

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any

__version__ = "0.1.0.dev0"

__all__ = ["PexenError", "PexenWarning", "TaskContext", "context", "factory", "reboot", "report",
           "sched",
           "util", "__version__"]

# name -> (module, attribute; None: the module itself)
_LAZY = {
    "factory": (".factory", None),
    "sched": (".sched", None),
    "TaskContext": (".harness.context", "TaskContext"),
    "context": (".harness.context", "context"),
    "reboot": (".harness.reboot", "reboot"),
    "report": (".harness.report", "report"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    value = importlib.import_module(module, __name__)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value   # once: the next look-up is a plain attribute
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))

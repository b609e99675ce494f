"""The engine: metadata, the incremental planner, worker pools (no I/O)."""

from . import meta, planner, pool
from ._daskpool import DaskWorkerPool
from ._events import EventKind, Listener, TaskEvent, outcome_of
from ._groups import TaskGroup
from .common import (
    ExceptionInfo,
    SchedulerError,
    TaskFailError,
    TaskKilledError,
    TaskRes,
    TaskSkipError,
    WorkerDiedError,
    task_fail_wrap,
)
from .planner import DepcheckError, MutexError, Sched, TaskKeyError
from .pool import PoolError, ProcessWorkerPool, ThreadWorkerPool

__all__ = [
    "DaskWorkerPool",
    "DepcheckError",
    "EventKind",
    "ExceptionInfo",
    "Listener",
    "MutexError",
    "PoolError",
    "ProcessWorkerPool",
    "Sched",
    "SchedulerError",
    "TaskEvent",
    "TaskFailError",
    "TaskGroup",
    "TaskKeyError",
    "TaskKilledError",
    "TaskRes",
    "TaskSkipError",
    "ThreadWorkerPool",
    "WorkerDiedError",
    "meta",
    "outcome_of",
    "planner",
    "pool",
    "task_fail_wrap",
]

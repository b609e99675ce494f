"""Ending what tasks left running: by recorded pid (checked against its start
time, so a reused pid is never hit) with its descendants, and by the
PEXEN_TASK_TOKEN every process of a task carries in its environment."""

from __future__ import annotations

import os
import signal

from ..util import LazyModule

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Iterable, Optional, Set, Tuple

psutil: Any = LazyModule("psutil", globals())   # (only when there is something to end)


def kill_leftovers(pids: Iterable[Tuple[int, Optional[float]]], tokens: Set[str],
                   timeout: float = 5.0) -> int:
    """SIGKILL the given processes (pid, start time) with their descendants,
    and every process whose environment carries one of `tokens`; wait for
    them. Returns how many were killed."""
    me = os.getpid()
    victims: Dict[int, psutil.Process] = {}
    for pid, started in pids:
        if not pid or pid == me or started is None:
            continue
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.05:   # (a reused pid is not hit)
                victims[proc.pid] = proc
                for child in proc.children(recursive=True):
                    victims[child.pid] = child
        except psutil.Error:
            pass
    if tokens:
        for proc in psutil.process_iter():
            if proc.pid == me or proc.pid in victims:
                continue
            try:
                env = proc.environ()
            except psutil.Error:
                continue
            if env.get("PEXEN_TASK_TOKEN") in tokens:
                victims[proc.pid] = proc
    for proc in victims.values():
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=timeout)
    return len(victims)

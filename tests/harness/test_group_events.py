"""The journal listener of the controller ignores the engine's group events
(a Sched with exclusivity groups sends them; the journal does not record
groups yet)."""

from pexen.harness.controller import JournalListener
from pexen.sched import EventKind, TaskEvent, TaskGroup


class Untouchable:
    """Fails any use: the listener must not write anything for a group event."""

    def __getattr__(self, name):
        raise AssertionError(f"the listener used .{name}")


def test_group_events_are_ignored():
    listener = JournalListener(Untouchable(), Untouchable(), {}, True, None)
    group = TaskGroup("vm")
    for kind in (EventKind.GROUP_STARTED, EventKind.GROUP_FINISHED):
        listener(TaskEvent(kind, group.name, group))
    assert listener.started == {}

"""controller.Committer: tasks let go only after a commit, in batches."""

import threading

from pexen.harness.controller import Committer


class FakeWriter:
    def __init__(self, fail=None):
        self.flushes = 0
        self.fail = fail
        self.queued = []       # what was handed to the writer, in order
        self.committed = 0     # how much of it a flush covered

    def flush(self):
        self.flushes += 1
        if self.fail is not None:
            raise self.fail
        self.committed = len(self.queued)


def _releaser(writer, seen, done):
    def release(error):
        # everything the writer had when the task was handed out is committed
        seen.append((error, writer.committed))
        done.release()
    return release


def test_tasks_wait_for_a_batch_then_share_one_commit():
    writer = FakeWriter()
    c = Committer(writer, batch=3)
    seen, done = [], threading.Semaphore(0)
    try:
        for n in range(3):
            writer.queued.append(n)
            c(object(), _releaser(writer, seen, done))
        for _ in range(3):
            assert done.acquire(timeout=10)
    finally:
        c.stop()
    assert writer.flushes == 1 and c.commits == 1
    assert seen == [(None, 3)] * 3


def test_hurry_commits_what_waits_without_a_full_batch():
    writer = FakeWriter()
    c = Committer(writer, batch=100)
    seen, done = [], threading.Semaphore(0)
    try:
        writer.queued.append(1)
        c(object(), _releaser(writer, seen, done))
        assert not done.acquire(timeout=0.2)   # one task: no commit yet
        c.hurry()
        assert done.acquire(timeout=10)
    finally:
        c.stop()
    assert seen == [(None, 1)]


def test_stop_lets_go_what_waits_and_refuses_more():
    writer = FakeWriter()
    c = Committer(writer, batch=100)
    seen, done = [], threading.Semaphore(0)
    c(object(), _releaser(writer, seen, done))
    c.stop()
    assert done.acquire(timeout=10) and seen == [(None, 0)]
    try:
        c(object(), _releaser(writer, seen, done))
    except RuntimeError as exc:
        assert "stopped" in str(exc)
    else:
        raise AssertionError("a stopped committer took a task")


def test_a_failed_commit_ends_the_waiting_tasks_with_its_error():
    boom = OSError("No space left on device")
    writer = FakeWriter(fail=boom)
    c = Committer(writer, batch=2)
    seen, done = [], threading.Semaphore(0)
    try:
        c(object(), _releaser(writer, seen, done))
        c(object(), _releaser(writer, seen, done))
        for _ in range(2):
            assert done.acquire(timeout=10)
    finally:
        c.stop()
    assert [err for err, _ in seen] == [boom, boom]
    assert c.commits == 0

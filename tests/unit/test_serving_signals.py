"""A stop signal that reaches a gunicorn worker before its own handlers are installed is not lost (idp/serving.py)."""

import os
import queue
import signal

import pytest
from gunicorn.config import Config

from idp.serving import HeadBufferingWorker, hand_over_master_signals

HANDLED = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGWINCH, signal.SIGUSR1, signal.SIGABRT, signal.SIGHUP,
           signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGCHLD)


class Arbiter:
    """What the post_fork hook reads of gunicorn's master: its signal queue, as the fork inherited it."""

    def __init__(self, *queued: int):
        self.SIG_QUEUE = queue.SimpleQueue()
        for sig in queued:
            self.SIG_QUEUE.put_nowait(sig)


@pytest.fixture
def worker():
    """A worker as gunicorn builds it in the master, with this process's signal handlers restored afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in HANDLED}
    made = HeadBufferingWorker(1, os.getpid(), [], None, 30, Config(), None)
    made.method_queue.init()  # what gunicorn's init_process sets up before it installs the handlers
    made.PIPE = os.pipe()
    for fd in made.PIPE:
        os.set_blocking(fd, False)
    yield made
    signal.set_wakeup_fd(-1)
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    for fd in made.PIPE:
        os.close(fd)
    made.tmp.close()
    made.method_queue.close()


@pytest.mark.parametrize("queued", [(signal.SIGTERM,), (signal.SIGHUP, signal.SIGTERM)], ids=["term", "term-after-hup"])
def test_a_sigterm_queued_for_the_master_since_the_fork_stops_the_worker(worker, queued):
    hand_over_master_signals(Arbiter(*queued), worker)
    assert worker.alive
    worker.init_signals()
    assert not worker.alive  # its run loop ends at once: no graceful timeout spent waiting for it


def test_other_master_signals_are_left_alone(worker):
    hand_over_master_signals(Arbiter(signal.SIGHUP, signal.SIGTTIN), worker)
    worker.init_signals()
    assert worker.alive and signal.getsignal(signal.SIGTERM) == worker.handle_exit

"""`idp worker` with a failpoint, for the fault tests: `python -m tests.keys.faulty_worker worker ...`.

Before every write (INSERT, UPDATE, DELETE) and every COMMIT a task makes on the IdP's database, the
worker appends a line to FAULT_MARKER. When the number of that write equals the one in the file
FAULT_CONTROL (read as each task starts; 0 = never), or the write starts with the words given there
instead (`DELETE`), the process writes `PAUSED <pid>` and stops there for good, so the test can
SIGKILL it at exactly that point. It pauses once per marker file: a redelivered task runs through,
once the file FAULT_HOLD is gone (so the test can look at what the crash left before the redelivery
repairs it; without FAULT_HOLD nothing is held).
With FAULT_TASK set, only tasks of that name are watched. The worker re-queues the message of a
killed pool process after 0.1 s instead of the product's 1 s (worker_lost_wait): the tests kill on
purpose, and a SIGKILLed process has no last word to wait for. And it reaps a dead pool process as
soon as the pool hears of its death (see _reap_then_maintain), not up to 5 s later.

Killing before write k covers every crash between write k-1 and write k, since reads in between
leave nothing behind; so pausing before each write and commit in turn visits every crash point.
Nothing here is imported by the product.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.concurrency.asynpool import AsynPool
from celery.signals import celeryd_init, task_postrun, task_prerun
from sqlalchemy import event
from sqlalchemy.engine import Engine

MARKER = Path(os.environ["FAULT_MARKER"])
CONTROL = Path(os.environ["FAULT_CONTROL"])
HOLD = Path(os.environ["FAULT_HOLD"]) if "FAULT_HOLD" in os.environ else None
_state = {"count": 0, "pause_at": 0, "active": False}


def _note(line: str) -> None:
    with MARKER.open("a") as handle:
        handle.write(line + "\n")


def _point(kind: str, detail: str) -> None:
    if not _state["active"]:
        return
    _state["count"] += 1
    _note(f"{_state['count']} {kind} {' '.join(detail.split())[:100]}")
    target = _state["pause_at"]
    hit = _state["count"] == target if isinstance(target, int) else detail.lstrip().upper().startswith(target)
    if hit and "PAUSED" not in MARKER.read_text():
        _note(f"PAUSED {os.getpid()}")
        while True:
            time.sleep(3600)


def _is_broker(connection) -> bool:
    return "broker" in str(connection.engine.url)  # the embedded broker's own SQLite file


@event.listens_for(Engine, "before_cursor_execute")
def _before_execute(connection, cursor, statement, parameters, context, executemany):
    if not _is_broker(connection) and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
        _point("write", statement)


@event.listens_for(Engine, "commit")
def _before_commit(connection):
    if not _is_broker(connection):
        _point("commit", "")


@celeryd_init.connect
def _prompt_redelivery(conf=None, **_):
    conf.worker_lost_wait = 0.1


_event_process_exit = AsynPool._event_process_exit


def _reap_then_maintain(pool, hub, process):
    """The pool's handler of a pool process's death, once the process can be reaped.

    The pool hears of the death when the process's sentinel pipe closes, which is a moment before
    the kernel lets the process be reaped; Celery then finds it still alive, stops listening, and
    only its 5 s maintenance timer notices the death (and re-queues the task) later. Every kill
    here cost 0-5 s of waiting that way. The process is already exiting, so joining it is prompt.
    """
    process.join()
    _event_process_exit(pool, hub, process)


AsynPool._event_process_exit = _reap_then_maintain


@task_prerun.connect
def _arm(task=None, **_):
    held_until = time.monotonic() + 120
    while HOLD is not None and HOLD.exists() and MARKER.exists() and "PAUSED" in MARKER.read_text() and time.monotonic() < held_until:
        time.sleep(0.05)
    control = CONTROL.read_text().strip() if CONTROL.exists() else ""
    pause_at = int(control or 0) if control.isdigit() or not control else control.upper()
    watched = os.environ.get("FAULT_TASK") in (None, getattr(task, "name", None))
    _state.update(count=0, pause_at=pause_at, active=watched)


@task_postrun.connect
def _disarm(**_):
    _note(f"DONE {_state['count']}")
    _state["active"] = False


if __name__ == "__main__":
    from tests.keys.job_clock import main

    main()

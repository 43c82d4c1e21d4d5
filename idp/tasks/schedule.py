"""The whole beat schedule, in one place.

Each entry only asks for a run; whether anything is due is decided by the job from the database
(rotation period, expiry dates), so running it more often than needed is cheap and harmless, and a
missed tick is caught up by the next one. `expires` drops ticks that waited in the queue longer
than their interval (workers down), so a backlog never turns into a burst of identical runs.
"""

from __future__ import annotations

ROTATION_CHECK_SECONDS = 60.0  # a few indexed reads when nothing is due
PURGE_SECONDS = 600.0  # a few indexed reads when nothing has expired
RELAY_SECONDS = 5.0  # one read of a small partial index, and one per job left running

BEAT_SCHEDULE: dict[str, dict] = {
    "rotate-keys": {"task": "idp.rotate_keys", "schedule": ROTATION_CHECK_SECONDS, "options": {"expires": ROTATION_CHECK_SECONDS}},
    "relay": {"task": "idp.relay", "schedule": RELAY_SECONDS, "options": {"expires": RELAY_SECONDS}},
    "purge": {"task": "idp.purge", "schedule": PURGE_SECONDS, "options": {"expires": PURGE_SECONDS}},
}

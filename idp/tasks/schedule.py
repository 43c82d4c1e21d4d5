"""The whole beat schedule, in one place."""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict] = {}

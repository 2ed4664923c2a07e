"""Time at the edges: parse what users type, print what users read.

Inside queuectl a time is an ``int`` of milliseconds since the epoch (UTC); this
module is the only place that converts to and from ``datetime``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

#: A clock returns "now" in epoch milliseconds; tests pass a fixed one.
Clock = Callable[[], int]

# Year 9999 is the last one ISO-8601 can print with four digits.
MAX_MS = 253402300799999


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_iso(ms: int | None) -> str | None:
    """``2026-11-29T13:26:53.123Z``: ISO-8601 UTC with milliseconds and ``Z``."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def parse_when(value: object) -> int:
    """Parse a ``run_at`` value: ISO-8601 text or Unix seconds (number or numeric text).

    An ISO time without an offset is local time (reference §4.3). Raises ``ValueError``
    with a message meant for users.
    """
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 time or Unix seconds, not a boolean")
    if isinstance(value, int | float):
        return _from_seconds(float(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an ISO-8601 time or Unix seconds")
    text = value.strip()
    try:
        return _from_seconds(float(text))
    except ValueError as exc:
        if "range" in str(exc):
            raise
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot parse {value!r} as an ISO-8601 time or Unix seconds") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive means local time
    ms = math.floor(dt.timestamp() * 1000 + 0.5)
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"{value!r} is out of range")
    return ms


def _from_seconds(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of Unix seconds")
    if not 0 <= seconds * 1000 <= MAX_MS:
        raise ValueError("Unix seconds out of range")
    return math.floor(seconds * 1000 + 0.5)

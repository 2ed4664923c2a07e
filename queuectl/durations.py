"""Durations as people type them: ``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1.5h``.

One parser for every place that takes seconds (CLI options, config keys, the job
fields ``delay`` and ``timeout``), so they all accept the same forms and reject bad
ones with the same words. Pure; no I/O.
"""

from __future__ import annotations

import json
import math
import re

UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: One non-negative decimal number and at most one unit; no sign, no exponent.
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhd]?)\s*", re.IGNORECASE)

WITH_UNIT = "a number with one unit s, m, h or d (90s, 15m, 2h, 7d, 1.5h)"
FORMS = f"a number of seconds or {WITH_UNIT}"


def parse_duration(value: object) -> float:
    """Seconds from a number or a duration string; ``ValueError`` says what was expected.

    A negative number passes (``parse_seconds`` checks the bounds, which differ
    per field); a string never has a sign.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be {FORMS}, got {json.dumps(value)}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"must be {FORMS}, got {json.dumps(value)}")
        seconds = float(match.group(1)) * UNITS[match.group(2).lower()]
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"must be {FORMS}, got {json.dumps(value)}")
    return seconds


def parse_seconds(
    value: object, *, allow_zero: bool = True, lo: float = 0.0, hi: float = 1e9
) -> float:
    """``parse_duration`` within ``[lo, hi]``; ``allow_zero=False`` makes it "more than 0".

    A timeout of 0 would kill every command at once, so the fields that mean "none"
    by 0 say so in their own rules, not here.
    """
    seconds = parse_duration(value)
    if seconds < lo or (seconds == 0 and not allow_zero):
        low = "> 0" if lo == 0 and not allow_zero else f">= {lo:g}"
        raise ValueError(f"must be a number of seconds {low}, or {WITH_UNIT}")
    if seconds > hi:
        raise ValueError(f"must be at most {hi:g} seconds")
    return seconds

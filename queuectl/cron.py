"""When a schedule fires: cron expressions, time zones and catch-up, with no I/O.

Expressions are crontab(5)'s five fields (minute hour day-of-month month
day-of-week) or one of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
``@yearly``. The arithmetic is cronsim's: a small pure-Python library that
implements Debian cron's rules, including the two that are easy to get wrong:

* a restricted day-of-month and a restricted day-of-week match *either*
  (``0 0 13 * 5`` runs on every 13th and on every Friday);
* daylight-saving changes: a job at a fixed local time (neither minute nor
  hour starts with ``*``) that falls into the hour skipped in spring runs at the
  first minute after the gap, and one in the hour repeated in autumn runs once;
  a job with ``*`` in the minute or hour runs by the real clock.

Zones are IANA names, stored as names so that every host computes the same
fire times whatever its own zone. Times are epoch milliseconds as everywhere in
queuectl; fire times are whole seconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: The only ``@`` names reference §19.3 allows, as the five fields they stand for.
NICKNAMES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: crontab(5) syntax per field: numbers, ``*``, ranges, lists and steps; month and
#: day-of-week also take three-letter names. cronsim's extensions (``L``, ``W``,
#: ``#``, a sixth field for seconds) are not cron's and are refused.
_PLAIN = re.compile(r"[0-9*,/-]+")
_NAMED = re.compile(r"(?:[0-9*,/-]|[A-Za-z]{3})+")
#: Where a system's zone database lives, to read a zone's name off a path.
_ZONEINFO_DIRS = ("/usr/share/zoneinfo/", "/usr/lib/zoneinfo/", "/usr/share/lib/zoneinfo/")


class CronError(ValueError):
    """A cron expression or a zone that cannot be used; the message says why."""


def normalize(expr: str) -> str:
    """Check ``expr`` and return the five fields it stands for; ``CronError`` if bad."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        fields = NICKNAMES.get(text.lower())
        if fields is None:
            names = ", ".join(NICKNAMES)
            raise CronError(f"unknown cron name {expr!r}; use five fields or one of {names}")
        return fields
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron expression {expr!r} has {len(parts)} field(s); "
            "it needs five: minute hour day-of-month month day-of-week"
        )
    for index, (name, part) in enumerate(zip(_FIELDS, parts, strict=True)):
        pattern = _NAMED if index >= 3 else _PLAIN
        if not pattern.fullmatch(part):
            raise CronError(f"cron expression {expr!r}: bad {name} field {part!r}")
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as exc:
        raise CronError(f"cron expression {expr!r}: {_reason(exc)}") from None
    return text


def _reason(exc: Exception) -> str:
    text = str(exc) or "not a valid expression"
    return text[0].lower() + text[1:]


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ``CronError`` when there is none."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"unknown time zone {name!r}; give an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone {name!r}; give an IANA name such as Europe/Berlin"
        ) from None


def local_zone_name(
    environ: dict[str, str] | None = None, localtime: str = "/etc/localtime"
) -> str:
    """The name of this machine's zone: ``$TZ``, else the system's; ``UTC`` without a name.

    A ``TZ`` that is a POSIX rule (``CET-1CEST``) or a file outside a zone
    database has no IANA name another host could use, hence UTC.
    """
    env = os.environ if environ is None else environ
    value = env.get("TZ")
    if value is not None:
        return _named(value.removeprefix(":")) or "UTC"
    try:
        target = os.path.realpath(localtime) if Path(localtime).is_symlink() else None
    except OSError:
        target = None
    if target:
        name = _named(target)
        if name:
            return name
    try:
        text = Path("/etc/timezone").read_text("utf-8").strip()
    except OSError:
        return "UTC"
    return _named(text) or "UTC"


def _named(value: str) -> str | None:
    """``value`` as an IANA zone name, if it is one (a path inside a zone database counts)."""
    for folder in _ZONEINFO_DIRS:
        if value.startswith(folder):
            value = value[len(folder) :]
            break
    for prefix in ("posix/", "right/"):
        value = value.removeprefix(prefix)
    if not value:
        return None
    try:
        zone(value)
    except CronError:
        return None
    return value


def next_after(fields: str, tz: ZoneInfo, after_ms: int) -> int | None:
    """The first fire time strictly after ``after_ms``; ``None`` if none in 50 years."""
    start = datetime.fromtimestamp(after_ms / 1000, tz)
    try:
        fire = next(CronSim(fields, start))
    except StopIteration:
        return None
    return int(fire.timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What a worker does with a schedule that is due at ``now``."""

    #: The latest fire time at or before ``now``: the one that is made.
    fire_at: int
    #: Earlier fire times that passed with no worker running: skipped and counted.
    missed: int
    #: The first fire time after ``now`` (``None``: the expression never fires again).
    next_at: int | None


def plan(fields: str, tz: ZoneInfo, due_at: int, now: int) -> FirePlan:
    """Catch up from ``due_at`` (a fire time not yet handled, ``<= now``) to ``now``.

    Only the latest fire time is made (reference §19.2); the ones before it are counted.
    Walks every fire time in between, so a long stop of a frequent schedule costs
    a few microseconds per missed time: callers run this off the event loop.
    """
    fire_at, missed = due_at, 0
    times = CronSim(fields, datetime.fromtimestamp(due_at / 1000, tz))
    for fire in times:
        at = int(fire.timestamp()) * 1000
        if at > now:
            return FirePlan(fire_at, missed, at)
        fire_at, missed = at, missed + 1
    return FirePlan(fire_at, missed, None)


def job_id(name: str, fire_at: int) -> str:
    """``NAME@2026-12-06T03:00:00Z``: the id of a schedule's job for one fire time.

    The jobs table's unique id is the unique (schedule, fire time) key that makes
    every fire happen once, however many workers race for it.
    """
    stamp = datetime.fromtimestamp(fire_at // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{name}@{stamp}"

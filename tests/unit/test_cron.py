"""Cron expressions, zones and catch-up (``queuectl.cron``): pure, with fixed times."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuectl import cron
from queuectl.clock import parse_when, to_iso

UTC = cron.zone("UTC")
BERLIN = cron.zone("Europe/Berlin")


def fires(expr: str, zone: object, start: str, n: int) -> list[str]:
    fields = cron.normalize(expr)
    at = parse_when(start)
    out = []
    for _ in range(n):
        nxt = cron.next_after(fields, zone, at)  # type: ignore[arg-type]
        assert nxt is not None
        out.append(str(to_iso(nxt)))
        at = nxt
    return out


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_the_five_names(name: str, fields: str) -> None:
    assert cron.normalize(name) == fields


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("@reboot", "unknown cron name"),
        ("@annually", "unknown cron name"),
        ("@midnight", "unknown cron name"),
        ("* * * *", "has 4 field(s)"),
        ("0 * * * * *", "has 6 field(s)"),  # cronsim's seconds field is not cron's
        ("", "has 0 field(s)"),
        ("60 * * * *", "bad minute"),
        ("* 24 * * *", "bad hour"),
        ("* * 32 * *", "bad day-of-month"),
        ("* * 0 * *", "bad day-of-month"),
        ("* * * 13 *", "bad month"),
        ("* * * * 8", "bad day-of-week"),
        ("0 0 L * *", "bad day-of-month field 'L'"),  # cronsim extensions are refused
        ("0 0 LW * *", "bad day-of-month field"),
        ("0 0 * * 5L", "bad day-of-week field"),
        ("0 0 * * MON#2", "bad day-of-week field"),
        ("*/0 * * * *", "bad minute"),
        ("5-1 * * * *", "bad minute"),
        ("a * * * *", "bad minute field"),
        ("0 0 30 2 *", "bad day-of-month"),  # never fires
    ],
)
def test_bad_expressions_say_what_is_wrong(expr: str, words: str) -> None:
    with pytest.raises(cron.CronError, match=words.replace("(", r"\(").replace(")", r"\)")):
        cron.normalize(expr)


def test_crontab_syntax_is_accepted() -> None:
    for expr in ("*/15 9-17 * * 1-5", "0 0 1,15 * *", "0 12 * JAN,jul MON", "0 0 * * 7"):
        assert cron.normalize(expr) == expr
    assert cron.normalize("  0   3 *  * * ") == "0 3 * * *"


def test_restricted_day_of_month_and_day_of_week_match_either() -> None:
    # February 2026: the 13th is a Friday, Mondays are the 2nd, 9th, 16th, 23rd.
    start = "2026-02-01T00:00:00Z"
    either = fires("0 0 13 * 1", UTC, start, 5)
    assert [d[8:10] for d in either] == ["02", "09", "13", "16", "23"]
    # With a star in either field, both must match (crontab(5)).
    assert [d[5:10] for d in fires("0 0 * * 1", UTC, start, 3)] == ["02-02", "02-09", "02-16"]
    assert [d[5:10] for d in fires("0 0 13 * *", UTC, start, 2)] == ["02-13", "03-13"]
    assert [d[5:10] for d in fires("0 0 */1 * 1", UTC, start, 2)] == ["02-02", "02-09"]


def test_spring_forward_runs_a_fixed_time_in_the_gap_right_after_it() -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert fires("30 2 * * *", BERLIN, "2026-03-28T12:00:00Z", 2) == [
        "2026-03-29T01:00:00.000Z",  # 03:00 CEST, the first minute after the gap
        "2026-03-30T00:30:00.000Z",  # 02:30 CEST
    ]


def test_fall_back_runs_a_fixed_time_in_the_repeated_hour_once() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    assert fires("30 2 * * *", BERLIN, "2026-10-24T12:00:00Z", 2) == [
        "2026-10-25T00:30:00.000Z",  # the first 02:30 (CEST) only
        "2026-10-26T01:30:00.000Z",  # 02:30 CET
    ]


def test_a_wildcard_hour_follows_the_real_clock_through_a_change() -> None:
    # Every hour, by the real clock: the repeated local 02:00 runs twice.
    assert fires("0 * * * *", BERLIN, "2026-10-24T23:30:00Z", 3) == [
        "2026-10-25T00:00:00.000Z",
        "2026-10-25T01:00:00.000Z",
        "2026-10-25T02:00:00.000Z",
    ]


def test_the_zone_decides_the_fire_time() -> None:
    assert fires("0 9 * * *", cron.zone("America/New_York"), "2026-07-01T00:00:00Z", 1) == [
        "2026-07-01T13:00:00.000Z"
    ]
    assert fires("0 9 * * *", cron.zone("Asia/Tokyo"), "2026-07-01T00:00:00Z", 1) == [
        "2026-07-02T00:00:00.000Z"
    ]


@pytest.mark.parametrize(
    "name", ["Mars/Base", "", "/etc/passwd", "../zoneinfo/UTC", "Europe/", "europe berlin"]
)
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(cron.CronError, match="unknown time zone"):
        cron.zone(name)


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Europe/Riga", "Europe/Riga"),
        (":America/Chicago", "America/Chicago"),
        ("/usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo"),
        ("CET-1CEST,M3.5.0,M10.5.0/3", "UTC"),  # a POSIX rule has no name
        ("Nowhere/Land", "UTC"),
    ],
)
def test_the_local_zone_comes_from_tz(tz: str, expected: str) -> None:
    assert cron.local_zone_name({"TZ": tz}) == expected


def test_the_local_zone_comes_from_the_system_link(tmp_path: Path) -> None:
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Pacific/Auckland")
    assert cron.local_zone_name({}, localtime=str(link)) == "Pacific/Auckland"


def test_catch_up_makes_the_latest_and_counts_the_rest() -> None:
    fields = cron.normalize("*/10 * * * *")
    due = parse_when("2026-05-01T10:00:00Z")
    plan = cron.plan(fields, UTC, due, parse_when("2026-05-01T10:35:12Z"))
    assert to_iso(plan.fire_at) == "2026-05-01T10:30:00.000Z"
    assert plan.missed == 3  # 10:00, 10:10, 10:20
    assert to_iso(plan.next_at) == "2026-05-01T10:40:00.000Z"
    on_time = cron.plan(fields, UTC, due, due)
    assert (on_time.fire_at, on_time.missed) == (due, 0)
    assert to_iso(on_time.next_at) == "2026-05-01T10:10:00.000Z"


def test_catch_up_over_a_day_change_counts_by_the_zone() -> None:
    # Daily at 02:30 Berlin, stopped across the spring change: three fire times passed.
    fields = cron.normalize("30 2 * * *")
    due = parse_when("2026-03-28T01:30:00Z")
    plan = cron.plan(fields, BERLIN, due, parse_when("2026-03-30T12:00:00Z"))
    assert (to_iso(plan.fire_at), plan.missed) == ("2026-03-30T00:30:00.000Z", 2)


def test_job_ids_name_the_schedule_and_the_fire_time_in_utc() -> None:
    assert (
        cron.job_id("nightly", parse_when("2026-12-06T03:00:00Z")) == "nightly@2026-12-06T03:00:00Z"
    )
    assert cron.job_id("x", parse_when("2026-12-06T03:00:07.999Z")) == "x@2026-12-06T03:00:07Z"

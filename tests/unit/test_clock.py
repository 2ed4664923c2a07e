from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from queuectl.clock import MAX_MS, now_ms, parse_when, seconds_to_ms, to_iso

NOW = 1_800_000_000_000


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC-03:00 (a POSIX TZ string needs no tz database)."""
    monkeypatch.setenv("TZ", "BRT+03")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (NOW, "2027-01-15T08:00:00.000Z"),
        (NOW + 7, "2027-01-15T08:00:00.007Z"),
        (NOW + 59_999, "2027-01-15T08:00:59.999Z"),
        (MAX_MS, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_to_iso_is_utc_with_milliseconds_and_z(ms: int, text: str) -> None:
    assert to_iso(ms) == text


def test_to_iso_of_none_is_none() -> None:
    assert to_iso(None) is None


def test_to_iso_round_trips_through_parse_when() -> None:
    for ms in (0, 1, 999, NOW, NOW + 123, MAX_MS):
        assert parse_when(to_iso(ms)) == ms


def test_to_iso_ignores_the_local_zone(local_tz: None) -> None:
    assert to_iso(NOW) == "2027-01-15T08:00:00.000Z"


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00.000Z",
        "2027-01-15T08:00:00+00:00",
        "2027-01-15T10:00:00+02:00",
        "2027-01-15T02:30:00-05:30",
        "2027-01-15 08:00:00Z",
        " 2027-01-15T08:00:00Z ",
    ],
)
def test_iso_with_an_offset_or_z_is_honoured(text: str) -> None:
    assert parse_when(text) == NOW


def test_iso_without_offset_is_local_time(local_tz: None) -> None:
    assert parse_when("2027-01-15T05:00:00") == NOW
    assert parse_when("2027-01-15T05:00:00.250") == NOW + 250


def test_date_only_is_local_midnight(local_tz: None) -> None:
    expected = int(datetime(2027, 1, 15, 3, tzinfo=UTC).timestamp() * 1000)
    assert parse_when("2027-01-15") == expected


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (1_800_000_000, NOW),
        (1_800_000_000.5, NOW + 500),
        (1_800_000_000.0004, NOW),
        ("1800000000", NOW),
        ("1800000000.125", NOW + 125),
        (0, 0),
    ],
)
def test_unix_seconds_as_number_or_text(value: object, ms: int) -> None:
    assert parse_when(value) == ms


@pytest.mark.parametrize(
    "bad",
    [True, False, None, "", "  ", "next week", "2027-13-01T00:00:00Z", [1], {}, float("nan")],
)
def test_unparsable_values_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_when(bad)


@pytest.mark.parametrize("bad", [-1, 1e300, float("inf"), "1e300", "-5"])
def test_out_of_range_seconds_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"range|finite"):
        parse_when(bad)


def test_seconds_to_ms_rounds() -> None:
    assert seconds_to_ms(3) == 3000
    assert seconds_to_ms(1.5) == 1500
    assert seconds_to_ms(0.0014) == 1
    assert seconds_to_ms(2.0006) == 2001


def test_now_ms_is_epoch_milliseconds() -> None:
    before = time.time() * 1000
    value = now_ms()
    after = time.time() * 1000
    assert isinstance(value, int)
    assert before - 1 <= value <= after + 1

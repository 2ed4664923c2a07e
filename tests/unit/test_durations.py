"""The one duration parser (reference §4.3) and where it is used: config keys and job fields."""

from __future__ import annotations

import pytest

from queuectl.config import QueueConfig, from_stored, parse_value
from queuectl.durations import parse_duration, parse_seconds
from queuectl.exceptions import ConfigError
from queuectl.jobspec import to_new_job

GOOD = {
    "90": 90,
    "90s": 90,
    "15m": 900,
    "2h": 7200,
    "7d": 604800,
    "1.5h": 5400,
    "0.5s": 0.5,
    ".5m": 30,
    " 2H ": 7200,
    "10 m": 600,
    "0": 0,
}
BAD = ["5x", "-3m", "1.5.h", "", "  ", "h", "1h30m", "1e3", "nan", "inf", "+5", "5 x", "--1"]


@pytest.mark.parametrize(("text", "seconds"), GOOD.items(), ids=GOOD.keys())
def test_a_number_with_at_most_one_unit_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", BAD)
def test_anything_else_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"90s, 15m, 2h, 7d, 1\.5h"):
        parse_seconds(text)


@pytest.mark.parametrize("value", [True, None, [5], {"s": 5}, float("nan"), float("inf")])
def test_values_that_are_neither_a_number_nor_a_string_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="a number of seconds"):
        parse_duration(value)


def test_numbers_pass_through() -> None:
    assert parse_duration(5) == 5.0
    assert parse_duration(2.5) == 2.5


def test_bounds_are_the_callers() -> None:
    assert parse_seconds("0") == 0
    with pytest.raises(ValueError, match="> 0"):
        parse_seconds("0s", allow_zero=False)
    with pytest.raises(ValueError, match=">= 0"):
        parse_seconds(-1)
    with pytest.raises(ValueError, match=">= 1"):
        parse_seconds("0.5s", lo=1)
    with pytest.raises(ValueError, match="at most 10 seconds"):
        parse_seconds("1m", hi=10)


@pytest.mark.parametrize(
    ("key", "text", "stored"),
    [
        ("job_timeout", "1h", 3600),
        ("job_timeout", "90", 90),
        ("backoff_max", "15m", 900),
        ("backoff_max", "1.5h", 5400),
        ("lease", "30s", 30),
        ("kill_grace", "0.5s", 0.5),
        ("reap_interval", "0.5", 0.5),
        ("retention", "7d", 604800),
        ("retention", "0", 0),
    ],
)
def test_time_keys_take_durations_and_keep_seconds(key: str, text: str, stored: float) -> None:
    value = parse_value(key, text)
    assert value == stored
    # What is stored (str of the parsed value) reads back as the same setting.
    assert getattr(from_stored({key: str(value)}), key) == stored


@pytest.mark.parametrize("key", ["job_timeout", "backoff_max", "retention", "kill_grace"])
@pytest.mark.parametrize("text", ["5x", "-3m", "1.5.h", ""])
def test_a_bad_duration_for_a_time_key_names_the_key_and_the_forms(key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_value(key, text)
    message = str(info.value)
    assert key.replace("_", "-") in message
    assert "15m" in message and "number of seconds" in message


def test_retention_defaults_to_seven_days() -> None:
    assert QueueConfig().retention == 7 * 86400
    assert QueueConfig().to_dict()["retention"] == 604800


@pytest.mark.parametrize(
    ("field", "value", "ms"),
    [("delay", "5m", 300_000), ("delay", 30, 30_000), ("delay", "1.5h", 5_400_000)],
)
def test_the_delay_field_takes_a_duration(field: str, value: object, ms: int) -> None:
    job = to_new_job({"command": "true", field: value}, config=QueueConfig(), now=1_000)
    assert job.delay_ms == ms
    assert job.next_run_at == 1_000 + ms


@pytest.mark.parametrize(("value", "seconds"), [("2h", 7200.0), (45, 45.0), ("90s", 90.0)])
def test_the_timeout_field_takes_a_duration(value: object, seconds: float) -> None:
    job = to_new_job({"command": "true", "timeout": value}, config=QueueConfig(), now=0)
    assert job.timeout_s == seconds


@pytest.mark.parametrize("field", ["delay", "timeout"])
@pytest.mark.parametrize("value", ["5x", "-3m", "1.5.h", ""])
def test_a_bad_duration_in_a_job_names_the_field(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be a number of seconds or .*15m"):
        to_new_job({"command": "true", field: value}, config=QueueConfig(), now=0)

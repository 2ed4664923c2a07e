from __future__ import annotations

from pathlib import Path

import pytest

from queuectl.config import (
    MAX_INT,
    QueueConfig,
    default_db_path,
    from_stored,
    key_name,
    normalize_key,
    parse_value,
    resolve_target,
    spool_dir,
    valid_keys,
)
from queuectl.exceptions import ConfigError

ALL_KEYS = [
    "max-retries",
    "backoff-base",
    "backoff-max",
    "job-timeout",
    "output-limit",
    "lease",
    "reap-interval",
    "kill-grace",
    "retention",
]


@pytest.mark.parametrize(
    ("typed", "field"),
    [
        ("max-retries", "max_retries"),
        ("max_retries", "max_retries"),
        ("MAX-RETRIES", "max_retries"),
        ("MaxRetries", "max_retries"),
        ("back-off-base", "backoff_base"),
        ("backoff-base", "backoff_base"),
        ("backoff_base", "backoff_base"),
        ("BACKOFF_BASE", "backoff_base"),
        ("Back-Off_Max", "backoff_max"),
        ("job-timeout", "job_timeout"),
        ("output_limit", "output_limit"),
        ("lease", "lease"),
        ("reap-interval", "reap_interval"),
        ("kill_grace", "kill_grace"),
    ],
)
def test_keys_match_ignoring_case_dashes_and_underscores(typed: str, field: str) -> None:
    assert normalize_key(typed) == field


@pytest.mark.parametrize("typed", ["retries", "max-retry", "backoff", "", "max--retriesx"])
def test_unknown_key_is_an_error_listing_every_valid_key(typed: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_key(typed)
    message = str(info.value)
    assert "\n" not in message
    assert "unknown config key" in message
    for key in ALL_KEYS:
        assert key in message


def test_valid_keys_lists_the_dashed_names() -> None:
    assert valid_keys().split(", ") == ALL_KEYS


def test_to_dict_uses_dashed_keys_and_the_defaults_of_spec() -> None:
    assert QueueConfig().to_dict() == {
        "max-retries": 3,
        "backoff-base": 2,
        "backoff-max": 3600,
        "job-timeout": 0,
        "output-limit": 65536,
        "lease": 10,
        "reap-interval": 2,
        "kill-grace": 3,
        "retention": 604800,
    }


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("max_retries", "0", 0),
        ("max_retries", " 5 ", 5),
        ("max_retries", str(MAX_INT), MAX_INT),
        ("backoff_base", "1", 1),
        ("backoff_base", "3", 3),
        ("backoff_base", "1.5", 1.5),
        ("backoff_max", "0", 0),
        ("backoff_max", "2.5", 2.5),
        ("job_timeout", "0", 0),
        ("job_timeout", "30", 30),
        ("output_limit", "0", 0),
        ("output_limit", "1024", 1024),
        ("lease", "1", 1),
        ("kill_grace", "0", 0),
    ],
)
def test_values_in_range_parse_to_numbers(field: str, text: str, expected: float) -> None:
    value = parse_value(field, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("field", "text", "range_text"),
    [
        ("max_retries", "-1", "an integer from 0 to"),
        ("max_retries", "1.5", "an integer from 0 to"),
        ("max_retries", "three", "an integer from 0 to"),
        ("max_retries", str(MAX_INT + 1), "an integer from 0 to"),
        ("backoff_base", "0.5", ">= 1"),
        ("backoff_base", "0", ">= 1"),
        ("backoff_base", "nan", ">= 1"),
        ("backoff_max", "-1", ">= 0"),
        ("backoff_max", "inf", ">= 0"),
        ("job_timeout", "-0.5", ">= 0"),
        ("job_timeout", "soon", ">= 0"),
        ("output_limit", "-1", "an integer from 0 to"),
        ("output_limit", "1.5", "an integer from 0 to"),
        ("lease", "0.5", ">= 1"),
        ("reap_interval", "0", ">= 0.1"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_range(
    field: str, text: str, range_text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_value(field, text)
    message = str(info.value)
    assert "\n" not in message
    assert key_name(field) in message
    assert repr(text) in message
    assert range_text in message


def test_from_stored_reads_text_values() -> None:
    config = from_stored({"max_retries": "1", "backoff_base": "3", "job_timeout": "2.5"})
    assert config.max_retries == 1
    assert config.backoff_base == 3
    assert config.job_timeout == 2.5
    assert config.timeout_s == 2.5
    assert config.output_limit == QueueConfig().output_limit


def test_from_stored_skips_unknown_keys_and_unparsable_values() -> None:
    config = from_stored({"from_the_future": "1", "max_retries": "lots", "backoff_max": "-3"})
    assert config == QueueConfig()


def test_from_stored_of_nothing_is_the_defaults() -> None:
    assert from_stored({}) == QueueConfig()


def test_job_timeout_zero_means_none() -> None:
    assert QueueConfig(job_timeout=0).timeout_s is None
    assert QueueConfig(job_timeout=4).timeout_s == 4


def test_db_flag_beats_env_beats_xdg() -> None:
    env = {"QUEUECTL_DB": "/env/q.db", "XDG_DATA_HOME": "/xdg"}
    assert resolve_target("/flag/q.db", env) == "/flag/q.db"
    assert resolve_target(None, env) == "/env/q.db"
    assert resolve_target(None, {"XDG_DATA_HOME": "/xdg"}) == "/xdg/queuectl/queuectl.db"


def test_default_path_without_xdg_is_under_home() -> None:
    assert default_db_path({}) == Path.home() / ".local" / "share" / "queuectl" / "queuectl.db"


def test_spool_lives_beside_the_database_file() -> None:
    assert spool_dir("/data/q.db", {}) == Path("/data/q.db.d/spool")

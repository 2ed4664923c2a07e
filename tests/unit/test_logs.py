"""Worker log formats: the rich columns, plain sentences, JSON objects, and levels."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest
from rich.console import Console
from rich.text import Text

from queuectl.logs import JsonFormatter, TransitionHandler, level_for, setup_logging
from tests.unit.test_render import coloured


def record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("queuectl.worker", level, __file__, 1, msg, (), None)
    rec.created = time.time()
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


FAILED = dict(
    action="job_failed",
    job_id="S2-fail",
    attempt=1,
    max_attempts=2,
    worker_id="6cd75e61",
    slot=0,
    duration=0.012,
    exit_code=1,
    signal=None,
    error="exit code 1",
)


def rich_line(rec: logging.LogRecord, width: int = 120) -> tuple[str, Text]:
    buffer = io.StringIO()
    handler = TransitionHandler(Console(file=buffer, width=width, force_terminal=True))
    handler.emit(rec)
    text = Text.from_ansi(buffer.getvalue())
    return text.plain, text


def test_rich_transition_line_has_time_slot_outcome_job_attempt_duration_and_exit() -> None:
    text, styled = rich_line(record("S2-fail completed", **{**FAILED, "action": "job_completed"}))
    assert len(text.splitlines()) == 1
    cells = text.split()
    assert cells[1:] == ["6cd75e61/0", "completed", "S2-fail", "1/2", "0.01s", "exit", "0"]
    assert coloured(styled, "completed", "green")


def test_rich_failed_line_shows_the_error_and_when_it_will_be_retried() -> None:
    rec = record("failed", level=logging.WARNING, **FAILED)
    due = time.gmtime(rec.created + 3)
    rec.next_run_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", due)
    text, styled = rich_line(rec)
    assert "failed" in text and "exit code 1" in text
    assert "retry in 2s" in text or "retry in 3s" in text  # .000Z rounds down
    assert coloured(styled, "failed", "magenta")


def test_rich_dead_and_other_lines() -> None:
    text, styled = rich_line(record("dead", logging.ERROR, **{**FAILED, "action": "job_dead"}))
    assert " dead " in text and coloured(styled, "dead", "red")
    text, styled = rich_line(record("heartbeat failed: disk full", logging.WARNING))
    assert "warning" in text and "heartbeat failed: disk full" in text
    assert coloured(styled, "warning", "yellow")


def test_json_lines_carry_every_structured_field() -> None:
    rec = record(
        "S2-fail failed", logging.WARNING, **FAILED, next_run_at="2026-01-01T00:00:03.000Z"
    )
    data = json.loads(JsonFormatter().format(rec))
    assert data["ts"].endswith("Z") and data["level"] == "warning"
    assert data["msg"] == "S2-fail failed"
    for key in ("action", "job_id", "attempt", "max_attempts", "worker_id", "slot", "duration"):
        assert data[key] == FAILED[key]
    assert data["exit_code"] == 1 and data["next_run_at"] == "2026-01-01T00:00:03.000Z"
    assert "signal" not in data  # None fields are left out


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, 0, logging.INFO),
        (1, 0, logging.DEBUG),
        (3, 0, logging.DEBUG),
        (0, 1, logging.WARNING),
        (0, 2, logging.ERROR),
        (0, 9, logging.CRITICAL),
    ],
)
def test_verbosity(verbose: int, quiet: int, level: int) -> None:
    assert level_for(verbose, quiet) == level


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("queuectl")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_plain_by_default_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(logging.WARNING, "auto")
    log = logging.getLogger("queuectl.worker")
    log.info("hidden")
    log.warning("S2-fail failed: exit code 1")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert err.rstrip().endswith("WARNING S2-fail failed: exit code 1")
    assert "\x1b[" not in err


ERROR = "could not start: [Errno 2] No such file or directory: '/srv/app/does-not-exist'"


def test_at_80_columns_an_error_wraps_as_full_lines_and_a_long_id_cuts_nothing() -> None:
    rec = record("dead", logging.ERROR, **{**FAILED, "action": "job_dead", "error": ERROR})
    text, _ = rich_line(rec, width=80)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert lines[0].split()[1:] == ["6cd75e61/0", "dead", "S2-fail", "1/2", "0.01s"]
    # The error on lines of its own, each well filled, and all of it there.
    assert len(lines) <= 3, text
    assert " ".join(line.strip() for line in lines[1:]) == ERROR
    long_id = "nightly-backup-of-the-customer-database-2026-12-06"
    text, _ = rich_line(record("dead", logging.ERROR, **{**FAILED, "job_id": long_id}), width=80)
    flat = " ".join(text.split())
    assert re.match(r"\d\d:\d\d:\d\d\.\d\d\d 6cd75e61/0 failed", flat), text  # time whole
    assert long_id in flat and "exit code 1" in flat and "…" not in text


def test_a_line_that_fits_stays_one_aligned_line() -> None:
    rec = record("dead", logging.ERROR, **{**FAILED, "action": "job_dead", "error": ERROR})
    text, _ = rich_line(rec, width=160)
    assert len(text.rstrip().splitlines()) == 1
    message, _ = rich_line(record("heartbeat failed: x", logging.WARNING, worker_id="6cd75e61"))
    assert message.index("heartbeat") == text.index("S2-fail")  # the same column

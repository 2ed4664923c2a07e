"""Human tables on a terminal: columns fit the width, no column vanishes, ids are never cut."""

from __future__ import annotations

import re

import pytest

from queuectl.models import Job, JobState
from queuectl.render import Output, jobs_table

NOW = 1_800_000_000_000
HEADERS = ("ID", "STATE", "ATTEMPTS", "PRI", "QUEUE", "NEXT RUN", "UPDATED", "COMMAND")


def make_job(job_id: str, command: str, state: JobState = JobState.PENDING) -> Job:
    return Job(
        id=job_id,
        command=command,
        state=state,
        attempts=0,
        max_retries=3,
        priority=0,
        queue="default",
        timeout_s=None,
        run_at=None,
        next_run_at=NOW,
        created_at=NOW,
        updated_at=NOW,
        last_error=None,
        exit_code=None,
        env={},
        cwd=None,
    )


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def render_tty(jobs: list[Job], width: int, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What ``queuectl list`` prints on a terminal ``width`` columns wide."""
    out = Output(tty=True, width=width)
    out.show(jobs_table(out, jobs))
    return ANSI.sub("", capsys.readouterr().out).splitlines()


@pytest.mark.parametrize("width", [100, 120, 200])
@pytest.mark.parametrize("words", [2, 60])
def test_every_column_survives_a_long_command(
    width: int, words: int, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [
        make_job("0123456789abcdef", "echo " + "word " * words),
        make_job("fedcba9876543210", "true", JobState.PROCESSING),
    ]
    lines = render_tty(jobs, width, capsys)
    text = "\n".join(lines)
    for header in HEADERS:
        assert header in text, (header, text)
    for value in ("0123456789abcdef", "fedcba9876543210", "pending", "processing", "0/4"):
        assert value in text, (value, text)
    assert max(len(line) for line in lines) <= width
    assert len({len(line) for line in lines}) == 1  # a whole table, no side cropped
    if words > 2:
        assert "…" in text  # the command, and only it, was shortened


def test_an_id_wider_than_the_terminal_is_not_cut(capsys: pytest.CaptureFixture[str]) -> None:
    long_id = "a-very-long-job-id-" + "x" * 100 + "-end"
    lines = render_tty([make_job(long_id, "echo " + "word " * 40)], 80, capsys)
    text = "\n".join(lines)
    assert long_id in text
    for header in HEADERS:
        assert header in text, (header, text)
    # Wider than the terminal (which wraps it), but whole: no side is cropped.
    assert len({len(line) for line in lines}) == 1
    assert lines[0].endswith("┓")

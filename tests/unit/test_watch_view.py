"""The frame of ``status --watch`` at a fixed width and a pinned clock."""

from __future__ import annotations

import re

from rich.text import Text

from queuectl.cli.render import render_text
from queuectl.cli.watch import overview_view
from queuectl.models import JobState, Outcome, RunningJob
from queuectl.queue import Overview
from tests.unit.test_render import NOW, assert_plain_text, coloured, make_job, worker


def overview(**over: object) -> Overview:
    fields: dict[str, object] = dict(
        now=NOW,
        counts=dict.fromkeys(JobState, 0)
        | {JobState.PENDING: 12, JobState.PROCESSING: 2, JobState.COMPLETED: 340},
        workers=[worker("6cd75e61", count=3)],
        running=[
            RunningJob("long-1", "sleep 30", 1, 3, "6cd75e61", 0, NOW - 12_000, "build-host"),
            RunningJob("long-2", "make test", 2, 3, "6cd75e61", 2, NOW - 3_000, "build-host"),
        ],
        finished={Outcome.COMPLETED: 120, Outcome.FAILED: 4, Outcome.TIMED_OUT: 1},
        window_s=60,
        next_retry=make_job("flaky", JobState.FAILED, attempts=1, next_run_at=NOW + 8_000),
        dead=[make_job("S2-fail", JobState.DEAD, attempts=2, max_retries=1, last_error="exit 1")],
    )
    fields.update(over)
    return Overview(**fields)  # type: ignore[arg-type]


def frame(view: Overview, width: int = 110, height: int = 0) -> tuple[str, Text]:
    raw = render_text(
        lambda o: overview_view(o, view, target="/tmp/q.db", height=height),
        tty=True,
        width=width,
        now=NOW,
    )
    text = Text.from_ansi(raw)
    return text.plain, text


def test_frame_shows_counts_recent_retry_slots_and_dead() -> None:
    text, styled = frame(overview())
    assert re.match(r"queuectl · \S+ \S+ · Ctrl-C to quit · /tmp/q.db$", text.splitlines()[0])
    assert re.search(r"pending\s+12 ", text)
    assert re.search(r"completed\s+340 ", text)
    assert coloured(styled, "pending", "cyan")
    assert coloured(styled, "processing", "yellow")
    # The last minute: completions and failures (timeouts are failures too).
    assert "last minute" in text
    assert re.search(r"completed\s+120\s+2\.0/s", text)
    assert re.search(r"failed\s+5 attempts", text)
    assert "flaky in 8s (attempt 2/4)" in text
    assert "1 process, 3 slots, 2 busy" in text
    # Each slot: its job, the attempt and for how long it has run; idle slots.
    slot0 = next(line for line in text.splitlines() if "6cd75e61/0" in line)
    assert "long-1" in slot0 and "1/4" in slot0 and "12s" in slot0 and "sleep 30" in slot0
    slot2 = next(line for line in text.splitlines() if "6cd75e61/2" in line)
    assert "long-2" in slot2 and "2/4" in slot2 and "3s" in slot2
    assert "1 slot idle" in text
    dead = next(line for line in text.splitlines() if "S2-fail" in line)
    assert "12s ago" in dead and "2/2" in dead and "exit 1" in dead
    assert max(len(line) for line in text.splitlines()) <= 110


def test_frame_when_nothing_runs() -> None:
    view = overview(
        counts=dict.fromkeys(JobState, 0),
        workers=[],
        running=[],
        finished={},
        next_retry=None,
        dead=[],
    )
    text, _ = frame(view)
    assert "no workers running" in text
    assert "no dead jobs" in text
    assert re.search(r"next retry\s+none", text)
    assert re.search(r"completed\s+0\s+0/min", text)


def test_a_running_job_of_a_lost_worker_is_still_shown() -> None:
    view = overview(running=[RunningJob("orphan", "sleep 9", 1, 0, "deadbeef", 0, NOW - 40_000)])
    text, _ = frame(view)
    assert re.search(r"deadbeef \(lost\)\s+orphan", text)


def test_many_running_jobs_are_cut_to_the_screen_height() -> None:
    running = [
        RunningJob(f"job-{i:02d}", "sleep 30", 1, 3, "6cd75e61", i, NOW - 1_000) for i in range(40)
    ]
    text, _ = frame(overview(workers=[worker("6cd75e61", count=40)], running=running), height=30)
    assert "more row(s)" in text
    assert "job-39" not in text
    assert len(text.splitlines()) <= 30


def test_plain_snapshot() -> None:
    output = render_text(lambda o: overview_view(o, overview(), target="/tmp/q.db"), tty=False)
    assert_plain_text(output)
    for title in ("JOBS", "LAST MINUTE", "WORKERS (3 SLOTS, 2 RUNNING)", "DEAD, NEWEST FIRST"):
        assert title in output.splitlines()
    assert re.search(r"^pending\s+12$", output, re.MULTILINE)
    assert "2027-01-15T08:00:08.000Z" in output  # absolute times, not "in 8s"


def test_narrow_frame_gives_the_bars_room_to_the_values_and_keeps_labels() -> None:
    wide, _ = frame(overview(), width=110)
    assert "█" in wide
    text, _ = frame(overview(), width=64)
    assert "█" not in text
    assert max(len(line) for line in text.splitlines()) <= 64
    for label in ("completed", "failed", "next retry", "workers"):
        assert re.search(rf"│ {label}\s", text), label
    assert "flaky in 8s" in text


def test_a_short_screen_keeps_the_running_jobs_over_the_dead_ones() -> None:
    dead = [make_job(f"dead-{i}", JobState.DEAD) for i in range(5)]
    running = [
        RunningJob(f"job-{i}", "sleep 30", 1, 3, "6cd75e61", i, NOW - 1_000) for i in range(6)
    ]
    view = overview(workers=[worker("6cd75e61", count=6)], running=running, dead=dead)
    text, _ = frame(view, height=24)
    assert len(text.splitlines()) <= 24
    assert all(f"job-{i}" in text for i in range(6))  # every running job is shown
    assert "dead-0" in text and "dead-4" not in text  # fewer dead ones instead


def test_at_18_rows_the_running_jobs_come_before_the_dead_list() -> None:
    dead = [make_job(f"dead-{i}", JobState.DEAD) for i in range(5)]
    running = [
        RunningJob(f"job-{i}", "sleep 30", 1, 3, "6cd75e61", i, NOW - 1_000) for i in range(3)
    ]
    view = overview(workers=[worker("6cd75e61", count=3)], running=running, dead=dead)
    text, _ = frame(view, height=18)
    assert len(text.splitlines()) <= 18
    assert all(f"job-{i}" in text for i in range(3)), text
    assert "more row(s)" not in text
    # No room for the list: the panel says how many dead jobs there are.
    assert "5 dead job(s); a taller window lists them" in text and "dead-0" not in text


def test_a_rerun_shows_its_attempt_number_and_what_was_counted() -> None:
    rerun = RunningJob("again", "make", 2, 3, "6cd75e61", 0, NOW - 1_000, attempts=1)
    retry = make_job("flaky", JobState.FAILED, attempts=1, claims=2, next_run_at=NOW + 8_000)
    text, _ = frame(overview(running=[rerun], next_retry=retry))
    row = next(line for line in text.splitlines() if "again" in line)
    assert "2 (1/4 counted)" in row, row
    assert "flaky in 8s (attempt 3 (2/4 counted))" in text

"""Rendering of every table and panel at a fixed width and a pinned clock.

Terminal output is rendered through ``Output(tty=True, width=W, now=NOW)`` into a
string (rich writes the same ANSI it would write to a terminal), then read back
with ``Text.from_ansi`` to check the words *and* their colours.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from rich.color import Color
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.style import Style
from rich.text import Text

from queuectl.cli.render import (
    Column,
    FittedTable,
    Output,
    attempts_table,
    config_table,
    job_detail,
    jobs_table,
    relative,
    render_text,
    span_text,
    status_view,
    workers_table,
)
from queuectl.models import Attempt, Job, JobState, Outcome, WorkerInfo

NOW = 1_800_000_000_000
LONG_COMMAND = "python3 -c 'import time; time.sleep(100)' && echo " + "x" * 80 + " END"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def make_job(job_id: str, state: JobState = JobState.PENDING, **over: object) -> Job:
    fields: dict[str, object] = dict(
        id=job_id,
        command="echo hi",
        state=state,
        attempts=1,
        max_retries=3,
        priority=0,
        queue="default",
        timeout_s=None,
        run_at=None,
        next_run_at=NOW + 8_000,
        created_at=NOW - 60_000,
        updated_at=NOW - 12_000,
        last_error=None,
        exit_code=None,
        env={},
        cwd=None,
    )
    fields.update(over)
    # A job never interrupted: every claim was counted.
    fields.setdefault("claims", fields["attempts"])
    return Job(**fields)  # type: ignore[arg-type]


def tty(render: Callable[[Output], RenderableType], width: int = 120) -> tuple[str, Text]:
    """Render as a terminal of ``width`` columns would show it: (plain text, styled text)."""
    raw = render_text(render, tty=True, width=width, now=NOW)
    text = Text.from_ansi(raw)
    return text.plain, text


def plain(render: Callable[[Output], RenderableType]) -> str:
    return render_text(render, tty=False, now=NOW)


def coloured(text: Text, word: str, colour: str) -> bool:
    """Whether the first ``word`` standing on its own is drawn in ``colour`` (or bold)."""
    match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text.plain)
    assert match, f"{word!r} not found"
    styles = [
        Style.parse(str(s.style)) if isinstance(s.style, str) else s.style for s in text.spans
    ]
    found = [
        st for s, st in zip(text.spans, styles, strict=True) if s.start <= match.start() < s.end
    ]
    if colour == "bold":
        return any(st.bold for st in found)
    number = Color.parse(colour).number
    return any(st.color is not None and st.color.number == number for st in found)


def header_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[┃│]", line) if c.strip()]


def assert_plain_text(output: str) -> None:
    assert not ANSI.search(output), "plain output must not contain escape codes"
    for line in output.splitlines():
        assert line == line.rstrip(), f"trailing spaces in {line!r}"
    assert not set(output) & set("┃│┏┗━─╭╰"), "plain output must not draw boxes"


def test_relative_times() -> None:
    assert relative(NOW - 12_000, NOW) == "12s ago"
    assert relative(NOW + 8_000, NOW) == "in 8s"
    assert relative(NOW + 400, NOW) == "now"
    assert relative(NOW - 185_000, NOW) == "3m05s ago"
    assert relative(NOW + 2 * 3600_000 + 600_000, NOW) == "in 2h10m"
    assert relative(NOW - (4 * 86400 + 3 * 3600) * 1000, NOW) == "4d03h ago"
    assert span_text(59.9) == "59s"


def test_jobs_table_columns_relative_times_and_state_colours() -> None:
    jobs = [
        make_job("job-pending"),
        make_job("job-dead", JobState.DEAD, attempts=4, last_error="exit code 1"),
        make_job("job-running", JobState.PROCESSING, worker_id="w1"),
    ]
    text, styled = tty(lambda o: jobs_table(o, jobs), width=120)
    lines = text.splitlines()
    header = next(line for line in lines if "ID" in line and "STATE" in line)
    assert header_cells(header) == [
        "ID",
        "STATE",
        "ATTEMPTS",
        "PRI",
        "QUEUE",
        "NEXT RUN",
        "UPDATED",
        "COMMAND",
    ]
    row = next(line for line in lines if "job-pending" in line)
    assert "in 8s" in row and "12s ago" in row and "1/4" in row
    dead = next(line for line in lines if "job-dead" in line)
    assert "4/4" in dead and "in 8s" not in dead  # a dead job has no next run
    assert coloured(styled, "pending", "cyan")
    assert coloured(styled, "dead", "red")
    assert coloured(styled, "processing", "yellow")


def test_long_command_is_shortened_with_an_ellipsis_to_fit_the_width() -> None:
    job_id = "0123456789abcdef"
    text, _ = tty(lambda o: jobs_table(o, [make_job(job_id, command=LONG_COMMAND)]), width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    row = next(line for line in lines if job_id in line)
    assert "…" in row and "END" not in row
    assert "python3 -c 'import" in row
    assert len(row) == 100  # the command takes exactly the room that is left


def test_narrow_terminal_drops_columns_but_never_cuts_ids() -> None:
    ids = ["0123456789abcdef", "a-much-longer-job-id-0001"]
    jobs = [make_job(i, command=LONG_COMMAND) for i in ids]
    text, _ = tty(lambda o: jobs_table(o, jobs), width=60)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 60
    header = header_cells(next(line for line in lines if "STATE" in line))
    assert header[:2] == ["ID", "STATE"] and header[-1] == "COMMAND"
    assert "PRI" not in header and "QUEUE" not in header  # the first to go
    for job_id in ids:
        assert any(job_id in line for line in lines), f"{job_id} was cut"


def test_an_id_that_cannot_fit_folds_inside_a_panel() -> None:
    job_id = "0123456789abcdef"
    columns = [Column("ID", key=True), Column("STATE"), Column("COMMAND", flex=True)]
    rows: list[list[str | Text]] = [[job_id, "pending", LONG_COMMAND]]
    buffer = io.StringIO()
    console = Console(file=buffer, width=14, force_terminal=True)
    console.print(Panel(FittedTable(columns, rows, inner=True)))
    lines = Text.from_ansi(buffer.getvalue()).plain.splitlines()
    assert max(len(line) for line in lines) <= 14
    # Below the header's rule, the first word of each line is a piece of the id.
    inside = [line.strip("│ ") for line in lines[1:-1]]
    rule = next(i for i, line in enumerate(inside) if line.startswith("─"))
    pieces = [line.split()[0] for line in inside[rule + 1 :] if line]
    assert len(pieces) > 1 and "".join(pieces) == job_id  # folded, every character kept


def test_jobs_table_plain_mode_is_stable_text() -> None:
    jobs = [make_job("0123456789abcdef" * 4, command=LONG_COMMAND), make_job("b")]
    output = plain(lambda o: jobs_table(o, jobs))
    assert_plain_text(output)
    lines = output.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "ID",
        "STATE",
        "ATTEMPTS",
        "PRI",
        "QUEUE",
        "NEXT RUN",
        "UPDATED",
        "COMMAND",
    ]
    assert lines[1].startswith("0123456789abcdef" * 4 + "  ")
    assert lines[1].endswith(LONG_COMMAND)  # never shortened off a terminal
    assert "2027-01-15T08:00:08.000Z" in lines[1]  # absolute ISO times
    assert "ago" not in output


def test_plain_mode_escapes_newlines_in_commands() -> None:
    output = plain(lambda o: jobs_table(o, [make_job("j", command="echo a\necho b")]))
    assert output.splitlines()[1].endswith("echo a\\necho b")
    assert len(output.splitlines()) == 2


def test_empty_tables() -> None:
    text, _ = tty(lambda o: jobs_table(o, []))
    assert text.strip() == "no jobs"
    # Plain output keeps just the header, so a script sees zero rows.
    assert plain(lambda o: jobs_table(o, [])).splitlines()[0].startswith("ID")
    assert len(plain(lambda o: workers_table(o, [])).splitlines()) == 1


def worker(worker_id: str = "6cd75e61", **over: object) -> WorkerInfo:
    fields: dict[str, object] = dict(
        id=worker_id,
        host="build-host",
        pid=4242,
        started_at=NOW - 185_000,
        heartbeat_at=NOW - 2_000,
        count=4,
        jobs_done=17,
        queues=("emails", "reports"),
    )
    fields.update(over)
    return WorkerInfo(**fields)  # type: ignore[arg-type]


def test_workers_table() -> None:
    text, _ = tty(lambda o: workers_table(o, [worker()]), width=120)
    lines = text.splitlines()
    header = header_cells(next(line for line in lines if "HOST" in line))
    assert header == ["ID", "HOST", "PID", "STARTED", "HEARTBEAT", "SLOTS", "DONE", "QUEUES"]
    row = next(line for line in lines if "6cd75e61" in line)
    assert "3m05s ago" in row and "2s ago" in row and "emails,reports" in row
    output = plain(lambda o: workers_table(o, [worker()]))
    assert_plain_text(output)
    assert "6cd75e61  build-host  4242" in output


def test_config_table_marks_changed_values() -> None:
    settings = {"max-retries": 1, "backoff-base": 2}
    defaults = {"max-retries": 3, "backoff-base": 2}
    text, styled = tty(lambda o: config_table(o, settings, defaults), width=80)
    assert header_cells(next(line for line in text.splitlines() if "KEY" in line)) == [
        "KEY",
        "VALUE",
        "DEFAULT",
    ]
    assert coloured(styled, "1", "bold")
    output = plain(lambda o: config_table(o, settings, defaults))
    assert_plain_text(output)
    assert output.splitlines()[1].split() == ["max-retries", "1", "3"]


def history() -> list[Attempt]:
    return [
        Attempt(
            job_id="S2-fail",
            attempt=1,
            worker_id="6cd75e61",
            started_at=NOW - 30_000,
            finished_at=NOW - 28_500,
            outcome=Outcome.FAILED,
            exit_code=1,
            signal=None,
            error="exit code 1",
            host="build-host",
            output_size=200_000,
            output_truncated=True,
        ),
        Attempt(
            job_id="S2-fail",
            attempt=2,
            worker_id="6cd75e61",
            started_at=NOW - 20_000,
            finished_at=NOW - 15_000,
            outcome=Outcome.TIMED_OUT,
            exit_code=None,
            signal=9,
            error="timed out after 5s",
            host="build-host",
            output_size=12,
        ),
        Attempt(
            job_id="S2-fail",
            attempt=3,
            worker_id="6cd75e61",
            started_at=NOW - 7_000,
            finished_at=None,
            outcome=None,
            exit_code=None,
            signal=None,
            error=None,
        ),
    ]


def test_attempts_table_shows_start_duration_result_error_worker() -> None:
    text, styled = tty(lambda o: attempts_table(o, history()), width=120)
    lines = text.splitlines()
    header = header_cells(next(line for line in lines if "DURATION" in line))
    assert header == ["#", "STARTED", "DURATION", "RESULT", "ERROR", "WORKER", "OUTPUT"]
    first = next(line for line in lines if "exit 1" in line)
    assert "30s ago" in first and "1.50s" in first and "6cd75e61@build-host" in first
    assert "195.3 KiB (cut)" in first
    second = next(line for line in lines if "SIGKILL (9)" in line)
    assert "5.00s" in second and "timed out after 5s" in second
    third = next(line for line in lines if "running" in line)
    assert "7s…" in third  # still running: how long so far
    assert coloured(styled, "exit 1", "magenta")


def test_show_is_a_panel_with_fields_and_attempts() -> None:
    job = make_job(
        "S2-fail",
        JobState.FAILED,
        attempts=2,
        max_retries=3,
        last_error="exit code 1",
        exit_code=1,
        env={"A": "1"},
        cwd="/srv",
        command=LONG_COMMAND,
    )
    text, styled = tty(lambda o: job_detail(o, job, history()), width=100)
    lines = text.splitlines()
    assert lines[0].startswith("╭─ job S2-fail")
    assert max(len(line) for line in lines) <= 100
    body = "\n".join(lines)
    for field in ("command", "state", "attempts", "next run", "last error", "cwd", "env"):
        assert re.search(rf"│ {field}\s", body), field
    assert "2 of 4 (max retries 3)" in body
    assert "in 8s (" in body  # relative and wall-clock time
    assert "END" in body  # the detail view shows the whole command (wrapped)
    assert "attempts" in body and "SIGKILL (9)" in body
    assert coloured(styled, "failed", "magenta")

    output = plain(lambda o: job_detail(o, job, history()))
    assert_plain_text(output)
    assert "id          S2-fail" in output
    assert LONG_COMMAND in output
    assert "#  STARTED" in output


def test_status_view() -> None:
    from queuectl.queue import Status

    counts = dict.fromkeys(JobState, 0) | {JobState.PENDING: 3, JobState.DEAD: 1}
    status = Status(counts, [worker(count=2), worker("other", count=3)])
    text, styled = tty(lambda o: status_view(o, status), width=80)
    assert "workers: 5 (in 2 processes)" in text
    assert re.search(r"pending\s+│\s+3", text)
    assert coloured(styled, "dead", "red")
    output = plain(lambda o: status_view(o, status))
    assert_plain_text(output)
    assert output.splitlines()[1].split() == ["pending", "3"]


@pytest.mark.parametrize("width", [80, 120, 200])
def test_no_line_is_wider_than_the_terminal(width: int) -> None:
    jobs = [make_job(f"job-{i}", command=LONG_COMMAND) for i in range(5)]
    for render in (
        lambda o: jobs_table(o, jobs),
        lambda o: workers_table(o, [worker()]),
        lambda o: job_detail(o, jobs[0], history()),
    ):
        text, _ = tty(render, width=width)
        assert max(len(line) for line in text.splitlines()) <= width


HEADERS = ("ID", "STATE", "ATTEMPTS", "PRI", "QUEUE", "NEXT RUN", "UPDATED", "COMMAND")


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
        make_job("0123456789abcdef", command="echo " + "word " * words, attempts=0),
        make_job("fedcba9876543210", JobState.PROCESSING, command="true", attempts=0),
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


@pytest.mark.parametrize("width", [80, 20])
def test_an_id_wider_than_the_terminal_is_not_cut(
    width: int, capsys: pytest.CaptureFixture[str]
) -> None:
    long_id = "a-very-long-job-id-" + "x" * 100 + "-end" if width == 80 else "0123456789abcdef"
    lines = render_tty([make_job(long_id, command="echo " + "word " * 40)], width, capsys)
    text = "\n".join(lines)
    assert long_id in text
    for header in HEADERS:
        assert header in text, (header, text)
    # Wider than the terminal (which wraps it), but whole: no side is cropped.
    assert len({len(line) for line in lines}) == 1
    assert lines[0].endswith("┓")


@pytest.mark.parametrize("on_tty", [True, False], ids=["tty", "plain"])
def test_a_command_shows_its_backslashes_and_brackets_as_typed(on_tty: bool) -> None:
    command = r"echo one\\two [bold]x[/bold] [/]"
    job = make_job("b1", command=command + "\nexit 0")
    for render in (lambda o: jobs_table(o, [job]), lambda o: job_detail(o, job, [])):
        text = tty(render, width=200)[0] if on_tty else plain(render)
        assert command in text, text
        assert r"one\\\\two" not in text


def test_show_counts_the_runs_apart_from_the_attempts_counted() -> None:
    job = make_job("again", JobState.COMPLETED, attempts=1, claims=2, max_retries=1)
    body = plain(lambda o: job_detail(o, job, []))
    assert re.search(r"^attempts\s+1 of 2 \(max retries 1\); 2 runs in all$", body, re.M), body

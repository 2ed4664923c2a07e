"""``status --watch``: a full-screen live view of the queue, refreshed until Ctrl-C.

The data of one frame comes from ``Queue.overview`` (a handful of indexed reads);
this module only draws it. On a terminal it runs in the alternate screen with
``rich.live`` and restores the terminal on the way out, whatever the way out is
(Ctrl-C, SIGTERM, an error). When stdout is not a terminal it prints one plain
snapshot per interval instead, so ``status --watch > file`` makes a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from datetime import datetime

from rich.bar import Bar
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from queuectl.cli.render import (
    Column,
    Output,
    attempts_text,
    one_line,
    span_text,
)
from queuectl.exceptions import BackendError
from queuectl.models import Job, JobState, Outcome, RunningJob, WorkerInfo
from queuectl.queue import Overview, Queue
from queuectl.signals import on_signals
from queuectl.transitions import STATE_STYLES, attempt_label

#: Rows the view needs besides the running jobs: header, the counts panels (six
#: states plus borders), the workers panel's borders and header, the dead panel.
_FIXED_ROWS = 1 + 8 + 4
#: Narrower than this, the counts panel leaves out its bars.
_BARS_MIN_WIDTH = 90


def overview_view(out: Output, view: Overview, *, target: str = "", height: int = 0) -> Group:
    """One frame. ``height`` (terminal rows) bounds the running-jobs list; 0: no bound.

    On a terminal: panels, bars and colours. Plain: the same facts as titled
    sections of aligned text, one snapshot per call.
    """
    # The database path goes last: on a narrow window it is what gets cut.
    header = Text.assemble(
        ("queuectl", "bold" if out.tty else ""),
        f" · {datetime.fromtimestamp(view.now / 1000):%Y-%m-%d %H:%M:%S}",
        (" · Ctrl-C to quit", "dim") if out.tty else "",
        f" · {target}" if target else "",
        no_wrap=True,
        overflow="ellipsis",
    )
    slots = _slot_rows(out, view)
    dead, budget = _row_budget(view, height, len(slots))
    sections = [
        ("jobs", _counts(out, view)),
        (_window_title(view.window_s), _recent(out, view)),
        (_workers_title(view), _slots_table(out, slots, budget)),
        ("dead, newest first", _dead_table(out, view, dead)),
    ]
    if not out.tty:
        parts: list[RenderableType] = [header]
        for title, body in sections:
            parts += [Text(""), Text(title.upper()), body]
        return Group(*parts)
    panels = [Panel(body, title=title, title_align="left") for title, body in sections]
    # Below _BARS_MIN_WIDTH columns the bars give their room to the last minute.
    counts = Panel(_counts(out, view, bars=False), title="jobs", title_align="left")
    top = Responsive(
        _top_row(panels[0], panels[1]),
        _top_row(counts, panels[1]),
        min_width=_BARS_MIN_WIDTH,
    )
    return Group(header, top, panels[2], panels[3])


def _top_row(*panels: Panel) -> Table:
    # The counts keep their natural width; the last minute takes the rest of the
    # row, so both rows of panels end at the same right edge.
    top = Table.grid(padding=(0, 1), expand=True)
    top.add_column()
    top.add_column(ratio=1)
    top.add_row(*panels)
    return top


class Responsive:
    """Draws ``wide`` when there are at least ``min_width`` columns, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType, *, min_width: int) -> None:
        self.wide = wide
        self.narrow = narrow
        self.min_width = min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= self.min_width else self.narrow


#: The dead panel at its smallest: its borders and one line.
_DEAD_MIN_ROWS = 3
#: The dead panel's rows besides the jobs: borders, header and the rule under it.
_DEAD_TABLE_ROWS = 4


def _row_budget(view: Overview, height: int, slot_rows: int) -> tuple[int, int]:
    """How many dead jobs and slot rows fit in ``height`` rows (0: no limit).

    Running jobs matter most while watching: the slots get every row they need but
    the dead panel's smallest form, and the dead jobs get what is left; with too
    little left for even one, the panel just says how many there are.
    """
    if not height:
        return len(view.dead), 0
    rest = height - _FIXED_ROWS
    budget = max(min(slot_rows, rest - _DEAD_MIN_ROWS), 1)
    dead = min(len(view.dead), max(rest - budget - _DEAD_TABLE_ROWS, 0))
    return dead, budget


def _counts(out: Output, view: Overview, *, bars: bool = True) -> Table:
    total = max(sum(view.counts.values()), 1)
    grid = Table.grid(padding=(0, 2) if not out.tty else (0, 1))
    grid.add_column(min_width=10)
    grid.add_column(justify="right", min_width=7)
    bars = bars and out.tty
    if bars:
        grid.add_column(width=20)
    for state in JobState:
        n = view.counts[state]
        style = STATE_STYLES[state]
        cells: list[RenderableType] = [
            out.state(state),
            out.styled(f"{n:,}", style if n else "dim"),
        ]
        if bars:
            cells.append(Bar(size=total, begin=0, end=n, width=20, color=style.split()[-1]))
        grid.add_row(*cells)
        if state is JobState.PENDING and view.waiting:
            # Held by dependencies, so "pending 40, idle worker" does not look stuck.
            grid.add_row(out.styled("  waiting", "dim"), out.styled(f"{view.waiting:,}", "dim"))
    return grid


def _recent(out: Output, view: Overview) -> Table:
    grid = Table.grid(padding=(0, 2) if not out.tty else (0, 1))
    grid.add_column(style="bold" if out.tty else "", no_wrap=True)
    # A wrapping column is the one rich shrinks first, and the cells themselves
    # never wrap: a narrow panel cuts values with "…", never the labels.
    grid.add_column(no_wrap=not out.tty)
    done = view.finished.get(Outcome.COMPLETED, 0)
    failed = view.failed_recently
    retry = view.next_retry
    processes = len(view.workers)
    rows = {
        "completed": Text.assemble(
            out.styled(f"{done:,}", "green" if done else "dim"),
            out.styled(f"  {_rate(done, view.window_s)}", "dim"),
        ),
        "failed": Text.assemble(
            out.styled(f"{failed:,}", "magenta" if failed else "dim"),
            out.styled(f" attempt{'s' if failed != 1 else ''}", "dim"),
        ),
        "next retry": out.styled("none", "dim")
        if retry is None or retry.next_run_at is None
        else Text.assemble(
            out.styled(retry.id, "bold"),
            f" {out.when(retry.next_run_at)}",
            out.styled(f" (attempt {_next_attempt(retry)})", "dim"),
        ),
        "workers": out.styled(
            f"{processes} process{'es' if processes != 1 else ''}, "
            f"{view.coroutines} slot{'s' if view.coroutines != 1 else ''}, "
            f"{len(view.running)} busy",
            "" if view.workers else "dim",
        ),
    }
    for label, value in rows.items():
        value.no_wrap = True
        value.overflow = "ellipsis"
        grid.add_row(label, value)
    return grid


def _next_attempt(job: Job) -> str:
    """The attempt a waiting job's next run will be (its claim adds one to both counts)."""
    return attempt_label(job.claims + 1, job.attempts + 1, job.max_retries)


def _counted(job: RunningJob) -> int:
    return job.attempt if job.attempts is None else job.attempts


def _rate(n: int, window_s: float) -> str:
    per_s = n / window_s if window_s > 0 else 0.0
    return f"{per_s:.1f}/s" if per_s >= 1 else f"{per_s * 60:.0f}/min"


def _window_title(window_s: float) -> str:
    return "last minute" if window_s == 60 else f"last {span_text(window_s)}"


def _workers_title(view: Overview) -> str:
    return f"workers ({view.coroutines} slots, {len(view.running)} running)"


def _slot_rows(out: Output, view: Overview) -> list[list[str | Text]]:
    """Each live worker's busy slots with their jobs, then one line for its idle slots."""
    by_worker: dict[str | None, list[RunningJob]] = {}
    for job in view.running:
        by_worker.setdefault(job.worker_id, []).append(job)
    rows: list[list[str | Text]] = []
    for worker in view.workers:
        rows.extend(_worker_rows(out, view, worker, by_worker.pop(worker.id, [])))
    # Jobs whose worker is no longer live: a lease about to be recovered.
    for worker_id, jobs in by_worker.items():
        for job in jobs:
            rows.append(_job_row(out, view, f"{worker_id or '?'} (lost)", job))
    return rows


def _slots_table(out: Output, rows: list[list[str | Text]], budget: int) -> RenderableType:
    """The slot rows, cut to ``budget`` rows (0: all) with a last line saying how many more."""
    if not rows:
        return out.styled("no workers running: start one with `queuectl worker start`", "dim")
    if budget and len(rows) > budget:
        hidden = len(rows) - budget + 1
        rows = rows[: budget - 1]
        rows.append([out.styled(f"… {hidden} more row(s)", "dim"), "", "", "", "", ""])
    columns = [
        Column("WORKER/SLOT", key=True),
        Column("JOB", key=True),
        Column("ATTEMPT", justify="right", drop=2),
        Column("RUNNING", justify="right"),
        Column("COMMAND", flex=True),
        Column("HOST", drop=1),
    ]
    return out.table(columns, rows, inner=True)


def _worker_rows(
    out: Output, view: Overview, worker: WorkerInfo, jobs: Sequence[RunningJob]
) -> list[list[str | Text]]:
    rows = [
        _job_row(out, view, f"{worker.id}/{'?' if job.slot is None else job.slot}", job)
        for job in sorted(jobs, key=lambda j: (j.slot is None, j.slot or 0))
    ]
    idle = worker.count - len(jobs)
    if idle > 0:
        label = f"{idle} slot{'s' if idle != 1 else ''} idle"
        rows.append([worker.id, out.styled(label, "dim"), "", "", "", worker.host])
    return rows


def _job_row(out: Output, view: Overview, who: str, job: RunningJob) -> list[str | Text]:
    return [
        who,
        out.styled(job.job_id, "bold"),
        attempt_label(job.attempt, _counted(job), job.max_retries),
        out.styled(span_text((view.now - job.started_at) / 1000), "yellow"),
        one_line(job.command),
        job.host or "",
    ]


def _dead_table(out: Output, view: Overview, limit: int) -> RenderableType:
    if view.dead and not limit:
        total = view.counts.get(JobState.DEAD, 0) or len(view.dead)
        return out.styled(f"{total:,} dead job(s); a taller window lists them", "dim")
    columns = [
        Column("ID", key=True),
        Column("DIED"),
        Column("ATTEMPTS", justify="right", drop=1),
        Column("ERROR", flex=True),
    ]
    rows: list[list[str | Text]] = [
        [
            out.styled(job.id, "bold red"),
            out.when(job.updated_at),
            attempts_text(job.attempts, job.max_retries),
            job.last_error or "-",
        ]
        for job in view.dead[:limit]
    ]
    return out.table(columns, rows, empty="no dead jobs", inner=True)


async def watch_status(queue: Queue, interval_s: float, *, tty: bool | None = None) -> None:
    """Refresh until Ctrl-C or SIGTERM; on a terminal in the alternate screen."""
    stop = asyncio.Event()
    redraw = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if sig is signal.SIGWINCH:
            redraw.set()  # redraw at once at the new size
        else:
            stop.set()

    out = Output(tty=tty)
    signals = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGWINCH,) if out.tty else ())
    with on_signals(on_signal, signals):
        if out.tty:
            await _live(queue, out, interval_s, stop, redraw)
        else:
            await _snapshots(queue, out, interval_s, stop)


async def _live(
    queue: Queue, out: Output, interval_s: float, stop: asyncio.Event, redraw: asyncio.Event
) -> None:
    from rich.live import Live

    console = out.console
    frame: RenderableType = Text("reading the queue…", style="dim")
    with Live(frame, console=console, screen=True, auto_refresh=False) as live:
        while not stop.is_set():
            frame = await _frame(queue, out, frame, height=console.height)
            live.update(frame, refresh=True)
            redraw.clear()
            await _wait(interval_s, stop, redraw)


async def _frame(
    queue: Queue, out: Output, previous: RenderableType, *, height: int
) -> RenderableType:
    """The next frame; when the store cannot be read, the last one under a red line."""
    try:
        await queue.reopen_if_created()
        view = await queue.overview()
    except BackendError as exc:
        return Group(Text(f"cannot read the queue: {exc}", style="bold red"), previous)
    out.now = view.now
    return overview_view(out, view, target=queue.shown_target, height=height)


async def _snapshots(queue: Queue, out: Output, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await queue.reopen_if_created()
        view = await queue.overview()
        out.now = view.now
        out.show(overview_view(out, view, target=queue.shown_target))
        if out.file is None:
            import sys

            sys.stdout.write("\n")
            sys.stdout.flush()
        await _wait(interval_s, stop, None)


async def _wait(interval_s: float, stop: asyncio.Event, redraw: asyncio.Event | None) -> None:
    waits = [asyncio.ensure_future(stop.wait())]
    if redraw is not None:
        waits.append(asyncio.ensure_future(redraw.wait()))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(interval_s):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()

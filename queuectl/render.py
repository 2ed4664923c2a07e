"""Human output: rich tables on a terminal, plain aligned text otherwise.

On a terminal, states are coloured, times are relative ("12s ago", "in 8s") and
long commands are shortened with an ellipsis to fit; ids are never cut. When stdout
is not a terminal the same tables print without colour or borders, with absolute
ISO times, full commands and no trailing spaces, so scripts can rely on them.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from queuectl.clock import now_ms, to_iso
from queuectl.models import Attempt, Job, JobState, WorkerInfo

if TYPE_CHECKING:
    from queuectl.queue import Status

_MIN_LAST_COLUMN = 10

STATE_STYLES = {
    JobState.PENDING: "cyan",
    JobState.PROCESSING: "yellow",
    JobState.COMPLETED: "green",
    JobState.FAILED: "magenta",
    JobState.DEAD: "bold red",
}


class Output:
    """Where human output goes, and whether it is a terminal."""

    def __init__(self, *, tty: bool | None = None, width: int | None = None) -> None:
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.width = width
        self.now = now_ms()

    def console(self, file: Any = None) -> Console:
        if self.tty:
            return Console(
                file=file, highlight=False, width=self.width, force_terminal=file is None
            )
        return Console(
            file=file,
            width=self.width or 100_000,
            no_color=True,
            highlight=False,
            emoji=False,
            force_terminal=False,
            markup=False,
        )

    @property
    def columns(self) -> int:
        """The width tables are laid out for (the terminal's, unless given)."""
        return self.console().width

    def show(self, renderable: RenderableType) -> None:
        if self.tty:
            console = self.console()
            if isinstance(renderable, Table):
                # Columns that must not be cut (ids above all) may not fit a narrow
                # terminal: print wider and let the terminal wrap, rather than crop.
                unbounded = console.options.update_width(1 << 16)
                needed = Measurement.get(console, unbounded, renderable).minimum
                if needed > console.width:
                    console = Console(highlight=False, width=needed, force_terminal=True)
            console.print(renderable)
            return
        # Plain text: render off-screen, then drop the padding rich adds to lines.
        buffer = io.StringIO()
        self.console(buffer).print(renderable)
        text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
        sys.stdout.write(text + "\n")

    def when(self, ms: int | None) -> str:
        if ms is None:
            return "-"
        if not self.tty:
            return to_iso(ms) or "-"
        return relative(ms, self.now)

    def table(self, *columns: str, title: str | None = None) -> Table:
        if self.tty:
            table = Table(title=title, header_style="bold", title_justify="left")
        else:
            table = Table(box=None, show_edge=False, pad_edge=False, header_style=None)
        for name in columns:
            table.add_column(name)
        return table

    def state(self, state: JobState) -> Text:
        return Text(state.value, style=STATE_STYLES[state] if self.tty else "")


def relative(ms: int, now: int) -> str:
    delta = (ms - now) / 1000
    span = abs(delta)
    if span < 1:
        return "now"
    if span < 60:
        text = f"{span:.0f}s"
    elif span < 3600:
        text = f"{span // 60:.0f}m{span % 60:02.0f}s"
    elif span < 86400:
        text = f"{span // 3600:.0f}h{span % 3600 // 60:02.0f}m"
    else:
        text = f"{span // 86400:.0f}d{span % 86400 // 3600:02.0f}h"
    return f"in {text}" if delta > 0 else f"{text} ago"


def _id_column(table: Table, ids: Iterable[str]) -> None:
    widest = max((len(i) for i in ids), default=2)
    column = table.columns[0]
    column.no_wrap = True
    column.min_width = widest


def jobs_table(out: Output, jobs: Sequence[Job], *, title: str | None = None) -> Table:
    table = out.table(
        "ID", "STATE", "ATTEMPTS", "PRI", "QUEUE", "NEXT RUN", "UPDATED", "COMMAND", title=title
    )
    _id_column(table, (j.id for j in jobs))
    rows: list[tuple[str | Text, ...]] = []
    for job in jobs:
        waiting = job.state in (JobState.PENDING, JobState.FAILED)
        rows.append(
            (
                job.id,
                out.state(job.state),
                f"{job.attempts}/{job.max_retries + 1}",
                str(job.priority),
                job.queue,
                out.when(job.next_run_at) if waiting else "-",
                out.when(job.updated_at),
                job.command if out.tty else job.command.replace("\n", "\\n"),
            )
        )
    if out.tty:
        _fit_last_column(out, table, rows)
    for row in rows:
        table.add_row(*row)
    return table


def _fit_last_column(out: Output, table: Table, rows: Sequence[Sequence[str | Text]]) -> None:
    """Keep every column but the last whole; the last takes what is left, with an ellipsis.

    (A ``ratio`` on the last column would make rich squeeze the short columns, even
    to nothing, whenever the last one's text is long.)
    """
    fixed = 0
    for index, column in enumerate(table.columns[:-1]):
        cells = [cell_len(str(column.header))] + [cell_len(str(row[index])) for row in rows]
        column.no_wrap = True
        column.min_width = max(column.min_width or 0, *cells)
        fixed += column.min_width
    last = table.columns[-1]
    last.no_wrap = True
    last.overflow = "ellipsis"
    # Each column has one space of padding on each side and one border after it.
    chrome = 3 * len(table.columns) + 1
    last.max_width = max(out.columns - fixed - chrome, _MIN_LAST_COLUMN)
    widest = max((cell_len(str(row[-1])) for row in rows), default=0)
    last.min_width = max(cell_len(str(last.header)), min(widest, _MIN_LAST_COLUMN))


def status_view(out: Output, status: Status) -> RenderableType:
    table = out.table("STATE", "JOBS")
    table.columns[1].justify = "right"
    for state in JobState:
        table.add_row(out.state(state), str(status.counts[state]))
    workers = status.coroutines
    processes = len(status.workers)
    line = f"workers: {workers} (in {processes} process{'es' if processes != 1 else ''})"
    hosts = status.by_host
    if len(hosts) > 1:
        line += "; by host: " + ", ".join(f"{host} {n}" for host, n in hosts.items())
    return Group(table, Text(line))


def workers_table(out: Output, workers: Sequence[WorkerInfo]) -> Table:
    table = out.table("ID", "HOST", "PID", "STARTED", "HEARTBEAT", "SLOTS", "DONE", "QUEUES")
    _id_column(table, (w.id for w in workers))
    for w in workers:
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            out.when(w.started_at),
            out.when(w.heartbeat_at),
            str(w.count),
            str(w.jobs_done),
            ",".join(w.queues) or "*",
        )
    return table


def config_table(out: Output, settings: dict[str, object]) -> Table:
    table = out.table("KEY", "VALUE")
    for key, value in settings.items():
        table.add_row(key, str(value))
    return table


def attempts_table(out: Output, history: Sequence[Attempt]) -> Table:
    table = out.table("#", "STARTED", "DURATION", "RESULT", "ERROR", "WORKER")
    for a in history:
        duration = "-" if a.finished_at is None else f"{(a.finished_at - a.started_at) / 1000:.2f}s"
        if a.signal is not None:
            result = f"signal {a.signal}"
        elif a.exit_code is not None:
            result = f"exit {a.exit_code}"
        else:
            result = a.outcome.value if a.outcome else "running"
        table.add_row(
            str(a.attempt),
            out.when(a.started_at),
            duration,
            result,
            a.error or "-",
            f"{a.worker_id or '-'}@{a.host}" if a.host else (a.worker_id or "-"),
        )
    return table


def job_detail(out: Output, job: Job, history: Sequence[Attempt]) -> RenderableType:
    fields = out.table("FIELD", "VALUE")
    if out.tty:
        fields.show_header = False
        fields.box = None
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("command", job.command),
        ("state", out.state(job.state)),
        ("attempts", f"{job.attempts} (max retries {job.max_retries})"),
        ("priority", str(job.priority)),
        ("queue", job.queue),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "none"),
        ("run at", out.when(job.run_at)),
        (
            "next run",
            out.when(job.next_run_at) if job.state in (JobState.PENDING, JobState.FAILED) else "-",
        ),
        ("created", out.when(job.created_at)),
        ("updated", out.when(job.updated_at)),
        ("last error", job.last_error or "-"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
    ]
    if job.cwd:
        rows.append(("cwd", job.cwd))
    if job.env:
        rows.append(("env", " ".join(f"{k}={v}" for k, v in job.env.items())))
    for name, value in rows:
        fields.add_row(name, value)
    attempts = attempts_table(out, history) if history else Text("no attempts yet")
    if out.tty:
        return Group(Panel(fields, title=f"job {job.id}", title_align="left"), attempts)
    return Group(fields, Text(""), attempts)

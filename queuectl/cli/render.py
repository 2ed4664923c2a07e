"""Human output: rich tables on a terminal, plain aligned text otherwise.

On a terminal, states are coloured, times are relative ("12s ago", "in 8s") and a
table is fitted to the width: the command column gives way first (shortened with an
ellipsis), then the least useful columns are left out; an id is never shortened.
When stdout is not a terminal the same tables print without colour or borders,
with every column, absolute ISO times, full commands and no trailing spaces, so
scripts can rely on them (``--json`` is the format meant for programs).
"""

from __future__ import annotations

import io
import signal as signals
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Column as RichColumn
from rich.table import Table
from rich.text import Text

from queuectl.clock import now_ms, to_iso
from queuectl.models import RUNNABLE_STATES, Attempt, Job, JobState, WorkerInfo
from queuectl.transitions import BY_OUTCOME, STATE_STYLES

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from queuectl.backends.base import Link, Links
    from queuectl.queue import Status

#: The colours of states and attempt outcomes are those of the worker log's
#: transitions (one table: ``queuectl.transitions``).
OUTCOME_STYLES = {outcome: t.style for outcome, t in BY_OUTCOME.items()}
#: The narrowest a shortened command gets before whole columns are left out.
MIN_FLEX_WIDTH = 12
_PLAIN_WIDTH = 1_000_000


@dataclass(frozen=True, slots=True)
class Column:
    """How one column behaves when the table meets the terminal's edge."""

    name: str
    justify: JustifyMethod = "left"
    #: The one column that gives way, shortened with an ellipsis (a command).
    flex: bool = False
    #: A column whose long values wrap onto more lines instead (an error text).
    wrap: bool = False
    #: 0: always shown; otherwise left out on a narrow terminal, highest first.
    drop: int = 0
    #: An id: never shortened; folded onto a second line only if nothing else helps.
    key: bool = False


class Output:
    """Where human output goes, whether it is a terminal, how wide, and what time it is.

    Tests pass ``tty``, ``width``, ``now`` and ``file`` to render exactly what a
    terminal of that width would show at that moment.
    """

    def __init__(
        self,
        *,
        tty: bool | None = None,
        width: int | None = None,
        now: int | None = None,
        file: IO[str] | None = None,
    ) -> None:
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.file = file
        self.now = now_ms() if now is None else now
        self._console = self._make_console(width)

    def _make_console(self, width: int | None) -> Console:
        if self.tty:
            return Console(
                file=self.file, width=width, highlight=False, emoji=False, force_terminal=True
            )
        return _plain_console(io.StringIO())

    @property
    def console(self) -> Console:
        return self._console

    def show(self, renderable: RenderableType) -> None:
        if self.tty:
            console = self._console
            if isinstance(renderable, FittedTable):
                # An id wider than the terminal: print the table at the width it
                # needs and let the terminal wrap its lines, rather than cut the id.
                renderable = renderable.fit(console, console.width)
                needed = _measure(console, renderable)
                if needed > console.width:
                    console = Console(
                        file=self.file, width=needed, highlight=False, force_terminal=True
                    )
            console.print(renderable)
            return
        out = self.file or sys.stdout
        out.write(self.plain(renderable))

    def plain(self, renderable: RenderableType) -> str:
        """Render off-screen, then drop the padding rich adds to the ends of lines."""
        buffer = io.StringIO()
        _plain_console(buffer).print(renderable)
        return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())

    def when(self, ms: int | None) -> str:
        """Relative on a terminal ("12s ago", "in 8s"), ISO-8601 UTC otherwise."""
        if ms is None:
            return "-"
        if not self.tty:
            return to_iso(ms) or "-"
        return relative(ms, self.now)

    def when_long(self, ms: int | None) -> str:
        """For the detail view: relative and local wall-clock time on a terminal."""
        if ms is None or not self.tty:
            return self.when(ms)
        local = datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
        return f"{relative(ms, self.now)} ({local})"

    def state(self, state: JobState) -> Text:
        return Text(state.value, style=STATE_STYLES[state] if self.tty else "")

    def job_state(self, job: Job) -> Text:
        """The state, marked ``(waiting)`` while dependencies hold a pending job, so a
        backlog behind a running chain never looks stuck."""
        text = self.state(job.state)
        if job.waiting:
            text.append(" (waiting)", style="dim" if self.tty else "")
        return text

    def styled(self, text: str, style: str) -> Text:
        return Text(text, style=style if self.tty else "")

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[str | Text]],
        *,
        title: str | None = None,
        empty: str | None = None,
        inner: bool = False,
    ) -> RenderableType:
        """A table fitted to the terminal (see the module docstring), or plain text.

        ``inner``: the table sits in a panel, so it draws only a rule under the header.
        """
        if not rows and empty is not None and self.tty:
            # Plain output keeps the header alone: a script reading it sees no rows.
            return self.styled(empty, "dim")
        if not self.tty:
            return _build(columns, rows, tty=False, title=None)
        return FittedTable(columns, rows, title=title, inner=inner)


class FittedTable:
    """A table fitted (``fit_table``) to the width it is given when drawn.

    Fitting at draw time rather than when the rows are known means a table inside
    a panel, a live view after a resize, or a test console of a given width all
    get exactly the room they have.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[str | Text]],
        *,
        title: str | None = None,
        inner: bool = False,
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.title = title
        self.inner = inner

    def fit(self, console: Console, width: int) -> Table:
        return fit_table(
            console, self.columns, self.rows, title=self.title, width=width, inner=self.inner
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fit(console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fit(console, options.max_width))


def _plain_console(file: IO[str]) -> Console:
    return Console(
        file=file,
        width=_PLAIN_WIDTH,
        no_color=True,
        highlight=False,
        emoji=False,
        force_terminal=False,
        markup=False,
    )


def fit_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    *,
    title: str | None,
    width: int,
    inner: bool = False,
) -> Table:
    """Fit ``rows`` into ``width`` cells, using rich's own measurements.

    First the natural width; then the flex column shortened with an ellipsis to
    whatever room is left (never below ``MIN_FLEX_WIDTH``); then, one by one, the
    columns marked ``drop`` are left out; then the other short columns shrink. If
    even that cannot keep the key columns (ids) whole, nothing is cut: a table in
    a panel (``inner``) folds its ids onto more lines, any other table comes back
    with every column and wider than ``width``, for ``Output.show`` to print at
    its own width and the terminal to wrap.
    """
    shown = list(range(len(columns)))
    while True:
        cols = [columns[i] for i in shown]
        cells = [[row[i] for i in shown] for row in rows]
        table = _build(cols, cells, tty=True, title=title, inner=inner)
        if _measure(console, table) <= width or _give_flex(console, table, width, MIN_FLEX_WIDTH):
            return table
        droppable = [i for i in shown if columns[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: columns[i].drop))
    # Too narrow even for the essential columns: the flex column goes down to a
    # couple of cells and the other columns may wrap (rich's collapse only ever
    # shrinks wrapping columns), so an id keeps every character as long as it can.
    table = _build(cols, cells, tty=True, title=title, squeeze=True, inner=inner)
    _give_flex(console, table, width, 2)
    floor = _build(cols, cells, tty=True, title=title, squeeze=True, inner=inner)
    for column, col in zip(floor.columns, cols, strict=True):
        column.width = None if col.key else 1
    if _measure(console, floor) <= width:
        return table
    if inner:
        # A panel cannot be wider than the screen: fold the ids onto more lines.
        for column, col in zip(table.columns, cols, strict=True):
            column.no_wrap = column.no_wrap and not col.key
        return table
    table = _build(columns, rows, tty=True, title=title)
    flex = _flex_column(table)
    if flex is not None:
        flex.width = MIN_FLEX_WIDTH
    return table


def _flex_column(table: Table) -> RichColumn | None:
    return next((c for c in table.columns if c.overflow == "ellipsis" and c.ratio == 1), None)


def _give_flex(console: Console, table: Table, width: int, minimum: int) -> bool:
    """Size the flex column to the room left (at least ``minimum``); ``False`` if none."""
    flex = _flex_column(table)
    if flex is None:
        return False
    flex.width = minimum
    spare = width - _measure(console, table)
    if spare < 0:
        return False
    flex.width = minimum + spare
    return True


def _measure(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update_width(_PLAIN_WIDTH), table).maximum


def _build(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    *,
    tty: bool,
    title: str | None,
    squeeze: bool = False,
    inner: bool = False,
) -> Table:
    if tty and inner:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    elif tty:
        table = Table(title=title, header_style="bold", title_justify="left", title_style="bold")
    else:
        table = Table(box=None, show_edge=False, pad_edge=False, header_style=None)
    for col in columns:
        table.add_column(
            col.name,
            justify=col.justify,
            no_wrap=not (tty and (col.wrap or (squeeze and not (col.key or col.flex)))),
            overflow="fold" if (col.key or col.wrap) else "ellipsis",
            # Marks the flex column for _give_flex; ratio has no effect on a
            # table that does not expand.
            ratio=1 if col.flex else None,
        )
    for row in rows:
        # A plain string is data (a command, an error), never rich markup: a
        # command with ``[bold]`` or ``[/]`` in it must show as typed.
        table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in row))
    return table


def relative(ms: int, now: int) -> str:
    """``12s ago``, ``in 8s``, ``3m05s ago``, ``in 2h10m``, ``4d03h ago``; ``now`` within 1 s."""
    delta = (ms - now) / 1000
    span = abs(delta)
    if span < 1:
        return "now"
    text = span_text(span)
    return f"in {text}" if delta > 0 else f"{text} ago"


def span_text(seconds: float) -> str:
    """A duration the way a person says it: ``45s``, ``3m05s``, ``2h10m``, ``4d03h``."""
    span = max(seconds, 0)
    if span < 60:
        return f"{int(span)}s"
    if span < 3600:
        return f"{int(span // 60)}m{int(span % 60):02d}s"
    if span < 86400:
        return f"{int(span // 3600)}h{int(span % 3600 // 60):02d}m"
    return f"{int(span // 86400)}d{int(span % 86400 // 3600):02d}h"


def one_line(text: str) -> str:
    """A command on one line: newlines and tabs shown as ``\\n`` and ``\\t``.

    Backslashes stay as typed (a command is shown for a person to read; ``--json``
    is the exact text), so ``echo one\\two`` does not turn into ``echo one\\\\two``.
    """
    return text.replace("\n", "\\n").replace("\t", "\\t")


def attempts_text(attempts: int, max_retries: int) -> str:
    return f"{attempts}/{max_retries + 1}"


def jobs_table(out: Output, jobs: Sequence[Job], *, title: str | None = None) -> RenderableType:
    columns = [
        Column("ID", key=True),
        Column("STATE"),
        Column("ATTEMPTS", justify="right", drop=1),
        Column("PRI", justify="right", drop=5),
        Column("QUEUE", drop=4),
        Column("NEXT RUN", drop=2),
        Column("UPDATED", drop=3),
        Column("COMMAND", flex=True),
    ]
    rows: list[list[str | Text]] = [
        [
            job.id,
            out.job_state(job),
            attempts_text(job.attempts, job.max_retries),
            str(job.priority),
            job.queue,
            out.when(job.next_run_at) if job.state in RUNNABLE_STATES else "-",
            out.when(job.updated_at),
            one_line(job.command),
        ]
        for job in jobs
    ]
    return out.table(columns, rows, title=title, empty="no jobs")


def status_view(out: Output, status: Status) -> RenderableType:
    rows: list[list[str | Text]] = [
        [out.state(state), str(status.counts[state])] for state in JobState
    ]
    if status.waiting:
        # Pending jobs held by dependencies (reference §19.1), so a backlog behind a
        # running chain with idle workers does not look stuck.
        rows.insert(1, [out.styled("  waiting", "dim"), str(status.waiting)])
    table = out.table([Column("STATE"), Column("JOBS", justify="right")], rows)
    workers = status.coroutines
    processes = len(status.workers)
    line = f"workers: {workers} (in {processes} process{'es' if processes != 1 else ''})"
    hosts = status.by_host
    if len(hosts) > 1:
        line += "; by host: " + ", ".join(f"{host} {n}" for host, n in hosts.items())
    lines = [table, Text(line)]
    if status.all_paused:
        lines.append(out.styled("paused: every queue (`queuectl queue resume --all`)", "yellow"))
    elif status.paused:
        lines.append(out.styled(f"paused: {', '.join(status.paused)}", "yellow"))
    return Group(*lines)


def workers_table(out: Output, workers: Sequence[WorkerInfo]) -> RenderableType:
    columns = [
        Column("ID", key=True),
        Column("HOST", drop=2),
        Column("PID", justify="right"),
        Column("STARTED", drop=1),
        Column("HEARTBEAT"),
        Column("SLOTS", justify="right"),
        Column("DONE", justify="right"),
        Column("QUEUES", flex=True),
    ]
    rows = [
        [
            w.id,
            w.host,
            str(w.pid),
            out.when(w.started_at),
            out.when(w.heartbeat_at),
            str(w.count),
            str(w.jobs_done),
            ",".join(w.queues) or "*",
        ]
        for w in workers
    ]
    return out.table(columns, rows, empty="no workers running")


def config_table(
    out: Output, settings: dict[str, object], defaults: dict[str, object] | None = None
) -> RenderableType:
    """Settings with their defaults; on a terminal, a changed value stands out in bold."""
    defaults = defaults or {}
    rows: list[list[str | Text]] = []
    for key, value in settings.items():
        default = defaults.get(key, value)
        changed = value != default
        rows.append([key, out.styled(str(value), "bold" if changed else ""), str(default)])
    return out.table([Column("KEY"), Column("VALUE"), Column("DEFAULT", drop=1)], rows)


def signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def attempt_result(out: Output, a: Attempt) -> Text:
    """Exit code or signal, in the colour of how the attempt ended."""
    style = OUTCOME_STYLES.get(a.outcome, "yellow") if a.outcome else "yellow"
    if a.signal is not None:
        text = f"{signal_name(a.signal)} ({a.signal})"
    elif a.exit_code is not None:
        text = f"exit {a.exit_code}"
    elif a.outcome is not None:
        text = a.outcome.value.replace("_", " ")
    else:
        text = "running"
    return out.styled(text, style)


def attempt_cells(a: Attempt, now: int) -> tuple[str, str, str]:
    """An attempt's DURATION, WORKER and OUTPUT cells, in the words ``show`` and the
    dashboard share."""
    if a.finished_at is None:
        duration = f"{span_text((now - a.started_at) / 1000)}…"
    else:
        duration = f"{(a.finished_at - a.started_at) / 1000:.2f}s"
    worker = a.worker_id or "-"
    if a.host:
        worker = f"{worker}@{a.host}"
    output = size_text(a.output_size)
    if a.output_truncated:
        output += " (cut)"
    return duration, worker, output


def size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def attempts_table(out: Output, history: Sequence[Attempt]) -> RenderableType:
    columns = [
        Column("#", justify="right"),
        Column("STARTED"),
        Column("DURATION", justify="right"),
        Column("RESULT"),
        Column("ERROR", wrap=True),
        Column("WORKER", drop=2),
        Column("OUTPUT", justify="right", drop=1),
    ]
    rows: list[list[str | Text]] = []
    for a in history:
        duration, worker, output = attempt_cells(a, out.now)
        rows.append(
            [
                str(a.attempt),
                out.when(a.started_at),
                duration,
                attempt_result(out, a),
                a.error or "-",
                worker,
                output,
            ]
        )
    return out.table(columns, rows, title="attempts" if out.tty else None)


def _job_fields(out: Output, job: Job) -> list[tuple[str, str | Text]]:
    waiting = job.state in RUNNABLE_STATES
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("command", job.command if out.tty else one_line(job.command)),
        ("state", out.job_state(job)),
        ("attempts", _attempts_field(job)),
        ("priority", str(job.priority)),
        ("queue", job.queue),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "none"),
        ("run at", out.when_long(job.run_at)),
        ("next run", out.when_long(job.next_run_at) if waiting else "-"),
        ("created", out.when_long(job.created_at)),
        ("updated", out.when_long(job.updated_at)),
        ("last error", out.styled(job.last_error, "red") if job.last_error else "-"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
    ]
    if job.worker_id:
        rows.append(("worker", job.worker_id))
    if job.cwd:
        rows.append(("cwd", job.cwd))
    if job.env:
        rows.append(("env", " ".join(f"{k}={v}" for k, v in job.env.items())))
    return rows


def _attempts_field(job: Job) -> str:
    """The attempts counted against the budget; and the runs in all when they differ."""
    text = f"{job.attempts} of {job.max_retries + 1} (max retries {job.max_retries})"
    if job.claims != job.attempts:
        # An interrupted run or a `dlq retry` made them differ: the attempts table
        # lists every run, so say why it has more rows.
        text += f"; {job.claims} run{'s' if job.claims != 1 else ''} in all"
    return text


def _link_text(out: Output, links: Sequence[Link]) -> Text:
    """Each job with its state: ``build (completed), lint (removed)``."""
    text = Text()
    for n, link in enumerate(links):
        if n:
            text.append(", ")
        text.append(link.id + " (")
        text.append_text(out.state(link.state) if link.state else Text("removed"))
        text.append(")")
    return text


def _link_fields(out: Output, job: Job, links: Links | None) -> list[tuple[str, str | Text]]:
    if links is None:
        return []
    rows: list[tuple[str, str | Text]] = []
    if links.after:
        rows.append((after_label(job), _link_text(out, links.after)))
    if links.dependents:
        rows.append((DEPENDENTS_LABEL, _link_text(out, links.dependents)))
    return rows


#: ``show``'s field for the jobs waiting on this one (the dashboard says the same).
DEPENDENTS_LABEL = "waited on by"


def after_label(job: Job) -> str:
    """``show``'s field for the dependencies: ``after``, or ``after (any end)`` with
    ``after_mode: finished`` (reference §19.1)."""
    return "after" if job.after_mode == "completed" else "after (any end)"


def job_detail(
    out: Output, job: Job, history: Sequence[Attempt], links: Links | None = None
) -> RenderableType:
    """``show JOB``: a panel of the job's fields (its dependencies and dependents with
    their states), then its attempts."""
    fields = _job_fields(out, job) + _link_fields(out, job, links)
    attempts = attempts_table(out, history) if history else out.styled("no attempts yet", "dim")
    if not out.tty:
        table = _build([Column("FIELD"), Column("VALUE")], fields, tty=False, title=None)
        return Group(table, Text(""), attempts)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in fields:
        grid.add_row(name, Text(value) if isinstance(value, str) else value)
    panel = Panel(
        grid,
        title=Text.assemble("job ", (job.id, "bold")),
        title_align="left",
        subtitle=out.state(job.state),
        subtitle_align="right",
        border_style=STATE_STYLES[job.state].replace("bold ", ""),
    )
    return Group(panel, attempts)


def render_text(render: Callable[[Output], RenderableType], **output: Any) -> str:
    """Render through a fresh ``Output`` into a string (tests, README screenshots)."""
    buffer = io.StringIO()
    out = Output(file=buffer, **output)
    out.show(render(out))
    return buffer.getvalue()

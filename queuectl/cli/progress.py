"""Progress bars for long commands, on stderr, and only when stderr is a terminal.

Three commands can take long enough for a user to wonder: a big ``enqueue`` from
stdin, ``dlq retry --all`` on a big dead-letter queue, and ``worker start --burst``
draining a queue. Each draws a ``rich.progress`` bar on stderr, so stdout (ids,
``--json``) stays exactly what scripts expect. The CLI imports this module only
after deciding a bar is wanted, which keeps rich off ``enqueue``'s fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from queuectl.exceptions import BackendError
from queuectl.models import JobState
from queuectl.options import WorkerOptions
from queuectl.queue import BurstProgress, Queue
from queuectl.queue import Progress as ProgressCallback

#: Seconds between two reads of the counters while a burst worker drains.
BURST_REFRESH_S = 0.5


def stderr_is_terminal() -> bool:
    """Whether a bar may be drawn: stderr is a terminal that is not ``TERM=dumb``."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def _console() -> Console:
    return Console(stderr=True, highlight=False)


@contextlib.contextmanager
def stage_bar(what: str, *, summary: bool = True) -> Iterator[ProgressCallback]:
    """A transient bar for a staged operation; yields the callback ``Queue`` reports to.

    The bar disappears when done; with ``summary`` one line stays, so the terminal
    keeps a record of what happened without the bar's redraws.
    """
    console = _console()
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task(what, total=None)
    done = 0

    def report(stage: str, n: int, total: int | None) -> None:
        nonlocal done
        done = n
        bar.update(task, description=f"{what}: {stage}", completed=n, total=total)

    started = time.monotonic()
    with bar:
        yield report
    if summary:
        console.print(
            f"[dim]{what}: {done:,} in {time.monotonic() - started:.1f}s[/]", highlight=False
        )


async def run_burst_with_bar(options: WorkerOptions, level: int) -> int:
    """``worker start --burst`` on a terminal: the rich log above a bar of the jobs left."""
    from queuectl.logs import setup_logging
    from queuectl.worker import run_worker

    console = _console()
    setup_logging(level, "rich", console=console)
    run = asyncio.ensure_future(run_worker(options))
    try:
        return await burst_with_bar(options.target, options.queues, console, run)
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run


async def burst_with_bar(
    target: str, queues: Sequence[str], console: Console, run: asyncio.Task[int]
) -> int:
    """Draw "left / done / dead" while ``run`` (a burst worker) drains ``queues``.

    The numbers come from the store's per-queue counters (a cheap read every
    ``BURST_REFRESH_S``), so they include other workers' work on the same queues.
    Log lines printed through ``console`` appear above the bar.
    """
    async with Queue.open(target) as queue:
        start = await queue.counts(queues)
        bar = Progress(
            SpinnerColumn(finished_text="[green]✔[/]"),
            TextColumn("[bold]burst[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "[green]{task.fields[done]} done[/] · "
                "[bold red]{task.fields[dead]} dead[/]{task.fields[cancelled]} · "
                "[magenta]{task.fields[retrying]} awaiting retry[/] · "
                "{task.fields[left]} left{task.fields[later]}"
            ),
            TimeElapsedColumn(),
            console=console,
        )
        task = bar.add_task(
            "burst",
            total=None,
            done="0",
            dead="0",
            cancelled="",
            retrying="0",
            left="?",
            later="",
        )
        with bar:
            while not run.done():
                await _refresh(bar, task, queue, queues, start)
                await asyncio.wait({run}, timeout=BURST_REFRESH_S)
            await _refresh(bar, task, queue, queues, start)
    return run.result()


async def _refresh(
    bar: Progress,
    task: TaskID,
    queue: Queue,
    queues: Sequence[str],
    start: dict[JobState, int],
) -> None:
    try:
        state = await queue.burst_progress(queues, start)
    except BackendError:
        return  # a busy store only delays the bar; the worker itself carries on
    _show(bar, task, state)


def _show(bar: Progress, task: TaskID, state: BurstProgress) -> None:
    bar.update(
        task,
        total=state.total,
        completed=state.completed + state.dead + state.cancelled,
        done=f"{state.completed:,}",
        dead=f"{state.dead:,}",
        # Named once some were cancelled meanwhile, so the done count adds up.
        cancelled=f" · [blue]{state.cancelled:,} cancelled[/]" if state.cancelled else "",
        retrying=f"{state.retrying:,}",
        left=f"{state.left:,}",
        # Delayed jobs the burst does not wait for: named, so "0 left" is not a surprise.
        later=f" · {state.later:,} not due yet" if state.later else "",
    )

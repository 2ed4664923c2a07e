"""``queuectl worker start | stop | list``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import asyncclick as click

from queuectl.cli.app import App, Duration, echo_json, output, pass_app, stderr_is_terminal
from queuectl.models import StopMode


@click.group()
async def worker() -> None:
    """Start, stop and list workers.

    \b
    Examples:
      queuectl worker start --count 4
      queuectl worker list
      queuectl worker stop
    """


@worker.command("start", short_help="Run workers in the foreground until stopped.")
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker coroutines (slots) in total.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    callback=lambda _ctx, _param, value: _queue_names(value),
    help="Serve only this queue (repeat).",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the slots over P processes.",
)
@click.option("--burst", is_flag=True, help="Exit once nothing is running, awaiting retry or due.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "plain", "json", "rich"]),
    default="auto",
    show_default=True,
    help="Worker log format on stderr.",
)
@click.option("-v", "--verbose", count=True, help="Also debug lines (heartbeats, …).")
@click.option(
    "-q",
    "--quiet",
    count=True,
    help="Only failures, recoveries and dead jobs; -qq: only dead jobs and errors.",
)
@pass_app
async def worker_start(
    app: App,
    count: int,
    queues: Sequence[str],
    processes: int,
    burst: bool,
    log_format: str,
    verbose: int,
    quiet: int,
) -> None:
    """Run workers in the foreground until stopped (Ctrl-C, SIGTERM, `worker stop`).

    The first stop signal lets running jobs finish; a second kills them and puts
    their jobs back to pending without using up an attempt. The log has one line
    per job transition; with --burst on a terminal, a bar shows the jobs left.

    \b
    Examples:
      queuectl worker start --count 4
      queuectl worker start --count 16 --processes 2 --queue emails
      queuectl worker start --burst          # drain the queue, then exit
      queuectl worker start --log-format json 2>> worker.jsonl
    """
    from queuectl.logs import level_for, setup_logging
    from queuectl.options import WorkerOptions

    if processes > count:
        raise click.UsageError(f"--processes ({processes}) cannot exceed --count ({count})")
    level = level_for(verbose, quiet)
    options = WorkerOptions(target=app.target, count=count, queues=tuple(queues), burst=burst)
    # With several processes the children write their own lines to the terminal,
    # which would tear a bar drawn by the parent: the bar needs one process.
    rich_log = log_format == "rich" or (log_format == "auto" and stderr_is_terminal())
    if burst and processes == 1 and rich_log and stderr_is_terminal():
        from queuectl.cli.progress import run_burst_with_bar

        code = await run_burst_with_bar(options, level)
    elif processes == 1:
        from queuectl.worker import run_worker

        setup_logging(level, log_format)
        code = await run_worker(options)
    else:
        setup_logging(level, log_format)
        from queuectl.supervisor import run_supervisor

        await run_supervisor(options, processes, (level, log_format))  # becomes the supervisor
    if code:
        sys.exit(code)


def _queue_names(names: Sequence[str]) -> tuple[str, ...]:
    """Refuse an empty name (an unset ``$QUEUE``) as ``enqueue --queue`` does: exit 1."""
    from queuectl.exceptions import InvalidOption
    from queuectl.jobspec import validate_queue

    for name in names:
        try:
            validate_queue(name)
        except ValueError as exc:
            raise InvalidOption(f"--queue {exc} (got {name!r})") from None
    return tuple(names)


@worker.command("stop", short_help="Ask running workers to stop; wait for them.")
@click.option("--now", is_flag=True, help="Kill running jobs (they go back to pending).")
@click.option(
    "--timeout", type=Duration(), metavar="D", help="Give up waiting after D (30, 90s, 5m; exit 1)."
)
@pass_app
async def worker_stop(app: App, now: bool, timeout: float | None) -> None:
    """Ask every running worker of this database to stop, and wait until they exit.

    \b
    Examples:
      queuectl worker stop          # let running jobs finish
      queuectl worker stop --now    # kill them; their jobs go back to pending
    """
    queue = await app.queue(create=False)  # no database: no workers to stop
    stopped = await queue.stop_workers(
        StopMode.NOW if now else StopMode.GRACEFUL, timeout_s=timeout
    )
    if stopped:
        click.echo(f"Stopped {stopped} worker process{'es' if stopped != 1 else ''}.")
    else:
        click.echo("No workers running.")


@worker.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def worker_list(app: App, as_json: bool) -> None:
    """List live worker processes.

    \b
    Example:
      queuectl worker list --json
    """
    workers = await (await app.queue(create=False)).live_workers()
    if as_json:
        from queuectl.records import worker_record

        echo_json([worker_record(w) for w in workers])
        return
    from queuectl.cli.render import workers_table

    out = output()
    out.show(workers_table(out, workers))

"""The ``queuectl`` command line: parse, make one library call, render.

No SQL and no rules live here. Heavy modules (rich, the worker) are imported inside
the commands that need them, so ``queuectl enqueue`` starts fast. ``main`` is the
one place where errors become an ``Error:`` line and an exit code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import asyncclick as click

from queuectl import __version__
from queuectl.cli import completion
from queuectl.cli.app import (
    App,
    Duration,
    ExitCode,
    echo_json,
    output,
    pass_app,
    stderr_is_terminal,
)
from queuectl.cli.lazy import LazyGroup
from queuectl.config import resolve_target
from queuectl.exceptions import QueueCtlError
from queuectl.models import JobState

if TYPE_CHECKING:
    from queuectl.queue import Queue

STATES = [s.value for s in JobState]
#: Input from stdin at least this big gets a progress bar (when stderr is a terminal).
BIG_BATCH_LINES = 1000
BIG_BATCH_BYTES = 1 << 20


#: Commands whose modules are imported only when one of them runs (or for --help).
LAZY = {
    "worker": "queuectl.cli.worker:worker",
    "config": "queuectl.cli.config:config",
    "cancel": "queuectl.cli.operate:cancel",
    "retry": "queuectl.cli.operate:retry",
    "rm": "queuectl.cli.operate:remove",
    "purge": "queuectl.cli.operate:purge",
    "update": "queuectl.cli.operate:update",
    "wait": "queuectl.cli.operate:wait",
    "queue": "queuectl.cli.queues:queue_group",
    "why": "queuectl.cli.queues:why",
    "web": "queuectl.cli.web:web",
    "schedule": "queuectl.cli.schedule:schedule",
}


@click.group(cls=LazyGroup, lazy=LAZY, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="TARGET",
    help="Database file (or postgresql:// URL). Default: $QUEUECTL_DB, else "
    "$XDG_DATA_HOME/queuectl/queuectl.db.",
)
@click.version_option(__version__, "-V", "--version", prog_name="queuectl")
@click.pass_context
async def cli(ctx: click.Context, db: str | None) -> None:
    """A persistent background job queue for shell commands.

    \b
    Example:
      queuectl enqueue '{"id":"job1","command":"sleep 2"}'
      queuectl worker start --count 2 --burst
      queuectl status --watch

    \b
    Tab completion (commands, options, job ids, states), e.g. for bash:
      eval "$(_QUEUECTL_COMPLETE=bash_source queuectl)"
    (zsh: zsh_source, fish: fish_source; see the README.)
    """
    ctx.obj = App(resolve_target(db))


@cli.command(short_help="Add jobs: a JSON argument, JSON on stdin, or -c CMD.")
@click.argument("job_json", required=False)
@click.option("-c", "--command", "command", metavar="CMD", help="Enqueue this shell command.")
@click.option("--id", "job_id", metavar="ID", help="Job id (with -c).")
@click.option("--max-retries", type=int, help="Retries after the first attempt (with -c).")
@click.option("--priority", type=int, help="Higher runs first (with -c).")
@click.option(
    "--delay",
    type=Duration(),
    metavar="D",
    help="Start after D: 30, 90s, 15m, 2h, 7d (with -c).",
)
@click.option(
    "--run-at", metavar="TIME", help="Start at TIME or later: ISO-8601 or Unix s (with -c)."
)
@click.option(
    "--timeout",
    type=Duration(allow_zero=False),
    metavar="D",
    help="Kill an attempt after D: 30, 90s, 15m, 2h (with -c).",
)
@click.option("--queue", metavar="Q", help="Named queue; default: default (with -c).")
@click.option(
    "--env", "env", multiple=True, metavar="K=V", help="Environment variable, repeatable (with -c)."
)
@click.option("--cwd", metavar="DIR", help="Working directory of the command (with -c).")
@click.option(
    "--unique-key", metavar="K", help="At most one waiting or running job with key K (with -c)."
)
@click.option(
    "--after",
    "after",
    multiple=True,
    metavar="ID",
    help="Wait until job ID completed; repeatable (with -c).",
)
@click.option(
    "--after-mode",
    metavar="MODE",
    help="completed (default) or finished: wait for any end (with -c).",
)
@click.option(
    "--skip-duplicates",
    is_flag=True,
    help="Skip jobs whose id exists or whose unique_key is held, instead of failing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the enqueued records as JSON.")
@pass_app
async def enqueue(
    app: App,
    /,
    job_json: str | None,
    command: str | None,
    as_json: bool,
    skip_duplicates: bool,
    **flags: Any,
) -> None:
    """Add jobs: JOB_JSON, JSON on stdin (object, array or JSON Lines), or -c CMD.

    Several jobs in one call go in one transaction: all or none. Prints each id.

    \b
    Examples:
      queuectl enqueue '{"id":"job1","command":"sleep 2"}'
      echo '{"command":"exit 1","max_retries":1}' | queuectl enqueue
      queuectl enqueue -c 'make test' --priority 5 --delay 30
      queuectl enqueue -c './backup.sh' --delay 2h --timeout 15m
      queuectl enqueue -c 'sync' --unique-key sync --skip-duplicates
      queuectl enqueue -c 'make deploy' --after test
    """
    streamed: str | None = None
    if not (skip_duplicates or as_json):
        found = _stdin_stream(job_json, command, flags)
        if isinstance(found, tuple):
            await _enqueue_stream(await app.queue(), *found)
            return
        streamed = found
    text = _job_input(job_json, command, flags, streamed=streamed)
    queue = await app.queue()
    if skip_duplicates:
        if isinstance(text, dict):
            jobs = await queue.enqueue(text, skip_duplicates=True, on_skip=_skipped)
        else:
            jobs = await queue.enqueue_text(text, skip_duplicates=True, on_skip=_skipped)
    elif isinstance(text, dict):
        jobs = await queue.enqueue(text)
    elif job_json is None and not as_json and _is_big(text) and stderr_is_terminal():
        from queuectl.cli.progress import stage_bar

        with stage_bar("enqueue") as progress:
            jobs = await queue.enqueue_text(text, progress=progress)
    else:
        jobs = await queue.enqueue_text(text)
    if as_json:
        from queuectl.records import job_record

        echo_json([job_record(j) for j in jobs])
    else:
        sys.stdout.write("".join(f"{j.id}\n" for j in jobs))


async def _enqueue_stream(queue: Queue, head: list[str], rest: TextIO) -> None:
    """JSON Lines from stdin, streamed (``Queue.enqueue_lines``); ids printed after the commit."""
    import io
    import itertools

    ids = io.StringIO()
    await queue.enqueue_lines(
        itertools.chain(head, rest), on_ids=lambda chunk: ids.write("\n".join(chunk) + "\n")
    )
    sys.stdout.write(ids.getvalue())


def _stdin_stream(
    job_json: str | None, command: str | None, flags: dict[str, Any]
) -> tuple[list[str], TextIO] | str | None:
    """Where stdin is JSON Lines, the lines read so far and the rest, to stream.

    Only for plain ``enqueue < file`` (not a terminal, no bar on stderr): the first
    line that is not blank must be a whole JSON object. Otherwise (an array, an
    object over several lines) the input read so far as text, for ``enqueue_text``;
    ``None`` where stdin is not the input at all.
    """
    if job_json is not None or command is not None or sys.stdin.isatty():
        return None
    if any(v not in (None, ()) for v in flags.values()) or stderr_is_terminal():
        return None
    head: list[str] = []
    for line in sys.stdin:
        head.append(line)
        if line.strip():
            break
    import json

    try:
        first = json.loads(head[-1]) if head else None
    except ValueError:
        first = None
    if isinstance(first, dict):
        return head, sys.stdin
    return "".join(head)


def _skipped(label: str, other: str) -> None:
    click.echo(f"skipped {label} (exists as {other})", err=True)


#: Option parameter names that differ from the job field (and option) they set.
_FIELDS = {"job_id": "id"}


def _job_input(
    job_json: str | None, command: str | None, flags: dict[str, Any], *, streamed: str | None = None
) -> str | dict[str, Any]:
    given = {k: v for k, v in flags.items() if v not in (None, ())}
    if command is not None:
        if job_json is not None:
            raise click.UsageError("give either JOB_JSON or -c CMD, not both")
        spec: dict[str, Any] = {"command": command}
        for key, value in given.items():
            spec[_FIELDS.get(key, key)] = value
        if "env" in spec:
            spec["env"] = dict(_split_env(item) for item in spec["env"])
        if "after" in spec:
            spec["after"] = list(spec["after"])
        return spec
    if given:
        field = _FIELDS.get(next(iter(given)), next(iter(given)))
        flag = field.replace("_", "-")
        raise click.UsageError(f"--{flag} needs -c CMD (in JSON, give the field {field!r})")
    if job_json is not None:
        return job_json
    if sys.stdin.isatty():
        raise click.UsageError("no job given: pass JOB_JSON, -c CMD, or JSON on stdin")
    return (streamed or "") + sys.stdin.read()


def _is_big(text: str) -> bool:
    return len(text) >= BIG_BATCH_BYTES or text.count("\n", 0, BIG_BATCH_BYTES) >= BIG_BATCH_LINES


def _split_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise click.BadParameter(f"{item!r} is not K=V", param_hint="--env")
    return key, value


@cli.command(short_help="Job counts per state and workers; --watch: live view.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", is_flag=True, help="Live view, refreshed until Ctrl-C.")
@click.option(
    "--interval",
    type=Duration(lo=0.1),
    default=1.0,
    show_default=True,
    metavar="D",
    help="Refresh interval of --watch (seconds, or e.g. 2s).",
)
@pass_app
async def status(app: App, as_json: bool, watch: bool, interval: float) -> None:
    """Show job counts per state and the number of live worker coroutines.

    --watch opens a full-screen view until Ctrl-C: counts per state, what every
    worker slot runs and for how long, the last minute's completions and
    failures, the next retry and the newest dead jobs.

    \b
    Examples:
      queuectl status
      queuectl status --json
      queuectl status --watch --interval 0.5
    """
    if watch and as_json:
        raise click.UsageError("--watch and --json cannot be combined (--json prints one document)")
    queue = await app.queue(create=False)
    if watch:
        from queuectl.cli.watch import watch_status

        await watch_status(queue, interval)
        return
    result = await queue.status()
    if as_json:
        from queuectl.records import status_record

        echo_json(status_record(result))
        return
    from queuectl.cli.render import status_view

    out = output()
    out.show(status_view(out, result))


@cli.command("list")
@click.option("--state", type=click.Choice(STATES, case_sensitive=False), help="Only this state.")
@click.option("--queue", metavar="Q", help="Only this queue.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Newest N jobs; 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def list_jobs(
    app: App, state: str | None, queue: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first.

    \b
    Examples:
      queuectl list --state pending
      queuectl list --queue emails --limit 0 --json
    """
    jobs = await (await app.queue(create=False)).list_jobs(
        state=JobState(state.lower()) if state else None, queue=queue, limit=limit
    )
    _show_jobs(jobs, as_json)


def _show_jobs(jobs: Sequence[Any], as_json: bool) -> None:
    if as_json:
        from queuectl.records import job_record

        echo_json([job_record(j) for j in jobs])
        return
    from queuectl.cli.render import jobs_table

    out = output()
    out.show(jobs_table(out, jobs))


@cli.command()
@click.argument("job_id", shell_complete=completion.job_ids())
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the record with its history).")
@pass_app
async def show(app: App, job_id: str, as_json: bool) -> None:
    """Show one job and every attempt.

    Each attempt: start, duration, exit code or signal, error, worker, output size.

    \b
    Examples:
      queuectl show job1
      queuectl show job1 --json
    """
    queue = await app.queue(create=False)
    job, history = await queue.show(job_id)
    if as_json:
        from queuectl.records import attempt_record, job_record

        record: dict[str, Any] = dict(job_record(job))
        record["history"] = [attempt_record(a) for a in history]
        echo_json(record)
        return
    from queuectl.cli.render import job_detail

    out = output()
    out.show(job_detail(out, job, history, await queue.links(job_id)))


@cli.command(short_help="Print the output of a job's attempt; --follow: live.")
@click.argument("job_id", shell_complete=completion.job_ids())
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    metavar="K",
    help="Attempt K, numbered from 1 as `show` lists them; default: latest.",
)
@click.option("--follow", "-f", is_flag=True, help="Stream output while the attempt runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def logs(app: App, job_id: str, attempt: int | None, follow: bool, as_json: bool) -> None:
    """Print the output (stdout and stderr) of a job's attempt.

    Only the last `output-limit` bytes of an attempt are kept; when the output was
    cut, a note on stderr says so. A running attempt shows its output so far.
    --follow streams the current attempt as it is written (waiting for the job to
    start if needed) and every retry after it until the job is finished, then
    exits as `queuectl wait` does (0 only if it completed); with --attempt K it
    follows that attempt only.

    \b
    Examples:
      queuectl logs job1
      queuectl logs job1 --attempt 1
      queuectl logs job1 --follow
    """
    queue = await app.queue(create=False)
    if follow and not as_json:
        chunks = (
            queue.follow(job_id, attempt, notice=_notice)
            if attempt is not None
            else queue.follow_job(job_id, notice=_notice)
        )
        async for chunk in chunks:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        if attempt is None:
            from queuectl.cli.operate import exit_as_wait

            exit_as_wait((await queue.wait([job_id], timeout_s=0)).states)
        return
    out = await queue.output(job_id, attempt)
    truncated = out.output_size > len(out.output)
    if as_json:
        echo_json(
            {
                "id": job_id,
                "attempt": out.attempt,
                "output": out.output.decode("utf-8", "replace"),
                "output_size": out.output_size,
                "output_truncated": truncated,
                "finished": out.finished,
            }
        )
        return
    sys.stdout.buffer.write(out.output)
    sys.stdout.buffer.flush()
    from queuectl.queue import cut_notice, running_notice

    if truncated and out.finished:
        _notice(cut_notice(out))
    still = running_notice(out)
    if still is not None:
        _notice(still)


def _notice(text: str) -> None:
    """A note for the person reading (stderr), never mixed into the output (stdout)."""
    sys.stdout.flush()
    click.echo(text, err=True)


@cli.group()
async def dlq() -> None:
    """The dead-letter queue: jobs that failed every attempt.

    \b
    Examples:
      queuectl dlq list
      queuectl dlq retry S2-fail
    """


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def dlq_list(app: App, as_json: bool) -> None:
    """List dead jobs, newest first.

    \b
    Example:
      queuectl dlq list --json
    """
    _show_jobs(await (await app.queue(create=False)).dead_jobs(), as_json)


@dlq.command("retry", short_help="Move dead jobs back to pending.")
@click.argument(
    "job_ids", nargs=-1, metavar="JOB_ID...", shell_complete=completion.job_ids(JobState.DEAD)
)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job.")
@pass_app
async def dlq_retry(app: App, job_ids: tuple[str, ...], retry_all: bool) -> None:
    """Move dead jobs back to pending with attempts reset to 0.

    \b
    Examples:
      queuectl dlq retry S2-fail
      queuectl dlq retry --all
    """
    if retry_all == bool(job_ids):
        raise click.UsageError("give JOB_ID... or --all (one of them)")
    queue = await app.queue()
    if retry_all and stderr_is_terminal():
        from queuectl.cli.progress import stage_bar

        with stage_bar("dlq retry", summary=False) as progress:  # the line below says it
            done = await queue.retry_dead(None, progress=progress)
    else:
        done = await queue.retry_dead(None if retry_all else list(job_ids))
    sys.stdout.write("".join(f"{job_id}\n" for job_id in done))
    if retry_all:
        click.echo(f"{len(done)} job(s) moved back to pending.", err=True)


def fail(message: str, code: int = ExitCode.FAILED) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; the single place where failures become an exit code."""
    try:
        # asyncio.run, not asyncclick's anyio.run: the same loop without importing
        # anyio and its backend (a fifth of an enqueue's start-up, issue 15).
        asyncio.run(cli.main(args=argv, prog_name="queuectl"))
    except QueueCtlError as exc:
        fail(str(exc))
    except BrokenPipeError:
        # The reader went away (`queuectl list | head`): not our failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.OK)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("QUEUECTL_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set QUEUECTL_DEBUG=1 for a traceback)")

"""The job commands of reference §16 (``cancel`` … ``wait``): parse, call, print.

Every rule lives in the library (``Queue`` methods, ``backends.operations``); these
commands only turn options into one call and its answer into lines. Ids that a
command changed go to stdout, one per line (for scripts); a summary and anything
that went wrong go to stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import asyncclick as click

from queuectl.cli import completion
from queuectl.cli.app import App, Duration, ExitCode, echo_json, pass_app
from queuectl.exceptions import QueueCtlError
from queuectl.models import JobState

_FINISHED = [JobState.COMPLETED.value, JobState.DEAD.value, JobState.CANCELLED.value]


def _ids(job_ids: tuple[str, ...]) -> None:
    sys.stdout.write("".join(f"{job_id}\n" for job_id in job_ids))
    sys.stdout.flush()


def _failed(message: str) -> None:
    """One ``Error:`` line and exit 1, after whatever was printed so far."""
    sys.stdout.flush()
    raise QueueCtlError(message)


@click.command(short_help="Cancel jobs; a running one is killed by its worker.")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...",
                shell_complete=completion.job_ids())  # fmt: skip
@click.option("--wait", "wait_s", type=Duration(), default=30.0, show_default=True, metavar="D",
              help="How long to wait for running jobs' workers (30, 90s, 5m).")  # fmt: skip
@pass_app
async def cancel(app: App, job_ids: tuple[str, ...], wait_s: float) -> None:
    """Cancel jobs: pending and failed ones at once, running ones by their worker.

    A running job's command is killed with its whole process group (SIGTERM, then
    SIGKILL after `kill-grace`) by the worker that runs it, on whatever host; the
    job ends `cancelled` and is not retried. All or nothing: an unknown,
    completed or dead job is an error and nothing is cancelled. Prints the ids
    cancelled. After --wait, the ids still running are named (exit 1); their
    cancel stays requested.

    \b
    Examples:
      queuectl cancel job1 job2
      queuectl cancel long-job --wait 60
    """
    report = await (await app.queue()).cancel(job_ids, wait_s=wait_s)
    _ids(tuple(report.cancelled))
    problems = [
        f"job {job_id!r} {state.value} before the cancel reached it"
        for job_id, state in report.not_cancelled.items()
    ]
    if report.running:
        problems.append(
            f"still running after {wait_s:g}s (the cancel stays requested): "
            + ", ".join(report.running)
        )
    if problems:
        _failed("; ".join(problems))
    n = len(report.cancelled)
    click.echo(f"{n} job(s) cancelled.", err=True)


@click.command(short_help="Move dead, cancelled or failed jobs back to pending.")
@click.argument("job_ids", nargs=-1, metavar="JOB_ID...", shell_complete=completion.job_ids())
@click.option("--state", type=click.Choice(["dead", "cancelled"]),
              help="Every job in this state instead of JOB_ID...")  # fmt: skip
@click.option("--queue", metavar="Q", help="With --state: only jobs of this queue.")
@pass_app
async def retry(app: App, job_ids: tuple[str, ...], state: str | None, queue: str | None) -> None:
    """Run jobs again: dead and cancelled ones from attempt 0, failed ones now.

    Named jobs are all or nothing: one that is pending, running or completed is an
    error and nothing changes. Prints the ids moved back to pending.

    \b
    Examples:
      queuectl retry job1 job2
      queuectl retry --state cancelled --queue emails
    """
    if bool(state) == bool(job_ids):
        raise click.UsageError("give JOB_ID... or --state (one of them)")
    if queue is not None and state is None:
        raise click.UsageError("--queue goes with --state")
    q = await app.queue()
    if state is not None:
        done = await q.retry_state(JobState(state), queue=queue)
    else:
        done = (await q.retry(job_ids)).ids
    _ids(tuple(done))
    click.echo(f"{len(done)} job(s) moved back to pending.", err=True)


@click.command("rm", short_help="Delete jobs with their history and output.")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...",
                shell_complete=completion.job_ids())  # fmt: skip
@pass_app
async def remove(app: App, job_ids: tuple[str, ...]) -> None:
    """Delete jobs with their attempts and output.

    A running job is an error (cancel it first); all or nothing.

    \b
    Example:
      queuectl rm job1 job2
    """
    done = await (await app.queue()).remove(job_ids)
    _ids(tuple(done))
    click.echo(f"{len(done)} job(s) removed.", err=True)


@click.command(short_help="Delete finished jobs (default: completed and cancelled).")
@click.option("--state", "states", multiple=True, type=click.Choice(_FINISHED),
              help="Only this state (repeat). Default: completed and cancelled.")  # fmt: skip
@click.option("--older-than", type=Duration(), default=0.0, metavar="D",
              help="Only jobs updated more than D ago (12h, 7d); default 0: all.")  # fmt: skip
@click.option("--queue", metavar="Q", help="Only jobs of this queue.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@pass_app
async def purge(
    app: App, states: tuple[str, ...], older_than: float, queue: str | None, dry_run: bool
) -> None:
    """Delete finished jobs with their history, in short batches; prints how many.

    Running workers do the same by themselves for completed and cancelled jobs
    older than config `retention` (default 7 days; 0 keeps them forever).

    \b
    Examples:
      queuectl purge --dry-run
      queuectl purge --state dead --older-than 7d --queue emails
    """
    n = await (await app.queue()).purge(
        [JobState(s) for s in states], older_than_s=older_than, queue=queue, dry_run=dry_run
    )
    click.echo(f"{'would delete' if dry_run else 'deleted'} {n} job(s)")


@click.command(short_help="Change a pending or failed job.")
@click.argument("job_id", shell_complete=completion.job_ids())
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--run-at", metavar="TIME", help="Start no sooner than TIME (ISO-8601 or Unix s).")
@click.option(
    "--delay", type=Duration(), metavar="D", help="Start no sooner than D from now (90s, 2h)."
)
@click.option("--now", "due_now", is_flag=True, help="Due at once.")
@click.option("--queue", metavar="Q", help="Move it to queue Q.")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--timeout", type=Duration(allow_zero=False), metavar="D",
              help="Kill an attempt after D (seconds, or 90s, 15m, 2h).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the updated record as JSON.")
@pass_app
async def update(app: App, /, job_id: str, due_now: bool, as_json: bool, **fields: Any) -> None:
    """Change fields of a job that waits (pending or failed); others are an error.

    \b
    Examples:
      queuectl update job1 --priority 10 --now
      queuectl update job1 --delay 600 --queue slow
    """
    job = await (await app.queue()).update(job_id, now=due_now, **fields)
    if as_json:
        from queuectl.records import job_record

        echo_json(job_record(job))
    else:
        _ids((job.id,))


@click.command(short_help="Wait until jobs are finished; exit 0 if all completed.")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...",
                shell_complete=completion.job_ids())  # fmt: skip
@click.option("--timeout", "timeout_s", type=Duration(), metavar="D",
              help="Give up after D (30, 5m, 2h; exit 1). Default: no limit.")  # fmt: skip
@pass_app
async def wait(app: App, job_ids: tuple[str, ...], timeout_s: float | None) -> None:
    """Wait until every job is finished (completed, dead or cancelled).

    Exits 0 if all completed, else 1 with a line for each job that did not (or is
    not finished when --timeout runs out). An unknown id is an error at once.

    \b
    Examples:
      queuectl wait job1 job2 && echo all done
      queuectl wait build --timeout 600
    """
    report = await (await app.queue(create=False)).wait(job_ids, timeout_s=timeout_s)
    exit_as_wait(report.states, timeout_s)


def exit_as_wait(states: dict[str, JobState | None], timeout_s: float | None = None) -> None:
    """Exit 0 if every job completed, else 1 with a line on stderr for each that did not."""
    lines = []
    for job_id, state in states.items():
        if state is JobState.COMPLETED:
            continue
        if state is None:
            lines.append(f"job {job_id} was removed")
        elif state in (JobState.DEAD, JobState.CANCELLED):
            lines.append(f"job {job_id} is {state.value}")
        else:
            after = f" after {timeout_s:g}s" if timeout_s is not None else ""
            lines.append(f"job {job_id} is not finished{after} ({state.value})")
    if lines:
        sys.stdout.flush()
        click.echo("\n".join(lines), err=True)
        sys.exit(ExitCode.FAILED)

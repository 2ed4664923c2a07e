"""``queuectl queue list | pause | resume | limit``: operate named queues (reference §17)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from queuectl.cli import completion
from queuectl.cli.app import App, echo_json, output, pass_app

if TYPE_CHECKING:
    from queuectl.why import Reason


@click.group("queue")
async def queue_group() -> None:
    """List, pause, resume and limit named queues.

    \b
    Examples:
      queuectl queue list
      queuectl queue pause emails
      queuectl queue limit emails 2
      queuectl queue resume --all
    """


@queue_group.command("list", short_help="Each queue: paused, limit, jobs per state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def queue_list(app: App, as_json: bool) -> None:
    """Each queue with jobs or settings: paused, limit, jobs per state, oldest due job.

    \b
    Example:
      queuectl queue list --json
    """
    queue = await app.queue(create=False)
    infos = await queue.queues()
    if as_json:
        from queuectl.records import queue_record

        echo_json([queue_record(i) for i in infos])
        return
    from queuectl.cli.render_queues import queues_table

    out = output()
    out.show(queues_table(out, infos))


@queue_group.command("pause", short_help="Stop claiming new jobs of queues.")
@click.argument("names", nargs=-1, metavar="QUEUE...")
@click.option("--all", "all_queues", is_flag=True, help="Every queue, also ones that appear later.")
@pass_app
async def queue_pause(app: App, names: tuple[str, ...], all_queues: bool) -> None:
    """No worker claims a new job of QUEUE (on any host, within a second).

    Jobs can still be enqueued, and running ones finish. --all holds every queue,
    including queues that appear later, until `queue resume --all`.

    \b
    Examples:
      queuectl queue pause emails
      queuectl queue pause --all
    """
    _one_of(names, all_queues)
    await (await app.queue()).pause_queues(names, all_queues=all_queues)
    if all_queues:
        click.echo("paused every queue (until `queuectl queue resume --all`)")
    else:
        click.echo("".join(f"paused {n}\n" for n in dict.fromkeys(names)), nl=False)


@queue_group.command("resume", short_help="Let workers claim jobs of queues again.")
@click.argument("names", nargs=-1, metavar="QUEUE...")
@click.option("--all", "all_queues", is_flag=True, help="Lift every pause, --all included.")
@pass_app
async def queue_resume(app: App, names: tuple[str, ...], all_queues: bool) -> None:
    """Let workers claim jobs of QUEUE again.

    A name that is no queue (no jobs, no settings) is an error and nothing changes.
    Under `pause --all` a queue stays held until `queue resume --all`.

    \b
    Examples:
      queuectl queue resume emails
      queuectl queue resume --all
    """
    _one_of(names, all_queues)
    # Resuming needs a queue that exists: where no database exists, nothing does.
    done = await (await app.queue(create=False)).resume_queues(names, all_queues=all_queues)
    if all_queues:
        click.echo("resumed every queue")
        return
    for name in done.resumed:
        click.echo(f"resumed {name}")
    for name in done.not_paused:
        if name not in done.still_held:
            click.echo(f"{name} was not paused")
    for name in done.still_held:
        click.echo(
            f"{name} stays paused by `queue pause --all` (`queuectl queue resume --all` lifts it)",
            err=True,
        )


# "-1" is a value to refuse with an Error: line, not an unknown option.
@queue_group.command(
    "limit",
    short_help="At most N jobs of QUEUE running at once (0: no limit).",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("name", metavar="QUEUE")
@click.argument("n", metavar="N")
@pass_app
async def queue_limit(app: App, name: str, n: str) -> None:
    """At most N jobs of QUEUE processing at once, across all workers and hosts.

    0 removes the limit. Lowering it kills nothing: new claims wait until fewer run.

    \b
    Examples:
      queuectl queue limit emails 2
      queuectl queue limit emails 0
    """
    from queuectl.exceptions import QueueCtlError

    try:
        number = int(n)
    except ValueError:
        raise QueueCtlError(f"a limit must be a whole number, not {n!r}") from None
    cap = await (await app.queue()).limit_queue(name, number)
    click.echo(f"{name}: at most {cap} running" if cap else f"{name}: no limit")


def _one_of(names: tuple[str, ...], all_queues: bool) -> None:
    if all_queues == bool(names):
        raise click.UsageError("give QUEUE... or --all (one of them)")


@click.command(short_help="Why a job is where it is, and what would move it.")
@click.argument("job_id", shell_complete=completion.job_ids())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def why(app: App, job_id: str, as_json: bool) -> None:
    """Say in plain words what holds JOB_ID (or runs or ended it), and the command
    that would move it.

    \b
    Examples:
      queuectl why job1
      queuectl why job1 --json
    """
    found = await (await app.queue(create=False)).why(job_id)
    if as_json:
        echo_json(
            {
                "id": found.job.id,
                "state": found.job.state.value,
                "reasons": [_reason_record(r) for r in found.reasons],
            }
        )
        return
    click.echo(f"{found.job.id} is {found.job.state.value}:")
    for reason in found.reasons:
        click.echo(f"  - {reason.message}  [{reason.code}]")


def _reason_record(reason: Reason) -> dict[str, object]:
    """A reason of ``why --json`` (reference §18): ``jobs`` only on the codes about
    other jobs, so a script reads the ids without parsing the message."""
    record: dict[str, object] = {"code": reason.code, "message": reason.message}
    if reason.jobs:
        record["jobs"] = list(reason.jobs)
    return record

"""``queuectl schedule add | list | rm | pause | resume | run``: jobs made by a clock."""

from __future__ import annotations

import copy
import sys
from typing import Any

import asyncclick as click

from queuectl.cli.app import App, echo_json, output, pass_app
from queuectl.clock import to_iso
from queuectl.models import Overlap, Schedule

#: ``enqueue`` options that are not fields of the job, so not of a template either.
_NOT_JOB_FLAGS = frozenset({"job_json", "command", "as_json", "skip_duplicates"})
#: Job flags a template may not use: accepted only to be refused, so not in --help.
_REFUSED_FLAGS = frozenset({"job_id", "delay", "run_at", "after", "after_mode"})


@click.group()
async def schedule() -> None:
    """Schedules: jobs that running workers make on a cron clock.

    Each fire time makes one job, NAME@<fire time in UTC>, exactly once however
    many workers and hosts run.

    \b
    Examples:
      queuectl schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin -c 'make backup'
      queuectl schedule add ping --cron '*/5 * * * *' '{"command":"curl -fsS example.org"}'
      queuectl schedule list
      queuectl schedule run nightly
    """


@schedule.command("add", short_help="Add a schedule: a cron expression and a job.")
@click.argument("name")
@click.argument("job_json", required=False)
@click.option("--cron", "expr", required=True, metavar="EXPR", help="Five-field cron or @daily.")
@click.option("--tz", metavar="ZONE", help="IANA time zone; default: this machine's.")
@click.option(
    "--overlap",
    type=click.Choice([o.value for o in Overlap]),
    default=Overlap.SKIP.value,
    show_default=True,
    help="skip: no new job while the previous one is unfinished.",
)
@click.option("-c", "--command", "command", metavar="CMD", help="The job's shell command.")
@pass_app
async def schedule_add(
    app: App,
    /,
    name: str,
    job_json: str | None,
    expr: str,
    tz: str | None,
    overlap: str,
    command: str | None,
    **flags: Any,
) -> None:
    """Add schedule NAME: running workers make its job at every fire time of EXPR.

    The job is JOB_JSON (an enqueue object) or -c CMD with the enqueue flags;
    it may not have an id, run_at, delay or after. EXPR is five-field cron
    (minute hour day-of-month month day-of-week, as in crontab(5)) or one of
    @hourly, @daily, @weekly, @monthly, @yearly, in the zone --tz (default:
    $TZ, else the system's zone). Missed fire times (no worker running) make
    only the latest job; the others are counted as skipped.

    \b
    Examples:
      queuectl schedule add nightly --cron '0 3 * * *' -c 'make backup' --timeout 3600
      queuectl schedule add report --cron '0 9 * * 1-5' --tz America/New_York \\
          '{"command":"./report.sh","queue":"reports"}'
    """
    from queuectl.cli.main import _job_input

    job = _job_input(job_json, command, flags)
    added = await (await app.queue()).schedules.add(name, expr, job, tz=tz, overlap=overlap)
    click.echo(
        f"added schedule {added.name} ({added.cron}, {added.tz}); "
        f"next fire at {to_iso(added.next_fire_at) or 'never'}"
    )


def take_job_flags(enqueue: click.Command) -> None:
    """Give ``schedule add`` every job flag of ``enqueue``: one list, one meaning.

    Flags a template may not use (``--id``, ``--delay`` …) are taken too, hidden
    from ``--help``, so that they are refused with the same words as those fields
    in JOB_JSON.
    """
    for param in enqueue.params:
        if isinstance(param, click.Option) and param.name not in _NOT_JOB_FLAGS:
            if param.name in _REFUSED_FLAGS:
                param = copy.copy(param)
                param.hidden = True
            schedule_add.params.append(param)


def _take_enqueue_flags() -> None:
    # Here, not in cli.main: this module is imported only when `schedule` runs (cli.lazy).
    from queuectl.cli.main import enqueue

    take_job_flags(enqueue)


_take_enqueue_flags()


@schedule.command("list", short_help="List schedules: next and last fire, skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def schedule_list(app: App, as_json: bool) -> None:
    """List schedules by name: next and last fire, skipped fire times, the job.

    \b
    Example:
      queuectl schedule list --json
    """
    schedules = await (await app.queue(create=False)).schedules.list()
    if as_json:
        from queuectl.records import schedule_record

        echo_json([schedule_record(s) for s in schedules])
        return
    out = output()
    out.show(_table(out, schedules))


def _table(out: Any, schedules: list[Schedule]) -> Any:
    from queuectl.cli.render import Column, one_line

    columns = [
        Column("NAME", key=True),
        Column("CRON"),
        Column("TZ", drop=3),
        Column("NEXT FIRE"),
        Column("LAST FIRE", drop=2),
        Column("LAST JOB", drop=4),
        Column("SKIPPED", justify="right", drop=1),
        Column("OVERLAP", drop=5),
        Column("COMMAND", flex=True),
    ]
    rows = [
        [
            s.name,
            s.cron,
            s.tz,
            out.styled("paused", "yellow") if s.paused else out.when(s.next_fire_at),
            out.when(s.last_fire_at),
            s.last_job_id or "-",
            str(s.skipped),
            s.overlap.value,
            one_line(str(s.job.get("command", ""))),
        ]
        for s in schedules
    ]
    return out.table(columns, rows, empty="no schedules")


@schedule.command("rm", short_help="Remove a schedule (its jobs stay).")
@click.argument("name")
@pass_app
async def schedule_rm(app: App, name: str) -> None:
    """Remove schedule NAME; the jobs it made stay.

    \b
    Example:
      queuectl schedule rm nightly
    """
    await (await app.queue()).schedules.remove(name)
    click.echo(f"removed schedule {name}")


@schedule.command("pause", short_help="Stop making jobs until resumed.")
@click.argument("name")
@pass_app
async def schedule_pause(app: App, name: str) -> None:
    """Stop making jobs for NAME until `schedule resume`.

    \b
    Example:
      queuectl schedule pause nightly
    """
    await (await app.queue()).schedules.pause(name)
    click.echo(f"paused schedule {name}")


@schedule.command("resume", short_help="Make jobs again from the next fire time.")
@click.argument("name")
@pass_app
async def schedule_resume(app: App, name: str) -> None:
    """Make jobs for NAME again, from its next fire time (paused ones are not made).

    \b
    Example:
      queuectl schedule resume nightly
    """
    schedules = (await app.queue()).schedules
    await schedules.resume(name)
    resumed = await schedules.get(name)
    click.echo(f"resumed schedule {name}; next fire at {to_iso(resumed.next_fire_at) or 'never'}")


@schedule.command("run", short_help="Make NAME's job now, once.")
@click.argument("name")
@pass_app
async def schedule_run(app: App, name: str) -> None:
    """Make NAME's job now, whatever its overlap rule; prints the job's id.

    Its fire time is now (to the second), and it counts as the schedule's last fire.

    \b
    Example:
      queuectl schedule run nightly
    """
    job_id = await (await app.queue()).schedules.run(name)
    sys.stdout.write(f"{job_id}\n")

"""Schedules (reference §19.2): jobs made by a clock, stored in the database.

``Schedules`` is the part of the ``Queue`` facade that ``queuectl schedule …`` and
the workers call. A schedule's job template is validated by the same code as
``enqueue`` (``jobspec``), with the same errors, and becomes a job by that code
again at each fire time, so a new default (``config set max-retries``) applies
to the jobs made after it, as it does to jobs enqueued after it.

Firing is an insert, not a lock: every worker runs ``fire_due``; for each due
schedule it asks the store to move the schedule from the fire time it read to
the next one and insert the job ``NAME@<fire time>`` in the same transaction
(``Backend.fire``). One worker wins that compare-and-set; for the others it is
the normal outcome, not an error. Nothing needs a leader, and a worker that
dies mid-fire leaves the fire time due for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from queuectl import cron
from queuectl.backends import Backend, wakeup
from queuectl.backends.bookkeeping import schedule_gone
from queuectl.clock import Clock, to_iso
from queuectl.config import QueueConfig
from queuectl.exceptions import (
    DuplicateJob,
    InvalidJob,
    InvalidSchedule,
    NotAQueueDatabase,
    QueueCtlError,
    ScheduleNotFound,
)
from queuectl.jobspec import MANAGED_FIELDS, RawJob, build_jobs, parse_input, to_new_job
from queuectl.models import Fire, Fired, NewJob, Overlap, Schedule
from queuectl.pump import POLL_S

log = logging.getLogger("queuectl.worker")
#: The scheduler never sleeps less than this, whatever two clocks say.
_MIN_WAIT_S = 0.005

#: Reference §19.4: 1 to 64 characters among letters, digits, ``-``, ``_``, ``.``.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Template fields a schedule decides itself, and why a template may not set them.
FORBIDDEN_FIELDS = {
    "id": "its jobs are named NAME@FIRE-TIME",
    "run_at": "its jobs are due at their fire time",
    "delay": "its jobs are due at their fire time",
    "after": "a schedule's job cannot wait for other jobs",
}
#: Catch-up longer than this is planned in a thread: a stopped ``* * * * *``
#: schedule walks a fire time per minute it missed.
_LONG_CATCH_UP_MS = 6 * 3600 * 1000


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidSchedule(
            f"invalid schedule name {name!r}: use 1 to 64 characters among letters, "
            "digits, '-', '_' and '.'"
        )
    return name


def template(job: str | dict[str, Any], *, config: QueueConfig, now: int) -> dict[str, Any]:
    """A schedule's job as an enqueue object, validated as ``enqueue`` validates a job.

    ``job`` is JOB_JSON text or an object. Returns only the fields given (``null``
    and the fields the queue manages are dropped, as ``enqueue`` ignores them), so
    defaults are taken when a job is made, not when the schedule is added.
    """
    raws = parse_input(job) if isinstance(job, str) else [RawJob(1, None, job)]
    if len(raws) != 1:
        raise InvalidJob(f"a schedule makes one job; got {len(raws)}")
    raw = raws[0]
    if isinstance(raw.value, dict):
        for name, why in FORBIDDEN_FIELDS.items():
            if raw.value.get(name) is not None:
                raise InvalidJob(
                    f"{raw.label}: field {name!r} is not allowed in a schedule ({why})"
                )
    build_jobs(raws, config=config, now=now)  # the errors of enqueue, word for word
    value: dict[str, Any] = raw.value
    return {k: v for k, v in value.items() if v is not None and k not in MANAGED_FIELDS}


def make_job(schedule: Schedule, fire_at: int, *, config: QueueConfig, now: int) -> NewJob:
    """The job of one fire time, from the template by ``enqueue``'s own code."""
    spec = {**schedule.job, "id": cron.job_id(schedule.name, fire_at)}
    return to_new_job(spec, config=config, now=now)


@dataclass(frozen=True, slots=True)
class FireReport:
    """What one ``fire_due`` did, for the worker's log, and when to look again."""

    fired: list[tuple[Fire, Fired]]
    #: Schedules that could not be planned (a zone this host does not know), with why.
    failed: list[tuple[str, str]]
    #: The next fire time on the caller's clock, ``None`` when nothing is scheduled.
    next_at: int | None


class Schedules:
    def __init__(
        self, backend: Backend, *, clock: Clock, config: Callable[[], Awaitable[QueueConfig]]
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._config = config

    async def add(
        self,
        name: str,
        expr: str,
        job: str | dict[str, Any],
        *,
        tz: str | None = None,
        overlap: str = Overlap.SKIP.value,
    ) -> Schedule:
        """Store a new schedule; its first fire is the first fire time after now."""
        check_name(name)
        try:
            fields = cron.normalize(expr)
            zone_name = cron.local_zone_name() if tz is None else tz
            zone = cron.zone(zone_name)
        except cron.CronError as exc:
            raise InvalidSchedule(str(exc)) from None
        try:
            mode = Overlap(overlap)
        except ValueError:
            raise InvalidSchedule(f"invalid overlap {overlap!r}: use skip or allow") from None
        now = self.clock()
        schedule = Schedule(
            name=name,
            cron=" ".join(expr.split()),
            tz=zone_name,
            overlap=mode,
            paused=False,
            job=template(job, config=await self._config(), now=now),
            next_fire_at=cron.next_after(fields, zone, now),
            last_fire_at=None,
            last_job_id=None,
            skipped=0,
            created_at=now,
            updated_at=now,
        )
        await self.backend.add_schedule(schedule)
        await self.backend.notify(wakeup.SCHEDULE)
        return schedule

    async def list(self) -> list[Schedule]:
        return await self.backend.list_schedules()

    async def get(self, name: str) -> Schedule:
        schedule = await self.backend.get_schedule(name)
        if schedule is None:
            raise _missing(name)
        return schedule

    async def remove(self, name: str) -> None:
        """Delete a schedule; the jobs it made stay."""
        if not await self.backend.remove_schedule(name):
            raise _missing(name)
        await self.backend.notify(wakeup.SCHEDULE)

    async def pause(self, name: str) -> None:
        if not await self.backend.pause_schedule(name, now=self.clock()):
            raise _missing(name)
        await self.backend.notify(wakeup.SCHEDULE)

    async def resume(self, name: str) -> None:
        """Fire again from the next fire time after now (the paused ones are not made)."""
        schedule = await self.get(name)
        now = self.clock()
        next_at = cron.next_after(cron.normalize(schedule.cron), cron.zone(schedule.tz), now)
        if not await self.backend.resume_schedule(name, next_fire_at=next_at, now=now):
            raise _missing(name)
        await self.backend.notify(wakeup.SCHEDULE)

    async def run(self, name: str) -> str:
        """Make the schedule's job now, whatever its overlap rule; returns the job's id.

        The fire time is now to the second, and it counts as the last fire.
        """
        schedule = await self.get(name)
        now = self.clock()
        fire_at = now // 1000 * 1000
        job = make_job(schedule, fire_at, config=await self._config(), now=now)
        try:
            await self.backend.run_schedule(
                name, schedule.created_at, job, fire_at=fire_at, now=now
            )
        except DuplicateJob as exc:
            raise DuplicateJob(
                f"schedule {name!r} already made job {job.id!r} this second",
                job_id=job.id,
            ) from exc
        await self.backend.notify(wakeup.JOB)
        return job.id

    async def fire_due(self, config: QueueConfig) -> FireReport:
        """Make the due fire times of every schedule; what a worker's scheduler runs.

        Times due are judged by the store's clock. Each schedule is one ``fire``
        transaction; losing it to another worker changes nothing.
        """
        now = self.clock()
        read = await self.backend.due_schedules(now=now)
        shift = now - read.store_now
        fired: list[tuple[Fire, Fired]] = []
        failed: list[tuple[str, str]] = []
        next_times = [read.next_at] if read.next_at is not None else []
        for schedule in read.due:
            try:
                fire = await _plan(schedule, read.store_now, config, now)
            except (cron.CronError, ValueError) as exc:
                failed.append((schedule.name, str(exc)))
                continue
            done = await self.backend.fire(fire, now=now)
            fired.append((fire, done))
            if done.handled and fire.next_at is not None:
                next_times.append(fire.next_at + shift)
        if any(done.job_id for _, done in fired):
            await self.backend.notify(wakeup.JOB)
        return FireReport(fired, failed, min(next_times, default=None))


async def _plan(schedule: Schedule, store_now: int, config: QueueConfig, now: int) -> Fire:
    assert schedule.next_fire_at is not None  # due_schedules reads only timed ones
    fields = cron.normalize(schedule.cron)
    zone = cron.zone(schedule.tz)
    due_at = schedule.next_fire_at
    if store_now - due_at > _LONG_CATCH_UP_MS:
        plan = await asyncio.to_thread(cron.plan, fields, zone, due_at, store_now)
    else:
        plan = cron.plan(fields, zone, due_at, store_now)
    job = make_job(schedule, plan.fire_at, config=config, now=now)
    return Fire(
        name=schedule.name,
        created_at=schedule.created_at,
        due_at=due_at,
        next_at=plan.next_at,
        missed=plan.missed,
        fire_at=plan.fire_at,
        job=job,
    )


def _missing(name: str) -> ScheduleNotFound:
    return schedule_gone(name)


async def run_scheduler(
    schedules: Schedules,
    *,
    config: Callable[[], QueueConfig],
    changed: asyncio.Event,
    worker_id: str,
) -> None:
    """A worker's ``scheduler`` side task: fire what is due, then sleep.

    It sleeps until the next fire time, until ``changed`` is set (a wake-up said a
    schedule changed), or for the pump's slow poll (``POLL_S``), which only
    matters when a wake-up was lost. It runs beside the slots and never holds up
    a claim.
    """
    warned: set[str] = set()
    while True:
        changed.clear()
        wait_s = POLL_S
        try:
            report = await schedules.fire_due(config())
        except NotAQueueDatabase:
            raise
        except QueueCtlError as exc:
            # The store is unreachable or locked for now: the fire times stay due.
            log.warning("schedules: cannot fire (%s)", exc)
        else:
            _log_fires(report, worker_id, warned)
            if report.next_at is not None:
                wait_s = min(wait_s, max((report.next_at - schedules.clock()) / 1000, _MIN_WAIT_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await changed.wait()


def _log_fires(report: FireReport, worker_id: str, warned: set[str]) -> None:
    for fire, done in report.fired:
        extra: dict[str, object] = {
            "action": "schedule_fired",
            "schedule": fire.name,
            "fire_at": to_iso(fire.fire_at),
            "job_id": done.job_id,
            "missed": fire.missed,
            "worker_id": worker_id,
        }
        missed = f"; {fire.missed} missed fire time(s) skipped" if fire.missed else ""
        if not done.handled:
            log.debug("schedule %s: fire time made by another worker", fire.name)
        elif done.job_id is not None:
            log.info("schedule %s made %s%s", fire.name, done.job_id, missed, extra=extra)
        else:
            extra["action"] = "schedule_skipped"
            log.info(
                "schedule %s skipped %s: its previous job is unfinished (overlap: skip)%s",
                fire.name,
                to_iso(fire.fire_at),
                missed,
                extra=extra,
            )
    for name, reason in report.failed:
        # Once per worker: it stays due (another host may make it), so it comes back.
        if name not in warned:
            warned.add(name)
            log.warning("schedule %s cannot fire on this host: %s", name, reason)

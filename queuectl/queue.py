"""The library's front door: every user-facing operation, over any ``Backend``.

The CLI is a thin skin over this class (parse, call one method, render), and the
same calls work from Python::

    async with Queue.open("/tmp/q.db") as q:
        await q.enqueue_text('{"command": "echo hi"}')
        print(await q.status())
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from queuectl import procs
from queuectl.backends import Backend, open_backend
from queuectl.backends.base import AttemptOutput
from queuectl.clock import Clock, now_ms, seconds_to_ms
from queuectl.config import QueueConfig, from_stored, key_name, normalize_key, parse_value
from queuectl.exceptions import DuplicateJob, JobNotFound, QueueCtlError
from queuectl.jobspec import RawJob, build_jobs, parse_input
from queuectl.models import Attempt, Job, JobState, StopMode, WorkerInfo

_FOLLOW_POLL_S = 0.1
_STOP_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Status:
    counts: dict[JobState, int]
    workers: list[WorkerInfo]

    @property
    def coroutines(self) -> int:
        return sum(w.count for w in self.workers)

    @property
    def by_host(self) -> dict[str, int]:
        """Live worker coroutines per host, hosts in name order."""
        hosts: dict[str, int] = {}
        for w in sorted(self.workers, key=lambda w: w.host):
            hosts[w.host] = hosts.get(w.host, 0) + w.count
        return hosts


class Queue:
    def __init__(self, backend: Backend, *, clock: Clock = now_ms) -> None:
        self.backend = backend
        self.clock = clock

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, target: str, *, clock: Clock = now_ms) -> AsyncIterator[Queue]:
        backend = await open_backend(target)
        try:
            yield cls(backend, clock=clock)
        finally:
            await backend.aclose()

    async def config(self) -> QueueConfig:
        return from_stored(await self.backend.get_config())

    async def enqueue_text(self, text: str) -> list[Job]:
        """Enqueue an object, an array of objects, or JSON Lines, all or nothing."""
        return await self.enqueue_raw(parse_input(text))

    async def enqueue(self, *specs: dict[str, object]) -> list[Job]:
        return await self.enqueue_raw([RawJob(i, None, s) for i, s in enumerate(specs, 1)])

    async def enqueue_raw(self, raws: list[RawJob]) -> list[Job]:
        now = self.clock()
        jobs = build_jobs(raws, config=await self.config(), now=now)
        try:
            inserted = await self.backend.enqueue(jobs, now=now)
        except DuplicateJob as exc:
            if exc.position is None or not 1 <= exc.position <= len(raws):
                raise
            # The store numbers jobs; the input's labels also know their lines.
            label = raws[exc.position - 1].label
            raise DuplicateJob(
                f"{label}: a job with id {exc.job_id!r} already exists",
                job_id=exc.job_id,
                position=exc.position,
            ) from exc
        await self.backend.notify(b"j")
        return inserted

    async def get(self, job_id: str) -> Job:
        job = await self.backend.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def show(self, job_id: str) -> tuple[Job, list[Attempt]]:
        job = await self.get(job_id)
        return job, await self.backend.history(job_id)

    async def list_jobs(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int = 50
    ) -> list[Job]:
        return await self.backend.list_jobs(state=state, queue=queue, limit=limit)

    async def dead_jobs(self, *, limit: int = 0) -> list[Job]:
        return await self.backend.list_jobs(state=JobState.DEAD, limit=limit)

    async def retry_dead(self, job_ids: Sequence[str] | None) -> list[str]:
        """``dlq retry``: the named dead jobs (all or none), or every dead job with ``None``."""
        done = await self.backend.requeue_dead(job_ids, now=self.clock())
        if done:
            await self.backend.notify(b"j")
        return done

    async def live_workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is recent and, on this host, whose process still runs."""
        lease_ms = seconds_to_ms((await self.config()).lease)
        now = self.clock()
        return [w for w in await self.backend.list_workers() if _is_live(w, now, lease_ms)]

    async def status(self) -> Status:
        return Status(await self.backend.counts(), await self.live_workers())

    async def output(self, job_id: str, attempt: int | None = None) -> AttemptOutput:
        await self.get(job_id)
        out = await self.backend.attempt_output(job_id, attempt)
        if out is None:
            if attempt is None:
                raise QueueCtlError(f"job {job_id!r} has not run yet")
            raise QueueCtlError(f"job {job_id!r} has no attempt {attempt}")
        return out

    async def follow(self, job_id: str, attempt: int | None = None) -> AsyncIterator[bytes]:
        """Yield an attempt's output as it is written, until the attempt ends.

        A job that has not started yet is waited for. The live output is read from
        the spool file on this host; a worker on another host only makes the kept
        tail available once the attempt ends.
        """
        out = await self._wait_for_attempt(job_id, attempt)
        if out.finished or out.log_path is None or out.host != procs.HOST:
            while not out.finished:
                await asyncio.sleep(_FOLLOW_POLL_S)
                out = await self.output(job_id, out.attempt)
            yield out.output
            return
        try:
            spool = open(out.log_path, "rb")  # noqa: SIM115 - held across awaits
        except OSError:
            final = await self._wait_finished(job_id, out.attempt)
            yield final.output
            return
        with spool:
            while True:
                chunk = spool.read(1 << 16)
                if chunk:
                    yield chunk
                    continue
                out = await self.output(job_id, out.attempt)
                if out.finished:
                    # The file stays readable after the worker unlinks it.
                    rest = spool.read()
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(_FOLLOW_POLL_S)

    async def _wait_for_attempt(self, job_id: str, attempt: int | None) -> AttemptOutput:
        while True:
            job = await self.get(job_id)
            out = await self.backend.attempt_output(job_id, attempt)
            if out is not None and (out.log_path is not None or out.finished):
                return out
            if out is None and job.state in (JobState.COMPLETED, JobState.DEAD):
                raise QueueCtlError(f"job {job_id!r} has no attempt {attempt}")
            await asyncio.sleep(_FOLLOW_POLL_S)

    async def _wait_finished(self, job_id: str, attempt: int) -> AttemptOutput:
        while True:
            out = await self.output(job_id, attempt)
            if out.finished:
                return out
            await asyncio.sleep(_FOLLOW_POLL_S)

    async def stop_workers(self, mode: StopMode, *, timeout_s: float | None = None) -> int:
        """Ask every live worker to stop and wait until they have exited; returns how many.

        The request goes through the store (so it reaches every host) and a wake-up
        makes idle workers read it at once.
        """
        live = {w.id for w in await self.live_workers()}
        if not live:
            return 0
        await self.backend.request_stop(mode)
        await self.backend.notify(b"s")
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        while True:
            remaining = live & {w.id for w in await self.live_workers()}
            if not remaining:
                return len(live)
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                raise QueueCtlError(
                    f"{len(remaining)} of {len(live)} worker(s) still running after {timeout_s:g}s"
                )
            await asyncio.sleep(_STOP_POLL_S)

    async def get_setting(self, key: str) -> object:
        name = normalize_key(key)
        return getattr(await self.config(), name)

    async def set_setting(self, key: str, value: str) -> tuple[str, object]:
        """Validate and store one setting; returns its canonical name and parsed value."""
        name = normalize_key(key)
        parsed = parse_value(name, value)
        await self.backend.set_config({name: str(parsed)})
        return key_name(name), parsed

    async def settings(self) -> dict[str, object]:
        return (await self.config()).to_dict()


def _is_live(worker: WorkerInfo, now: int, lease_ms: int) -> bool:
    if worker.heartbeat_at < now - lease_ms:
        return False
    if procs.is_local(worker.host, worker.proc_start):
        return worker.pid == os.getpid() or procs.is_alive(worker.pid, worker.proc_start)
    return True

"""The worker's single path to the store: batch everything into one transaction per cycle.

Slots hand the pump what they have to say (a command started, an attempt finished)
and what they want (a job). Each cycle the pump sends all of it in one ``exchange``
call (one hop to the database thread, one transaction), so a slot that finishes a
job and asks for the next costs one transaction, and N idle slots are filled by one
claim statement. While a cycle is in flight, new requests pile up for the next one:
batching grows with load without any added delay.

While the jobs are short (the last one finished within ``START_HOLD_S``), a start
record waits up to that long for its own job's finish, and goes in the same
transaction: a short job costs one transaction rather than two, and its record
needs no read of ``/proc`` (the shell is gone by then). A start only says which
process runs the attempt (for recovery and ``status``); the claim already holds
the job. After a long job (and for the first) starts go at once, so a crash while
a long command runs still leaves its process group on record for the recovery.

When no job is due, the pump sleeps until one of: a wake-up from ``enqueue`` (the
``arm`` call), the time the next waiting job falls due, or the slow fallback poll
of the database's change counter.

When the store cannot be reached (a locked file, a lost connection, a server
restarting), a cycle keeps everything it carried for the next one and tries again
after a jittered backoff (50 ms doubling to 2 s), for as long as it takes. An
exchange whose connection was lost may still have committed: its finishes are
sent again (fenced, so a second write is refused), and its claims, which nobody
here knows about, are found by asking the store what this worker holds, and
handed back without charging an attempt (see ``_reconcile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from queuectl.backends.base import Backend, FinishResult
from queuectl.clock import Clock
from queuectl.exceptions import BackendError, NotAQueueDatabase
from queuectl.models import Claim, ExecutionResult, Finish, ProcessStart

log = logging.getLogger("queuectl.worker")

POLL_S = 1.0
#: Burst mode, once this worker holds no job: how soon to look again whether the
#: jobs that other workers run are done (doubling up to ``POLL_S``).
_BURST_RECHECK_S = 0.02
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0
#: How long a start record may wait for a finish or a claim to travel with.
START_HOLD_S = 0.05


@dataclass(slots=True)
class _PendingStart:
    start: ProcessStart
    #: Reads the leader's start (``Execution.leader_start``) when the record is sent.
    leader: Callable[[], str | None] | None
    #: Loop time until which the record waits for its job's finish (0: send at once).
    until: float

    def resolved(self) -> ProcessStart:
        """The record to send, with its leader's start read now (once)."""
        if self.leader is not None:
            s = self.start  # not dataclasses.replace: that costs 10 us per job
            self.start = ProcessStart(
                s.job_id, s.token, s.host, s.pid, s.pgid, self.leader(), s.log_path, s.slot
            )
            self.leader = None
        return self.start


@dataclass(slots=True)
class _PendingFinish:
    finish: Finish
    future: asyncio.Future[FinishResult]


class Pump:
    def __init__(
        self,
        backend: Backend,
        *,
        worker_id: str,
        queues: Sequence[str] | None,
        lease_ms: int,
        clock: Clock,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._worker_id = worker_id
        self._queues = queues
        self._lease_ms = lease_ms
        self._clock = clock
        self._waiters: deque[asyncio.Future[Claim | None]] = deque()
        self._starts: list[_PendingStart] = []
        self._finishes: list[_PendingFinish] = []
        self._kick = asyncio.Event()
        self._armed = True
        self._claiming = True
        self._next_due: int | None = None
        self._version: int | None = None
        #: Burst mode: called once the served queues hold nothing running, waiting
        #: for a retry, or due (checked whenever the pump runs out of work).
        self._on_drained = on_drained
        self._probed = False
        self._recheck_s = _BURST_RECHECK_S
        #: Jobs claimed by this worker and not finished yet. While it holds one, the
        #: served queues cannot be drained, so burst mode need not ask the store.
        self._held = 0
        self._closing = False
        #: Every claim handed to this worker whose finish has not been written yet.
        self._claimed: set[tuple[str, int]] = set()
        #: An exchange that claimed failed: it may have committed claims nobody runs.
        self._unsure = False
        self._retry_s = _RETRY_MIN_S
        #: Whether the last finished job was short: only then are starts held.
        self._short = False
        #: Claims never started, to hand back as if never made (``JobStore.unclaim``).
        self._unclaims: list[Claim] = []

    def want_job(self) -> asyncio.Future[Claim | None]:
        """A future for the next claimed job; ``None`` once the worker stops claiming."""
        future: asyncio.Future[Claim | None] = asyncio.get_running_loop().create_future()
        if not self._claiming:
            future.set_result(None)
            return future
        self._waiters.append(future)
        self._kick.set()
        return future

    def started(self, start: ProcessStart, leader: Callable[[], str | None] | None = None) -> None:
        """A command started; ``leader``, if given, fills in ``proc_start`` when sent."""
        until = asyncio.get_running_loop().time() + START_HOLD_S if self._short else 0.0
        self._starts.append(_PendingStart(start, leader, until))
        self._kick.set()

    def finished(self, finish: Finish) -> asyncio.Future[FinishResult]:
        future: asyncio.Future[FinishResult] = asyncio.get_running_loop().create_future()
        self._short = finish.result.duration_s < START_HOLD_S
        self._finishes.append(_PendingFinish(finish, future))
        self._kick.set()
        return future

    def arm(self) -> None:
        """Something may be claimable now (an enqueue elsewhere, a due retry)."""
        self._armed = True
        self._kick.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
        self._kick.set()

    def close(self) -> None:
        """Let ``run`` return once everything pending is written.

        The pump is never cancelled mid-cycle: a cancelled ``exchange`` still
        commits on the database thread, and its claims would be stranded.
        """
        self.stop_claiming()
        self._closing = True
        self._kick.set()

    @property
    def short(self) -> bool:
        """Whether the last finished job took less than ``START_HOLD_S``."""
        return self._short

    def withdraw(self, future: asyncio.Future[Claim | None]) -> None:
        """Take back a ``want_job`` not answered yet: a claim in flight for it goes back."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(future)
        future.cancel()

    def give_back(self, claim: Claim) -> None:
        """Hand a claimed job that was never started back, as if it had not been claimed."""
        self._unclaims.append(claim)
        self._kick.set()

    @property
    def idle_slots(self) -> int:
        return len(self._waiters)

    async def run(self) -> None:
        """Cycle until ``close`` was called and nothing is left to write."""
        while True:
            if self._unsure:
                await self._reconcile()
                continue
            if self._unclaims:
                await self._unclaim()
                continue
            want = len(self._waiters) if (self._armed and self._claiming) else 0
            if not (self._starts or self._finishes or want) and self._closing:
                return
            due = self._due_starts()
            if not (due or self._finishes or want):
                await self._sleep()
                continue
            await self._cycle(want, due)

    def _due_starts(self) -> list[_PendingStart]:
        """The start records to send now: all but those still waiting for their finish."""
        if not self._starts:
            return []
        now = asyncio.get_running_loop().time()
        if self._closing or all(s.until <= now for s in self._starts):
            return self._starts
        ending = {(p.finish.job_id, p.finish.token) for p in self._finishes}
        return [
            s for s in self._starts if s.until <= now or (s.start.job_id, s.start.token) in ending
        ]

    async def _cycle(self, want: int, starts: list[_PendingStart]) -> None:
        if starts is self._starts:
            self._starts = []
        else:
            sent = {id(s) for s in starts}
            self._starts = [s for s in self._starts if id(s) not in sent]
        finishes, self._finishes = self._finishes, []
        try:
            result = await self._backend.exchange(
                worker_id=self._worker_id,
                starts=[s.resolved() for s in starts],
                finishes=[p.finish for p in finishes],
                claim=want,
                queues=self._queues,
                lease_ms=self._lease_ms,
                now=self._clock(),
            )
        except NotAQueueDatabase:
            raise  # a damaged file does not heal by retrying
        except BackendError as exc:
            # Keep everything for the next cycle: a finished job's result must land.
            self._starts[:0] = starts
            self._finishes[:0] = finishes
            self._unsure = self._unsure or want > 0
            log.warning("cannot reach the job store (%s); retrying", exc)
            await self._backoff()
            return
        self._retry_s = _RETRY_MIN_S
        for pending in finishes:
            self._claimed.discard((pending.finish.job_id, pending.finish.token))
        self._claimed.update((c.job.id, c.token) for c in result.claims)
        for pending, done in zip(finishes, result.finished, strict=True):
            if not pending.future.done():
                pending.future.set_result(done)
            if done.next_run_at is not None and done.held:
                self._due_at(done.next_run_at)
        for claim in result.claims:
            waiter = self._waiters.popleft() if self._waiters else None
            if waiter is None or waiter.done():
                # The worker began stopping (or the slot no longer wants a job
                # ahead) while this claim was in flight: hand the job straight back.
                self._unclaims.append(claim)
            else:
                waiter.set_result(claim)
        if len(result.claims) < want:
            self._armed = False
            if result.next_due_at is not None:
                self._due_at(result.next_due_at)
        self._held += len(result.claims) - len(finishes)
        self._probed = False
        self._recheck_s = _BURST_RECHECK_S

    async def _backoff(self) -> None:
        """Wait before trying the store again: jittered, doubling up to ``_RETRY_MAX_S``."""
        await asyncio.sleep(self._retry_s * random.uniform(0.5, 1.0))
        self._retry_s = min(self._retry_s * 2, _RETRY_MAX_S)

    async def _reconcile(self) -> None:
        """Hand back claims that a lost exchange committed but never delivered.

        Runs between cycles (the pump is the only claimer of this worker, so no
        claim is in flight): whatever the store says this worker holds and the
        worker was never given goes back to ``pending`` as an interrupted attempt,
        not charged. Until this succeeds, the worker's heartbeat keeps those leases
        alive, so they would otherwise be stuck for as long as the worker lives.
        """
        try:
            beat = await self._backend.heartbeat(
                worker_id=self._worker_id, running=[], lease_ms=self._lease_ms, now=self._clock()
            )
        except NotAQueueDatabase:
            raise
        except BackendError as exc:
            log.warning("cannot reach the job store (%s); retrying", exc)
            await self._backoff()
            return
        self._unsure = False
        finishing = {(p.finish.job_id, p.finish.token) for p in self._finishes}
        for job_id, token in sorted(beat.held - self._claimed - finishing):
            log.warning("%s: claimed by an exchange whose answer was lost; handing it back", job_id)
            self._claimed.add((job_id, token))
            self._held += 1
            self._finishes.append(
                _PendingFinish(
                    Finish(job_id, token, token, 0, ExecutionResult(interrupted=True)),
                    asyncio.get_running_loop().create_future(),
                )
            )

    async def _unclaim(self) -> None:
        """Hand back claims never started, in a transaction of their own.

        Rare (a slot's job claimed ahead, when the running command turns out long,
        or a claim that arrived as the worker stopped), so not worth a place in
        ``exchange``. A claim the store will not take back (a cancel was requested
        meanwhile, or the lease was lost) is finished as interrupted instead, which
        applies the cancel or is refused by the fence.
        """
        claims, self._unclaims = self._unclaims, []
        try:
            back = await self._backend.unclaim(
                worker_id=self._worker_id,
                claims=[(c.job.id, c.token) for c in claims],
                now=self._clock(),
            )
        except NotAQueueDatabase:
            raise
        except BackendError as exc:
            self._unclaims[:0] = claims
            log.warning("cannot reach the job store (%s); retrying", exc)
            await self._backoff()
            return
        self._retry_s = _RETRY_MIN_S
        gone = set(back)
        for claim in claims:
            key = (claim.job.id, claim.token)
            if key in gone:
                self._claimed.discard(key)
                self._held -= 1
            else:
                self._release(claim)
        if gone:
            self._armed = True  # claimable again, here too

    def _release(self, claim: Claim) -> None:
        job = claim.job
        result = ExecutionResult(interrupted=True)
        self._finishes.append(
            _PendingFinish(
                Finish(job.id, claim.token, job.attempts, job.max_retries, result),
                asyncio.get_running_loop().create_future(),
            )
        )

    def _due_at(self, when: int) -> None:
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    async def _sleep(self) -> None:
        self._kick.clear()
        burst = self._on_drained is not None and self._held == 0
        if burst and not self._probed:
            # Out of work in burst mode: look at once rather than after the poll.
            self._probed = True
            await self._poll()
            if self._armed or not self._claiming:
                return
        timeout = POLL_S
        if burst and self._claiming:
            # Other workers still run jobs: look again soon, then less and less often.
            timeout = self._recheck_s
            self._recheck_s = min(self._recheck_s * 2, POLL_S)
        if self._next_due is not None and self._claiming:
            timeout = min(timeout, max(self._next_due - self._clock(), 0) / 1000)
        if self._starts:
            # A start record waiting for its finish: send it when its wait is over.
            left = min(s.until for s in self._starts) - asyncio.get_running_loop().time()
            if left < timeout:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(left, 0)):
                        await self._kick.wait()
                return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._kick.wait()
                return
        # Woken by the clock: either a job fell due, or it is time for the slow poll.
        if self._next_due is not None and self._next_due <= self._clock():
            self._next_due = None
            self._armed = True
            return
        await self._poll()

    async def _poll(self) -> None:
        try:
            probe = await self._backend.probe(queues=self._queues, now=self._clock())
        except NotAQueueDatabase:
            raise
        except BackendError as exc:
            log.warning("cannot reach the job store (%s)", exc)
            return
        if probe.due or (self._version is not None and probe.version != self._version):
            self._armed = True
        self._version = probe.version
        drained = probe.busy == 0 and not probe.due
        if drained and self._on_drained is not None and self._claiming and not self._starts:
            self._on_drained()

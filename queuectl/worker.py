"""A worker process: one event loop, N slot coroutines, and the side tasks that keep it honest.

Inside one ``TaskGroup`` run:

* ``pump``: the only path to the store; batches claims, starts and finishes.
* ``slot-{i}`` (N of them): take a job, run its command (``executor``), report the result.
* ``heartbeat``: extends the leases of running attempts (every ``lease / 4``) and
  reads stop requests; kills a command whose lease was lost.
* ``fence``: a timer, apart from the heartbeat so that a call hanging on a cut
  network cannot hold it up: once no heartbeat has succeeded for 0.8 of a lease,
  it kills every running command, before anybody else can have started them.
* ``retention``: deletes completed and cancelled jobs older than config ``retention``,
  one small batch at a time, off the claim path.
* ``reaper``: recovers attempts of dead workers: at once for a worker of this host
  whose process is gone, and for any worker once its lease has run out. It kills
  what is left of a lost attempt on this host before the job becomes claimable.
* ``scheduler``: makes the due jobs of schedules (``schedules.Schedules.fire_due``),
  sleeping until the next fire time or until a schedule changes.

A store that cannot be reached never ends a worker: every task waits, reconnects
and goes on. A crash of a side task takes the worker down loudly (that is what
``TaskGroup`` does). Stopping: the first request stops claiming and lets commands finish; the
second kills them, and their jobs go back to ``pending`` without using up an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from queuectl import procs, spool
from queuectl.backends import Backend, open_backend, wakeup
from queuectl.backends.base import FinishResult
from queuectl.backends.operations import BATCH, PURGE_DEFAULT
from queuectl.clock import Clock, now_ms, seconds_to_ms, to_iso
from queuectl.config import QueueConfig, from_stored, spool_dir
from queuectl.exceptions import BackendError, NotAQueueDatabase, QueueCtlError, StoreUnreachable
from queuectl.executor import Command, Execution, KillReason, fast_child_watcher, job_environment
from queuectl.hangup import mute_hung_up
from queuectl.leases import (
    REMOVED_AFTER_LEASES,
    fence_after_s,
    fence_grace_s,
    heartbeat_interval_s,
    heartbeat_timeout_s,
    worker_is_live,
)
from queuectl.models import (
    Claim,
    ExecutionResult,
    Finish,
    Heartbeat,
    JobState,
    LostAttempt,
    ProcessStart,
    StopMode,
    WorkerInfo,
)
from queuectl.options import WorkerOptions
from queuectl.private import make_dirs
from queuectl.pump import START_HOLD_S, Pump
from queuectl.schedules import Schedules, run_scheduler
from queuectl.signals import STOP_SIGNALS, on_signals
from queuectl.transitions import (
    CANCELLED,
    CLAIMED,
    COMPLETED,
    DEAD,
    FAILED,
    INTERRUPTED,
    LOST,
    RECOVERED,
    Transition,
    attempt_label,
)

log = logging.getLogger("queuectl.worker")

#: How often a worker applies config ``retention`` (each worker, at a random phase).
RETENTION_EVERY_S = 60.0
#: The pause between two full batches while a backlog of old jobs is deleted.
RETENTION_CATCH_UP_S = 0.5


class Worker:
    def __init__(self, backend: Backend, options: WorkerOptions, *, clock: Clock = now_ms) -> None:
        self.backend = backend
        self.options = options
        self.clock = clock
        self.id = secrets.token_hex(4)
        self.config = QueueConfig()
        self._queues: tuple[str, ...] | None = options.queues or None
        self._running: dict[tuple[str, int], Execution] = {}
        #: Jobs claimed ahead by a slot (see ``_slot``), not started yet.
        self._ahead: set[tuple[str, int]] = set()
        #: Jobs claimed ahead that the heartbeat said to kill: how, once they start.
        self._doomed: dict[tuple[str, int], KillReason] = {}
        self._stop = StopMode.NONE
        self._pump: Pump | None = None
        self._base_env = dict(os.environ)
        #: Marks this store's job processes (reference §4.6), so that the orphan search
        #: never takes another store's job of the same id and attempt for one of ours.
        self._store = procs.store_tag(backend.identity)
        self._spool = spool_dir(options.target)
        self._spool_seq = 0
        self._last_heartbeat = time.monotonic()
        self._signals = 0
        self._started_at = 0
        self._beat_now = asyncio.Event()
        self._fenced: set[tuple[str, int]] = set()
        self._schedules_changed = asyncio.Event()

    @property
    def info(self) -> WorkerInfo:
        now = self.clock()
        return WorkerInfo(
            id=self.id,
            host=procs.HOST,
            pid=os.getpid(),
            started_at=self._started_at,
            heartbeat_at=now,
            count=self.options.count,
            jobs_done=0,
            queues=self.options.queues,
            proc_start=procs.proc_start(os.getpid()),
        )

    async def run(self) -> int:
        """Run until stopped (or drained, with ``burst``); returns the exit code."""
        self.config = from_stored(await self.backend.get_config())
        self._started_at = self.clock()
        self._last_heartbeat = time.monotonic()
        make_dirs(self._spool)  # private: commands' output may hold secrets
        pump = self._pump = Pump(
            self.backend,
            worker_id=self.id,
            queues=self._queues,
            lease_ms=seconds_to_ms(self.config.lease),
            clock=self.clock,
            on_drained=self._drained if self.options.burst else None,
        )
        await _until_reached(
            "register", lambda: self.backend.register_worker(self.info, now=self._started_at)
        )
        await _until_reached("subscribe", lambda: self.backend.subscribe(self.id, self._on_wake))
        log.info(
            "worker %s started: %d slot(s), queues: %s, pid %d",
            self.id,
            self.options.count,
            ", ".join(self.options.queues) or "all",
            os.getpid(),
            extra={"action": "worker_started", "worker_id": self.id},
        )
        try:
            with self._signal_handlers(), fast_child_watcher():
                await _until_reached("recover", self._recover)
                await _until_reached("release strays", self._release_strays)
                await _until_reached("sweep spool", self._sweep_spool)
                try:
                    await self._serve(pump)
                except ExceptionGroup as group:
                    # A store that cannot be used ends the worker with that error
                    # (one ``Error:`` line), not with the task group's wrapper.
                    raise _first_error(group) from None
        finally:
            # Normally nothing is left; after a crash, whatever this worker still
            # holds is killed and handed back at once instead of after the lease.
            with contextlib.suppress(BackendError):
                await asyncio.shield(
                    self.backend.recover(
                        now=self.clock(), dead_workers=[self.id], on_lost=self._kill_orphan
                    )
                )
        log.info(
            "worker %s stopped", self.id, extra={"action": "worker_stopped", "worker_id": self.id}
        )
        return 0

    async def _serve(self, pump: Pump) -> None:
        async with asyncio.TaskGroup() as group:
            pump_task = group.create_task(pump.run(), name="pump")
            side = [
                group.create_task(self._heartbeat_loop(), name="heartbeat"),
                group.create_task(self._fence_loop(), name="fence"),
                group.create_task(self._reaper_loop(), name="reaper"),
                group.create_task(self._retention_loop(), name="retention"),
                group.create_task(
                    run_scheduler(
                        Schedules(self.backend, clock=self.clock, config=self._config),
                        config=lambda: self.config,
                        changed=self._schedules_changed,
                        worker_id=self.id,
                    ),
                    name="scheduler",
                ),
            ]
            slots = [
                group.create_task(self._slot(i), name=f"slot-{i}")
                for i in range(self.options.count)
            ]
            await asyncio.wait(slots)
            pump.close()
            await pump_task
            for task in side:
                task.cancel()

    async def _config(self) -> QueueConfig:
        return self.config

    def stop(self, mode: StopMode = StopMode.GRACEFUL) -> None:
        """Stop claiming; with ``StopMode.NOW`` also kill the running commands."""
        if mode <= self._stop:
            return
        self._stop = mode
        if self._pump is not None:
            self._pump.stop_claiming()
        running = len(self._running)
        if mode is StopMode.NOW:
            if running:
                log.warning("forced stop: killing %d running job(s)", running)
            else:
                log.warning("forced stop: no job was running")
            for execution in list(self._running.values()):
                execution.kill(KillReason.INTERRUPT)
        elif running:
            log.info("stopping: no new jobs; waiting for %d running job(s)", running)
        else:
            log.info("stopping: no new jobs")

    def _drained(self) -> None:
        log.info("burst: nothing left to do in the served queues")
        self.stop(StopMode.GRACEFUL)

    def _on_wake(self, message: bytes) -> None:
        if message == wakeup.SCHEDULE:
            self._schedules_changed.set()
            return
        if self._pump is not None:
            self._pump.arm()
        if message in (wakeup.STOP, wakeup.CANCEL):
            # A stop or cancel request: read it now rather than at the next heartbeat.
            self._beat_now.set()

    @contextlib.contextmanager
    def _signal_handlers(self):  # type: ignore[no-untyped-def]
        if not self.options.install_signal_handlers:
            yield
            return
        sigs: tuple[signal.Signals, ...] = STOP_SIGNALS
        if self.options.ignore_sigint:
            # A closed terminal hangs up the whole group too: the parent forwards it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            sigs = (signal.SIGTERM,)
        with on_signals(self._on_signal, sigs):
            yield

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if sig == signal.SIGHUP:
            mute_hung_up()  # the terminal may be gone: keep going without it
        log.info("received %s", sig.name)
        self.stop(StopMode.GRACEFUL if self._signals == 1 else StopMode.NOW)

    async def _slot(self, index: int) -> None:
        """Take a job, run it, report it; while jobs are short, the next rides ahead.

        Riding ahead: while the jobs are short, the slot asks for its next job but
        one as soon as it has the next (with the finish it sends, in one
        transaction), so that a job is in hand when the command ends and the next
        spawn waits for no transaction. If the running command takes longer than
        ``START_HOLD_S`` after that, the job claimed ahead goes back to ``pending``
        uncharged, so no job sits claimed behind a long one. A job claimed ahead is
        leased like any other (the heartbeat extends every lease the worker holds),
        and a cancel or lost lease the heartbeat reports for it is applied at its
        turn, where ``Execution.run`` sees it killed and spawns nothing.
        """
        assert self._pump is not None
        pump = self._pump
        next_job = pump.want_job()
        spare: _Ahead | None = None
        came_ahead = False
        while True:
            claim = await next_job
            if claim is not None and came_ahead and self._stop is not StopMode.NONE:
                self._drop_ahead(claim)  # stopping: no new jobs
                claim = None
            if claim is None:
                if spare is not None:
                    spare.withdraw()
                return
            job = claim.job
            _say(
                CLAIMED,
                "%s claimed by slot %d (attempt %s)",
                job.id,
                index,
                _attempt(claim),
                extra=self._fields(claim, index),
            )

            def on_start() -> None:
                nonlocal spare
                if spare is None and pump.short and self._stop is StopMode.NONE:
                    spare = _Ahead(self, pump)

            result = await self._execute(claim, index, on_start)
            finish = Finish(job.id, claim.token, job.attempts, job.max_retries, result)
            done = pump.finished(finish)
            ahead = spare.take() if spare is not None else None
            spare = None
            if ahead is not None:
                # The next job is in hand (or on its way): ask for the one after it
                # in the same transaction as this result, and start the next now.
                next_job, came_ahead = ahead, True
                if pump.short and self._stop is StopMode.NONE:
                    spare = _Ahead(self, pump)
                done.add_done_callback(functools.partial(self._logged, claim, index, result))
                continue
            # Ask for the next job before the result is written: both go into the
            # same transaction.
            next_job, came_ahead = pump.want_job(), False
            self._log_result(claim, index, result, await done)

    def _logged(
        self, claim: Claim, slot: int, result: ExecutionResult, done: asyncio.Future[FinishResult]
    ) -> None:
        self._log_result(claim, slot, result, done.result())

    def _drop_ahead(self, claim: Claim) -> None:
        """Give a job claimed ahead back (uncharged): it was never started."""
        assert self._pump is not None
        key = (claim.job.id, claim.token)
        self._ahead.discard(key)
        self._doomed.pop(key, None)
        self._pump.give_back(claim)

    async def _execute(
        self, claim: Claim, slot: int, on_start: Callable[[], None] | None = None
    ) -> ExecutionResult:
        assert self._pump is not None
        job = claim.job
        self._spool_seq += 1
        spool_path = self._spool / spool.spool_name(self.id, slot, self._spool_seq)
        cmd = Command(
            command=job.command,
            env=job_environment(self._base_env, job.env, job.id, claim.token, self._store),
            cwd=job.cwd,
            timeout_s=job.timeout_s,
            output_limit=self.config.output_limit,
            kill_grace_s=self.config.kill_grace,
            spool_path=spool_path,
        )
        execution = Execution(cmd)
        key = (job.id, claim.token)
        self._ahead.discard(key)
        self._running[key] = execution
        doomed = self._doomed.pop(key, None)
        if doomed is not None:  # cancelled or lost while it was claimed ahead
            execution.kill(doomed)
        if self._stop is StopMode.NOW:
            execution.kill(KillReason.INTERRUPT)
        pump = self._pump

        def started(pid: int) -> None:
            start = ProcessStart(
                job.id, claim.token, procs.HOST, pid, pid, None, str(spool_path), slot=slot
            )
            pump.started(start, execution.leader_start)
            if on_start is not None:
                on_start()

        try:
            return await execution.run(started)
        finally:
            del self._running[key]

    def _fields(self, claim: Claim, slot: int) -> dict[str, object]:
        """The structured fields of a transition line, for ``--log-format json`` and colours."""
        job = claim.job
        return {
            "job_id": job.id,
            "attempt": claim.token,
            "attempts": job.attempts,
            "max_attempts": job.max_retries + 1,
            "worker_id": self.id,
            "slot": slot,
        }

    def _log_result(
        self, claim: Claim, slot: int, result: ExecutionResult, done: FinishResult
    ) -> None:
        job = claim.job
        error = result.describe()
        extra: dict[str, object] = {
            **self._fields(claim, slot),
            "duration": round(result.duration_s, 3),
            "exit_code": result.exit_code,
            "signal": result.signal,
            "error": error,
        }
        where = f"attempt {_attempt(claim)}, slot {slot}"
        took = f"{result.duration_s:.2f}s"
        if not done.held:
            _say(
                LOST, "%s lease lost after %s; %s (%s)", job.id, took, LOST.note, where, extra=extra
            )
        elif done.state is JobState.COMPLETED:
            _say(
                COMPLETED, "%s completed in %s, exit code 0 (%s)", job.id, took, where, extra=extra
            )
        elif done.state is JobState.CANCELLED:
            why = result.describe() if result.cancelled else "the cancel request was in force"
            _say(CANCELLED, "%s cancelled after %s: %s (%s)", job.id, took, why, where, extra=extra)
        elif done.state is JobState.PENDING:
            message = "%s interrupted after %s; %s (%s)"
            _say(INTERRUPTED, message, job.id, took, INTERRUPTED.note, where, extra=extra)
        elif done.state is JobState.FAILED:
            retry = to_iso(done.next_run_at)
            extra["next_run_at"] = retry
            _say(
                FAILED,
                "%s failed after %s: %s (%s); retry at %s",
                job.id,
                took,
                error,
                where,
                retry,
                extra=extra,
            )
        else:
            _say(DEAD, "%s dead after %s: %s (%s)", job.id, took, error, where, extra=extra)

    async def _heartbeat_loop(self) -> None:
        """Beat every ``lease / 4``, counted from when the last beat was *sent*.

        A beat held up by a stalled network is followed at once by the next when it
        comes back, so the fence timer is reset as soon as the store answers again.
        """
        next_at = time.monotonic() + heartbeat_interval_s(self.config.lease)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_at - time.monotonic(), 0)):
                    await self._beat_now.wait()
            self._beat_now.clear()
            next_at = time.monotonic() + heartbeat_interval_s(self.config.lease)
            await self._heartbeat_once(timeout_s=heartbeat_timeout_s(self.config.lease))

    async def _heartbeat_once(self, *, timeout_s: float) -> None:
        asked = time.monotonic()
        try:
            # Bounded: a store stuck behind another process's lock must not keep
            # this worker from noticing that its leases are running out.
            async with asyncio.timeout(timeout_s):
                beat = await self.backend.heartbeat(
                    worker_id=self.id,
                    running=[*self._running, *self._ahead],
                    lease_ms=seconds_to_ms(self.config.lease),
                    now=self.clock(),
                )
                stored = await self.backend.get_config()
        except NotAQueueDatabase:
            raise
        except (BackendError, TimeoutError) as exc:
            # ``str(exc)`` is empty for a timeout (a database locked by another
            # process): say what happened rather than nothing.
            reason = str(exc) or (
                f"the store did not answer within {timeout_s:.1f}s"
                if isinstance(exc, TimeoutError)
                else type(exc).__name__
            )
            log.warning("heartbeat failed: %s", reason)
            return
        self._last_heartbeat = asked
        self._fenced.clear()
        self.config = replace(from_stored(stored), lease=self.config.lease)
        log.debug(
            "heartbeat: %d running, %d lease(s) lost, stop request: %s",
            len(self._running),
            len(beat.lost),
            beat.stop.name.lower(),
            extra={"action": "heartbeat", "worker_id": self.id},
        )
        if not beat.registered:
            try:
                await self.backend.register_worker(self.info, now=self.clock())
            except NotAQueueDatabase:
                raise
            except BackendError as exc:
                log.warning("cannot register again: %s", exc)
        self._apply_kills(beat)
        if beat.stop is not StopMode.NONE:
            self.stop(beat.stop)

    def _apply_kills(self, beat: Heartbeat) -> None:
        """Kill what the heartbeat says lost or cancelled (at its start, if claimed ahead)."""
        for key in beat.lost:
            execution = self._running.get(key)
            if execution is not None:
                log.warning("%s: lease lost to another worker; killing its command", key[0])
                execution.kill(KillReason.LOST)
            elif key in self._ahead:
                self._doomed[key] = KillReason.LOST
        for key in beat.cancel - beat.lost:
            execution = self._running.get(key)
            if execution is not None:
                log.info("%s: cancel requested; killing its command", key[0])
                execution.kill(KillReason.CANCEL)
            elif key in self._ahead:
                self._doomed.setdefault(key, KillReason.CANCEL)

    async def _fence_loop(self) -> None:
        """Kill what runs once no heartbeat has succeeded for ``fence_after_s`` of a lease.

        A timer of its own: a heartbeat stuck on a cut network (bytes held, no
        error) must not delay this. Checked again every tenth of a lease for as long
        as the store stays unreachable, so a command started meanwhile goes too.
        Woken far past its time, the whole process was frozen or starved (SIGSTOP,
        a paused VM, an overloaded machine), so the heartbeats had no chance either:
        one is sent at once, and the commands are killed only if it does not succeed
        within a tenth of a lease (or says their leases were lost).
        """
        lease = self.config.lease
        while True:
            due = self._last_heartbeat + fence_after_s(lease)
            late = time.monotonic() - due
            if late < 0:
                await asyncio.sleep(-late)
                continue
            if late > lease / 4 and await self._beat_in_time(lease / 10):
                continue
            self._fence_if_stale(frozen_s=late)
            await asyncio.sleep(lease / 10)

    async def _beat_in_time(self, within_s: float) -> bool:
        """Ask for a heartbeat now; whether one succeeds within ``within_s``."""
        before = self._last_heartbeat
        self._beat_now.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self._last_heartbeat == before:
                    await asyncio.sleep(within_s / 20)
        return self._last_heartbeat != before

    def _fence_if_stale(self, *, frozen_s: float = 0.0) -> None:
        """No heartbeat for most of a lease: others may soon take our jobs, so kill them first."""
        if time.monotonic() - self._last_heartbeat < fence_after_s(self.config.lease):
            return
        if frozen_s > self.config.lease / 4:
            why = f"this worker was frozen for {frozen_s:.1f}s"
        else:
            why = "store unreachable for most of a lease"
        for key, execution in list(self._running.items()):
            if key in self._fenced:
                continue
            self._fenced.add(key)
            log.error("%s: %s; killing its command", key[0], why)
            # SIGKILL by 0.9 of the lease at the latest, whatever kill-grace says.
            execution.kill(KillReason.LOST, grace_s=fence_grace_s(self.config.lease))

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval)
            try:
                await self._recover()
            except NotAQueueDatabase:
                raise
            except BackendError as exc:
                log.warning("recovery check failed: %s", exc)

    async def _retention_loop(self) -> None:
        """Apply config ``retention`` now and then, one batch per turn.

        Each batch is a short transaction of its own (``Backend.purge``), so the
        claims of this and every other worker wait at most one batch; a backlog of
        old jobs is worked off a batch per ``RETENTION_CATCH_UP_S``.
        """
        pause = RETENTION_EVERY_S * random.uniform(0.1, 1.0)
        while True:
            await asyncio.sleep(pause)
            pause = RETENTION_EVERY_S
            retention = self.config.retention
            if retention <= 0 or self._stop is not StopMode.NONE:
                continue
            before = self.clock() - seconds_to_ms(retention)
            try:
                deleted = await self.backend.purge(PURGE_DEFAULT, before=before, limit=BATCH)
            except NotAQueueDatabase:
                raise
            except BackendError as exc:
                log.warning("retention: could not delete old jobs: %s", exc)
                continue
            if deleted:
                log.info(
                    "retention: deleted %d finished job(s) older than %gs",
                    deleted,
                    retention,
                    extra={"action": "retention", "worker_id": self.id},
                )
            if deleted >= BATCH:
                pause = RETENTION_CATCH_UP_S

    async def _recover(self) -> list[LostAttempt]:
        now = self.clock()
        lease_ms = seconds_to_ms(self.config.lease)
        dead = [
            w.id
            for w in await self.backend.list_workers()
            if w.id != self.id
            and not worker_is_live(w, now=now, lease_ms=lease_ms, leases=REMOVED_AFTER_LEASES)
        ]
        lost = await self.backend.recover(now=now, dead_workers=dead, on_lost=self._kill_orphan)
        for item in lost:
            _say(
                RECOVERED,
                "%s recovered from lost worker %s (attempt %s); %s",
                item.job_id,
                item.worker_id,
                attempt_label(item.token, item.attempts, item.max_retries),
                RECOVERED.note,
                extra={
                    "job_id": item.job_id,
                    "attempt": item.token,
                    "attempts": item.attempts,
                    "max_attempts": item.max_retries + 1,
                    "lost_worker_id": item.worker_id,
                    "worker_id": self.id,
                },
            )
        if lost:
            await spool.salvage(self.backend, lost, limit=self.config.output_limit)
        if lost and self._pump is not None:
            self._pump.arm()
        return lost

    def _kill_orphan(self, lost: LostAttempt) -> None:
        """Kill what is left of a lost attempt on this host before the job can run again.

        An attempt without a host never had its start recorded (its worker died right
        after spawning it): it may have run here, so it is looked for here too.
        """
        if lost.host not in (None, procs.HOST):
            return
        group = None
        if lost.pgid and procs.kill_group(lost.pgid, lost.proc_start, signal.SIGKILL):
            log.warning("%s: killed the orphaned process group %d", lost.job_id, lost.pgid)
            group = lost.pgid
        left = procs.kill_attempt(
            self._store, lost.job_id, lost.token, lost.started_at, killed_group=group
        )
        if left:
            log.warning("%s: killed %d leftover process(es) of the lost attempt", lost.job_id, left)

    async def _sweep_spool(self) -> None:
        """Remove the spool files of workers that are gone (after ``_recover`` kept
        what it could of their output)."""
        owners = {w.id for w in await self.backend.list_workers()}
        removed = spool.sweep(self._spool, owners | {self.id})
        if removed:
            log.info("removed %d spool file(s) left by workers that are gone", removed)

    async def _release_strays(self) -> None:
        """Kill what a crash on this host left running after another host took its jobs over.

        A worker elsewhere can recover a job but cannot reach this host's processes;
        whatever of them still runs is killed here, before this worker takes any job.
        """
        strays = await self.backend.release_strays(
            host=procs.HOST, now=self.clock(), on_stray=_kill_stray
        )
        if strays:
            log.info("checked %d stray attempt(s) left on this host", len(strays))


class _Ahead:
    """A slot's claim of its next job while its current one runs (see ``Worker._slot``)."""

    __slots__ = ("_future", "_handle", "_pump", "_worker")

    _future: asyncio.Future[Claim | None] | None

    def __init__(self, worker: Worker, pump: Pump) -> None:
        """Claim a job ahead, for ``START_HOLD_S`` at most unless taken first."""
        self._worker = worker
        self._pump = pump
        future = self._future = pump.want_job()
        future.add_done_callback(self._landed)
        self._handle = asyncio.get_running_loop().call_later(START_HOLD_S, self.withdraw)

    def _landed(self, future: asyncio.Future[Claim | None]) -> None:
        if not future.cancelled():
            claim = future.result()
            if claim is not None:
                self._worker._ahead.add((claim.job.id, claim.token))

    def take(self) -> asyncio.Future[Claim | None] | None:
        """The current job ended: the next job's future, ``None`` if it was given back."""
        future = self._future
        if future is None or future.cancelled():
            return None
        self._handle.cancel()
        self._future = None
        return future

    def withdraw(self) -> None:
        """The current job is long (or over): give the claimed-ahead job back."""
        future, self._future = self._future, None
        self._handle.cancel()
        if future is None:
            return
        if not future.done():
            self._pump.withdraw(future)
        elif not future.cancelled() and (claim := future.result()) is not None:
            self._worker._drop_ahead(claim)


def _say(transition: Transition, message: str, *args: object, extra: dict[str, object]) -> None:
    """Log one job transition at its level, with its ``action`` (see ``transitions``)."""
    log.log(transition.level, message, *args, extra={**extra, "action": transition.action})


def _attempt(claim: Claim) -> str:
    return attempt_label(claim.token, claim.job.attempts, claim.job.max_retries)


async def _until_reached(what: str, call: Callable[[], Awaitable[object]]) -> None:
    """Run a start-up step, waiting out a store that cannot be reached for now.

    Only ``StoreUnreachable``: a store that refuses (read-only, damaged) ends the
    worker with its error, as it would have when the worker opened it.
    """
    delay = 0.05
    while True:
        try:
            await call()
            return
        except StoreUnreachable as exc:
            log.warning("%s: cannot reach the job store (%s); retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first queuectl error inside ``group`` (nested groups included), else ``group``."""
    matched = group.subgroup(QueueCtlError)
    while matched is not None:
        first = matched.exceptions[0]
        if not isinstance(first, BaseExceptionGroup):
            return first
        matched = first
    return group


def _kill_stray(stray: LostAttempt) -> None:
    """Kill a stray's process group (checked by its leader's start time).

    Only the group: a stray is an old attempt of a job that may be running again on
    this host by now, and its own group is all that is surely its own.
    """
    if stray.pgid and procs.kill_group(stray.pgid, stray.proc_start, signal.SIGKILL):
        log.warning("%s: killed the stray process group %d", stray.job_id, stray.pgid)


async def run_worker(options: WorkerOptions) -> int:
    """Open the store, run one worker process until it stops; the CLI's entry point."""
    backend = await open_backend(options.target, durable=False, busy_deadline_s=60.0)
    try:
        return await Worker(backend, options).run()
    finally:
        await backend.aclose()

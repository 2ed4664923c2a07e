"""The lease arithmetic in one place: how often a worker beats, when it gives up, when it is gone.

A claim is valid for ``lease`` seconds and every heartbeat extends it. The other
numbers follow from that one setting, and are named here so that the worker (which
keeps its leases) and the queue (which tells live workers from dead ones) cannot
drift apart.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from queuectl import procs

if TYPE_CHECKING:
    from queuectl.models import WorkerInfo

#: Heartbeats per lease, counted from when the last one was *sent*. Four means
#: a heartbeat held up by a locked database or a stalled network still leaves
#: room for the next ones before the fence below.
HEARTBEATS_PER_LEASE = 4

#: A heartbeat that takes longer than this fraction of a lease is given up (its
#: connection closed) and tried again on a fresh one. Longer than half a lease plus
#: the beat interval, so a cut-off shorter than half a lease is ridden out by the
#: heartbeat in flight, and nothing is killed.
HEARTBEAT_TIMEOUT_FRACTION = 0.6

#: A worker that could not heartbeat for this fraction of a lease kills its running
#: commands: its leases run out soon after, and another worker may then start the
#: same jobs. The remaining fifth of the lease is the time the kill needs: SIGTERM
#: now, SIGKILL half of that fifth later (0.9 of the lease), whatever kill-grace says.
FENCE_AFTER_LEASE_FRACTION = 0.8

#: ``status`` and ``worker list`` stop counting a worker whose heartbeat is older
#: than one lease: by then its leases have run out too, so it holds nothing.
SHOWN_LIVE_FOR_LEASES = 1

#: A worker removes another worker's row (and expires whatever leases it still
#: holds) only once its heartbeat is this many leases old. Heartbeat times of a
#: PostgreSQL store come from the server while the judging worker uses its own
#: clock: the margin keeps a few seconds of clock skew from removing a live worker.
REMOVED_AFTER_LEASES = 3


def heartbeat_interval_s(lease_s: float) -> float:
    return lease_s / HEARTBEATS_PER_LEASE


def heartbeat_timeout_s(lease_s: float) -> float:
    return lease_s * HEARTBEAT_TIMEOUT_FRACTION


def fence_after_s(lease_s: float) -> float:
    return lease_s * FENCE_AFTER_LEASE_FRACTION


def fence_grace_s(lease_s: float) -> float:
    """SIGTERM to SIGKILL for a fenced command: SIGKILL by 0.9 of the lease."""
    return lease_s * (1 - FENCE_AFTER_LEASE_FRACTION) / 2


def worker_is_live(worker: WorkerInfo, *, now: int, lease_ms: int, leases: int) -> bool:
    """Whether ``worker`` still runs: a heartbeat within ``leases`` leases of ``now``, and,
    on this host, a process that is still the one that registered.

    The process check makes a crash on this host visible at once instead of after
    the leases; a worker of this very process (tests run several) is always live.
    """
    if worker.heartbeat_at < now - lease_ms * leases:
        return False
    if procs.is_local(worker.host, worker.proc_start):
        return worker.pid == os.getpid() or procs.is_alive(worker.pid, worker.proc_start)
    return True

"""The lease arithmetic (``queuectl.leases``): one definition for the worker and the queue."""

from __future__ import annotations

from queuectl import procs
from queuectl.leases import (
    REMOVED_AFTER_LEASES,
    SHOWN_LIVE_FOR_LEASES,
    fence_after_s,
    heartbeat_interval_s,
    worker_is_live,
)
from queuectl.models import WorkerInfo

LEASE_MS = 10_000
NOW = 1_000_000_000


def remote(heartbeat_at: int) -> WorkerInfo:
    return WorkerInfo("w", procs.HOST + "-elsewhere", 1, 0, heartbeat_at, 1, 0)


def test_a_silent_worker_leaves_the_listings_before_others_remove_it() -> None:
    assert SHOWN_LIVE_FOR_LEASES < REMOVED_AFTER_LEASES
    two_leases_ago = remote(NOW - 2 * LEASE_MS)
    assert not worker_is_live(
        two_leases_ago, now=NOW, lease_ms=LEASE_MS, leases=SHOWN_LIVE_FOR_LEASES
    )
    assert worker_is_live(two_leases_ago, now=NOW, lease_ms=LEASE_MS, leases=REMOVED_AFTER_LEASES)
    gone = remote(NOW - REMOVED_AFTER_LEASES * LEASE_MS - 1)
    assert not worker_is_live(gone, now=NOW, lease_ms=LEASE_MS, leases=REMOVED_AFTER_LEASES)


def test_a_worker_of_this_host_is_dead_as_soon_as_its_process_is() -> None:
    crashed = WorkerInfo("w", procs.HOST, 999_999_999, 0, NOW, 1, 0, proc_start=None)
    assert not worker_is_live(crashed, now=NOW, lease_ms=LEASE_MS, leases=REMOVED_AFTER_LEASES)


def test_a_lease_survives_two_failed_heartbeats_and_fencing_comes_before_its_end() -> None:
    lease_s = 10.0
    assert 2 * heartbeat_interval_s(lease_s) < lease_s
    assert 2 * heartbeat_interval_s(lease_s) <= fence_after_s(lease_s) < lease_s

"""Engine faults on PostgreSQL: a restart, killed sessions, a host cut off, a clock off.

Each test runs workers as simulated hosts (``QUEUECTL_HOST``) on a private
server (``tests/pgserver.py``), some through a fault proxy (``tests/faultproxy.py``),
and judges the outcome from the jobs' own record of their executions
(``tests/faults/cluster.py``): start and end stamps with host and pid, and a per-job
``flock`` that catches two executions alive at once.

``enqueue``, ``cancel`` and ``queue pause`` run by clients through restarts each
either succeed once or fail with one ``Error:`` line and change nothing; a running
job cancelled while its host cannot hear it and the server restarts is killed by
its worker once the store is back, and ends ``cancelled`` without running again.
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faultproxy import FaultProxy
from tests.faults.cluster import Cluster, stamped
from tests.helpers import assert_one_error, wait_for
from tests.pgserver import PrivateServer

# Scenarios drive real processes through restarts and cut-offs: their own waits
# (at most 300 s) must fire before the test timeout does.
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(360)]

#: The lease of the cut-off tests (seconds): short, so they are quick, but long
#: enough for heartbeats on a loaded machine.
LEASE = 4.0


Outcome = subprocess.CompletedProcess[str]


def _short_jobs(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"id": f"{prefix}{i:04d}", "command": stamped("sleep 0.05")} for i in range(n)]


def _assert_each_ran_once(cluster: Cluster, ids: list[str]) -> None:
    """Nothing lost (every job ran to its end), nothing ran twice, nothing overlapped."""
    record = cluster.record()
    assert record.overlaps == [], record.overlaps
    assert record.overlapping() == []
    runs = Counter(r.job_id for r in record.runs)
    assert sorted(runs) == sorted(ids), set(ids) ^ set(runs)
    twice = {job: n for job, n in runs.items() if n > 1}
    assert twice == {}, twice
    assert record.completed() == set(ids)
    assert cluster.counts() == {"completed": len(ids)}


def test_workers_ride_out_a_server_restart(cluster: Cluster, pg_server: PrivateServer) -> None:
    jobs = _short_jobs("r", 400)
    assert cluster.enqueue(jobs).returncode == 0
    hosts = [cluster.host(name, "--count", "4", "--burst") for name in ("a", "b")]
    wait_for(lambda: cluster.counts().get("completed", 0) >= 100, timeout=120, interval=0.1)
    ready_at = pg_server.restart()
    for host in hosts:
        assert host.wait(timeout=300) == 0, host.log()
    _assert_each_ran_once(cluster, [str(j["id"]) for j in jobs])
    # Work resumed within 5 s of the server accepting connections again.
    first = min(r.start for r in cluster.record().runs if r.start > ready_at)
    assert first - ready_at < 5.0, first - ready_at
    # The restart was noticed (and ridden out, as every job ran once).
    assert any("cannot reach the job store" in h.log() for h in hosts)


def test_workers_ride_out_their_sessions_being_killed(
    cluster: Cluster, pg_server: PrivateServer
) -> None:
    # 600 jobs of 50 ms over 8 slots last at least 3.75 s, with a kill every 0.2-0.6 s:
    # the drain must outlast several kills however fast the workers are.
    jobs = _short_jobs("t", 600)
    assert cluster.enqueue(jobs).returncode == 0
    hosts = [cluster.host(name, "--count", "4", "--burst") for name in ("a", "b")]
    killed: list[int] = []
    done = threading.Event()

    def terminate() -> None:
        rng = random.Random(14)
        while not done.wait(rng.uniform(0.2, 0.6)):
            killed.append(pg_server.terminate_workers())

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        for host in hosts:
            assert host.wait(timeout=300) == 0, host.log()
    finally:
        done.set()
        killer.join()
    assert len([n for n in killed if n]) >= 3, killed
    _assert_each_ran_once(cluster, [str(j["id"]) for j in jobs])


def _lease_until(cluster: Cluster) -> dict[str, float]:
    """The processing jobs' lease ends, in seconds on the server's (this machine's) clock."""
    rows = cluster.fetch("SELECT id, lease_until FROM jobs WHERE state = 'processing'")
    return {job: int(ms) / 1000 for job, ms in (r.split("|") for r in rows)}


def test_a_cut_off_host_kills_its_commands_before_another_reruns_them(
    cluster: Cluster, proxy: FaultProxy
) -> None:
    cluster.configure(lease=LEASE, reap_interval=0.5, backoff_base=1)
    # Long on the cut-off host, short on the one that takes over.
    work = 'if [ "$QUEUECTL_HOST" = a ]; then sleep 120; else sleep 1; fi'
    ids = ["cut-1", "cut-2"]
    assert cluster.enqueue([{"id": i, "command": stamped(work)} for i in ids]).returncode == 0
    a = cluster.host("a", "--count", "2", port=proxy.port)
    wait_for(lambda: len(cluster.record().runs) == 2, timeout=60)
    # Let a heartbeat or two land, then cut the host off.
    time.sleep(LEASE / 2)
    cut_at = time.time()
    proxy.set_mode("stall")
    time.sleep(0.5)
    leases = _lease_until(cluster)  # nothing of a's reaches the server any more
    assert sorted(leases) == ids
    b = cluster.host("b", "--count", "2")

    def reruns_done() -> bool:
        return {r.job_id for r in cluster.record().runs if r.host == "b" and r.end} == set(ids)

    wait_for(reruns_done, timeout=60)
    record = cluster.record()
    for job_id, runs in record.by_job().items():
        first, second = runs
        assert (first.host, first.killed) == ("a", True), runs
        assert first.end is not None
        # a killed its command within 0.8 of a lease of being cut off (plus the
        # time a loaded machine takes to deliver the signal)...
        assert first.end - cut_at <= 0.8 * LEASE + 0.5, first.end - cut_at
        # ... before its lease ran out, and b started the job again only after that.
        assert first.end < leases[job_id], (first.end, leases[job_id])
        assert second.host == "b" and second.end is not None and not second.killed
        assert second.start >= leases[job_id], (second.start, leases[job_id])
    assert record.overlaps == []
    assert "store unreachable for most of a lease; killing its command" in a.log()
    # a comes back: its late reports of the killed attempts are turned away by the fence.
    proxy.set_mode("pass")
    wait_for(lambda: a.log().count("result discarded") == 2, timeout=60)
    assert a.alive(), a.log()
    assert cluster.counts() == {"completed": 2}
    for job_id in ids:
        job = cluster.json("show", job_id)
        lost, rerun = job["history"]
        assert (lost["host"], lost["outcome"]) == ("a", "lost"), lost
        assert "worker lost" in lost["error"] and "stopped heartbeating" in lost["error"]
        assert (rerun["host"], rerun["outcome"]) == ("b", "completed"), rerun
        assert (job["state"], job["attempts"]) == ("completed", 2)
    shown = cluster.cli("show", ids[0]).stdout
    assert "lost" in shown and "worker lost" in shown, shown
    assert b.alive()


def test_a_host_cut_off_for_less_than_half_a_lease_loses_nothing(
    cluster: Cluster, proxy: FaultProxy
) -> None:
    cluster.configure(lease=LEASE, reap_interval=0.5, backoff_base=1)
    ids = [f"short-{i}" for i in range(4)]
    jobs = [{"id": i, "command": stamped(f"sleep {3 * LEASE}")} for i in ids]
    assert cluster.enqueue(jobs).returncode == 0
    a = cluster.host("a", "--count", "2", port=proxy.port)
    b = cluster.host("b", "--count", "2")
    wait_for(lambda: {r.host for r in cluster.record().runs} == {"a", "b"}, timeout=60)
    # Cut-offs of 0.45 of a lease, in different phases of a's heartbeat, each
    # after the store was reachable for a heartbeat's round trip or more.
    for pause in (0.3, 1.1, 0.7):
        time.sleep(LEASE / 4 + pause)
        proxy.set_mode("stall")
        time.sleep(0.45 * LEASE)
        proxy.set_mode("pass")
    cluster.wait_done(4, timeout=90)
    assert a.alive() and b.alive()
    _assert_each_ran_once(cluster, ids)
    assert not any(r.killed for r in cluster.record().runs)
    for job_id in ids:
        assert len(cluster.json("show", job_id)["history"]) == 1
    assert "killing its command" not in a.log()
    assert "recovered from lost worker" not in a.log() + b.log()


#: Jobs per enqueue: enough that the server can go down in the middle of one.
BATCH = 300


def _batch(n: int) -> str:
    return "".join(f'{{"id": "e{n}-{k}", "command": "true"}}\n' for k in range(BATCH))


def _ids(n: int) -> list[str]:
    return [f"e{n}-{k}" for k in range(BATCH)]


def _through_restarts(
    server: PrivateServer,
    command: Callable[[int, int], Outcome | None],
    aim: Callable[[], bool] | None = None,
) -> dict[int, Outcome]:
    """Commands run by 6 clients at once through 3 restarts.

    ``command(client, n)`` runs command number ``n`` (``None``: nothing left to do).
    ``aim``: after a second, stop the server as soon as it says a command is in the
    middle of its work (for at most 2 s more), rather than at a random moment.
    """
    outcomes: dict[int, Outcome] = {}
    numbers = itertools.count()
    rng = random.Random(5)

    def restart() -> None:
        # The clients take most of a second to start: restart while they connect.
        if aim is None:
            time.sleep(rng.uniform(1.0, 2.0))
        else:
            time.sleep(1.0)
            deadline = time.monotonic() + 2.0
            while not aim() and time.monotonic() < deadline:
                pass
        server.restart(down_s=1.0)

    def run_while(restarter: threading.Thread, client: int) -> None:
        # Staggered, so some client is in the middle of its transaction at the stop.
        time.sleep(client * 0.2)
        while restarter.is_alive():
            n = next(numbers)
            outcome = command(client, n)
            if outcome is None:
                return
            outcomes[n] = outcome

    for _round in range(3):
        restarter = threading.Thread(target=restart)
        clients = [threading.Thread(target=run_while, args=(restarter, i)) for i in range(6)]
        for thread in (restarter, *clients):
            thread.start()
        for thread in (restarter, *clients):
            thread.join()
    return outcomes


def test_enqueue_during_a_restart_succeeds_once_or_changes_nothing(
    cluster: Cluster, pg_server: PrivateServer
) -> None:
    assert cluster.cli("status").returncode == 0  # the schema exists before the restart
    outcomes = _through_restarts(
        pg_server, lambda _client, n: cluster.cli("enqueue", input=_batch(n), timeout=120)
    )
    failed = [n for n, r in outcomes.items() if r.returncode != 0]
    assert failed, "no enqueue ran into the restart"
    stored = set(cluster.fetch("SELECT id FROM jobs"))
    for n, result in outcomes.items():
        if result.returncode == 0:
            assert result.stdout.split() == _ids(n)
            assert set(_ids(n)) <= stored
        else:
            # One Error: line, no traceback, and nothing of the batch stored.
            assert_one_error(result)
            assert not set(_ids(n)) & stored, (n, result.stderr)
    # Retried, a failed batch goes in once; a batch that went in is refused whole.
    for n, result in outcomes.items():
        again = cluster.cli("enqueue", input=_batch(n))
        if result.returncode == 0:
            assert "already exists" in assert_one_error(again)
        else:
            assert again.returncode == 0, again.stderr
    assert cluster.fetch("SELECT id FROM jobs GROUP BY id HAVING count(*) > 1") == []
    assert len(cluster.fetch("SELECT id FROM jobs")) == BATCH * len(outcomes)
    print(f"\nenqueues during restarts: {len(outcomes) - len(failed)} ok, {len(failed)} failed")


#: Cancel commands the clients may run at most (their jobs are enqueued first).
CANCELS = 40


def _cancel_ids(n: int) -> list[str]:
    return [f"c{n}-{k}" for k in range(BATCH)]


def _queue_names(n: int) -> list[str]:
    return [f"p{n}-{k}" for k in range(BATCH)]


def _args(kind: str, batch: int) -> tuple[str, ...]:
    if kind == "cancel":
        return ("cancel", *_cancel_ids(batch), "--wait", "0")
    return ("queue", "pause", *_queue_names(batch))


def _assert_said(result: Outcome, kind: str, batch: int) -> None:
    """Exit 0 naming the whole batch, or one ``Error:`` line and no traceback."""
    if result.returncode != 0:
        assert_one_error(result)
    elif kind == "cancel":
        assert sorted(result.stdout.split()) == sorted(_cancel_ids(batch))
    else:
        assert result.stdout.splitlines() == [f"paused {q}" for q in _queue_names(batch)]


def test_cancel_and_queue_pause_during_a_restart_succeed_once_or_change_nothing(
    cluster: Cluster, pg_server: PrivateServer
) -> None:
    # No worker: the jobs stay `pending`, where a cancel of many is one transaction.
    jobs = [{"id": i, "command": "true"} for n in range(CANCELS) for i in _cancel_ids(n)]
    assert cluster.enqueue(jobs).returncode == 0
    batches = {"cancel": itertools.count(), "pause": itertools.count()}
    commands: dict[int, tuple[str, int]] = {}

    def command(client: int, n: int) -> Outcome | None:
        # Half the clients cancel, half pause, staggered against each other.
        kind = "cancel" if client % 2 else "pause"
        batch = next(batches[kind])
        if kind == "cancel" and batch >= CANCELS:
            return None
        commands[n] = (kind, batch)
        return cluster.cli(*_args(kind, batch), timeout=120)

    def writing() -> bool:
        # A command's session between its first write and its commit.
        return pg_server.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'queuectl'"
            " AND state <> 'idle' AND query ~ 'UPDATE jobs|queue_settings'"
        ) not in ("", "0")

    outcomes = _through_restarts(pg_server, command, aim=writing)

    def cancelled() -> set[str]:
        return set(cluster.fetch("SELECT id FROM jobs WHERE state = 'cancelled'"))

    def paused() -> set[str]:
        return set(cluster.fetch("SELECT queue FROM queue_settings WHERE paused"))

    def expected(kind: str, ok: bool) -> set[str]:
        made = _cancel_ids if kind == "cancel" else _queue_names
        return {
            name
            for n, (k, batch) in commands.items()
            if k == kind and (outcomes[n].returncode == 0) == ok
            for name in made(batch)
        }

    failed = {n for n, r in outcomes.items() if r.returncode != 0}
    assert {commands[n][0] for n in failed} == {"cancel", "pause"}, "not both ran into a restart"
    for n, result in outcomes.items():
        _assert_said(result, *commands[n])
    # Each that succeeded took effect whole, once; each that failed changed nothing.
    assert cancelled() == expected("cancel", ok=True)
    assert paused() == expected("pause", ok=True)
    assert not set(cluster.fetch("SELECT queue FROM queue_settings")) & expected("pause", ok=False)
    pending = set(cluster.fetch("SELECT id FROM jobs WHERE state = 'pending'"))
    assert expected("cancel", ok=False) <= pending
    # Retried, each failed command succeeds.
    for n in sorted(failed):
        again = cluster.cli(*_args(*commands[n]))
        assert again.returncode == 0, again.stderr
    assert cancelled() == expected("cancel", ok=True) | expected("cancel", ok=False)
    assert paused() == expected("pause", ok=True) | expected("pause", ok=False)
    print(f"\ncancel/pause during restarts: {len(outcomes) - len(failed)} ok, {len(failed)} failed")


def _cancel_requested(cluster: Cluster) -> set[str]:
    return set(cluster.fetch("SELECT id FROM jobs WHERE cancel_requested_at IS NOT NULL"))


# Slow: its cancels must land inside a one-second restart, which they miss when the
# machine is busy with the parallel default run; the slow session runs it alone.
@pytest.mark.slow
def test_a_job_cancelled_while_the_server_restarts_is_killed_once_it_is_back(
    cluster: Cluster, pg_server: PrivateServer, proxy: FaultProxy
) -> None:
    # A lease long enough that the cut-off below never reaches the worker's "store
    # unreachable for most of a lease: kill what runs" rule: every kill is a cancel's.
    cluster.configure(lease=20, kill_grace=1)
    ids = [f"run-{i}" for i in range(8)]
    jobs = [{"id": i, "command": stamped("sleep 120")} for i in ids]
    assert cluster.enqueue(jobs).returncode == 0
    a = cluster.host("a", "--count", str(len(ids)), "--burst", port=proxy.port)
    wait_for(lambda: len(cluster.record().runs) == len(ids), timeout=60)
    # Host a is cut off until the server is back: the wake-ups of the cancels made
    # meanwhile are lost with its connections, so only its heartbeats after the
    # restart can carry those requests to it.
    proxy.set_mode("drop")
    cut_at = time.monotonic()
    # The first cancel waits for a's confirmation right through the restart.
    early = cluster.start_cli("cancel", ids[0], "--wait", "100")
    wait_for(lambda: _cancel_requested(cluster) == {ids[0]}, timeout=60)
    outcomes: dict[str, Outcome] = {}

    def cancel(job_id: str, offset: float) -> None:
        time.sleep(offset)
        outcomes[job_id] = cluster.cli("cancel", job_id, "--wait", "0")

    restarter = threading.Thread(target=pg_server.restart, kwargs={"down_s": 1.0})
    clients = [
        threading.Thread(target=cancel, args=(job_id, i * 0.4)) for i, job_id in enumerate(ids[1:])
    ]
    for thread in (restarter, *clients):
        thread.start()
    for thread in (restarter, *clients):
        thread.join()
    # Each cancel either put its request in (exit 1: still running, as nothing can
    # reach a yet) or failed with one Error: line and left its job as it was.
    requested = {job for job, r in outcomes.items() if "cancel stays requested" in r.stderr}
    failed = set(outcomes) - requested
    assert failed, "no cancel ran into the restart"
    for result in outcomes.values():
        assert_one_error(result)
    assert _cancel_requested(cluster) == {ids[0], *requested}
    assert cluster.counts() == {"processing": len(ids)}
    # Back on the network, a kills every command once and ends each job cancelled;
    # each failed cancel, retried, gets its job cancelled.
    proxy.set_mode("pass")
    cut_off_s = time.monotonic() - cut_at
    for job_id in sorted(failed):
        again = cluster.cli("cancel", job_id, "--wait", "60", timeout=90)
        assert (again.returncode, again.stdout) == (0, f"{job_id}\n"), again.stderr
    assert a.wait(timeout=120) == 0, a.log()
    out, err = early.communicate(timeout=60)
    assert (early.returncode, out, err) == (0, f"{ids[0]}\n", "1 job(s) cancelled.\n")
    assert cluster.counts() == {"cancelled": len(ids)}
    record = cluster.record()
    assert record.overlaps == []
    assert sorted(r.job_id for r in record.runs) == ids  # nothing ran twice
    assert all(r.killed for r in record.runs), record.runs
    for job_id in ids:
        [attempt] = cluster.json("show", job_id)["history"]
        assert (attempt["outcome"], attempt["error"]) == ("cancelled", "cancelled while running")
    assert a.log().count("cancel requested; killing its command") == len(ids)
    assert "store unreachable for most of a lease" not in a.log()
    print(
        f"\ncancels during a restart: {len(requested)} in, {len(failed)} failed and retried;"
        f" a cut off for {cut_off_s:.1f} s"
    )


def test_a_host_whose_clock_is_off_neither_steals_nor_loses_jobs(cluster: Cluster) -> None:
    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed (apt-get install faketime)")
    cluster.configure(lease=2, reap_interval=0.5, backoff_base=1)
    # Each job outlives its first lease: only heartbeats (on the server's clock)
    # keep it; a host judging leases by its own clock would steal or drop them.
    ids = [f"clock-{i:02d}" for i in range(24)]
    jobs = [{"id": i, "command": stamped("sleep 2.5")} for i in ids]
    assert cluster.enqueue(jobs).returncode == 0
    hosts = [
        cluster.host("ahead", "--count", "3", "--burst", faketime="+30s"),
        cluster.host("behind", "--count", "3", "--burst", faketime="-30s"),
        cluster.host("right", "--count", "2", "--burst"),
    ]
    for host in hosts:
        assert host.wait(timeout=300) == 0, host.log()
    _assert_each_ran_once(cluster, ids)
    record = cluster.record()
    assert {r.host for r in record.runs} == {"ahead", "behind", "right"}
    for job_id in ids:
        [attempt] = cluster.json("show", job_id)["history"]
        assert attempt["outcome"] == "completed"
    logs = "".join(h.log() for h in hosts)
    assert "recovered from lost worker" not in logs
    assert "killing its command" not in logs

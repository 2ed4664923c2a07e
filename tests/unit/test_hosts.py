"""Which recorded processes count as this machine's: the host name and the boot id."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from queuectl import procs
from queuectl.leases import worker_is_live
from queuectl.models import WorkerInfo


def test_a_process_is_local_only_with_this_host_name_and_this_boot() -> None:
    here = procs.proc_start(os.getpid())
    assert procs.is_local(procs.HOST, here)
    assert procs.is_local(procs.HOST, None)
    assert not procs.is_local(procs.HOST + "-other", here)
    # A cloned machine with the same name has another boot id.
    assert not procs.is_local(procs.HOST, "another-boot:12345")


def test_a_worker_of_a_same_named_machine_is_judged_by_its_heartbeat_only() -> None:
    now = 1_000_000
    twin = WorkerInfo("w", procs.HOST, 999_999_999, now, now, 1, 0, proc_start="other-boot:1")
    assert worker_is_live(twin, now=now, lease_ms=10_000, leases=1)
    gone = WorkerInfo("w", procs.HOST, 999_999_999, now, now, 1, 0, proc_start=None)
    assert not worker_is_live(gone, now=now, lease_ms=10_000, leases=1)


def test_a_stray_from_before_a_reboot_is_never_signalled() -> None:
    assert procs.kill_group(os.getpid(), "old-boot:1", 0) is False
    # A group whose leader is gone but whose members live on: only the boot id
    # tells that the recorded group is not this one (the leader's start time
    # cannot be compared any more).
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 30 >/dev/null &"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        leader.communicate(timeout=10)  # the leader has exited and been reaped
        assert procs.group_alive(leader.pid), "the group should outlive its leader"
        assert procs.kill_group(leader.pid, "old-boot:1", 0) is False
        assert procs.kill_group(leader.pid, None, 0) is True  # the same group, unrecorded boot
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


def test_queuectl_host_overrides_the_host_name() -> None:
    code = "from queuectl import procs; print(procs.HOST)"
    env = {**os.environ, "QUEUECTL_HOST": "simulated-7"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout == "simulated-7\n"

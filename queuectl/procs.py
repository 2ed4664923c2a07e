"""Process facts and process-group signals, safe against pid reuse.

A command runs as the leader of its own session, so its pid is also its process
group id. Before signalling a group found in the database, ``kill_group`` checks
that the leader (if it still exists) is the very process that was started, by its
start time since boot and the boot id; a pid reused by an unrelated process is
never hit.
"""

from __future__ import annotations

import os
import signal
import socket
from functools import cache

#: This machine's name in the store. ``QUEUECTL_HOST`` overrides it, which lets tests
#: run several "hosts" on one machine; pid checks then apply only to workers that
#: carry the same name.
HOST = os.environ.get("QUEUECTL_HOST") or socket.gethostname()


@cache
def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def proc_start(pid: int) -> str | None:
    """``<boot id>:<start ticks>`` of a live process, ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after
    # the last ")" are plain. starttime is field 22, i.e. the 20th after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return f"{boot_id()}:{int(fields[19])}"


def is_local(host: str, started: str | None) -> bool:
    """Whether a process recorded as ``host`` with start ``started`` runs on this machine.

    The boot id must match too: two machines that share a host name (cloned VMs)
    must never judge each other's pids, or each would think the other's workers dead.
    """
    return host == HOST and (started is None or started.startswith(boot_id() + ":"))


def is_alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` started at ``started`` still runs (zombies count as dead)."""
    current = proc_start(pid)
    if current is None:
        return False
    if started is not None and current != started:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, started: str | None, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group led by ``pgid`` if it is still the one we started.

    When the leader is gone its group may live on in grandchildren; a new group
    with that id would need a live process of that pid, so an absent leader still
    means the group (if any) is ours. Returns whether a signal was sent.
    """
    if started is not None and not started.startswith(boot_id() + ":"):
        return False  # recorded before a reboot: that group is long gone
    current = proc_start(pgid)
    if current is not None and started is not None and current != started:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True

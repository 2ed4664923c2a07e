"""Process facts and process-group signals, safe against pid reuse.

A command runs as the leader of its own session, so its pid is also its process
group id. Before signalling a group found in the database, ``kill_group`` checks
that the leader (if it still exists) is the very process that was started, by its
start time since boot and the boot id; a pid reused by an unrelated process is
never hit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import time
from functools import cache

#: This machine's name in the store. ``QUEUECTL_HOST`` overrides it, which lets tests
#: run several "hosts" on one machine; pid checks then apply only to workers that
#: carry the same name.
HOST = os.environ.get("QUEUECTL_HOST") or socket.gethostname()


#: The variable that names, in every job's environment, the store the job came from
#: (``store_tag`` of the store's identity; reference §4.6). The orphan search matches
#: it too: two stores on one host may each have a job ``build`` at attempt 1, and a
#: worker of one must never kill the other's.
STORE_ENV = "QUEUECTL_STORE"


def store_tag(identity: str) -> str:
    """A short, stable name for a store (``Backend.identity``): 16 hex digits of its hash."""
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@cache
def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def _read_stat(pid: int) -> bytes | None:
    """``/proc/<pid>/stat`` (always well under 4 KiB), or ``None`` if the process is gone.

    Plain ``os.open``/``os.read``: the worker reads it once per job it starts, and a
    buffered file object cost twice as much.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def proc_start(pid: int) -> str | None:
    """``<boot id>:<start ticks>`` of a live process, ``None`` if it is gone."""
    stat = _read_stat(pid)
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after
    # the last ")" are plain. starttime is field 22, i.e. the 20th after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return f"{boot_id()}:{int(fields[19])}"


def gone_start() -> str:
    """The start to record for a group leader already reaped by this worker.

    It matches no live process, so ``kill_group`` never signals a reused pid's
    group with it; a leaderless group of that id can only be the job's own
    (a group id is not handed out again while its group has members).
    """
    return f"{boot_id()}:gone"


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
    stat = _read_stat(pid)
    if stat is None:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


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


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()


def attempt_processes(
    store: str, job_id: str, attempt: int, since_ms: int | None
) -> list[tuple[int, int]]:
    """``(pid, pgid)`` of the live processes of this host that one attempt started.

    Every command and its descendants inherit ``QUEUECTL_STORE`` (``store``, see
    ``STORE_ENV``), ``QUEUECTL_JOB_ID`` and ``QUEUECTL_ATTEMPT``, so they are found
    even when the attempt's pid never reached the database (the worker died between
    spawning and recording it) or when they left the command's process group.
    Processes started before the claim (``since_ms``, with a second of slack) are
    skipped: an earlier attempt of that number (before a ``dlq retry``) is not this one.
    """
    wanted = {
        f"{STORE_ENV}={store}".encode(),
        f"QUEUECTL_JOB_ID={job_id}".encode(),
        f"QUEUECTL_ATTEMPT={attempt}".encode(),
    }
    ticks = os.sysconf("SC_CLK_TCK")
    booted_ms = (time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)) * 1000
    found: list[tuple[int, int]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = set(f.read().split(b"\0"))
        except OSError:
            continue
        if not wanted <= environ:
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] == b"Z":
            continue
        started_ms = booted_ms + int(fields[19]) * 1000 / ticks
        if since_ms is not None and started_ms < since_ms - 1000:
            continue
        found.append((int(entry.name), int(fields[2])))
    return found


def kill_attempt(
    store: str,
    job_id: str,
    attempt: int,
    since_ms: int | None,
    *,
    killed_group: int | None = None,
) -> int:
    """SIGKILL what is left of one attempt on this host (see ``attempt_processes``).

    Groups led by one of its processes are killed whole, so a child forked after
    the scan goes too. Members of ``killed_group`` (already sent SIGKILL, maybe not
    yet dead) are left alone. Returns how many processes were killed.
    """
    found = attempt_processes(store, job_id, attempt, since_ms)
    found = [p for p in found if p[1] != killed_group]
    pids = {pid for pid, _ in found}
    for pgid in {pgid for _, pgid in found if pgid in pids}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def group_alive(pgid: int) -> bool:
    """Whether the process group has a member that is not a zombie.

    ``killpg(pgid, 0)`` also succeeds for killed members that their new parent
    (init, after the shell exited) has not reaped yet; waiting on those would
    stretch every kill by however slowly init reaps.
    """
    if not group_exists(pgid):
        return False
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state is field 3, pgrp field 5.
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False

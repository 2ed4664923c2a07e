"""Wake-ups between processes on one host: datagrams to abstract Unix sockets.

Each worker binds ``\\0queuectl/<worker id>``; ``enqueue`` and ``worker stop`` send
one byte to every worker of the database on this host. Abstract sockets leave no
file behind and cannot go stale. Delivery is best effort: a worker also polls
``PRAGMA data_version`` slowly, so a lost datagram only delays a start.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

#: The wake-up messages, the same for every store (PostgreSQL sends them as
#: ``NOTIFY`` payloads): new work may be due, or a stop was requested (read it now
#: rather than at the next heartbeat). A worker treats any message as a reason to
#: look for jobs.
JOB = b"j"
STOP = b"s"


def _address(worker_id: str) -> str:
    return f"\0queuectl/{worker_id}"


def bind(worker_id: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(_address(worker_id))
    return sock


def poke(worker_ids: Iterable[str], message: bytes = JOB) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for worker_id in worker_ids:
            try:
                sock.sendto(message, _address(worker_id))
            except OSError:
                # Not listening (gone, or another host's id): the poll covers it.
                continue

"""The ``--processes`` parent once its children are to start: a minimal supervisor.

``queuectl.supervisor`` checks the store in the CLI process, then replaces that
process (``os.execv``: same pid, so a service manager, ``nohup`` or a pid file
still see the worker) with ``python -S -P .../queuectl/parent.py ARGS``: an
interpreter that imports ``os``, ``signal``, ``sys`` and ``time`` and nothing of the
package, not asyncio, not logging. Idle, it costs about 10 MiB instead of the
~29 MiB of the CLI process that asyncio, the store and the CLI had grown (issue
15). It runs as a script, so not even ``queuectl/__init__`` is imported.

It starts the children (``os.posix_spawn`` of the argv lists it was given, stdin
``/dev/null``, SIGINT and SIGHUP blocked) and then sleeps in ``sigwaitinfo``: the stop
signals and ``SIGCHLD`` stay blocked and are taken one at a time, so there is no
handler, no thread, no event loop and no CPU spent while idle (``sigtimedwait``
is Linux's, as are the ``/proc`` and abstract sockets the worker uses). What it
does on each is ``queuectl.supervisor``'s contract.

Its few log lines (a stop signal, a restart) use the worker log's level and
format: ``logging`` and ``queuectl.logs`` are imported for the first line that
passes the level, through the parent's ``sys.path``.

``ARGS`` are lists of strings, each as its length then its items: the command
line it replaced (only for ``ps``), ``[level, format]``, the parent's ``sys.path``,
then one argv per child.
"""

from __future__ import annotations

import os
import signal
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing costs 1.5 MiB
if TYPE_CHECKING:
    from collections.abc import Sequence
    from logging import Logger

#: Seconds before restarting a child killed by a signal, by how often it crashed
#: right after a restart.
RESTART_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)
#: A child that ran this long before it crashed is restarted at once again.
STABLE_S = 30.0

#: Signals a child starts with blocked: the ones it is to ignore (``queuectl.child``).
CHILD_BLOCKED = (signal.SIGINT, signal.SIGHUP)

_INFO, _WARNING, _ERROR = 20, 30, 40  # logging's levels, without importing it


def encode(lists: Sequence[Sequence[str]]) -> list[str]:
    """``[["a", "b"], []]`` -> ``["2", "a", "b", "0"]``: lists of strings as one argv."""
    out: list[str] = []
    for items in lists:
        out.append(str(len(items)))
        out.extend(items)
    return out


def decode(args: Sequence[str]) -> list[list[str]]:
    lists, i = [], 0
    while i < len(args):
        n = int(args[i])
        lists.append(list(args[i + 1 : i + 1 + n]))
        i += 1 + n
    return lists


class Parent:
    def __init__(self, argvs: list[list[str]], level: int, fmt: str, path: list[str]) -> None:
        self.argvs = argvs
        self.level = level
        self.fmt = fmt
        self.path = path
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.restarts: dict[int, int] = {}
        self.scheduled: dict[int, float] = {}  # index -> when to restart it
        self.signals = 0
        self.failed = False
        self._logger: Logger | None = None

    def run(self) -> int:
        stops = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # under nohup it stays ignored
            stops.append(signal.SIGHUP)
        waited = {*stops, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        _keep_inherited_fds()
        for index in range(len(self.argvs)):
            self._start(index)
        while self.children or self.scheduled:
            if self.scheduled:
                timeout = max(0.0, min(self.scheduled.values()) - time.monotonic())
                info = signal.sigtimedwait(waited, timeout)
            else:
                info = signal.sigwaitinfo(waited)
            if info is None:
                self._restart_due()
            elif info.si_signo == signal.SIGCHLD:
                self._reap()
            else:
                self._on_signal(signal.Signals(info.si_signo))
        return 1 if self.failed else 0

    def _start(self, index: int) -> None:
        argv = self.argvs[index]
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                os.environ,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
                # ^C and a hang-up reach every process of the group, a child still
                # starting up too: it gets them blocked, and ignores them before it
                # unblocks them (queuectl.child), so they cannot kill it mid-import.
                setsigmask=CHILD_BLOCKED,
                # What subprocess.Popen(restore_signals=True) resets for a child.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as exc:
            self._log(_ERROR, "could not start worker process %d: %s", index, exc)
            self.failed = True
            self._stop_all()
            return
        self.children[pid] = (index, time.monotonic())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is not None:
                self._on_exit(*entry, pid, os.waitstatus_to_exitcode(status))

    def _on_exit(self, index: int, started: float, pid: int, code: int) -> None:
        if code < 0 and self.signals == 0:
            # A child that crashes again right after a restart backs off.
            n = 0 if time.monotonic() - started > STABLE_S else self.restarts.get(index, 0)
            self.restarts[index] = n + 1
            delay = RESTART_BACKOFF_S[min(n, len(RESTART_BACKOFF_S) - 1)]
            self._log(
                _WARNING,
                "worker process %d (pid %s) killed by signal %d; restarting in %gs",
                index,
                pid,
                -code,
                delay,
            )
            self.scheduled[index] = time.monotonic() + delay
        elif code != 0 and not (code == -signal.SIGTERM and self.signals > 0):
            # A child still starting up when our SIGTERM came had no handlers yet and
            # died of it; it held no job (handlers go in before the first claim), so
            # that is the clean stop we asked for, not a failure.
            self.failed = True

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, due in list(self.scheduled.items()):
            if due <= now:
                del self.scheduled[index]
                self._start(index)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.signals += 1
        if sig == signal.SIGHUP:
            self._import_path()
            from queuectl.hangup import mute_hung_up

            mute_hung_up()
        self._log(
            _INFO, "received %s; forwarding to %d worker process(es)", sig.name, len(self.children)
        )
        self._stop_all()

    def _stop_all(self) -> None:
        self.signals = max(self.signals, 1)
        self.scheduled.clear()
        for pid in self.children:
            try:  # noqa: SIM105 (contextlib is an import this process does without)
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _log(self, level: int, msg: str, *args: object) -> None:
        if level < self.level:
            return
        if self._logger is None:
            try:
                self._logger = self._setup_logging()
            except Exception as exc:  # never lose the children for a log line
                line = f"{msg % args} (log setup failed: {exc!r})\n"
                try:  # noqa: SIM105
                    os.write(2, line.encode(errors="replace"))
                except OSError:
                    pass
                return
        self._logger.log(level, msg, *args)

    def _setup_logging(self) -> Logger:
        self._import_path()
        import logging

        from queuectl.logs import setup_logging

        setup_logging(self.level, self.fmt)
        return logging.getLogger("queuectl.supervisor")

    def _import_path(self) -> None:
        for entry in self.path:
            if entry not in sys.path:
                sys.path.append(entry)


def _keep_inherited_fds() -> None:
    """Descriptors this process inherited beyond 0-2 are not passed on to the children.

    (``subprocess`` closed them in its children; ``posix_spawn`` would not.)
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:  # noqa: SIM105
                os.set_inheritable(fd, False)
            except OSError:
                pass


def main(argv: Sequence[str] | None = None) -> None:
    _command, (level, fmt), path, *argvs = decode(sys.argv[1:] if argv is None else argv)
    sys.exit(Parent(argvs, int(level), fmt, path).run())


if __name__ == "__main__":
    main()

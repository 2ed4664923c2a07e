"""Where the data lives and the queue's stored settings; pure, no I/O.

Two kinds of configuration live here:

* ``resolve_target``: which store to open (``--db`` > ``QUEUECTL_DB`` > the XDG default).
* ``QueueConfig``: the settings kept *in* the database (``queuectl config``), so
  every worker and every terminal on that database agrees on them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from queuectl.durations import WITH_UNIT, parse_seconds
from queuectl.exceptions import ConfigError

MAX_INT = 2**31 - 1


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "queuectl" / "queuectl.db"


def resolve_target(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """Reference §3.1: ``--db`` beats ``QUEUECTL_DB``, which beats the XDG default."""
    env = os.environ if env is None else env
    if cli_value:
        return cli_value
    if env.get("QUEUECTL_DB"):
        return env["QUEUECTL_DB"]
    return str(default_db_path(env))


#: Seconds a command (not a worker) keeps retrying a locked database; see README.
DEFAULT_BUSY_TIMEOUT_S = 15.0


def busy_timeout_s(env: Mapping[str, str] | None = None) -> float:
    """``QUEUECTL_BUSY_TIMEOUT``: how long a command waits for another's write lock."""
    env = os.environ if env is None else env
    text = env.get("QUEUECTL_BUSY_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = parse_seconds(text, allow_zero=False, hi=86400)
    except ValueError:
        raise ConfigError(
            f"QUEUECTL_BUSY_TIMEOUT must be a number of seconds > 0 and <= 86400, "
            f"or {WITH_UNIT}; got {text!r}"
        ) from None
    return value


def spool_dir(target: str, env: Mapping[str, str] | None = None) -> Path:
    """Where running commands' output is spooled: beside a SQLite file, else in XDG data."""
    if "://" in target:
        # One folder per store: a starting worker removes the spool files of workers
        # its store does not know (``spool.sweep``), never those of another store.
        import hashlib  # only for a PostgreSQL target

        store = hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return default_db_path(env).parent / "spool" / store
    return Path(target).expanduser().with_name(Path(target).name + ".d") / "spool"


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"an integer from {lo} to {hi}")
        return value

    return parse


def _number_range(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    shown = f"a number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(shown) from None
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            raise ValueError(shown)
        return int(value) if value.is_integer() else value

    return parse


def _duration_range(lo: float, hi: float) -> Callable[[str], float]:
    """A time key: seconds or a duration (``15m``), kept as a number of seconds."""
    shown = f"a number of seconds >= {lo:g} and <= {hi:g}, or {WITH_UNIT}"

    def parse(text: str) -> float:
        try:
            value = parse_seconds(text, lo=lo, hi=hi)
        except ValueError:
            raise ValueError(shown) from None
        return int(value) if value.is_integer() else value

    return parse


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Settings stored in the database; field names are the keys with ``_``."""

    max_retries: int = 3
    backoff_base: float = 2
    backoff_max: float = 3600
    job_timeout: float = 0
    output_limit: int = 65536
    #: Seconds a claim stays valid without a heartbeat; a worker heartbeats every
    #: quarter of it, so a dead worker's jobs are recovered within ``lease`` plus one
    #: reaper tick (``reap-interval``).
    lease: float = 10
    reap_interval: float = 2
    #: Seconds between SIGTERM and SIGKILL when a job's process group is killed.
    kill_grace: float = 3
    #: Seconds after which workers delete completed and cancelled jobs (0: keep forever).
    retention: float = 7 * 86400

    def to_dict(self) -> dict[str, Any]:
        return {key_name(f.name): getattr(self, f.name) for f in fields(self)}

    @property
    def timeout_s(self) -> float | None:
        return self.job_timeout or None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "max_retries": _int_range(0, MAX_INT),
    "backoff_base": _number_range(1, 1e6),
    "backoff_max": _duration_range(0, 1e9),
    "job_timeout": _duration_range(0, 1e9),
    "output_limit": _int_range(0, 1 << 30),
    "lease": _duration_range(1, 86400),
    "reap_interval": _duration_range(0.1, 3600),
    "kill_grace": _duration_range(0, 3600),
    "retention": _duration_range(0, 1e9),
}

# "back-off-base", "BACKOFF_BASE" and "backoffbase" all name backoff_base.
_BY_SQUASHED = {name.replace("_", ""): name for name in _PARSERS}


def key_name(field_name: str) -> str:
    return field_name.replace("_", "-")


def valid_keys() -> str:
    return ", ".join(key_name(k) for k in _PARSERS)


def normalize_key(key: str) -> str:
    """Map a user-typed key to its field name, ignoring case, ``-`` and ``_``."""
    squashed = re.sub(r"[-_\s]", "", key).lower()
    try:
        return _BY_SQUASHED[squashed]
    except KeyError:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {valid_keys()}") from None


def parse_value(field_name: str, text: str) -> Any:
    try:
        return _PARSERS[field_name](text)
    except ValueError as exc:
        raise ConfigError(
            f"invalid value {text!r} for {key_name(field_name)}: expected {exc}"
        ) from None


def from_stored(stored: Mapping[str, str]) -> QueueConfig:
    """Build the config from stored text values, skipping ones this version does not know.

    Stored values were validated when set; a value that no longer parses (an older
    range) falls back to the default rather than making the database unusable.
    """
    values: dict[str, Any] = {}
    for name, text in stored.items():
        if name in _PARSERS:
            try:
                values[name] = _PARSERS[name](text)
            except ValueError:
                continue
    return replace(QueueConfig(), **values)

"""Turn what a user typed into validated ``NewJob`` values, or say exactly what is wrong.

Input is an object, an array of objects, or JSON Lines (reference §4.2). Every error names
the job by its 1-based position in the input, so a 10,000-line batch with one bad
line can be fixed without guessing.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from queuectl.clock import MAX_MS, parse_when, seconds_to_ms
from queuectl.config import MAX_INT, QueueConfig
from queuectl.durations import parse_seconds
from queuectl.exceptions import InvalidJob
from queuectl.models import AFTER_MODES, NewJob

if TYPE_CHECKING:
    from queuectl.models import JobChanges

#: Fields a user sets. ``null`` for any of them means "not given".
INPUT_FIELDS = frozenset(
    {
        "id",
        "command",
        "max_retries",
        "priority",
        "run_at",
        "delay",
        "timeout",
        "queue",
        "env",
        "cwd",
        "unique_key",
        "after",
        "after_mode",
    }
)
#: Fields the queue manages: accepted and ignored, so ``list --json`` output re-enqueues.
MANAGED_FIELDS = frozenset(
    {
        "state",
        "attempts",
        "created_at",
        "updated_at",
        "next_run_at",
        "last_error",
        "exit_code",
        "worker",
        "worker_id",
        "lease_until",
        "history",
        "claims",
    }
)
MAX_ID_LEN = 128
MAX_QUEUE_LEN = 64
MAX_UNIQUE_KEY_LEN = 255
MAX_TIMEOUT_S = 1e9
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp", "Zs"})


@dataclass(frozen=True, slots=True)
class RawJob:
    """One decoded JSON value and where it stood in the input."""

    position: int
    line: int | None
    value: Any

    @property
    def label(self) -> str:
        if self.line is not None and self.line != self.position:
            return f"job {self.position} (line {self.line})"
        return f"job {self.position}"


def parse_input(text: str) -> list[RawJob]:
    """Decode an object, an array of objects, or JSON Lines."""
    if not text.strip():
        raise InvalidJob("no job given: expected a JSON object, an array of objects or JSON Lines")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise InvalidJob(f"job 1: invalid JSON: {exc}") from None
        return list(_json_lines(text))
    if isinstance(whole, list):
        if not whole:
            raise InvalidJob("no job given: the array is empty")
        return [RawJob(i, None, v) for i, v in enumerate(whole, 1)]
    return [RawJob(1, None, whole)]


def _json_lines(text: str) -> Iterator[RawJob]:
    # Only "\n" ends a record: str.splitlines would also split at U+2028, U+2029
    # and U+0085, which JSON allows unescaped inside strings.
    return _decode_lines(text.split("\n"))


def json_line_chunks(
    lines: Iterable[str], size: int, *, first_line: int = 1
) -> Iterator[list[RawJob]]:
    """JSON Lines read lazily (a text file iterates by "\n"), ``size`` jobs at a time.

    For ``enqueue`` of a big stream (issue 15): the input is never held whole.
    Blank lines are skipped as in ``parse_input``; a bad line raises ``InvalidJob``
    naming it, when the iteration reaches it.
    """
    chunk: list[RawJob] = []
    for raw in _decode_lines(lines, first_line=first_line):
        chunk.append(raw)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decode_lines(lines: Iterable[str], *, first_line: int = 1) -> Iterator[RawJob]:
    position = 0
    scan = _SCANNER.scan_once  # type: ignore[attr-defined]
    for line_no, line in enumerate(lines, first_line):
        line = line.removesuffix("\n")
        if not line.strip():
            continue
        position += 1
        try:
            # The decoder's C scanner, without json.loads's per-call checks; a line
            # it does not take whole (leading blanks, junk after the value, bad
            # JSON) goes through json.loads, which says what is wrong.
            value, end = scan(line, 0)
            if end != len(line) and line[end:].strip():
                raise ValueError
        except (StopIteration, ValueError):
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                label = RawJob(position, line_no, None).label
                raise InvalidJob(f"{label}: invalid JSON: {exc}") from None
        yield RawJob(position, line_no, value)


_SCANNER = json.JSONDecoder()


def new_job_id() -> str:
    """16 hex digits (64 random bits); the store rejects the rare collision."""
    # secrets.token_hex(8) is exactly this; importing secrets costs enqueue a millisecond.
    return os.urandom(8).hex()


#: Printable ASCII without space: ids made only of these need no per-character check.
_PLAIN_ID = re.compile(rf"[!-~]{{1,{MAX_ID_LEN}}}")


def validate_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if _PLAIN_ID.fullmatch(value):
        return value
    if not 1 <= len(value) <= MAX_ID_LEN:
        raise ValueError(f"must be 1 to {MAX_ID_LEN} characters long")
    for ch in value:
        if ch.isspace() or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise ValueError(f"must not contain whitespace or control characters ({ch!r})")
    return value


def _int(value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be an integer, got {json.dumps(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"must be an integer, got {json.dumps(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"must be an integer from {lo} to {hi}, got {json.dumps(value)}")
    return int(value)


def _seconds(value: object, *, allow_zero: bool) -> float:
    """A number of seconds or a duration string (``"15m"``), reference §4.3."""
    return parse_seconds(value, allow_zero=allow_zero, hi=MAX_TIMEOUT_S)


def _text(value: object, what: str, *, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {json.dumps(value)}")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if not value.strip():
        raise ValueError(f"must be a non-empty {what}")
    if max_len is not None and len(value) > max_len:
        raise ValueError(f"must be at most {max_len} characters long")
    return value


def validate_queue(value: object) -> str:
    """A queue name, for a job's ``queue``, a worker's ``--queue`` and ``queue pause``
    and the like alike."""
    return _queue_name(value)


def _queue_name(value: object) -> str:
    name = _text(value, "queue name", max_len=MAX_QUEUE_LEN)
    if any(ch.isspace() or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in name):
        raise ValueError("must not contain whitespace or control characters")
    return name


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must be an object of string to string, got {json.dumps(value)}")
    for key, item in value.items():
        if not key or "=" in key or "\x00" in key:
            raise ValueError(f"has an invalid variable name {key!r}")
        if not isinstance(item, str):
            raise ValueError(f"value of {key!r} must be a string, got {json.dumps(item)}")
        if "\x00" in item:
            raise ValueError(f"value of {key!r} must not contain a NUL character")
    return dict(value)


def to_new_job(raw: Mapping[str, Any], *, config: QueueConfig, now: int) -> NewJob:
    """Validate one decoded job object against reference §4.1; ``ValueError`` names the field."""
    if not raw.keys() <= _KNOWN_FIELDS:
        unknown = sorted(set(raw) - _KNOWN_FIELDS)
        raise ValueError(f"unknown field {unknown[0]!r}")
    if raw.get("command") is None:
        raise ValueError("missing required field 'command'")
    checks: dict[str, Any] = {}
    try:
        for name, value in raw.items():
            check = _FIELD_CHECKS.get(name)
            if check is not None and value is not None:
                checks[name] = check(value)
    except ValueError:
        _raise_first_error(raw)
    if "run_at" in checks and "delay" in checks:
        raise ValueError("give either run_at or delay, not both")
    run_at: int | None = checks.get("run_at")
    delay_ms: int | None = None
    if "delay" in checks:
        delay_ms = seconds_to_ms(checks["delay"])
        run_at = now + delay_ms
        if run_at > MAX_MS:
            raise ValueError("delay is out of range")
    timeout = checks.get("timeout", config.timeout_s)
    return NewJob(
        id=checks.get("id") or new_job_id(),
        command=checks["command"],
        max_retries=checks.get("max_retries", config.max_retries),
        priority=checks.get("priority", 0),
        queue=checks.get("queue", "default"),
        timeout_s=timeout,
        run_at=run_at,
        next_run_at=max(run_at, now) if run_at is not None else now,
        env=checks.get("env", {}),
        cwd=checks.get("cwd"),
        delay_ms=delay_ms,
        unique_key=checks.get("unique_key"),
        after=checks.get("after", ()),
        after_mode=checks.get("after_mode", AFTER_MODES[0]),
    )


def _after(value: object) -> tuple[str, ...]:
    """One id or an array of ids (reference §19.1); a repeated id counts once."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"must be a job id or an array of job ids, got {json.dumps(value)}")
    ids: list[str] = []
    for item in items:
        try:
            ids.append(validate_id(item))
        except ValueError as exc:
            raise ValueError(f"holds a bad job id {json.dumps(item)}: it {exc}") from None
    return tuple(dict.fromkeys(ids))


def _after_mode(value: object) -> str:
    if value not in AFTER_MODES:
        raise ValueError(f"must be completed or finished, got {json.dumps(value)}")
    return str(value)


def _raise_first_error(raw: Mapping[str, Any]) -> None:
    """Name the first bad field in a fixed order, whatever the order of the input."""
    for name, check in _FIELD_CHECKS.items():
        value = raw.get(name)
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None


def _run_at(value: object) -> int:
    return parse_when(value)


_FIELD_CHECKS: dict[str, Any] = {
    "id": validate_id,
    "command": lambda v: _text(v, "string"),
    "max_retries": lambda v: _int(v, 0, MAX_INT),
    "priority": lambda v: _int(v, -MAX_INT - 1, MAX_INT),
    "run_at": _run_at,
    "delay": lambda v: _seconds(v, allow_zero=True),
    "timeout": lambda v: _seconds(v, allow_zero=False),
    "queue": _queue_name,
    "env": _env,
    "cwd": lambda v: _text(v, "path"),
    "unique_key": lambda v: _text(v, "string", max_len=MAX_UNIQUE_KEY_LEN),
    "after": _after,
    "after_mode": _after_mode,
}
_KNOWN_FIELDS = INPUT_FIELDS | MANAGED_FIELDS | {"timeout_s"}


@dataclass(frozen=True, slots=True)
class Repeat:
    """A job of a batch whose id or unique key an earlier job of the same batch has."""

    raw: RawJob
    #: The id of that earlier job.
    other: str


def build_jobs(
    raws: list[RawJob], *, config: QueueConfig, now: int, repeats: list[Repeat] | None = None
) -> list[NewJob]:
    """Validate a whole batch; the first bad job stops it, named by its position.

    Two jobs with one id, or one ``unique_key``, are an error naming both, unless
    ``repeats`` is given (``--skip-duplicates``): the later one is then left out of
    the result and listed there.
    """
    jobs: list[NewJob] = []
    ids: dict[str, RawJob] = {}
    keys: dict[str, tuple[RawJob, str]] = {}
    for raw in raws:
        if not isinstance(raw.value, dict):
            kind = type(raw.value).__name__ if raw.value is not None else "null"
            raise InvalidJob(f"{raw.label}: expected a JSON object, got {_json_kind(kind)}")
        try:
            job = to_new_job(raw.value, config=config, now=now)
        except ValueError as exc:
            raise InvalidJob(f"{raw.label}: {exc}") from None
        first = ids.get(job.id)
        if first is not None:
            if repeats is None:
                raise InvalidJob(
                    f"{raw.label}: id {job.id!r} is used twice in this input ({first.label})"
                )
            repeats.append(Repeat(raw, job.id))
            continue
        holder = keys.get(job.unique_key) if job.unique_key is not None else None
        if holder is not None:
            if repeats is None:
                raise InvalidJob(
                    f"{raw.label}: unique_key {job.unique_key!r} is used twice in this input "
                    f"({holder[0].label} has it too)"
                )
            repeats.append(Repeat(raw, holder[1]))
            continue
        ids[job.id] = raw
        if job.unique_key is not None:
            keys[job.unique_key] = (raw, job.id)
        jobs.append(job)
    _check_order(jobs, ids)
    return jobs


def _check_order(jobs: list[NewJob], ids: Mapping[str, RawJob]) -> None:
    """A dependency in the same input must come earlier (reference §19.1), so no cycle can
    be made; ids from outside the input are checked by the store."""
    seen: set[str] = set()
    for job in jobs:
        raw = ids[job.id]
        for dep in job.after:
            if dep == job.id:
                raise InvalidJob(f"{raw.label}: after names the job itself ({dep!r})")
            if dep in ids and dep not in seen:
                raise InvalidJob(
                    f"{raw.label}: after names {dep!r}, which comes later in this input"
                    f" ({ids[dep].label}); a dependency must exist or come earlier"
                )
        seen.add(job.id)


def _json_kind(python_kind: str) -> str:
    return {
        "list": "an array",
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "a boolean",
    }.get(python_kind, python_kind)


def to_changes(fields: Mapping[str, Any], *, now: int) -> JobChanges:
    """Validate ``update``'s new values by the rules of an enqueued job's fields.

    ``fields`` holds job field names (``priority``, ``queue``, ``max_retries``,
    ``timeout``, ``run_at``, ``delay``) and ``now`` (a flag); ``None`` means not
    given. ``ValueError`` names the first bad field.
    """
    from queuectl.models_late import JobChanges

    given = {k: v for k, v in fields.items() if v is not None and v is not False}
    starts = [k for k in ("run_at", "delay", "now") if k in given]
    if len(starts) > 1:
        raise ValueError(f"give only one of run_at, delay and now, not {' and '.join(starts)}")
    checks: dict[str, Any] = {}
    for name, value in given.items():
        if name == "now":
            continue
        try:
            checks[name] = _FIELD_CHECKS[name](value)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
    run_at: int | None = checks.get("run_at")
    next_run_at = None if run_at is None else max(run_at, now)
    delay_ms: int | None = None
    if "delay" in checks or "now" in given:
        delay_ms = seconds_to_ms(checks.get("delay", 0.0))
        run_at = next_run_at = now + delay_ms
        if run_at > MAX_MS:
            raise ValueError("delay is out of range")
    return JobChanges(
        priority=checks.get("priority"),
        queue=checks.get("queue"),
        max_retries=checks.get("max_retries"),
        timeout_s=checks.get("timeout"),
        run_at=run_at,
        next_run_at=next_run_at,
        delay_ms=delay_ms,
    )

"""SQL text lives in ``.sql`` files beside this module, one folder per dialect.

``queries.sql`` holds named blocks, each opened by a ``-- name: <name>`` line, parsed
once per process. Only bound parameters carry values; no value is ever formatted
into SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_named(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


@cache
def queries(dialect: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath(dialect, "queries.sql").read_text("utf-8")
    return parse_named(text)


@cache
def migrations(dialect: str) -> tuple[tuple[int, str], ...]:
    """``(version, script)`` pairs in order, from ``migrations/NNN_name.sql``."""
    folder = resources.files(__package__).joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"(\d+)_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    found.sort()
    return tuple(found)

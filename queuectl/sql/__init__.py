"""SQL text lives in ``.sql`` files beside this module, one folder per dialect.

``queries.sql`` holds named blocks, each opened by a ``-- name: <name>`` line, parsed
once per process. Only bound parameters carry values; no value is ever formatted
into SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_named(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def _folder(dialect: str) -> Traversable:
    """The dialect's folder: a plain directory beside this module when there is one.

    Every command reads these files at start; going straight to the directory
    spares ``importlib.resources`` (and the tempfile, shutil and zipfile modules it
    imports, ~8 ms of a ~150 ms ``queuectl enqueue``). A zipped install still
    works through ``importlib.resources``.
    """
    here = Path(__file__).parent / dialect
    if here.is_dir():
        return here
    from importlib import resources

    return resources.files(__package__).joinpath(dialect)


@cache
def queries(dialect: str, name: str = "queries") -> dict[str, str]:
    """The named blocks of ``<dialect>/<name>.sql``."""
    return parse_named(_folder(dialect).joinpath(f"{name}.sql").read_text("utf-8"))


@cache
def migrations(dialect: str) -> tuple[tuple[int, str], ...]:
    """``(version, script)`` pairs in order, from ``migrations/NNN_name.sql``."""
    folder = _folder(dialect).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"(\d+)_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    found.sort()
    return tuple(found)

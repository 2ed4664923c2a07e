"""Module attributes loaded on first use (PEP 562).

``queuectl.models`` and ``queuectl.backends.base`` hand out classes that live in
modules of their own, so that importing them (as ``enqueue`` does) does not build
records only the worker, the operators' commands or the reads need (issue 15).
Written once here for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any


def first_use(namespace: dict[str, Any], source: str, names: Iterable[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``source`` when one of ``names`` is first
    read, and keeps the value in ``namespace`` so that later reads find it directly."""
    late = frozenset(names)
    owner = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name in late:
            value = getattr(import_module(source), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {owner!r} has no attribute {name!r}")

    return __getattr__

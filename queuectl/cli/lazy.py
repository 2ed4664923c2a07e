"""A click group whose subcommands live in modules imported only when used.

``queuectl enqueue`` should not pay for importing ``worker``, ``web``,
``schedule`` … (issue 15: a command starts in about the time Python takes to
import asyncio). The group knows each lazy command by name and where it is
defined; ``--help`` and tab completion still list them all (and import them then).
"""

from __future__ import annotations

import importlib
from typing import Any

import asyncclick as click


class LazyGroup(click.Group):
    """``click.Group`` plus ``lazy``: command name -> ``"module:attribute"``."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> click.Command:
        module, _, attribute = self.lazy[name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # a wrong table entry, not user input
            raise TypeError(f"{self.lazy[name]} is not a click command")
        return command

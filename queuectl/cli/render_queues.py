"""How ``queue list`` and ``why`` look on a terminal and in plain text."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.text import Text

from queuectl.cli.render import Column, Output, relative
from queuectl.models import JobState
from queuectl.queues import QueueInfo


def queues_table(out: Output, infos: Sequence[QueueInfo]) -> RenderableType:
    columns = [
        Column("QUEUE", key=True),
        Column("PAUSED"),
        Column("LIMIT", justify="right"),
        *(Column(s.value.upper(), justify="right", drop=3) for s in JobState),
        Column("OLDEST DUE", drop=1),
    ]
    rows: list[list[str | Text]] = []
    for info in infos:
        paused = "all" if info.paused_by_all else ("yes" if info.paused_by_name else "no")
        oldest = "-" if info.oldest_due_at is None else relative(info.oldest_due_at, out.now)
        rows.append(
            [
                info.name,
                out.styled(paused, "yellow" if info.paused else ""),
                str(info.limit) if info.limit else "-",
                *(str(info.counts[s]) for s in JobState),
                oldest,
            ]
        )
    return out.table(columns, rows, empty="no queues")

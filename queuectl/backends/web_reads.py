"""The stores' reads for the web dashboard and ``/metrics`` (``WebReader`` in ``base``).

One mixin for both dialects over the same named queries (``web_*`` in each
``queries.sql``), and the keyset-pagination rule decided once, here, for both.
Every read is bounded by what it returns or by an explicit window, never by the
size of the jobs table: a dashboard left open on a million jobs costs the same as
on ten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from queuectl.backends.rows import job_from_row
from queuectl.backends.store import Row
from queuectl.models import JobState, Outcome

if TYPE_CHECKING:
    from queuectl.backends.base import FinishedTotals, JobsPage

#: Above every ``seq``: "before the end" for the newest page.
NEWEST = 1 << 62


def _page(
    rows: Sequence[Mapping[str, Any]], window: tuple[int, int | None], limit: int, scan: int
) -> JobsPage:
    """The next cursor: after the last job shown, or after the window when it ran dry."""
    from queuectl.backends.base_late import JobsPage

    jobs = [job_from_row(r) for r in rows]
    count, low = window
    if len(rows) >= limit:
        return JobsPage(jobs, int(rows[-1]["seq"]), count)
    if count >= scan and low is not None:
        return JobsPage(jobs, int(low), count)
    return JobsPage(jobs, None, count)


def _args(
    state: JobState | None, queue: str | None, text: str | None, before: int | None
) -> dict[str, Any]:
    cursor = NEWEST if before is None else max(0, min(before, NEWEST))
    args: dict[str, Any] = {"before": cursor, "queue": queue, "text": text or None}
    if state is not None:
        args["state"] = state.value
    return args


def _counts(rows: Sequence[Sequence[Any]]) -> dict[str, dict[JobState, int]]:
    found: dict[str, dict[JobState, int]] = {}
    for queue, state, n in rows:
        per = found.setdefault(queue, {s: 0 for s in JobState})
        if state in JobState.__members__.values():
            per[JobState(state)] += int(n or 0)
    return dict(sorted(found.items()))


class WebReads:
    """Mixed into both stores beside ``SqlStore``, whose ``_rows`` runs a named query."""

    async def _rows(self, name: str, values: Mapping[str, Any]) -> Sequence[Row]:
        raise NotImplementedError

    async def jobs_page(
        self,
        *,
        state: JobState | None,
        queue: str | None,
        text: str | None,
        before: int | None,
        limit: int,
        scan: int,
    ) -> JobsPage:
        suffix = "" if state is None else "_state"
        args = _args(state, queue, text, before) | {"limit": limit, "scan": scan}
        rows = await self._rows("web_page" + suffix, args)
        [window] = await self._rows("web_window" + suffix, args)
        return _page(rows, (int(window["n"]), window["low"]), limit, scan)

    async def queue_counts(self) -> dict[str, dict[JobState, int]]:
        rows = await self._rows("web_queue_counts", {})
        return _counts([(r["queue"], r["state"], r["n"]) for r in rows])

    async def finished_by_minute(self, since: int) -> list[tuple[int, Outcome, int]]:
        rows = await self._rows("web_finished_by_minute", {"since": since})
        return [(int(r["minute"]), Outcome(r["outcome"]), int(r["n"])) for r in rows]

    async def oldest_due(self, queue: str, *, now: int) -> int | None:
        rows = await self._rows("web_oldest_due", {"queue": queue, "now": now})
        return int(rows[0]["next_run_at"]) if rows else None

    async def finished_totals(self) -> FinishedTotals:
        from queuectl.backends.base_late import FinishedTotals

        totals = FinishedTotals()
        for r in await self._rows("web_finished_totals", {}):
            totals.counts.setdefault(r["queue"], {})[r["outcome"]] = int(r["n"])
        for r in await self._rows("web_durations", {}):
            totals.buckets.setdefault(r["queue"], {})[int(r["le_ms"])] = int(r["n"])
            totals.sum_ms[r["queue"]] = totals.sum_ms.get(r["queue"], 0) + int(r["sum_ms"])
        return totals

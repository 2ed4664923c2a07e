"""The overview's chart: attempts finished and failed per minute, drawn as SVG here.

Only numbers and fixed words go into the drawing, and Jinja escapes the result
like everything else; no chart library, no script needed to see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from queuectl.models import Outcome

WIDTH = 720
HEIGHT = 180
_LEFT = 40
_BOTTOM = 20
_TOP = 10
#: Outcomes that are not failures: a completion, or a stop a person asked for.
NOT_FAILED = frozenset({Outcome.COMPLETED, Outcome.INTERRUPTED})


def split(per_minute: Sequence[tuple[int, dict[Outcome, int]]]) -> list[tuple[int, int, int]]:
    """``(minute, completed, failed)`` per minute."""
    return [
        (
            minute,
            counts.get(Outcome.COMPLETED, 0),
            sum(n for o, n in counts.items() if o not in NOT_FAILED),
        )
        for minute, counts in per_minute
    ]


def _nice_max(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def svg(per_minute: Sequence[tuple[int, dict[Outcome, int]]]) -> str:
    """Stacked bars (completed below, failed above), oldest minute on the left."""
    bars = split(per_minute)
    top = _nice_max(max((c + f for _, c, f in bars), default=0) or 1)
    plot_w = WIDTH - _LEFT - 4
    plot_h = HEIGHT - _BOTTOM - _TOP
    step = plot_w / max(len(bars), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'role="img" aria-label="attempts finished and failed per minute, last hour" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - 4}" '
        f'y2="{_TOP + plot_h}"/>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + 8}" text-anchor="end">{top}</text>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (minute, completed, failed) in enumerate(bars):
        x = _LEFT + i * step + 1
        w = max(step - 2, 1)
        h_ok = plot_h * completed / top
        h_bad = plot_h * failed / top
        label = datetime.fromtimestamp(minute / 1000, UTC).strftime("%H:%M UTC")
        parts.append(
            f"<g><title>{escape(label)}: {completed} completed, {failed} failed</title>"
            f'<rect class="ok" x="{x:.1f}" y="{_TOP + plot_h - h_ok:.1f}" '
            f'width="{w:.1f}" height="{h_ok:.1f}"/>'
            f'<rect class="bad" x="{x:.1f}" y="{_TOP + plot_h - h_ok - h_bad:.1f}" '
            f'width="{w:.1f}" height="{h_bad:.1f}"/></g>'
        )
    for i, text in ((0, f"-{len(bars)}m"), (len(bars) // 2, f"-{len(bars) // 2}m")):
        parts.append(
            f'<text class="tick" x="{_LEFT + i * step:.1f}" y="{HEIGHT - 4}">{text}</text>'
        )
    parts.append(
        f'<text class="tick" x="{WIDTH - 4}" y="{HEIGHT - 4}" text-anchor="end">now</text></svg>'
    )
    return "".join(parts)

"""Regenerate the README's terminal screenshots (docs/*.svg) from a real run.

A throwaway database gets a handful of jobs (some fail, one dies, two run for a
while), a real worker runs them with its rich log recorded, and a frame of
``status --watch`` is taken while the slow ones run. Both are saved with rich's
``Console.save_svg``, so the pictures are exactly what a terminal shows.

    python scripts/screenshots.py   # writes docs/status-watch.svg and docs/worker-log.svg,
                                    # and prints both as text
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from queuectl.cli.render import Output
from queuectl.cli.watch import overview_view
from queuectl.logs import setup_logging
from queuectl.models import JobState, StopMode
from queuectl.queue import Queue
from queuectl.worker import Worker, WorkerOptions

WIDTH = 110
JOBS: list[dict[str, object]] = [
    {"id": "S1-success", "command": "echo Success in Parallel"},
    {"id": "S2-fail", "command": "exit 1", "max_retries": 1},
    {"id": "build-frontend", "command": "sleep 30 && npm run build --workspace web"},
    {"id": "nightly-report", "command": "sleep 30; python -m reports.nightly --since yesterday"},
    {"id": "flaky-upload", "command": "exit 75", "max_retries": 3},
    {"id": "resize-images", "command": "sleep 0.3; echo 120 images resized"},
    {"id": "fetch-feed", "command": "curl -fsS http://feeds.invalid/ || exit 7", "max_retries": 0},
]


def _console() -> Console:
    # Recorded, not shown: the SVG and the text export are the output.
    return Console(
        file=io.StringIO(),
        record=True,
        width=WIDTH,
        force_terminal=True,
        color_system="truecolor",
    )


async def _until(queue: Queue, done: object) -> None:
    for _ in range(600):
        view = await queue.overview()
        if callable(done) and done(view):
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the demo jobs did not reach the expected state")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = str(Path(tmp) / "demo.db")
        async with Queue.open(target) as queue:
            await queue.set_setting("backoff-base", "3")
            await queue.enqueue(*JOBS)
            log = _console()
            setup_logging(logging.INFO, "rich", console=log)
            worker = Worker(
                queue.backend,
                WorkerOptions(target=target, count=4, install_signal_handlers=False),
            )
            task = asyncio.create_task(worker.run())
            await _until(
                queue,
                lambda v: (
                    v.counts[JobState.DEAD] >= 2
                    and v.counts[JobState.PROCESSING] == 2
                    and v.next_retry is not None
                ),
            )
            await asyncio.sleep(2.5)  # let the slow jobs run for a visible while
            frame = overview_view(
                Output(tty=True, width=WIDTH, now=queue.clock()),
                await queue.overview(),
                target="~/.local/share/queuectl/queuectl.db",
                height=34,
            )
            worker.stop(StopMode.NOW)
            await task
        watch = _console()
        watch.print(frame)
        # The same pictures as text, for the README's transcript.
        print(watch.export_text(clear=False))
        print(log.export_text(clear=False))
        watch.save_svg(str(out / "status-watch.svg"), title="queuectl status --watch")
        log.save_svg(str(out / "worker-log.svg"), title="queuectl worker start --count 4")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(folder))
    print(f"wrote {folder / 'status-watch.svg'} and {folder / 'worker-log.svg'}")

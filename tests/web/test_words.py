"""The dashboard's words are the terminal's."""

from __future__ import annotations

from queuectl.cli.render import Output, status_view
from queuectl.models import JobState, WorkerInfo
from queuectl.queue import Status
from queuectl.web import words


def worker(wid: str, host: str, count: int) -> WorkerInfo:
    return WorkerInfo(wid, host, 1, 0, 0, count, 0)


def test_the_workers_line_is_the_status_commands_last_line() -> None:
    for workers in ([], [worker("a", "h1", 2)], [worker("a", "h1", 2), worker("b", "h2", 3)]):
        status = Status(dict.fromkeys(JobState, 0), workers)
        printed = Output(tty=False).plain(status_view(Output(tty=False), status))
        assert printed.splitlines()[-1] == words.workers_line(workers)


def test_env_values_are_never_shown() -> None:
    from queuectl.models import Job

    job = Job("j", "true", JobState.PENDING, 0, 3, 0, "default", None, None, 0, 0, 0, None, None,
              {"API_KEY": "s3cret"}, None)  # fmt: skip
    fields = dict(words.job_fields(job, 0))
    assert fields["env"] == "API_KEY=(hidden)"

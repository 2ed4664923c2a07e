"""``queuectl web`` as a real process: options, refusals, signals, and its streams."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import QUEUECTL, WorkerProcess, assert_error, cli_env, run_cli, wait_for
from tests.web.conftest import WebProcess, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.mark.sqlite_only
def test_a_non_loopback_host_without_a_token_is_refused(db: str) -> None:
    result = run_cli(db, "web", "--host", "0.0.0.0", "--port", str(free_port()))
    assert_error(result, 1, "needs a token", "QUEUECTL_WEB_TOKEN")
    assert result.stdout == ""


@pytest.mark.sqlite_only
def test_a_port_in_use_is_one_error_line(db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(db, "web", "--port", str(port))
    assert_error(result, 1, f"cannot listen on 127.0.0.1:{port}")


@pytest.mark.sqlite_only
def test_it_prints_its_url_and_stops_cleanly_on_sigint_and_sigterm(db: str, web_process) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        web: WebProcess = web_process(db)
        assert web.banner.startswith(f"queuectl web: {web.url}/")
        assert httpx.get(f"{web.url}/api/status").json()["workers"] == 0
        code, err = web.stop(sig)
        assert code == 0, err
        assert "Traceback" not in err


@pytest.mark.sqlite_only
def test_a_token_from_the_environment_opens_other_interfaces(db: str, web_process) -> None:
    web: WebProcess = web_process(db, "--host", "0.0.0.0", env={"QUEUECTL_WEB_TOKEN": "abc"})
    assert "needs the token" in web.banner and "abc" not in web.banner
    url = f"http://127.0.0.1:{web.port}/api/status"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer abc"}).status_code == 200


def test_the_event_stream_tells_of_a_new_job_within_two_seconds(db: str, web_process) -> None:
    web: WebProcess = web_process(db)
    with httpx.stream("GET", f"{web.url}/events", timeout=10) as events:
        lines = events.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["jobs"]["pending"] == 0
        assert run_cli(db, "enqueue", "-c", "true").returncode == 0
        enqueued = time.monotonic()
        for line in lines:
            if line.startswith("data:") and json.loads(line[5:])["jobs"]["pending"] == 1:
                break
        assert time.monotonic() - enqueued < 2.5
        # An open page does not keep the server from stopping.
        stopping = time.monotonic()
        code, err = web.stop()
        assert code == 0 and "Traceback" not in err, err
        assert time.monotonic() - stopping < 10


def test_a_running_attempts_output_streams_as_it_is_written(
    db: str, web_process, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second"
    assert run_cli(db, "enqueue", "-c", command, "--id", "slow").returncode == 0
    web: WebProcess = web_process(db)
    with WorkerProcess(db, "--count", "1"):
        with httpx.stream("GET", f"{web.url}/jobs/slow/stream", timeout=30) as stream:
            texts: list[str] = []
            notices: list[str] = []
            event = "message"
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data:") and event == "notice":
                    notices.append(json.loads(line[5:]))
                elif line.startswith("data:") and event == "message":
                    texts.append(json.loads(line[5:]))
                    if "first" in "".join(texts) and not go.exists():
                        go.touch()  # only now may the command go on
                elif line == "" and event == "end":
                    break
                elif line == "":
                    event = "message"
        assert "".join(texts) == "first\nsecond\n"
        assert notices in ([], ["job slow is pending; waiting for it to start"])
        wait_for(lambda: "completed" in run_cli(db, "show", "slow").stdout)


@pytest.mark.sqlite_only
def test_a_waiting_output_stream_does_not_hold_up_a_stop(db: str, web_process) -> None:
    assert run_cli(db, "enqueue", "-c", "true", "--id", "never-runs").returncode == 0
    web: WebProcess = web_process(db)
    with httpx.stream("GET", f"{web.url}/jobs/never-runs/stream", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data:")) == (
            'data: "job never-runs is pending; waiting for it to start"'
        )
        stopping = time.monotonic()
        code, err = web.stop()
    assert code == 0 and "Traceback" not in err and "ERROR" not in err, err
    assert time.monotonic() - stopping < 10


@pytest.mark.sqlite_only
def test_other_commands_do_not_import_the_web_stack(db: str) -> None:
    code = (
        "import atexit, sys\n"
        "heavy = ('starlette', 'uvicorn', 'jinja2', 'prometheus_client')\n"
        "atexit.register(lambda: sys.stderr.write('WEB=%s\\n' % sorted("
        "m for m in sys.modules if m.split('.')[0] in heavy)))\n"
        "from queuectl.cli import main\n"
        "main(['enqueue', '-c', 'true'])\n"
    )
    result = subprocess.run(
        [str(Path(QUEUECTL).with_name("python")), "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(db),
        timeout=120,
    )
    assert "WEB=[]" in result.stderr, result.stderr

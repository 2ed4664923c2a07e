from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from queuectl.config import MAX_INT, QueueConfig
from queuectl.exceptions import InvalidJob
from queuectl.jobspec import MAX_ID_LEN, build_jobs, parse_input, to_new_job
from queuectl.models import NewJob

NOW = 1_800_000_000_000  # 2027-01-15T08:00:00Z
CONFIG = QueueConfig()


def jobs_of(text: str, config: QueueConfig = CONFIG) -> list[NewJob]:
    return build_jobs(parse_input(text), config=config, now=NOW)


def job(config: QueueConfig = CONFIG, **fields: Any) -> NewJob:
    return to_new_job({"command": "true", **fields}, config=config, now=NOW)


def error_of(text: str) -> str:
    with pytest.raises(InvalidJob) as info:
        jobs_of(text)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+05:30 (a POSIX TZ string needs no tz database)."""
    monkeypatch.setenv("TZ", "IST-05:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class TestInputShapes:
    def test_one_object(self) -> None:
        [only] = jobs_of('{"id": "a", "command": "echo a"}')
        assert (only.id, only.command) == ("a", "echo a")

    def test_array_of_objects_keeps_order(self) -> None:
        text = json.dumps([{"id": f"j{i}", "command": f"echo {i}"} for i in range(5)])
        assert [j.id for j in jobs_of(text)] == ["j0", "j1", "j2", "j3", "j4"]

    def test_json_lines_skip_blank_lines_and_accept_crlf(self) -> None:
        text = '{"id":"a","command":"x"}\r\n\r\n  \n{"id":"b","command":"y"}\r\n'
        assert [j.id for j in jobs_of(text)] == ["a", "b"]

    def test_pretty_printed_single_object(self) -> None:
        text = json.dumps({"id": "p", "command": "true"}, indent=4)
        assert [j.id for j in jobs_of(text)] == ["p"]

    def test_json_lines_with_unicode_line_separators_inside_strings(self) -> None:
        # U+2028, U+2029 and U+0085 may stand unescaped inside a JSON string; a
        # JSON Lines record holding one is still one record on one line.
        lines = [
            json.dumps({"id": "a", "command": "echo a\u2028b"}, ensure_ascii=False),
            json.dumps({"id": "b", "command": "echo \u2029 \x85"}, ensure_ascii=False),
        ]
        jobs = jobs_of("\n".join(lines) + "\n")
        assert [(j.id, j.command) for j in jobs] == [
            ("a", "echo a\u2028b"),
            ("b", "echo \u2029 \x85"),
        ]

    @pytest.mark.parametrize("text", ["", "   ", "\n\n", "[]"])
    def test_nothing_given_is_an_error(self, text: str) -> None:
        assert "no job given" in error_of(text)

    def test_array_element_that_is_not_an_object_is_named_by_index(self) -> None:
        message = error_of('[{"command":"a"}, {"command":"b"}, 7]')
        assert message.startswith("job 3: expected a JSON object, got a number")

    @pytest.mark.parametrize(
        ("value", "kind"), [("null", "null"), ('"x"', "a string"), ("[1]", "an array")]
    )
    def test_json_lines_record_that_is_not_an_object(self, value: str, kind: str) -> None:
        message = error_of('{"command":"a"}\n' + value + "\n")
        assert message == f"job 2: expected a JSON object, got {kind}"

    def test_invalid_json_in_one_object(self) -> None:
        assert error_of('{"command": "a"').startswith("job 1: invalid JSON")


class TestPositions:
    def test_blank_lines_shift_the_line_but_not_the_job_number(self) -> None:
        text = '{"command":"a"}\n{"command":"b"}\n\n{"command":"c","oops":1}\n'
        assert error_of(text) == "job 3 (line 4): unknown field 'oops'"

    def test_invalid_json_line_is_named_with_its_line(self) -> None:
        text = '{"command":"a"}\n\n{"command": }\n{"command":"d"}\n'
        assert error_of(text).startswith("job 2 (line 3): invalid JSON")

    def test_line_is_not_repeated_when_it_equals_the_position(self) -> None:
        text = '{"command":"a"}\n{"command":""}\n'
        assert error_of(text) == "job 2: command must be a non-empty string"

    def test_array_position_is_one_based(self) -> None:
        text = json.dumps([{"command": "a"}, {"command": "b", "priority": "high"}])
        assert error_of(text).startswith("job 2: priority must be an integer")

    def test_the_first_bad_job_stops_the_batch(self) -> None:
        text = json.dumps([{"command": "a"}, {"max_retries": -1}, {"command": 5}])
        assert error_of(text).startswith("job 2:")

    def test_an_id_used_twice_names_both_jobs(self) -> None:
        text = '{"id":"x","command":"a"}\n{"id":"y","command":"a"}\n{"id":"x","command":"b"}\n'
        assert error_of(text) == "job 3: id 'x' is used twice in this input (job 1)"


class TestFields:
    def test_only_command_is_required_and_defaults_follow_config(self) -> None:
        config = QueueConfig(max_retries=5, job_timeout=30)
        new = job(config)
        assert new.command == "true"
        assert new.max_retries == 5
        assert new.timeout_s == 30
        assert new.priority == 0
        assert new.queue == "default"
        assert new.env == {}
        assert new.cwd is None
        assert new.run_at is None
        assert new.next_run_at == NOW

    def test_job_timeout_zero_means_no_timeout(self) -> None:
        assert job(QueueConfig(job_timeout=0)).timeout_s is None

    def test_generated_ids_are_16_hex_digits_and_unique(self) -> None:
        ids = {job().id for _ in range(200)}
        assert len(ids) == 200
        assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)

    def test_every_field_is_taken(self, tmp_path: Any) -> None:
        new = job(
            id="build-42",
            command="make",
            max_retries=0,
            priority=-7,
            timeout=2.5,
            queue="emails",
            env={"A": "1", "B": ""},
            cwd=str(tmp_path),
        )
        assert new == NewJob(
            id="build-42",
            command="make",
            max_retries=0,
            priority=-7,
            queue="emails",
            timeout_s=2.5,
            run_at=None,
            next_run_at=NOW,
            env={"A": "1", "B": ""},
            cwd=str(tmp_path),
        )

    def test_null_means_not_given(self) -> None:
        new = job(
            id=None,
            max_retries=None,
            priority=None,
            run_at=None,
            delay=None,
            timeout=None,
            queue=None,
            env=None,
            cwd=None,
        )
        assert (new.max_retries, new.priority, new.queue, new.timeout_s) == (3, 0, "default", None)
        assert new.run_at is None
        assert len(new.id) == 16

    def test_unknown_field_is_named(self) -> None:
        with pytest.raises(ValueError, match="unknown field 'colour'"):
            job(colour="red")

    def test_missing_command(self) -> None:
        with pytest.raises(ValueError, match="missing required field 'command'"):
            to_new_job({"id": "a"}, config=CONFIG, now=NOW)

    def test_managed_fields_are_accepted_and_ignored(self) -> None:
        new = job(
            state="dead",
            attempts=9,
            created_at="2020-01-01T00:00:00.000Z",
            updated_at="garbage",
            next_run_at="2020-01-01T00:00:00.000Z",
            last_error="boom",
            exit_code=3,
            worker="abc",
            history=[{"attempt": 1}],
        )
        assert new.next_run_at == NOW
        assert new.max_retries == CONFIG.max_retries

    def test_a_list_json_record_enqueues_again_under_a_new_id(self) -> None:
        record = {
            "id": "old",
            "command": "echo again",
            "state": "completed",
            "attempts": 1,
            "max_retries": 2,
            "priority": 4,
            "queue": "q1",
            "timeout": None,
            "run_at": None,
            "next_run_at": None,
            "created_at": "2026-11-29T13:42:23.428Z",
            "updated_at": "2026-11-29T13:42:23.596Z",
            "last_error": None,
            "exit_code": 0,
            "env": {"X": "1"},
            "cwd": None,
            "worker": None,
        }
        record["id"] = "new"
        [new] = jobs_of(json.dumps(record))
        assert (new.id, new.command, new.max_retries, new.priority, new.queue, new.env) == (
            "new",
            "echo again",
            2,
            4,
            "q1",
            {"X": "1"},
        )
        assert new.next_run_at == NOW


class TestIdValidation:
    @pytest.mark.parametrize("good", ["a", "S1-success", "job.1:x/y", "ü", "x" * MAX_ID_LEN])
    def test_accepted(self, good: str) -> None:
        assert job(id=good).id == good

    @pytest.mark.parametrize(
        ("bad", "reason"),
        [
            ("", "must be 1 to 128 characters long"),
            ("x" * (MAX_ID_LEN + 1), "must be 1 to 128 characters long"),
            ("a b", "whitespace or control"),
            ("a\tb", "whitespace or control"),
            ("a\nb", "whitespace or control"),
            ("a\x01b", "whitespace or control"),
            ("a\u00a0b", "whitespace or control"),
            ("a\u2028b", "whitespace or control"),
            (5, "must be a string"),
            (True, "must be a string"),
        ],
    )
    def test_rejected(self, bad: object, reason: str) -> None:
        with pytest.raises(ValueError, match=f"^id .*{reason}"):
            job(id=bad)


class TestFieldValidation:
    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("command", "", "command must be a non-empty string"),
            ("command", "   ", "command must be a non-empty string"),
            ("command", "echo \x00", "command must not contain a NUL"),
            ("command", 5, "command must be a string"),
            ("command", ["ls"], "command must be a string"),
            ("max_retries", -1, "max_retries must be an integer from 0 to"),
            ("max_retries", MAX_INT + 1, "max_retries must be an integer from 0 to"),
            ("max_retries", 1.5, "max_retries must be an integer"),
            ("max_retries", True, "max_retries must be an integer, got true"),
            ("max_retries", "3", 'max_retries must be an integer, got "3"'),
            ("priority", 0.5, "priority must be an integer"),
            ("priority", False, "priority must be an integer"),
            ("priority", "1", "priority must be an integer"),
            ("priority", 2**63, "priority must be an integer from"),
            ("delay", -1, "delay must be a number of seconds >= 0"),
            ("delay", "5x", "delay must be a number of seconds or a number with one unit"),
            ("delay", True, "delay must be a number of seconds"),
            ("timeout", 0, "timeout must be a number of seconds > 0"),
            ("timeout", -3, "timeout must be a number of seconds > 0"),
            ("timeout", "1.5.h", "timeout must be a number of seconds or a number with one unit"),
            ("timeout", 1e12, "timeout must be at most"),
            ("queue", "", "queue must be a non-empty queue name"),
            ("queue", "a b", "queue must not contain whitespace"),
            ("queue", "q" * 65, "queue must be at most 64 characters"),
            ("queue", 3, "queue must be a string"),
            ("env", ["A=1"], "env must be an object of string to string"),
            ("env", "A=1", "env must be an object of string to string"),
            ("env", {"A": 1}, "env value of 'A' must be a string"),
            ("env", {"A": None}, "env value of 'A' must be a string"),
            ("env", {"": "x"}, "env has an invalid variable name"),
            ("env", {"A=B": "x"}, "env has an invalid variable name"),
            ("env", {"A": "x\x00"}, "env value of 'A' must not contain a NUL"),
            ("cwd", 5, "cwd must be a string"),
            ("cwd", "", "cwd must be a non-empty path"),
            ("run_at", True, "run_at must be an ISO-8601 time or Unix seconds"),
            ("run_at", "tomorrow", "run_at cannot parse 'tomorrow'"),
            ("run_at", [2027], "run_at must be an ISO-8601 time or Unix seconds"),
            ("run_at", -5, "run_at Unix seconds out of range"),
        ],
    )
    def test_rejected_with_the_field_named(self, field: str, value: object, reason: str) -> None:
        with pytest.raises(ValueError) as info:
            job(**{field: value})
        assert str(info.value).startswith(reason)

    def test_integral_floats_are_integers(self) -> None:
        new = job(max_retries=2.0, priority=-3.0)
        assert (new.max_retries, new.priority) == (2, -3)
        assert type(new.max_retries) is int

    def test_priority_takes_the_full_32_bit_range(self) -> None:
        assert job(priority=MAX_INT).priority == MAX_INT
        assert job(priority=-MAX_INT - 1).priority == -MAX_INT - 1

    def test_fractional_timeout(self) -> None:
        assert job(timeout=0.25).timeout_s == 0.25

    def test_the_batch_error_names_the_job_and_the_field(self) -> None:
        assert error_of('{"command":"a","timeout":0}') == (
            "job 1: timeout must be a number of seconds > 0, or a number with one unit"
            " s, m, h or d (90s, 15m, 2h, 7d, 1.5h)"
        )


class TestWhen:
    def test_delay_sets_run_at_to_now_plus_delay(self) -> None:
        new = job(delay=30)
        assert new.run_at == NOW + 30_000
        assert new.next_run_at == NOW + 30_000

    def test_fractional_delay_keeps_milliseconds(self) -> None:
        assert job(delay=1.2345).run_at == NOW + 1_234  # rounded to the millisecond

    def test_zero_delay_runs_now(self) -> None:
        new = job(delay=0)
        assert (new.run_at, new.next_run_at) == (NOW, NOW)

    def test_delay_and_run_at_together_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="either run_at or delay, not both"):
            job(delay=5, run_at="2030-01-01T00:00:00Z")

    def test_delay_with_null_run_at_is_fine(self) -> None:
        assert job(delay=5, run_at=None).run_at == NOW + 5_000

    def test_run_at_with_z(self) -> None:
        new = job(run_at="2027-01-15T08:00:10Z")
        assert new.run_at == NOW + 10_000
        assert new.next_run_at == NOW + 10_000

    def test_run_at_with_an_offset_is_honoured(self) -> None:
        assert job(run_at="2027-01-15T10:00:10+02:00").run_at == NOW + 10_000
        assert job(run_at="2027-01-15T03:00:10.500-05:00").run_at == NOW + 10_500

    def test_run_at_without_offset_is_local_time(self, local_tz: None) -> None:
        assert job(run_at="2027-01-15T13:30:10").run_at == NOW + 10_000

    def test_run_at_as_unix_seconds(self) -> None:
        assert job(run_at=1_800_000_020).run_at == NOW + 20_000
        assert job(run_at=1_800_000_020.25).run_at == NOW + 20_250
        assert job(run_at="1800000020").run_at == NOW + 20_000

    def test_run_at_in_the_past_is_due_now_but_kept_as_asked(self) -> None:
        new = job(run_at="2020-01-01T00:00:00Z")
        assert new.run_at == 1_577_836_800_000
        assert new.next_run_at == NOW

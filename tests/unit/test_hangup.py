"""A stream whose reader or terminal is gone is muted, not fatal (``queuectl.hangup``)."""

from __future__ import annotations

import errno
import os
import pty

import pytest

from queuectl.hangup import output_lost, terminal_gone


class _Stream:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_a_pipe_without_reader_is_muted_after_epipe() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError) as info:
            os.write(write_end, b"x")
        assert output_lost(info.value, _Stream(write_end))
        assert os.write(write_end, b"now /dev/null") == len(b"now /dev/null")
    finally:
        os.close(write_end)


def test_other_errors_are_not_a_lost_stream() -> None:
    assert not output_lost(OSError(errno.ENOSPC, "full"), None)
    assert not output_lost(ValueError("not an OSError"), None)
    assert not output_lost(None, None)


def test_a_hung_up_terminal_is_told_from_a_live_one() -> None:
    master, slave = pty.openpty()
    try:
        assert not terminal_gone(slave)
        os.close(master)  # the terminal window closes
        assert terminal_gone(slave)
    finally:
        os.close(slave)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        assert not terminal_gone(write_end)  # a pipe: only a real write can tell
    finally:
        os.close(write_end)

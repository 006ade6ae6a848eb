"""djangotasks/daemon/lease.py without a daemon: the lease's length, what the watchdog makes
of a message (the daemon's, or junk a task wrote to the inherited pipe), and the daemon's
side of the pipe when it is full or the watchdog is gone."""

from __future__ import annotations

import os
import select

import pytest

from djangotasks.daemon import lease
from djangotasks.daemon.lease import Watchdog, lease_seconds
from tests.helpers import fd_closed


def test_the_lease_ends_one_heartbeat_before_others_declare_the_daemon_lost():
    assert lease_seconds(worker_timeout=30.0, heartbeat_interval=5.0) == 25.0


def test_a_message_is_the_lease_end_and_the_groups_to_kill():
    assert lease._parse(b"1234.5 101 202") == (1234.5, [101, 202])
    assert lease._parse(b"99.25") == (99.25, [])


@pytest.mark.parametrize(
    "line",
    [
        b"",  # nothing: no lease end
        b"soon 101",
        b"1234.5 101 two",
        b"1234.5 101.5",  # not a whole number
        b"1234.5 1",  # init's group, and
        b"1234.5 0",  # the caller's own group: never killed
        b"1234.5 -101",
        b"1234.5 2147483648",  # past the largest pid
        b"1234.5 nan",
        b"\xff\xfe 101",
    ],
)
def test_anything_else_leaves_nothing_to_kill(line):
    assert lease._parse(line) == (None, [])


def test_the_expiry_message_names_the_groups_it_killed():
    message = lease._expired_message([101, 202])
    assert message.endswith(b"killed task process group(s) 101, 202\n")
    assert b"lease ran out" in message


@pytest.fixture
def watchdog_pipe():
    """A watchdog on one end of a pipe, the test on the other (no process forked)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watchdog = Watchdog()
    watchdog._write_fd = write_fd
    yield watchdog, read_fd
    watchdog.close()
    os.close(read_fd)


def test_an_update_sends_the_whole_state_once(watchdog_pipe):
    watchdog, read_fd = watchdog_pipe
    watchdog.update(1234.5, (101, 202))
    watchdog.update(1234.5, (101, 202))  # unchanged: not sent again
    assert os.read(read_fd, 1000) == b"1234.5 101 202\n"
    watchdog.update(1240.0, ())
    assert os.read(read_fd, 1000) == b"1240.0\n"


def test_a_full_pipe_drops_the_update_and_the_next_one_repairs_it(watchdog_pipe):
    watchdog, read_fd = watchdog_pipe
    filler = b"x" * 65536
    while True:
        try:
            os.write(watchdog._write_fd, filler)
        except BlockingIOError:
            break
    watchdog.update(1234.5, (101,))  # never blocks
    assert watchdog._sent is None  # so the same state is sent again next time
    while select.select([read_fd], [], [], 0)[0]:  # the watchdog reads it all
        os.read(read_fd, 65536)
    watchdog.update(1234.5, (101,))
    assert watchdog._sent == (1234.5, (101,))
    assert os.read(read_fd, 1000) == b"1234.5 101\n"


def test_an_update_to_a_watchdog_that_died_is_dropped():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    watchdog = Watchdog()
    watchdog._write_fd = write_fd
    watchdog.update(1234.5, (101,))  # BrokenPipeError: the daemon starts another watchdog
    assert watchdog._sent is None
    watchdog.exited()
    assert watchdog.pid is None
    assert watchdog._write_fd is None
    assert fd_closed(write_fd)


def test_a_watchdog_never_started_ignores_updates_and_closing():
    watchdog = Watchdog()
    watchdog.update(1234.5, (101,))
    watchdog.close()
    watchdog.close()
    assert watchdog._sent is None

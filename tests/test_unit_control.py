"""djangotasks/daemon/control.py without a daemon: the locked pid file, and ``taskd stop`` as
seen from the command's side (the daemon is played by a small process holding the lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from djangotasks.daemon import control
from djangotasks.daemon.control import ControlError, PidFile, read_pid, running_pid

# Holds the pid file's lock as taskd does; SIGTERM ends it, or is ignored with "ignore".
HOLDER = """
import fcntl, os, signal, sys, time
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("holding", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[object]:
    """``holder(on_sigterm)``: a process that holds ``tmp_path/taskd.pid``; killed after."""
    started: list[subprocess.Popen[str]] = []

    def start(on_sigterm: str = "die") -> subprocess.Popen[str]:
        popen = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / "taskd.pid"), on_sigterm],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(popen)
        assert popen.stdout is not None
        assert popen.stdout.readline() == "holding\n"
        return popen

    yield start
    for popen in started:
        popen.kill()
        popen.wait()
        assert popen.stdout is not None
        popen.stdout.close()


def test_the_pid_file_holds_the_pid_while_acquired_and_is_gone_after(tmp_path):
    path = tmp_path / "run" / "taskd.pid"
    pidfile = PidFile(path)
    pidfile.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    assert running_pid(path) == os.getpid()
    with pytest.raises(ControlError, match=rf"already running \(pid {os.getpid()}, pid file"):
        PidFile(path).acquire()
    pidfile.release()
    assert not path.exists()
    assert running_pid(path) is None
    pidfile.release()  # twice: nothing left to release


def test_a_stale_pid_file_names_no_running_daemon(tmp_path):
    path = tmp_path / "taskd.pid"
    path.write_text("12345\n")  # left by a daemon killed outright: nobody holds its lock
    assert read_pid(path) == 12345
    assert running_pid(path) is None
    pidfile = PidFile(path)
    pidfile.acquire()  # and a new daemon takes it over
    assert read_pid(path) == os.getpid()
    pidfile.release()


@pytest.mark.parametrize("content", ["", "not a pid\n", "0\n"])
def test_a_pid_file_without_a_pid_reads_as_none(tmp_path, content):
    path = tmp_path / "taskd.pid"
    path.write_text(content)
    assert read_pid(path) is None
    assert read_pid(tmp_path / "missing.pid") is None


def test_a_pid_file_that_cannot_be_created_is_a_configuration_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ImproperlyConfigured, match="Cannot write the taskd pid file"):
        PidFile(tmp_path / "a-file" / "taskd.pid").acquire()


def test_stop_without_a_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(ControlError, match="taskd is not running"):
        control.stop(tmp_path / "taskd.pid", wait=1)


def test_detach_refuses_while_a_daemon_holds_the_pid_file(tmp_path, holder):
    daemon = holder()
    with pytest.raises(ControlError, match=rf"already running \(pid {daemon.pid},"):
        control.detach(lambda: None, tmp_path / "taskd.pid", tmp_path / "taskd.log")


def test_stop_returns_once_the_daemon_let_go_of_the_pid_file(tmp_path, holder):
    daemon = holder()
    assert control.stop(tmp_path / "taskd.pid", wait=10) == daemon.pid
    assert daemon.wait(10) == -signal.SIGTERM


def test_stop_now_sends_sigterm_twice(tmp_path, holder):
    daemon = holder()
    assert control.stop(tmp_path / "taskd.pid", wait=10, now=True) == daemon.pid
    assert daemon.wait(10) == -signal.SIGTERM


def test_a_daemon_that_does_not_stop_in_time_is_reported(tmp_path, holder):
    daemon = holder("ignore")
    with pytest.raises(ControlError, match=rf"taskd \(pid {daemon.pid}\) is still stopping"):
        control.stop(tmp_path / "taskd.pid", wait=0.3)
    assert daemon.poll() is None

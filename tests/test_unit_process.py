"""djangotasks/daemon/process.py without a daemon: exit statuses as reasons, signalling a
group that is gone, and the pipes of a task process when the second pair cannot be had."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from djangotasks.daemon import process
from djangotasks.daemon.process import TaskProcess, describe_exit
from djangotasks.models import Task
from tests.helpers import fd_closed


def killed_by(sig: int) -> int:
    """The ``waitpid`` status of a process that ``sig`` killed."""
    return sig  # WTERMSIG is the low 7 bits, with no core dump flag


def test_exit_status_zero_is_success_without_a_reason():
    assert describe_exit(0) == (True, "")


@pytest.mark.parametrize("code", [1, 3, 70, 255])
def test_a_non_zero_exit_status_is_the_reason(code):
    assert describe_exit(code << 8) == (False, f"Exited with status {code}.")  # as waitpid()


@pytest.mark.parametrize(
    ("sig", "name"), [(signal.SIGKILL, "SIGKILL"), (signal.SIGTERM, "SIGTERM")]
)
def test_a_signal_is_named(sig, name):
    assert describe_exit(killed_by(sig)) == (False, f"Killed by {name}.")


def test_a_signal_without_a_name_is_given_by_number():
    # Real-time signals between SIGRTMIN and SIGRTMAX have no name of their own in Python.
    sig = signal.SIGRTMIN + 3
    with pytest.raises(ValueError, match="is not a valid Signals"):
        signal.Signals(sig)
    assert describe_exit(killed_by(sig)) == (False, f"Killed by signal {sig}.")


def test_a_real_waitpid_status_reads_as_its_exit_code():
    child = subprocess.Popen([sys.executable, "-c", "import os; os._exit(7)"])
    _, status = os.waitpid(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert describe_exit(status) == (False, "Exited with status 7.")


def _task_process(pid: int) -> TaskProcess:
    return TaskProcess(Task(pk=1, name="tests.unit"), pid, output_fd=-1, control_fd=-1, started=0)


def test_a_task_process_leads_its_own_group_and_has_exited_once_its_status_is_known():
    proc = _task_process(12345)
    assert proc.pgid == 12345
    assert not proc.exited
    proc.exit_status = 0
    assert proc.exited


def test_signalling_a_group_that_is_gone_is_not_an_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    child.wait()  # reaped: its group no longer exists
    proc = _task_process(child.pid)
    proc.signal_group(signal.SIGTERM)


def test_signalling_a_group_the_daemon_may_not_signal_is_not_an_error(monkeypatch):
    def refused(pgid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "killpg", refused)
    proc = _task_process(12345)
    proc.signal_group(signal.SIGKILL)


def test_pipes_are_non_blocking_on_the_daemons_side():
    output_r, output_w, control_r, control_w = process._pipes()
    try:
        assert not os.get_blocking(output_r)
        assert not os.get_blocking(control_r)
        assert os.get_blocking(output_w)
        assert os.get_blocking(control_w)
    finally:
        process._close(output_r, output_w, control_r, control_w)


def test_out_of_descriptors_for_the_second_pipe_gives_the_first_back(monkeypatch):
    made: list[tuple[int, int]] = []
    real_pipe = os.pipe

    def pipe() -> tuple[int, int]:
        if made:
            raise OSError(24, "Too many open files")
        made.append(real_pipe())
        return made[0]

    monkeypatch.setattr(os, "pipe", pipe)
    with pytest.raises(OSError, match="Too many open files"):
        process._pipes()
    assert all(fd_closed(fd) for fd in made[0])


def test_closing_descriptors_that_are_already_closed_is_quiet():
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    process._close(read_fd, write_fd)
    assert fd_closed(read_fd)

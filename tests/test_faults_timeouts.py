"""Timeouts: ``@task(timeout=...)`` and ``DEFAULT_TIMEOUT`` kill the whole process group."""

from __future__ import annotations

from pathlib import Path

import pytest

from djangotasks.statuses import Status
from tests.faulty import Fault, read_pids, settings_env
from tests.helpers import pid_alive, wait_status, wait_until
from tests.models import Job


@pytest.fixture
def fault(tmp_path: Path) -> Fault:
    return Fault.objects.create(path=str(tmp_path / "pids"))


def test_task_timeout_kills_the_process_group(daemon, fault):
    task = fault.slow_with_grandchild().run()
    pids = wait_until(lambda: len(read_pids(fault.path)) == 2 and read_pids(fault.path))

    wait_status(task)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Timed out after 1 s."
    assert task.log == "will time out\n"
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), timeout=10)


def test_task_ignoring_sigterm_is_killed_when_it_times_out(daemon, fault):
    task = fault.slow_and_stubborn().run()
    (pid,) = wait_until(lambda: read_pids(fault.path))

    wait_status(task)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Timed out after 1 s."
    assert not pid_alive(pid)


def test_default_timeout_applies_to_tasks_without_their_own(start_daemon, tmp_path):
    start_daemon(**settings_env(tmp_path, DEFAULT_TIMEOUT=1.5))
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))

    task = wait_status(job.sleep().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Timed out after 1.5 s."
    (pid,) = read_pids(job.path)
    assert not pid_alive(pid)
    # A task's own timeout wins over the default.
    own = wait_status(Job.objects.create().too_slow().run())
    assert own.reason == "Timed out after 1 s."

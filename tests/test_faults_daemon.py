"""The daemon dies or is stopped while it runs tasks.

SIGKILL: its task processes must not run on unsupervised, and its tasks are recovered by
another daemon (after WORKER_TIMEOUT) or by its restart (at once). SIGTERM: running tasks
may finish for SHUTDOWN_WAIT, then are cancelled; a second signal stops at once. In every
case no task process is left behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection

from djangotasks.daemon import linux
from djangotasks.models import Task, Worker
from djangotasks.statuses import Status
from tests.faulty import Fault, read_pids
from tests.helpers import DaemonProcess, pid_alive, wait_status, wait_until
from tests.models import Job

# Heartbeats every 0.2 s; a daemon silent for 2 s is lost. Passed to every daemon of a test.
FAST = {"DJANGOTASKS_HEARTBEAT": "0.2", "DJANGOTASKS_WORKER_TIMEOUT": "2"}


def assert_still_serving() -> None:
    task = wait_status(Job.objects.create().hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason


def assert_all_gone(pids: list[int]) -> None:
    # Processes die asynchronously after a kill; the deadline is generous, the check is not.
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), timeout=10)


def family(fault: Fault) -> tuple[Task, int, int, int]:
    """Run ``fault.family``: (task, task pid, grandchild in its group, escaped grandchild)."""
    task = fault.family().run()
    pids = wait_until(lambda: len(read_pids(fault.path)) == 3 and read_pids(fault.path))
    return task, *pids


@pytest.fixture
def fault(tmp_path: Path) -> Fault:
    return Fault.objects.create(path=str(tmp_path / "pids"))


# -- SIGKILL -----------------------------------------------------------------------------


def test_sigkilled_daemon_takes_its_task_process_group_down(start_daemon, fault):
    daemon = start_daemon()
    _task, task_pid, grandchild, _escaped = family(fault)

    daemon.kill()

    assert_all_gone([task_pid, grandchild])


def test_sigkilled_daemon_takes_escaped_grandchildren_down(start_daemon, fault):
    daemon = start_daemon()
    _task, task_pid, _grandchild, escaped = family(fault)

    daemon.kill()

    try:
        assert_all_gone([task_pid, escaped])
    finally:
        if pid_alive(escaped):
            os.kill(escaped, signal.SIGKILL)


def test_tasks_of_a_sigkilled_daemon_are_recovered_by_another_daemon(start_daemon, tmp_path):
    victim = start_daemon(**FAST)
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    (pid,) = wait_until(lambda: read_pids(job.path))
    start_daemon(**FAST)  # started after the claim, so the victim owns the task
    lost = victim.worker

    victim.kill()

    wait_status(task, timeout=60)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats (silent for ")
    assert not pid_alive(pid)
    lost.refresh_from_db()
    assert lost.stopped_at is not None
    assert task.log == "sleeping\n"
    assert_still_serving()


def test_tasks_of_a_sigkilled_daemon_are_recovered_at_once_by_its_restart(start_daemon, tmp_path):
    # WORKER_TIMEOUT stays at 30 s: the restarted daemon must not wait for it, since it can
    # tell that the dead daemon on its own host is gone.
    victim = start_daemon()
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    (pid,) = wait_until(lambda: read_pids(job.path))
    lost = victim.worker

    victim.kill()
    start_daemon()

    wait_status(task, timeout=20)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == f"Worker lost: {lost} is no longer running (found at restart)."
    assert not pid_alive(pid)
    assert_still_serving()


def test_task_that_allows_retries_is_rescheduled_after_worker_loss(start_daemon, fault):
    victim = start_daemon(**FAST)
    first = fault.survivor().run()
    wait_until(lambda: read_pids(fault.path))
    start_daemon(**FAST)
    lost = victim.worker

    victim.kill()

    def retried() -> Task | None:
        current = fault.survivor()
        return current if current.attempt == 2 and current.is_finished() else None

    second = wait_until(retried, timeout=60)
    assert second.status == Status.SUCCESSFUL, second.reason
    first.refresh_from_db()
    assert first.archived
    assert first.status == Status.UNSUCCESSFUL
    assert first.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats")
    assert list(second.archives()) == [first]
    assert first.log == "attempt 1\n"
    assert second.log == "attempt 2\n"
    attempts = [line.split() for line in Path(fault.path).read_text().splitlines()]
    # Attempt, pid, and whether an earlier attempt's process was still alive: never.
    assert [(a, overlap) for a, _pid, overlap in attempts] == [("1", "0"), ("2", "0")]


def freeze(daemon: DaemonProcess) -> None:
    """SIGSTOP ``daemon`` at a moment it holds no SQLite write lock.

    SQLite has one writer at a time, and the lock belongs to the process: a daemon frozen
    inside a write transaction blocks every other writer until it wakes, whatever the other
    daemon does. A freeze is only recoverable between writes, so freeze again until it lands
    there. (PostgreSQL and MariaDB run the statement in the server; nothing to retry.)
    """
    for _attempt in range(50):
        daemon.popen.send_signal(signal.SIGSTOP)
        if connection.vendor != "sqlite" or _can_write_sqlite():
            return
        daemon.popen.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the daemon held the SQLite write lock at every one of 50 freezes")


def _can_write_sqlite() -> bool:
    # Locks held by the other daemon are brief: wait for them. The frozen one's never ends.
    db = sqlite3.connect(connection.settings_dict["NAME"], timeout=2, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def test_frozen_daemon_declared_lost_kills_its_task_when_it_wakes(start_daemon, tmp_path):
    # SIGSTOP stands for a daemon that hangs or loses the database for longer than
    # WORKER_TIMEOUT. Another daemon records its task as lost; when the frozen one wakes it
    # must see that it was fenced off, kill the task it still runs, and not overwrite the
    # recorded outcome.
    victim = start_daemon(**FAST)
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    (pid,) = wait_until(lambda: read_pids(job.path))
    start_daemon(**FAST)
    lost = victim.worker

    freeze(victim)
    try:
        wait_status(task, timeout=60)
    finally:
        victim.popen.send_signal(signal.SIGCONT)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats")
    assert_all_gone([pid])
    wait_until(lambda: "was declared lost" in victim.log)
    task.refresh_from_db()
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats")
    # The woken daemon registered again and serves.
    wait_until(lambda: Worker.objects.filter(pid=victim.pid, stopped_at=None).exists())
    assert victim.popen.poll() is None


def test_a_frozen_daemon_stops_its_task_before_the_next_attempt_starts_elsewhere(
    start_daemon, fault
):
    # SIGSTOP stands for a daemon cut off from the database or hung in a query: it cannot
    # renew its heartbeat. Its lease watchdog kills the task before any other daemon may
    # declare it lost, so the retry started elsewhere never overlaps the first attempt.
    timings = {"DJANGOTASKS_HEARTBEAT": "0.5", "DJANGOTASKS_WORKER_TIMEOUT": "3"}
    victim = start_daemon(**timings)
    first = fault.survivor().run()
    _attempt, pid, _overlap = wait_until(lambda: read_pids(fault.path))  # "1 <pid> 0"
    start_daemon(**timings)
    lost = victim.worker

    freeze(victim)
    try:
        second = wait_until(lambda: _finished_attempt(fault, 2), timeout=60)
        # Killed while its daemon is still frozen: by the watchdog, not by the daemon.
        assert not pid_alive(pid)
    finally:
        victim.popen.send_signal(signal.SIGCONT)

    assert second.status == Status.SUCCESSFUL, second.reason
    attempts = [line.split() for line in Path(fault.path).read_text().splitlines()]
    # Attempt, pid, and whether an earlier attempt's process was still alive: never.
    assert [(a, overlap) for a, _pid, overlap in attempts] == [("1", "0"), ("2", "0")]
    assert "the daemon's lease ran out" in victim.log
    first.refresh_from_db()
    assert first.status == Status.UNSUCCESSFUL
    assert first.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats")
    # Awake again, the fenced daemon registers anew and leaves the recorded outcome alone.
    wait_until(lambda: "was declared lost" in victim.log)
    wait_until(lambda: Worker.objects.filter(pid=victim.pid, stopped_at=None).exists())
    first.refresh_from_db()
    assert first.reason.startswith(f"Worker lost: {lost} stopped sending heartbeats")


def test_a_killed_lease_watchdog_is_replaced_and_tasks_run_on(start_daemon, tmp_path):
    daemon = start_daemon()
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    (pid,) = wait_until(lambda: read_pids(job.path))
    # The daemon's children: its task process and the watchdog, nothing else.
    (watchdog,) = [child for child in linux.children(daemon.pid) if child != pid]

    os.kill(watchdog, signal.SIGKILL)

    wait_until(lambda: "the lease watchdog ended (Killed by SIGKILL.); starting another"
               in daemon.log)  # fmt: skip
    (replacement,) = wait_until(
        lambda: [child for child in linux.children(daemon.pid) if child not in (pid, watchdog)]
    )
    assert pid_alive(replacement)
    task.refresh_from_db()
    assert task.status == Status.RUNNING and pid_alive(pid)
    hello = wait_status(Job.objects.create().hello().run())
    assert hello.status == Status.SUCCESSFUL, hello.reason
    task.cancel()
    assert wait_status(task).status == Status.CANCELLED


def _finished_attempt(fault: Fault, number: int) -> Task | None:
    current = fault.survivor()
    return current if current.attempt == number and current.is_finished() else None


# -- SIGTERM -----------------------------------------------------------------------------


def test_sigterm_lets_running_tasks_finish_and_claims_nothing_new(start_daemon, tmp_path):
    daemon = start_daemon()
    job = Job.objects.create(seconds=2, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    (pid,) = wait_until(lambda: read_pids(job.path))

    daemon.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping; waiting up to 30 s for 1 running task(s)" in daemon.log)
    waiting = Job.objects.create().hello().run()

    assert daemon.popen.wait(timeout=30) == 0
    task.refresh_from_db()
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == "sleeping\nwoke up\n"
    waiting.refresh_from_db()
    assert waiting.status == Status.SCHEDULED
    assert not pid_alive(pid)
    assert daemon.worker.stopped_at is not None


def test_sigterm_cancels_tasks_still_running_after_shutdown_wait(start_daemon, fault):
    daemon = start_daemon(DJANGOTASKS_SHUTDOWN_WAIT="1")
    task, *pids = family(fault)
    stubborn_job = Job.objects.create(path=str(Path(fault.path).with_name("stubborn")))
    stubborn = stubborn_job.ignore_sigterm().run()
    pids += wait_until(lambda: read_pids(stubborn_job.path))

    daemon.popen.send_signal(signal.SIGTERM)

    assert daemon.popen.wait(timeout=60) == 0
    for t in (task, stubborn):
        t.refresh_from_db()
        assert t.status == Status.CANCELLED
        assert t.reason == "Cancelled: the daemon was shut down."
    assert task.log == "family started\n"
    assert_all_gone(pids)


def test_second_signal_stops_at_once_and_kills_the_tasks(start_daemon, fault):
    daemon = start_daemon(DJANGOTASKS_SHUTDOWN_WAIT="600")
    task, *pids = family(fault)

    daemon.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping; waiting up to 600 s" in daemon.log)
    daemon.popen.send_signal(signal.SIGINT)

    try:
        daemon.popen.wait(timeout=30)  # not the 600 s of SHUTDOWN_WAIT
    except subprocess.TimeoutExpired:
        pytest.fail("the second signal did not stop the daemon")
    task.refresh_from_db()
    assert task.status == Status.CANCELLED
    assert task.reason == "Daemon stopped at once."
    assert_all_gone(pids)

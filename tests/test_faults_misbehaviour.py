"""Tasks that misbehave: each ends in a clear status and reason, and the daemon keeps serving.

Every test injects one fault into a real task process run by a real daemon, then checks the
recorded outcome, that no process of the task is left, and that the daemon still runs work.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from djangotasks.statuses import Status
from tests.faulty import MB, MEMORY_LIMIT, Fault, read_pids, settings_env
from tests.helpers import pid_alive, wait_status, wait_until
from tests.models import Job


def assert_still_serving() -> None:
    job = Job.objects.create()
    task = wait_status(job.hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == f"hello from job {job.pk}\n"


@pytest.fixture
def fault(tmp_path: Path) -> Fault:
    return Fault.objects.create(path=str(tmp_path / "pids"))


def test_task_ignoring_sigterm_is_killed_after_the_grace(daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "pid"))
    task = job.ignore_sigterm().run()
    (pid,) = wait_until(lambda: read_pids(job.path))
    wait_until(lambda: "ignoring SIGTERM" in task.log)

    task.cancel()

    wait_status(task)
    assert task.status == Status.CANCELLED, task.reason
    assert task.reason == "Cancelled."
    assert not pid_alive(pid)
    assert task.log == "ignoring SIGTERM\n"
    assert_still_serving()


def test_grandchild_that_escapes_with_setsid_is_killed_on_cancel(daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "pid"))
    task = job.escape().run()
    (grandchild,) = wait_until(lambda: read_pids(job.path))
    assert pid_alive(grandchild)

    task.cancel()

    wait_status(task)
    assert task.status == Status.CANCELLED, task.reason
    wait_until(lambda: not pid_alive(grandchild), timeout=10)
    assert_still_serving()


def test_grandchild_left_behind_by_a_successful_task_is_killed(daemon, fault):
    task = wait_status(fault.escape_then_exit().run())

    assert task.status == Status.SUCCESSFUL, task.reason
    (grandchild,) = read_pids(fault.path)
    assert task.log == f"left {grandchild} behind\n"
    wait_until(lambda: not pid_alive(grandchild), timeout=10)
    assert_still_serving()


def test_grandchild_forked_without_exec_that_escapes_is_killed_when_the_task_ends(daemon, fault):
    # A fork without exec has the environment of the daemon in /proc/<pid>/environ, so no
    # marker tells whose it is; the daemon (a subreaper) is its parent once the task ends.
    task = wait_status(fault.escape_by_fork().run())

    assert task.status == Status.SUCCESSFUL, task.reason
    (_task_pid, grandchild) = read_pids(fault.path)
    assert task.log == f"forked {grandchild}\n"
    wait_until(lambda: not pid_alive(grandchild), timeout=10)
    assert_still_serving()


def test_grandchild_forked_without_exec_that_escapes_is_killed_on_cancel(daemon, fault):
    fault.seconds = 600
    fault.save()
    task = fault.escape_by_fork().run()
    (task_pid, grandchild) = wait_until(lambda: read_pids(fault.path))
    assert pid_alive(grandchild)
    assert os.getsid(grandchild) == grandchild  # it left the task's session and group

    task.cancel()

    assert wait_status(task).status == Status.CANCELLED, task.reason
    wait_until(lambda: not pid_alive(grandchild), timeout=10)
    assert not pid_alive(task_pid)
    assert_still_serving()


def test_task_closing_its_stdout_and_stderr_still_ends_with_its_output(daemon):
    job = Job.objects.create()

    task = wait_status(job.close_output().run())

    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == "closing my output now\n"
    assert_still_serving()


def test_os_exit_is_unsuccessful_with_the_exit_status(daemon):
    job = Job.objects.create()

    task = wait_status(job.exit_hard().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Exited with status 3."
    assert task.log == "leaving with os._exit(3)\n"
    assert_still_serving()


def test_segfault_is_unsuccessful_with_the_signal_and_a_traceback(daemon, fault):
    task = wait_status(fault.segfault().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Killed by SIGSEGV."
    assert task.log.startswith("about to dereference NULL\n")
    # faulthandler is on in task processes: the log says where it crashed.
    assert "Fatal Python error: Segmentation fault" in task.log
    assert "in segfault" in task.log
    assert_still_serving()


def test_task_memory_limit_stops_a_task_that_eats_memory(daemon, fault):
    task = wait_status(fault.eat_memory().run(), timeout=60)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == f"Out of memory (limit {MEMORY_LIMIT} bytes)."
    assert task.log.startswith("eating memory\n")
    assert "MemoryError" in task.log
    assert_still_serving()


def test_default_memory_limit_applies_to_tasks_without_their_own(start_daemon, tmp_path):
    start_daemon(**settings_env(tmp_path, DEFAULT_MEMORY_LIMIT=MEMORY_LIMIT))
    fault = Fault.objects.create(count=1000)  # 32 GB: far beyond the limit

    task = wait_status(fault.eat_memory_no_limit().run(), timeout=60)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == f"Out of memory (limit {MEMORY_LIMIT} bytes)."
    assert "survived" not in task.log
    assert_still_serving()


def test_runaway_output_keeps_the_start_and_the_end_within_the_cap(start_daemon, tmp_path):
    cap = 1024 * 1024
    start_daemon(**settings_env(tmp_path, MAX_LOG_SIZE=cap))
    fault = Fault.objects.create(count=20)  # 20 MB
    lines = 20 * (MB // 100)

    task = wait_status(fault.print_megabytes().run(), timeout=120)

    assert task.status == Status.SUCCESSFUL, task.reason
    log = task.log
    assert task.log_size == len(log)
    assert log.startswith("0000000000" + "y" * 89 + "\n0000000001")
    assert log.endswith(f"{lines - 1:010d}" + "y" * 89 + f"\ndone: {lines} lines\n")
    assert "characters cut here; the log is limited to 1,048,576 (MAX_LOG_SIZE)" in log
    assert cap <= len(log) <= cap + 200
    assert_still_serving()


def test_200_mb_of_output_is_capped_and_the_daemon_keeps_serving(daemon, fault):
    fault.count = 200
    fault.save()
    lines = 200 * (MB // 100)
    task = fault.print_megabytes().run()

    def ended_or_stuck() -> bool:
        task.refresh_from_db()
        return task.is_finished() or "database unavailable" in daemon.log

    try:
        wait_until(ended_or_stuck, timeout=300)
        assert "database unavailable" not in daemon.log
    except AssertionError:
        daemon.kill()  # it cannot store the output, so it would never stop gracefully
        raise
    assert task.status == Status.SUCCESSFUL, task.reason
    log = task.log
    default_cap = 32 * 1024 * 1024
    assert default_cap <= len(log) <= default_cap + 200
    assert log.startswith("0000000000")
    assert log.endswith(f"\ndone: {lines} lines\n")
    assert "characters cut here" in log
    assert_still_serving()


def test_silent_task_is_neither_lost_nor_stopped(start_daemon, fault):
    # A task may print nothing for hours: silence is not death. With heartbeats every 0.2 s
    # and a 1.5 s worker timeout, a second daemon would recover the task if the first one's
    # liveness depended on the task's output.
    env = {"DJANGOTASKS_HEARTBEAT": "0.2", "DJANGOTASKS_WORKER_TIMEOUT": "1.5"}
    start_daemon(**env)
    start_daemon(**env)
    fault.seconds = 600
    fault.save()
    task = fault.silent().run()
    (pid,) = wait_until(lambda: read_pids(fault.path))
    task.refresh_from_db()
    owner = task.worker
    first_beat = owner.last_seen

    # Wait for five worker timeouts' worth of heartbeats of the owner.
    def beats() -> bool:
        owner.refresh_from_db()
        return (owner.last_seen - first_beat).total_seconds() > 5

    wait_until(beats, timeout=30)

    task.refresh_from_db()
    assert task.status == Status.RUNNING
    assert task.worker_id == owner.pk
    assert owner.stopped_at is None
    assert pid_alive(pid)
    assert task.log == ""
    task.cancel()
    wait_status(task)
    assert task.status == Status.CANCELLED, task.reason
    assert not pid_alive(pid)


def test_all_misbehaviours_at_once_leave_the_daemon_serving(start_daemon, tmp_path):
    start_daemon(concurrency=8)
    jobs = [Job.objects.create() for _ in range(3)]
    faults = [Fault.objects.create(path=str(tmp_path / f"f{i}")) for i in range(3)]
    tasks = [
        jobs[0].exit_hard().run(),
        jobs[1].close_output().run(),
        jobs[2].too_slow().run(),
        faults[0].segfault().run(),
        faults[1].eat_memory().run(),
        faults[2].escape_then_exit().run(),
    ]
    hellos = [Job.objects.create().hello().run() for _ in range(5)]

    for task in tasks + hellos:
        wait_status(task, timeout=60)

    assert [t.status for t in tasks] == [
        Status.UNSUCCESSFUL,
        Status.SUCCESSFUL,
        Status.UNSUCCESSFUL,
        Status.UNSUCCESSFUL,
        Status.UNSUCCESSFUL,
        Status.SUCCESSFUL,
    ]
    assert [t.reason for t in tasks[:5]] == [
        "Exited with status 3.",
        "",
        "Timed out after 1 s.",
        "Killed by SIGSEGV.",
        f"Out of memory (limit {MEMORY_LIMIT} bytes).",
    ]
    assert {t.status for t in hellos} == {Status.SUCCESSFUL}
    (grandchild,) = read_pids(faults[2].path)
    wait_until(lambda: not pid_alive(grandchild), timeout=10)


def test_daemon_log_says_why_a_task_ended(daemon):
    task = wait_status(Job.objects.create().exit_hard().run())

    assert task.status == Status.UNSUCCESSFUL
    # The end's line (its start has one too), written just after the row.
    wait_until(lambda: f"task #{task.pk} {task.name} unsuccessful" in daemon.log)
    assert f"task #{task.pk} {task.name} unsuccessful: Exited with status 3." in daemon.log

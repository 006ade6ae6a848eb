"""Recovery keeps its promises: a cancel is never turned into a retry, a deleted dependency
never lets its dependents run early, and a task that could not start is given back to the
queue (never failed for nothing, never run twice), leaking nothing. Real daemons, every
database.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from djangotasks.daemon.linux import host_key
from djangotasks.models import Task, Worker, transitions
from djangotasks.statuses import Status
from tests.faulty import Fault, settings_env
from tests.helpers import wait_status, wait_until
from tests.models import Job

# Injected into a daemon: while FLAG exists, starting a task process fails as under a
# container's pid limit (fork, or Popen in "exec" mode, raises EAGAIN). Retries are quick.
FAIL_STARTS = """
import errno, os, subprocess
FLAG = {flag!r}
def refuse(real):
    def start(*args, **kwargs):
        if os.path.exists(FLAG):
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable (injected)")
        return real(*args, **kwargs)
    return start
os.fork = refuse(os.fork)
subprocess.Popen = refuse(subprocess.Popen)
import django
django.setup()
from djangotasks.daemon import queue
queue.START_RETRY_DELAY = 0.1
"""

# Injected into a daemon: the connection drops once between a claim and the task's start.
DROP_AFTER_CLAIM = """
import django
django.setup()
from django.db import InterfaceError
from djangotasks.daemon import queue
_load = queue.load_targets
_left = [1]
def load_targets(tasks, *args):
    if _left[0] and tasks:
        _left[0] -= 1
        raise InterfaceError("injected: connection dropped between claim and start")
    return _load(tasks, *args)
queue.load_targets = load_targets
"""


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- a cancel stays a cancel -------------------------------------------------------------


def test_cancel_asked_while_the_worker_died_ends_cancelled_and_is_not_retried(
    start_daemon, tmp_path
):
    daemon = start_daemon()
    fault = Fault.objects.create(path=str(tmp_path / "attempts"))
    task = fault.survivor().run()  # retries=1; its first attempt runs until killed
    wait_until(lambda: Path(fault.path).exists())
    daemon.kill()  # its task dies with it; the row still says running
    task.cancel()
    task.refresh_from_db()
    assert task.status == Status.REQUESTED_CANCEL

    start_daemon()  # recovers its dead predecessor on this host at once

    wait_status(task)
    assert task.status == Status.CANCELLED
    assert task.reason.startswith("Cancelled. Worker lost:")
    assert Task.objects.filter(name=task.name, object_id=task.object_id).count() == 1
    assert Path(fault.path).read_text().count("\n") == 1  # one attempt, never retried


@pytest.mark.django_db
def test_a_failure_racing_a_cancel_request_is_not_retried():
    # The daemon saw the task running and records its failure; a cancel came in meanwhile.
    worker = Worker.objects.create(hostname="here", pid=1)
    task = Fault.objects.create().hopeless().run()  # retries=1
    Task.objects.filter(pk=task.pk).update(status=Status.REQUESTED_CANCEL, worker=worker)
    task.status = Status.RUNNING  # what the daemon last saw

    assert transitions.finish(task, worker, Status.UNSUCCESSFUL, "RuntimeError: attempt 1")

    task.refresh_from_db()
    assert task.status == Status.UNSUCCESSFUL
    assert not task.archived
    assert Task.objects.filter(name=task.name).count() == 1  # no retry was scheduled


# -- a deleted dependency ----------------------------------------------------------------


def delete_through_the_admin(task: Task) -> None:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    client.post(
        reverse("admin:djangotasks_task_changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [task.pk]},
    )


@pytest.mark.parametrize("how", ["instance", "queryset", "admin"])
def test_deleting_a_scheduled_dependency_fails_its_dependents(start_daemon, tmp_path, how):
    job = Job.objects.create(path=str(tmp_path / "go"))
    three = job.step_three().run()  # schedules step one, then two, then three
    two = job.step_two()
    two_pk = two.pk

    if how == "instance":
        two.delete()
    elif how == "queryset":
        Task.objects.filter(pk=two.pk).delete()
    else:
        delete_through_the_admin(two)

    assert not Task.objects.filter(pk=two_pk).exists()
    three.refresh_from_db()
    assert three.status == Status.UNSUCCESSFUL
    assert three.reason == f"Dependency {two.label!r} (task #{two_pk}) was deleted."
    # A daemon runs what is left; step three never runs.
    start_daemon()
    Path(job.path).write_text("go")
    assert wait_status(job.step_one()).status == Status.SUCCESSFUL
    three.refresh_from_db()
    assert three.status == Status.UNSUCCESSFUL and three.log == ""


# -- a task that cannot start ------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "exec"])
def test_failed_starts_leak_nothing_and_the_task_starts_once_it_can(start_daemon, tmp_path, method):
    flag = tmp_path / "refuse-starts"
    daemon = start_daemon(
        prelude=FAIL_STARTS.format(flag=str(flag)), **settings_env(tmp_path, START_METHOD=method)
    )
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL
    before = open_descriptors(daemon.pid)
    flag.write_text("refuse")

    task = Job.objects.create().hello().run()
    wait_until(lambda: daemon.log.count(f"could not start task #{task.pk}") >= 2)
    flag.unlink()

    assert wait_status(task).status == Status.SUCCESSFUL, task.reason
    assert task.log == f"hello from job {task.target.pk}\n"
    assert task.attempt == 1 and not Task.objects.filter(archived=True).exists()
    assert open_descriptors(daemon.pid) == before


def test_a_task_that_can_never_start_ends_clearly(start_daemon, tmp_path):
    flag = tmp_path / "refuse-starts"
    daemon = start_daemon(prelude=FAIL_STARTS.format(flag=str(flag)))
    # Settled (its LISTEN connection, a first task served) before its descriptors count.
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL
    before = open_descriptors(daemon.pid)
    flag.write_text("refuse")

    task = wait_status(Job.objects.create().hello().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == (
        "Could not start the task process: [Errno 11] Resource temporarily unavailable (injected)"
    )
    assert daemon.log.count(f"could not start task #{task.pk}") == 4
    assert open_descriptors(daemon.pid) == before
    flag.unlink()
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL


def test_a_task_claimed_just_before_a_database_error_is_run_once(start_daemon, tmp_path):
    daemon = start_daemon(prelude=DROP_AFTER_CLAIM)
    job = Job.objects.create(path=str(tmp_path / "runs"))

    task = wait_status(job.counter().run())

    assert task.status == Status.SUCCESSFUL, task.reason
    assert Path(job.path).read_text() == f"{job.pk}\n"  # ran exactly once
    assert "was claimed but never started; now scheduled" in daemon.log
    assert not Task.objects.filter(archived=True).exists()


@pytest.mark.parametrize("pid", [0, -1], ids=["zero", "negative"])
def test_a_worker_row_with_a_pid_that_names_a_group_is_recovered_not_signalled(start_daemon, pid):
    # os.kill(0, 0) and os.kill(-1, 0) succeed (they address process groups), so such a
    # row, written by hand, looked alive to a restarted daemon, which did not recover it.
    lost = Worker.objects.create(hostname=socket.gethostname(), pid=pid, host_key=host_key())
    task = Job.objects.create().hello().run()
    Task.objects.filter(pk=task.pk).update(status=Status.RUNNING, worker=lost)

    daemon = start_daemon()

    wait_status(task)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == f"Worker lost: {lost} is no longer running (found at restart)."
    assert daemon.popen.poll() is None


def test_signal_receivers_that_raise_stop_neither_tasks_nor_the_daemon(start_daemon):
    # Receivers run in the daemon; one that raised after a claim's commit used to leave the
    # claimed task without a process, again on every retry.
    raising_receivers = (
        "import django\ndjango.setup()\n"
        "from djangotasks import signals\n"
        "def boom(**kwargs): raise RuntimeError('injected: a receiver fails')\n"
        "for signal in (signals.task_status_changed, signals.task_started,\n"
        "               signals.task_completed):\n"
        "    signal.connect(boom, weak=False)\n"
    )
    daemon = start_daemon(prelude=raising_receivers)

    for _ in range(2):
        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL, task.reason
        assert task.log == f"hello from job {task.target.pk}\n"
    for name in ("task_status_changed", "task_started", "task_completed"):
        assert f"{name} receiver <function boom" in daemon.log
    assert daemon.popen.poll() is None

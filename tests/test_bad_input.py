"""Bad input: each gets a clear error, and nothing is lost.

Rows edited by hand, unknown task names, hand-written pids, dependency cycles, cancels and
runs at the wrong time, wrong settings, an unwritable pid file and a SQLite database that is
not set up for several processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps
from django.utils import timezone

from djangotasks import conf, task
from djangotasks.checks import check_settings
from djangotasks.daemon.linux import host_key
from djangotasks.exceptions import InvalidTransition, UnknownTask
from djangotasks.models import Task, Worker
from djangotasks.models.task import live_key
from djangotasks.statuses import Status
from tests.faulty import read_pids, settings_env
from tests.helpers import ROOT, pid_alive, test_env, wait_status, wait_until
from tests.models import Job

FAST = {"DJANGOTASKS_HEARTBEAT": "0.2", "DJANGOTASKS_WORKER_TIMEOUT": "2"}


def assert_still_serving() -> None:
    done = wait_status(Job.objects.create().hello().run())
    assert done.status == Status.SUCCESSFUL, done.reason


def hand_made_row(job: Job, name: str = "tests.Job.noop", **fields) -> Task:
    """A Task row written directly, as someone editing the database would."""
    return Task.objects.create(
        name=name,
        content_type=ContentType.objects.get_for_model(Job),
        object_id=str(job.pk),
        live_key=live_key(name, str(job.pk)),
        **fields,
    )


@pytest.fixture
def victim():
    """A process nobody may signal: a task row will carry its pid."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc.pid
    proc.kill()
    proc.wait()


# -- rows ---------------------------------------------------------------------------------


def test_unknown_task_name_in_a_row_fails_clearly(daemon):
    row = hand_made_row(Job.objects.create(), name="tests.Job.no_such_task", status="scheduled")

    wait_status(row)

    assert row.status == Status.UNSUCCESSFUL
    assert row.reason == "Task code 'tests.Job.no_such_task' is not registered."
    assert "No @task is registered as 'tests.Job.no_such_task'" in row.log
    assert row.label == "tests.Job.no_such_task"
    assert str(row).startswith(f"#{row.pk} tests.Job.no_such_task of job #")
    with pytest.raises(UnknownTask, match=r"No @task is registered as 'tests\.Job\.no_such_task'"):
        row.run()
    assert_still_serving()


def test_row_with_an_unknown_status_is_never_claimed_and_run_starts_afresh(daemon):
    job = Job.objects.create()
    row = hand_made_row(job, status="exploded")

    assert_still_serving()  # the daemon worked meanwhile and left the row alone
    row.refresh_from_db()
    assert row.status == "exploded"
    fresh = job.noop().run()

    assert fresh.pk != row.pk
    assert wait_status(fresh).status == Status.SUCCESSFUL
    row.refresh_from_db()
    assert row.archived  # kept as history, not lost
    assert row.status == "exploded"


def test_cancel_of_a_row_with_an_unknown_status_says_so(transactional_db):
    row = hand_made_row(Job.objects.create(), status="exploded")

    with pytest.raises(InvalidTransition, match="exploded"):
        row.cancel()


@pytest.mark.parametrize(
    "owner",
    [
        "nobody",
        "stopped daemon",
        "live daemon that does not run it",
    ],
)
def test_row_edited_to_running_without_a_process_is_ended(start_daemon, victim, owner):
    daemon = start_daemon(**FAST)
    worker = None
    if owner == "stopped daemon":
        worker = Worker.objects.create(hostname="elsewhere", pid=1, stopped_at=timezone.now())
    elif owner == "live daemon that does not run it":
        worker = daemon.worker
    row = hand_made_row(
        Job.objects.create(),
        status=Status.RUNNING,
        worker=worker,
        pid=victim,  # and whatever it says, this pid is never signalled
        start_date=timezone.now(),
    )

    wait_status(row, timeout=15)

    assert row.status == Status.UNSUCCESSFUL
    assert row.reason.startswith("Worker lost")
    assert pid_alive(victim)
    assert_still_serving()


# -- pids written by hand -------------------------------------------------------------


def test_pid_written_into_a_running_row_is_never_signalled(daemon, victim, tmp_path):
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    running = job.sleep().run()
    (real_pid,) = wait_until(lambda: read_pids(job.path))
    Task.objects.filter(pk=running.pk).update(pid=victim)

    running.cancel()

    wait_status(running)
    assert running.status == Status.CANCELLED
    assert not pid_alive(real_pid)
    assert pid_alive(victim)


def test_pid_written_into_a_scheduled_row_is_never_signalled(daemon, victim, tmp_path):
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    hand_made_row(job, name="tests.Job.sleep", status=Status.SCHEDULED, pid=victim)
    row = job.sleep()
    (real_pid,) = wait_until(lambda: read_pids(job.path))
    # The daemon records the pid right after the fork; the task may write its file first.
    wait_until(lambda: Task.objects.get(pk=row.pk).pid == real_pid)
    row.refresh_from_db()

    row.cancel()

    wait_status(row)
    assert row.status == Status.CANCELLED
    assert pid_alive(victim)


def test_pid_in_the_row_of_a_dead_daemon_is_never_signalled(start_daemon, victim):
    # The recovery at restart ends the dead daemon's tasks; it signals nothing it did not start.
    dead = Worker.objects.create(hostname=os.uname().nodename, pid=2**22 + 1, host_key=host_key())
    row = hand_made_row(
        Job.objects.create(),
        status=Status.RUNNING,
        worker=dead,
        pid=victim,
        start_date=timezone.now(),
    )

    start_daemon()

    wait_status(row, timeout=15)
    assert row.status == Status.UNSUCCESSFUL
    assert row.reason.startswith("Worker lost")
    assert pid_alive(victim)
    os.kill(victim, signal.SIGCONT)  # still ours to signal: it exists and is not a zombie


# -- definitions ------------------------------------------------------------------------


@isolate_apps("tests")
def test_dependency_cycle_is_rejected_at_definition():
    cycle = r"dependency cycle: tests\.CycleA\.second -> tests\.CycleA\.first -> tests\.CycleA"
    with pytest.raises(TypeError, match=cycle):

        class CycleA(models.Model):
            @task("second")
            def first(self) -> None:
                pass

            @task("first")
            def second(self) -> None:
                pass


@isolate_apps("tests")
def test_task_depending_on_itself_is_rejected_at_definition():
    with pytest.raises(TypeError, match=r"dependency cycle: tests\.CycleB\.itself -> tests"):

        class CycleB(models.Model):
            @task("itself")
            def itself(self) -> None:
                pass


def test_task_with_parameters_is_rejected_at_definition():
    with pytest.raises(TypeError, match="must take no parameters"):

        @task
        def needs_an_argument(path: str) -> None:
            pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "10"}, r"timeout=\.\.\.\) must be a number of seconds, not '10'"),
        ({"timeout": -1}, r"timeout=\.\.\.\) must be positive"),
        ({"retries": 1.5}, r"retries=\.\.\.\) must be an integer"),
        ({"memory_limit": "1G"}, r"memory_limit=\.\.\.\) must be an integer"),
        ({"retry": 3}, "unknown option"),
    ],
)
def test_task_with_wrong_options_is_rejected_at_definition(options, message):
    with pytest.raises(TypeError, match=message):

        @task(**options)
        def misconfigured() -> None:
            pass


# -- cancel and run at the wrong time ---------------------------------------------------


def test_cancel_of_a_finished_task_is_refused_and_changes_nothing(daemon):
    done = wait_status(Job.objects.create().hello().run())
    log = done.log

    with pytest.raises(InvalidTransition, match=r"already finished \(successful\)"):
        done.cancel()

    done.refresh_from_db()
    assert done.status == Status.SUCCESSFUL
    assert done.log == log


def test_cancel_of_a_task_that_never_ran_is_refused(transactional_db):
    with pytest.raises(InvalidTransition, match="has never been run"):
        Job.objects.create().hello().cancel()


def test_run_of_a_task_being_cancelled_is_refused_clearly(daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "pid"))
    stubborn = job.ignore_sigterm().run()  # stays in requested_cancel for CANCEL_GRACE
    wait_until(lambda: read_pids(job.path))
    stubborn.cancel()
    assert stubborn.status == Status.REQUESTED_CANCEL

    try:
        with pytest.raises(InvalidTransition, match="being cancelled"):
            job.ignore_sigterm().run()
    finally:
        wait_status(stubborn)
    assert stubborn.status == Status.CANCELLED
    assert Task.objects.filter(name=stubborn.name).count() == 1


# -- settings and environment ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"WORKER_TIMEOUT": "30"}, "'WORKER_TIMEOUT'] must be a positive number of seconds"),
        ({"HEARTBEAT_INTERVAL": -1}, "'HEARTBEAT_INTERVAL'] must be a positive number"),
        ({"MAX_CONCURRENCY": 2.5}, "'MAX_CONCURRENCY'] must be an integer"),
        ({"MAX_CONCURRENCY": True}, "'MAX_CONCURRENCY'] must be an integer"),
        ({"DEFAULT_MEMORY_LIMIT": "1G"}, "'DEFAULT_MEMORY_LIMIT'] must be a positive number"),
        ({"START_METHOD": "spawn"}, "'START_METHOD'] must be one of auto, fork, exec"),
        ({"HEARTBEAT": 1}, "Unknown DJANGOTASKS key"),
        ([("WORKER_TIMEOUT", 1)], "DJANGOTASKS must be a dict"),
    ],
)
def test_settings_with_wrong_types_are_a_clear_error(value, message):
    with override_settings(DJANGOTASKS=value):
        with pytest.raises(ImproperlyConfigured, match=message.replace("[", r"\[")):
            conf.get()
        (error,) = check_settings()
    assert error.id == "djangotasks.E001"
    assert message in error.msg


def test_daemon_with_wrong_settings_refuses_to_start(start_daemon, tmp_path):
    daemon = start_daemon(wait=False, **settings_env(tmp_path, WORKER_TIMEOUT="30"))

    assert daemon.popen.wait(timeout=60) != 0
    assert "DJANGOTASKS['WORKER_TIMEOUT'] must be a positive number of seconds" in daemon.log
    assert not Worker.objects.filter(pid=daemon.pid).exists()


def taskd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "taskd", *args],
        cwd=ROOT, env=env or test_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_unwritable_pid_file_location_is_a_clear_error(transactional_db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    pidfile = blocker / "taskd.pid"  # a directory that cannot exist, even for root

    result = taskd("run", "--pidfile", str(pidfile))

    assert result.returncode != 0
    assert f"Cannot write the taskd pid file {pidfile}" in result.stderr
    assert "--pidfile" in result.stderr
    assert not Worker.objects.exists()


def test_unwritable_pid_file_location_is_reported_without_a_traceback(transactional_db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = taskd("run", "--pidfile", str(blocker / "taskd.pid"))

    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_sqlite_without_wal_is_reported_by_manage_py_check(tmp_path):
    module = "no_wal_settings"
    (tmp_path / f"{module}.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(tmp_path / 'plain.sqlite3')!r}}}}}\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=module)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{tmp_path}"

    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    output = result.stdout + result.stderr
    assert "djangotasks.W001" in output
    assert '"init_command" with "PRAGMA journal_mode=WAL"' in output
    assert "HINT:" in output

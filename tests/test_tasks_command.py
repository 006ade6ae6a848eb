"""``manage.py tasks``: list, show, run, cancel, logs -f and prune from a terminal."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone

from djangotasks.models import Task, TaskLogChunk
from djangotasks.statuses import Status
from tests.helpers import ROOT, tasks, test_env, wait_until
from tests.models import Job


@pytest.mark.django_db
def test_run_list_show_cancel():
    job = Job.objects.create()
    assert tasks("run", "tests.Job.hello", str(job.pk)).endswith("scheduled\n")
    task = job.hello()
    assert f"#{task.pk}" in tasks("list")
    assert "tests.Job.hello" in tasks("list", "--status", "scheduled")
    assert tasks("list", "--status", "running") == ""
    TaskLogChunk.objects.create(task=task, offset=0, end=3, text="hi\n")
    shown = tasks("show", str(task.pk))
    assert "Say hello (tests.Job.hello)" in shown
    assert shown.endswith("hi\n")
    assert tasks("cancel", str(task.pk)).strip() == f"#{task.pk} cancelled"
    with pytest.raises(CommandError, match="already finished"):
        tasks("cancel", str(task.pk))
    assert "tests.tasks.nightly_cleanup" in tasks("names")


@pytest.mark.django_db
def test_bad_input_is_a_clear_error():
    with pytest.raises(CommandError, match=r"No @task is registered as 'tests\.Job\.nope'"):
        tasks("run", "tests.Job.nope", "1")
    with pytest.raises(CommandError, match="give its primary key"):
        tasks("run", "tests.Job.hello")
    with pytest.raises(CommandError, match="No Job with primary key '999'"):
        tasks("run", "tests.Job.hello", "999")
    with pytest.raises(CommandError, match="No task #12345"):
        tasks("show", "12345")


@pytest.mark.django_db
def test_prune_deletes_old_finished_tasks_and_their_logs():
    job = Job.objects.create()
    old = job.hello().run()
    old.cancel()
    TaskLogChunk.objects.create(task=old, offset=0, end=1, text="x")
    Task.objects.filter(pk=old.pk).update(end_date=timezone.now() - timedelta(days=40))
    recent = job.fail().run()
    recent.cancel()
    pending = job.noop().run()
    assert "pruned 1 task(s)" in tasks("prune")
    assert list(Task.objects.order_by("pk")) == [recent, pending]
    assert not TaskLogChunk.objects.exists()
    assert "pruned 1 task(s)" in tasks("prune", "--days", "0")
    assert list(Task.objects.all()) == [pending]


def test_logs_follow_prints_until_the_task_ends(daemon, tmp_path):
    started = tmp_path / "started"
    task = Job.objects.create(seconds=1, path=str(started)).sleep().run()
    follower = subprocess.run(
        [sys.executable, "-m", "django", "tasks", "logs", "-f", str(task.pk)],
        cwd=ROOT, env=test_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert follower.returncode == 0, follower.stderr
    assert follower.stdout == "sleeping\nwoke up\n"
    assert f"[task #{task.pk} successful]" in follower.stderr
    wait_until(lambda: Task.objects.get(pk=task.pk).status == Status.SUCCESSFUL)

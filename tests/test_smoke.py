from __future__ import annotations

from djangotasks.statuses import Status
from tests.helpers import wait_status
from tests.models import Job


def test_a_task_runs_in_the_daemon(daemon):
    job = Job.objects.create()
    task = wait_status(job.hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == f"hello from job {job.pk}\n"

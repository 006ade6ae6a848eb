"""Retries: ``@task(retries=N, retry_delay=s)`` reruns a failed task with backoff.

Each attempt is its own row (the earlier ones archived), so the history keeps them all.
Worker loss as a cause of a retry is in test_faults_daemon.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from djangotasks.models import Task
from djangotasks.statuses import Status
from tests.faulty import Fault
from tests.helpers import wait_status, wait_until


@pytest.fixture
def fault(tmp_path: Path) -> Fault:
    return Fault.objects.create(path=str(tmp_path / "attempts"))


def finished_attempt(get_task, attempt: int) -> Task:
    def ready() -> Task | None:
        current = get_task()
        return current if current.attempt == attempt and current.is_finished() else None

    return wait_until(ready, timeout=60)


def test_failed_task_is_retried_with_backoff_until_it_succeeds(daemon, fault):
    fault.count = 2  # the first two attempts fail
    fault.save()
    first = fault.flaky().run()

    third = finished_attempt(fault.flaky, 3)

    assert third.status == Status.SUCCESSFUL, third.reason
    assert third.log == "succeeded at attempt 3\n"
    second, first_again = list(third.archives())
    assert first_again.pk == first.pk
    for attempt, task in ((1, first_again), (2, second)):
        assert task.attempt == attempt
        assert task.status == Status.UNSUCCESSFUL
        assert task.reason == f"RuntimeError: attempt {attempt} failed"
        assert f"RuntimeError: attempt {attempt} failed" in task.log
        assert task.archived
    # Backoff: retry_delay (0.2 s) doubled at each attempt, counted from the failure.
    assert second.run_after - first_again.end_date >= timedelta(seconds=0.2)
    assert third.run_after - second.end_date >= timedelta(seconds=0.4)
    assert second.start_date >= second.run_after
    assert third.start_date >= third.run_after
    assert Path(fault.path).read_text() == "1\n2\n3\n"


def test_retries_stop_after_the_last_attempt(daemon, fault):
    fault.hopeless().run()

    last = finished_attempt(fault.hopeless, 2)

    assert last.status == Status.UNSUCCESSFUL
    assert last.reason == "RuntimeError: attempt 2 failed"
    assert [t.attempt for t in last.archives()] == [1]
    assert Task.objects.filter(name=last.name, object_id=last.object_id).count() == 2


def test_cancelled_task_is_not_retried(daemon, fault):
    task = fault.survivor().run()  # its first attempt waits forever
    wait_until(lambda: Path(fault.path).exists())

    task.cancel()

    wait_status(task)
    assert task.status == Status.CANCELLED
    # A retry would have been created in the same transaction as the final status.
    assert Task.objects.filter(name=task.name, object_id=task.object_id).count() == 1


def test_dependent_task_waits_for_the_retry_of_its_dependency(daemon, fault):
    fault.count = 1  # the first attempt of the dependency fails
    fault.save()

    dependent = wait_status(fault.after_flaky().run(), timeout=60)

    assert dependent.status == Status.SUCCESSFUL, dependent.reason
    assert dependent.log == "after flaky\n"
    retry = fault.flaky()
    assert retry.attempt == 2
    assert retry.status == Status.SUCCESSFUL
    assert list(dependent.dependencies.all()) == [retry]

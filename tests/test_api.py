"""The public API without a daemon: reading, scheduling, cancelling, archives, signals."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from djangotasks import current_task, signals
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.claiming import claim
from djangotasks.models.transitions import finish
from djangotasks.models.worker import Worker
from djangotasks.statuses import Status
from tests.models import Job
from tests.tasks import after_cleanup, nightly_cleanup

pytestmark = pytest.mark.django_db


def test_calling_a_task_method_returns_a_defined_task_without_writing():
    job = Job.objects.create()
    with CaptureQueriesContext(connection) as queries:
        task = job.hello()
    assert task.pk is None
    assert task.status == Status.DEFINED
    assert task.status_display == "Defined"
    assert task.target == job
    assert task.log == ""
    assert not task.is_running()
    assert task.duration is None
    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries.captured_queries)
    assert Task.objects.count() == 0


def test_run_schedules_once_and_returns_the_live_task():
    job = Job.objects.create()
    task = job.hello().run()
    assert task.pk is not None
    assert task.status == Status.SCHEDULED
    assert job.hello().pk == task.pk
    assert job.hello().run().pk == task.pk  # scheduled: returned unchanged
    assert Task.objects.count() == 1
    assert task.label == "Say hello"
    assert task.target == job


def test_function_tasks_have_no_target():
    task = nightly_cleanup().run()
    assert task.target is None
    assert task.object_id == ""
    assert nightly_cleanup().pk == task.pk
    assert task.label == "Nightly cleanup"


def test_unsaved_object_is_a_clear_error():
    with pytest.raises(ValueError, match="Save the Job"):
        Job().hello()


def _finish_as(task: Task, status: str, reason: str = "") -> Task:
    """Play the daemon's part: claim the task and record its end."""
    worker = Worker.objects.create(hostname="test", pid=1)
    claimed = claim(worker, 10)
    assert task.pk in [t.pk for t in claimed]
    mine = next(t for t in claimed if t.pk == task.pk)
    assert finish(mine, worker, status, reason)
    mine.refresh_from_db()
    return mine


def test_running_a_finished_task_archives_it():
    job = Job.objects.create()
    first = _finish_as(job.hello().run(), Status.SUCCESSFUL)
    second = job.hello().run()
    assert second.pk != first.pk
    assert second.status == Status.SCHEDULED
    first.refresh_from_db()
    assert first.archived
    assert list(second.archives()) == [first]
    third = _finish_as(second, Status.UNSUCCESSFUL, "boom")
    fourth = job.hello().run()
    assert [t.pk for t in fourth.archives()] == [third.pk, first.pk]  # newest first


def test_cancel_of_a_scheduled_task_is_immediate():
    task = Job.objects.create().hello().run()
    task.cancel()
    task.refresh_from_db()
    assert task.status == Status.CANCELLED
    assert task.end_date is not None


def test_cancel_of_a_running_task_requests_it():
    job = Job.objects.create()
    task = job.hello().run()
    worker = Worker.objects.create(hostname="test", pid=1)
    [claimed] = claim(worker, 1)
    claimed.cancel()
    claimed.refresh_from_db()
    assert claimed.status == Status.REQUESTED_CANCEL
    assert claimed.is_running()
    claimed.cancel()  # again: nothing more to do, no error
    with pytest.raises(InvalidTransition, match="is being cancelled"):
        job.hello().run()
    assert job.hello().pk == task.pk


def test_cancel_of_a_finished_or_never_run_task_is_a_clear_error():
    job = Job.objects.create()
    with pytest.raises(InvalidTransition, match="never been run"):
        job.hello().cancel()
    done = _finish_as(job.hello().run(), Status.SUCCESSFUL)
    with pytest.raises(InvalidTransition, match=r"already finished \(successful\)"):
        done.cancel()
    done.refresh_from_db()
    assert done.status == Status.SUCCESSFUL


def test_compare_and_set_loses_gracefully():
    """A finish from a worker that no longer owns the task changes nothing."""
    task = Job.objects.create().hello().run()
    owner = Worker.objects.create(hostname="a", pid=1)
    other = Worker.objects.create(hostname="b", pid=2)
    [claimed] = claim(owner, 1)
    assert claim(other, 1) == []  # nothing left to claim twice
    assert not finish(claimed, other, Status.SUCCESSFUL)
    claimed.refresh_from_db()
    assert claimed.status == Status.RUNNING
    assert finish(claimed, owner, Status.SUCCESSFUL)
    assert not finish(claimed, owner, Status.UNSUCCESSFUL)  # already finished
    claimed.refresh_from_db()
    assert claimed.status == Status.SUCCESSFUL
    assert task.pk == claimed.pk


def test_claim_order_is_priority_then_fifo():
    jobs = [Job.objects.create() for _ in range(3)]
    tasks = [job.hello().run() for job in jobs]
    Task.objects.filter(pk=tasks[2].pk).update(priority=10)
    worker = Worker.objects.create(hostname="test", pid=1)
    assert [t.pk for t in claim(worker, 3)] == [tasks[2].pk, tasks[0].pk, tasks[1].pk]


def test_one_live_row_per_task_and_object_is_a_database_constraint():
    from django.db import IntegrityError, transaction

    task = Job.objects.create().hello().run()
    duplicate = Task(
        name=task.name, content_type=task.content_type, object_id=task.object_id,
        live_key=task.live_key, status=Status.SCHEDULED,
    )  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_status_signals_are_sent_on_commit(django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, task, old_status, new_status, **kwargs):
        received.append((task.name, old_status, new_status))

    signals.task_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            task = Job.objects.create().hello().run()
        assert received == []  # nothing before the commit
        for callback in callbacks:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            task.cancel()
    finally:
        signals.task_status_changed.disconnect(receiver)
    assert received == [
        ("tests.Job.hello", Status.DEFINED, Status.SCHEDULED),
        ("tests.Job.hello", Status.SCHEDULED, Status.CANCELLED),
    ]


def test_log_tail_fetches_only_what_is_new():
    task = Job.objects.create().hello().run()
    TaskLogChunk.objects.bulk_create(
        [
            TaskLogChunk(task=task, offset=0, end=6, text="hello "),
            TaskLogChunk(task=task, offset=6, end=12, text="world\n"),
        ]
    )
    assert task.log == "hello world\n"
    assert task.read_log(0) == ("hello world\n", 12)
    assert task.read_log(3) == ("lo world\n", 12)
    assert task.read_log(6) == ("world\n", 12)
    assert task.read_log(12) == ("", 12)
    with CaptureQueriesContext(connection) as queries:
        task.read_log(12)
    assert len(queries) == 1


def test_progress_and_duration():
    task = Job.objects.create().hello().run()
    task.progress_current, task.progress_total, task.progress_message = 25, 200, "rows"
    assert task.progress.percent == 12.5
    assert task.progress.message == "rows"
    assert task.duration is None


def test_current_task_outside_a_task_is_falsy():
    assert not current_task
    assert current_task() is None
    assert not current_task.is_running()
    assert current_task.id is None
    current_task.set_progress(1, 2, "ignored outside a task")  # no error


def test_function_dependencies_are_scheduled_first():
    task = after_cleanup().run()
    dependency = nightly_cleanup()
    assert dependency.status == Status.SCHEDULED
    assert list(task.dependencies.all()) == [dependency]


def test_method_dependencies_chain_and_do_not_rerun_success():
    job = Job.objects.create()
    three = job.step_three().run()
    two, one = job.step_two(), job.step_one()
    assert list(three.dependencies.all()) == [two]
    assert list(two.dependencies.all()) == [one]
    one = _finish_as(one, Status.SUCCESSFUL)
    assert job.step_one().pk == one.pk
    # Running the chain again after step one succeeded does not run step one again.
    two.cancel()  # fails three, which depended on it
    three.refresh_from_db()
    assert three.status == Status.UNSUCCESSFUL
    assert "Step two" in three.reason and "cancelled" in three.reason
    again = job.step_three().run()
    assert job.step_one().pk == one.pk
    assert job.step_one().status == Status.SUCCESSFUL
    assert again.dependencies.get() == job.step_two()
    assert job.step_two().dependencies.get() == one


def test_a_failed_dependency_fails_the_whole_chain_with_its_name():
    job = Job.objects.create()
    three = job.step_three().run()
    _finish_as(job.step_one(), Status.UNSUCCESSFUL, "RuntimeError: step one failed")
    three.refresh_from_db()
    two = job.step_two()
    assert two.status == Status.UNSUCCESSFUL
    assert two.reason.startswith("Dependency 'Step one'")
    assert "step one failed" in two.reason
    assert three.status == Status.UNSUCCESSFUL
    assert "Dependency 'Step two'" in three.reason


def test_complete_log_puts_dependencies_first():
    job = Job.objects.create()
    two = job.step_two().run()
    one = job.step_one()
    TaskLogChunk.objects.create(task=one, offset=0, end=4, text="one\n")
    TaskLogChunk.objects.create(task=two, offset=0, end=3, text="two")
    log = two.complete_log()
    assert log.index("one\n") < log.index("two")
    assert "Step one" in log and "Step two" in log


def test_a_dependency_that_failed_without_cascading_is_caught_by_the_safety_net():
    from djangotasks.models.transitions import fail_orphaned_dependents

    job = Job.objects.create()
    two = job.step_two().run()
    one = job.step_one()
    # As if the process that failed it crashed before failing its dependents.
    Task.objects.filter(pk=one.pk).update(status=Status.UNSUCCESSFUL)
    assert fail_orphaned_dependents() == 1
    two.refresh_from_db()
    assert two.status == Status.UNSUCCESSFUL
    assert two.reason.startswith("Dependency 'Step one'")
    assert fail_orphaned_dependents() == 0

"""Putting work in cheaply: run() in one statement, and many objects in one transaction
with a number of statements that does not grow with the number of objects."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save, pre_save
from django.test.utils import CaptureQueriesContext

from djangotasks import signals, tallies
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Task
from djangotasks.models.scheduling import CHUNK, schedule_many
from djangotasks.statuses import Status
from tests.models import Job
from tests.tasks import after_cleanup, nightly_cleanup

pytestmark = pytest.mark.django_db(transaction=True)


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]


def finish_row(task: Task, status: str = Status.SUCCESSFUL) -> None:
    Task.objects.filter(pk=task.pk).update(status=status)


def test_the_run_shortcut_is_one_insert():
    job = Job.objects.create()
    Job.objects.create().hello.run()  # content types cached, as in a running process
    with CaptureQueriesContext(connection) as queries:
        task = job.hello.run()
    assert task.pk is not None and task.status == Status.SCHEDULED
    statements = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "mysql":
        # The wake-up of sleeping MariaDB daemons follows the INSERT (see notify.py).
        assert statements[0].startswith("INSERT") and len(statements) <= 4, statements
    else:
        # PostgreSQL's NOTIFY comes from the INSERT's trigger: no statement of its own.
        assert len(statements) == 1 and statements[0].startswith("INSERT"), statements
    assert job.hello().pk == task.pk


def test_the_insert_does_what_save_does_signals_state_and_every_column():
    seen = []

    def before(sender, instance, raw, using, update_fields, **kwargs):
        seen.append(("pre_save", instance.pk, raw, using, update_fields))

    def after(sender, instance, created, raw, using, update_fields, **kwargs):
        seen.append(("post_save", instance.pk, created, raw, using, update_fields))

    pre_save.connect(before, sender=Task)
    post_save.connect(after, sender=Task)
    try:
        task = Job.objects.create().hello.run()
    finally:
        pre_save.disconnect(before, sender=Task)
        post_save.disconnect(after, sender=Task)
    alias = connection.alias
    assert seen == [
        ("pre_save", None, False, alias, None),
        ("post_save", task.pk, True, False, alias, None),
    ]
    assert not task._state.adding and task._state.db == alias
    stored = Task.objects.get(pk=task.pk)
    for field in Task._meta.concrete_fields:  # what was sent is what is stored, column by column
        assert getattr(stored, field.attname) == getattr(task, field.attname), field.name


def test_the_shortcut_finds_the_live_task_it_could_not_insert():
    job = Job.objects.create()
    first = job.hello.run()
    assert job.hello.run().pk == first.pk  # scheduled: returned unchanged
    finish_row(first)
    again = job.hello.run()  # finished: archived, and a new run
    assert again.pk != first.pk and again.status == Status.SCHEDULED
    first.refresh_from_db()
    assert first.archived and first.live_key is None


def test_a_placeholder_run_later_becomes_the_row_and_keeps_the_object():
    job = Job.objects.create()
    placeholder = job.hello()
    task = placeholder.run()
    assert task is placeholder and task.pk is not None
    assert task.target is job


def test_a_conflict_inside_the_callers_transaction_leaves_it_usable():
    job = Job.objects.create()
    stale = job.hello()  # read before another run() created the row
    other = job.hello.run()
    with transaction.atomic():
        task = stale.run()
        Job.objects.create(text="after")  # the transaction still works
    assert task.pk == other.pk
    assert stale.pk is None and stale.status == Status.DEFINED  # given back as it was
    assert Job.objects.filter(text="after").exists()


def test_run_for_schedules_every_object_with_a_bounded_number_of_statements():
    few = [Job.objects.create() for _ in range(3)]
    many = Job.objects.bulk_create(Job() for _ in range(CHUNK + 20))
    Job.hello.run_for(few[:1])  # content types cached
    with CaptureQueriesContext(connection) as small:
        Job.hello.run_for(few[1:])
    with CaptureQueriesContext(connection) as large:
        tasks = Job.hello.run_for(many)
    assert len(tasks) == len(many)
    assert {t.status for t in tasks} == {Status.SCHEDULED}
    assert [t.object_id for t in tasks] == [str(j.pk) for j in many]
    assert Task.objects.filter(name="tests.Job.hello").count() == len(many) + len(few)
    # More objects add a statement or two per chunk, and the INSERTs Django's bulk_create()
    # splits them into (by the database's parameter limit: 999 on SQLite before Django 6),
    # never one per object.
    columns = [f for f in Task._meta.concrete_fields if not f.primary_key]
    per_insert = min(CHUNK, connection.ops.bulk_batch_size(columns, many) or CHUNK)
    inserts = -(-len(many) // per_insert)
    assert inserts < len(many) / 10
    assert len(large.captured_queries) <= len(small.captured_queries) + inserts + 3 * (
        len(many) // CHUNK + 1
    ), [q["sql"][:60] for q in large.captured_queries]


def test_run_for_leaves_pending_tasks_and_archives_finished_ones():
    jobs = [Job.objects.create() for _ in range(4)]
    scheduled = jobs[0].hello.run()
    finished = jobs[1].hello.run()
    finish_row(finished, Status.UNSUCCESSFUL)
    cancelling = jobs[2].hello.run()
    Task.objects.filter(pk=cancelling.pk).update(status=Status.REQUESTED_CANCEL)
    pairs = schedule_many(jobs[0].hello.definition, [*jobs, jobs[3]])  # one object twice
    assert [created for _task, created in pairs] == [False, True, False, True, True]
    assert pairs[0][0].pk == scheduled.pk
    assert pairs[2][0].status == Status.REQUESTED_CANCEL  # left alone, not raised
    assert pairs[3][0].pk == pairs[4][0].pk  # the same object once
    finished.refresh_from_db()
    assert finished.archived
    assert pairs[1][0].pk != finished.pk and pairs[1][0].status == Status.SCHEDULED
    assert pairs[1][0].target is jobs[1]


def test_run_for_schedules_dependencies_once_per_object_and_links_them():
    jobs = [Job.objects.create() for _ in range(3)]
    done = jobs[0].step_one.run()
    finish_row(done)  # succeeded: step two waits on it as it is
    tasks = Job.step_two.run_for(jobs)
    for job, task in zip(jobs, tasks, strict=True):
        dependency = task.dependencies.get()
        assert dependency.name == "tests.Job.step_one"
        assert dependency.object_id == str(job.pk)
    assert tasks[0].dependencies.get().pk == done.pk
    assert Task.objects.filter(name="tests.Job.step_one").count() == 3
    assert Job.step_three.run_for(jobs)[1].dependencies.get().pk == tasks[1].pk


def test_a_function_dependency_is_shared():
    pairs = schedule_many(after_cleanup.definition, [None, None])
    assert pairs[0][0].pk == pairs[1][0].pk
    assert pairs[0][0].dependencies.get().pk == nightly_cleanup().pk


def test_run_for_announces_each_new_task_after_commit():
    seen: list[tuple[int, str, str]] = []

    def receiver(sender, task, old_status, new_status, **kwargs):
        seen.append((task.pk, old_status, new_status))

    signals.task_status_changed.connect(receiver)
    try:
        jobs = [Job.objects.create() for _ in range(3)]
        jobs[0].hello.run()
        seen.clear()
        tasks = Job.hello.run_for(jobs)
    finally:
        signals.task_status_changed.disconnect(receiver)
    assert sorted(seen) == sorted((t.pk, "defined", "scheduled") for t in tasks[1:])


def test_a_bulk_run_rolls_back_as_one():
    jobs = [Job.objects.create() for _ in range(3)]
    with pytest.raises(IntegrityError), transaction.atomic():  # noqa: PT012
        Job.hello.run_for(jobs)
        Job.objects.create(pk=jobs[0].pk)  # the caller's transaction fails afterwards
    assert not Task.objects.exists()


def test_task_querysets_run_again_in_one_go():
    jobs = [Job.objects.create() for _ in range(3)]
    tasks = Job.hello.run_for(jobs)
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(status=Status.CANCELLED)
    again = Task.objects.filter(pk__in=[t.pk for t in tasks]).order_by("id").run()
    assert [t.object_id for t in again] == [str(j.pk) for j in jobs]
    assert all(t.status == Status.SCHEDULED and t.pk not in {x.pk for x in tasks} for t in again)
    assert Task.objects.filter(archived=True).count() == 3


def test_task_querysets_refuse_before_writing_anything():
    jobs = [Job.objects.create() for _ in range(2)]
    tasks = Job.hello.run_for(jobs)
    Task.objects.update(status=Status.SUCCESSFUL)
    jobs[1].delete()
    with pytest.raises(ValueError, match="its object is gone"):
        Task.objects.order_by("id").run()
    assert not Task.objects.filter(status=Status.SCHEDULED).exists()
    assert Task.objects.get(pk=tasks[0].pk).live_key is not None  # not archived either


def test_a_django_task_cannot_be_bulk_run_without_its_arguments():
    from djangotasks.registry import TaskDefinition

    definition = TaskDefinition(name="x", func=print, label="x", django_task=object())
    with pytest.raises(InvalidTransition, match="enqueue"):
        schedule_many(definition, [None])


def test_the_admin_action_on_many_objects_is_a_bounded_number_of_statements(
    admin_client, django_assert_max_num_queries
):
    jobs = Job.objects.bulk_create(Job() for _ in range(300))
    admin_client.get("/admin/tests/job/")  # sessions, content types
    with django_assert_max_num_queries(40):
        response = admin_client.post(
            "/admin/tests/job/",
            {"action": "run_task_hello", "_selected_action": [j.pk for j in jobs]},
            follow=False,
        )
    assert response.status_code == 302
    assert Task.objects.filter(status=Status.SCHEDULED).count() == 300


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL wakes daemons from a trigger"
)
def test_postgresql_notifies_once_per_insert_statement():
    from djangotasks.notify import CHANNEL

    listener = connection.get_new_connection(connection.get_connection_params())
    listener.autocommit = True
    listener.execute(f"LISTEN {CHANNEL}")
    try:
        Job.hello.run_for([Job.objects.create() for _ in range(50)])
        Job.objects.create().hello.run()
        payloads = [n.payload for n in listener.notifies(timeout=1.0, stop_after=3)]
    finally:
        listener.close()
    assert payloads == ["run", "run"]


# -- the daemon's claim ----------------------------------------------------------------------


def test_a_claim_is_one_statement_where_the_database_returns_updated_rows():
    from djangotasks.models import Worker
    from djangotasks.models.claiming import claim

    worker = Worker.objects.create(hostname="h", pid=1)
    jobs = [Job.objects.create() for _ in range(3)]
    Job.hello.run_for(jobs)
    Job.objects.create().hello.run()  # a fourth, left for the next claim
    tallies.buffer()  # as in the daemon: its pickup counts are written about once a second
    try:
        with CaptureQueriesContext(connection) as queries:
            claimed = claim(worker, 3)
    finally:
        tallies.unbuffer()
    assert [t.object_id for t in claimed] == [str(j.pk) for j in jobs], queries.captured_queries
    expected = {"postgresql": 1, "sqlite": 2}.get(connection.vendor)  # SQLite reads first
    if expected is not None:
        assert len(queries.captured_queries) == expected, queries.captured_queries
    with CaptureQueriesContext(connection) as queries:
        for task in claimed:
            assert task.status == Status.RUNNING and task.worker_id == worker.pk
            assert task.start_date >= task.created_at
            assert task.content_type.model == "job"  # no query: from the cache
            assert task.target is None or task.target.pk
    assert len(queries.captured_queries) <= 3


def test_a_fenced_worker_claims_nothing():
    from django.utils import timezone

    from djangotasks.models import Worker
    from djangotasks.models.claiming import claim

    worker = Worker.objects.create(hostname="h", pid=1, stopped_at=timezone.now())
    Job.objects.create().hello.run()
    assert claim(worker, 5) == []
    assert Task.objects.get().status == Status.SCHEDULED


def test_the_pids_of_a_claim_are_stored_in_one_statement():
    from djangotasks.models.claiming import record_pids

    tasks = Job.hello.run_for([Job.objects.create() for _ in range(3)])
    with CaptureQueriesContext(connection) as queries:
        record_pids({tasks[0].pk: 111, tasks[2].pk: 333})
    assert len(queries.captured_queries) == 1
    assert dict(Task.objects.values_list("pk", "pid")) == {
        tasks[0].pk: 111,
        tasks[1].pk: None,
        tasks[2].pk: 333,
    }

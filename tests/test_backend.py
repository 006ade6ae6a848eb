"""djangotasks as a backend of Django's tasks framework, against real daemons.

In the style of Django's and django-tasks-db's own backend tests: every field and status of a
``TaskResult`` through a task's life, every error kind, defer, priority, queues, context,
async tasks, transactions, signals, JSON refusals, unknown ids, cancel and retries.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync

pytest.importorskip(
    "djangotasks.tasks_framework",
    reason="Django's tasks framework: Django >= 6.0, or the django-tasks backport",
    exc_type=ImportError,
)

from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from djangotasks import backend as process_backend
from djangotasks.backend import ProcessBackend, ProcessTask
from djangotasks.exceptions import InvalidTransition, NotJSON
from djangotasks.models import Task
from djangotasks.statuses import Status
from djangotasks.tasks_framework import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    default_task_backend,
    task_backends,
)
from tests import backend_tasks as tasks
from tests.helpers import wait_until

per_task_options = pytest.mark.skipif(
    not tasks.PER_TASK_OPTIONS, reason="@task(timeout=..., retries=...): Django >= 6.1"
)

FINISHED = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}


def wait_result(result, statuses=FINISHED, timeout: float = 30.0):
    def reached():
        result.refresh()
        return result.status in statuses

    wait_until(reached, timeout)
    return result


def row_of(result) -> Task:
    return process_backend.task_of(result)


# -- the contract, without a daemon --------------------------------------------------------


def test_the_backend_supports_everything_django_asks_about():
    backend = task_backends["default"]
    assert isinstance(backend, ProcessBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority
    assert isinstance(tasks.add, ProcessTask)


@pytest.mark.django_db(transaction=True)
def test_enqueue_returns_a_ready_result_with_every_field():
    before = timezone.now()
    result = tasks.build_report.enqueue(42, full=True)
    assert result.status == TaskResultStatus.READY
    assert isinstance(result.id, str) and result.id
    assert result.task == tasks.build_report
    assert result.args == [42]
    assert result.kwargs == {"full": True}
    assert result.backend == "default"
    assert before <= result.enqueued_at <= timezone.now()
    assert result.started_at is None
    assert result.finished_at is None
    assert result.last_attempted_at is None
    assert result.errors == []
    assert result.worker_ids == []
    assert result.attempts == 0
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    row = row_of(result)
    assert (row.status, row.priority, row.queue_name) == (Status.SCHEDULED, 10, "reports")
    assert row.arguments == {"args": [42], "kwargs": {"full": True}, "backend": "default"}
    # get_result from the task, and from the backend, give the same result.
    assert tasks.build_report.get_result(result.id).id == result.id
    assert default_task_backend.get_result(result.id).args == [42]


@pytest.mark.django_db(transaction=True)
def test_get_result_of_an_unknown_id_raises():
    for unknown in ["nope", "", "x" * 300, "00000000-0000-0000-0000-000000000000"]:
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(unknown)
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.fail.get_result(result.id)
    # A djangotasks task of its own is not a result, whatever its object's id.
    from tests.models import Job

    job = Job.objects.create()
    job.hello().run()
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(job.pk))


@pytest.mark.django_db(transaction=True)
def test_a_ready_result_cancelled_fails_at_once_and_never_runs():
    result = tasks.add.enqueue(1, 2)
    row = process_backend.cancel(result)
    assert row.status == Status.CANCELLED
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == [] and result.started_at is None
    [error] = result.errors
    assert error.exception_class_path == "djangotasks.exceptions.TaskCancelled"
    assert error.traceback == "Cancelled before it started."


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result():
    async def scenario():
        result = await tasks.add.aenqueue(2, 3)
        assert result.status == TaskResultStatus.READY
        again = await tasks.add.aget_result(result.id)
        assert again.args == [2, 3]
        with pytest.raises(TaskResultDoesNotExist):
            await default_task_backend.aget_result("unknown")

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_arguments_that_do_not_round_trip_through_json_are_refused_naming_them():
    refused = [
        ((timezone.now(),), {}, r"args\[0\] is datetime"),
        ((), {"ids": {1, 2}}, r"kwargs\['ids'\] is \{1, 2\} \(set\)"),
        (({1: "a"},), {}, r"args\[0\] key 1 is 1 \(int\)"),
        ((float("nan"),), {}, r"args\[0\] is nan \(float\), and JSON has no NaN"),
        (("a\x00b",), {}, r"args\[0\] .*NUL"),
        (("\ud800",), {}, r"args\[0\] .*lone surrogate"),
        ((b"bytes",), {}, r"args\[0\] is b'bytes' \(bytes\)"),
        (([object()],), {}, r"args\[0\]\[0\] is <object object"),
    ]
    for args, kwargs, message in refused:
        with pytest.raises(NotJSON, match=message):
            tasks.add.enqueue(*args, **kwargs)
    assert not Task.objects.exists(), "a refused enqueue stores nothing"
    # Tuples become lists, as Django's own backends make them.
    result = tasks.add.enqueue((1, 2), {"k": (3,)})
    assert result.args == [[1, 2], {"k": [3]}]


def test_validate_task_follows_the_contract():
    backend = default_task_backend
    with pytest.raises(InvalidTask, match="Queue 'elsewhere' is not valid"):
        tasks.add.using(queue_name="elsewhere")
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))

    def local():
        pass

    # Django 6.0's Task has no defaults for these; 6.1's and the backport's have.
    required = {"priority": 0, "backend": "default", "queue_name": "default", "run_after": None}
    with pytest.raises(InvalidTask, match="module level"):
        backend.validate_task(ProcessTask(func=local, **required))
    with pytest.raises(InvalidTask, match="timeout"):
        ProcessTask(func=tasks.add.func, timeout=-1, **required)
    with pytest.raises(InvalidTask, match="first argument of 'context'"):
        ProcessTask(func=tasks.add.func, takes_context=True, **required)


def test_check_reports_misconfiguration_with_ids():
    bad = ProcessBackend(
        "bad", {"QUEUES": ["ok", ""], "OPTIONS": {"timeout": "soon", "colour": "red"}}
    )
    ids = sorted(message.id for message in bad.check())
    assert ids == ["djangotasks.E011", "djangotasks.E011", "djangotasks.E012"], ids
    messages = " ".join(message.msg for message in bad.check())
    assert "'colour'" in messages and "timeout" in messages and "''" in messages
    assert ProcessBackend("good", {"OPTIONS": {"retries": 2}}).check() == []


# -- through a task's life, against a real daemon -------------------------------------------


def test_a_task_runs_in_its_own_process_and_returns_a_value(daemon):
    result = tasks.build_report.enqueue(42, full=True)
    wait_result(result)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == {"report": 42, "full": True, "rows": [1, 2, 3]}
    assert result.errors == []
    assert result.worker_ids == [str(daemon.worker.pk)]
    assert result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    row = row_of(result)
    assert row.log == "building report 42\n"
    assert row.pid not in (None, daemon.pid)
    assert row.queue_name == "reports"


def test_a_running_result_says_so(daemon):
    result = tasks.sleeper.enqueue(30)
    wait_result(result, {TaskResultStatus.RUNNING})
    assert result.started_at is not None and result.finished_at is None
    assert result.worker_ids == [str(daemon.worker.pk)]
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    wait_until(lambda: "sleeping" in row_of(result).log)
    process_backend.cancel(result)
    wait_result(result)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djangotasks.exceptions.TaskCancelled"
    assert error.exception_class.__name__ == "TaskCancelled"
    with pytest.raises(InvalidTransition):
        process_backend.cancel(result)


def test_an_exception_is_the_results_error_with_its_traceback(daemon):
    result = wait_result(tasks.fail.enqueue("bad input"))
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "raise ValueError(message)" in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: bad input")
    assert result.finished_at is not None
    assert "about to fail" in row_of(result).log


@pytest.mark.parametrize(
    ("task_name", "class_path", "reason"),
    [
        pytest.param(
            "too_slow",
            "djangotasks.exceptions.TaskTimedOut",
            "Timed out after 1 s.",
            marks=per_task_options,
        ),
        pytest.param(
            "hog",
            "djangotasks.exceptions.TaskMemoryLimitExceeded",
            "Out of memory",
            marks=per_task_options,
        ),
        ("crash", "djangotasks.exceptions.TaskCrashed", "Killed by SIGKILL."),
        ("not_json_return", "djangotasks.exceptions.NotJSON", "the return value['when'] is"),
        ("nul_return", "djangotasks.exceptions.NotJSON", "NUL"),
    ],
)
def test_every_way_of_failing_has_an_error_class_that_says_which(
    daemon, task_name, class_path, reason
):
    result = wait_result(getattr(tasks, task_name).enqueue())
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == class_path
    assert reason in row_of(result).reason
    assert issubclass(error.exception_class, BaseException)


def test_a_lost_worker_is_the_results_error(start_daemon):
    first = start_daemon(DJANGOTASKS_WORKER_TIMEOUT="3", DJANGOTASKS_HEARTBEAT="0.5")
    result = tasks.sleeper.enqueue(60)
    wait_result(result, {TaskResultStatus.RUNNING})
    first.kill()  # SIGKILL: its task dies with it (parent-death signal)
    start_daemon(DJANGOTASKS_WORKER_TIMEOUT="3", DJANGOTASKS_HEARTBEAT="0.5")
    wait_result(result)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djangotasks.exceptions.WorkerLost"


@per_task_options
def test_retries_keep_one_result_with_an_error_and_a_worker_per_attempt(daemon):
    result = wait_result(tasks.flaky.enqueue(3))
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == 3  # the context's attempt was right on every attempt
    assert result.attempts == 3
    assert result.worker_ids == [str(daemon.worker.pk)] * 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"] * 2
    assert "attempt 1 failed" in result.errors[0].traceback
    assert "attempt 2 failed" in result.errors[1].traceback
    rows = list(Task.objects.filter(object_id=result.id).order_by("attempt"))
    assert [(r.attempt, r.archived, r.status) for r in rows] == [
        (1, True, Status.UNSUCCESSFUL),
        (2, True, Status.UNSUCCESSFUL),
        (3, False, Status.SUCCESSFUL),
    ]
    assert result.started_at == rows[0].start_date
    assert result.last_attempted_at == rows[2].start_date
    # Out of attempts: failed, with every attempt's error.
    failed = wait_result(tasks.flaky.enqueue(10))
    assert failed.status == TaskResultStatus.FAILED
    assert failed.attempts == 3 and len(failed.errors) == 3


def test_context_and_async_tasks(daemon):
    context = wait_result(tasks.with_context.enqueue("x"))
    assert context.return_value == {"label": "x", "attempt": 1, "id": context.id}
    sum_ = wait_result(tasks.async_add.enqueue(2, 40))
    assert sum_.return_value == 42
    row = row_of(sum_)
    assert f"async task ran in pid {row.pid}" in row.log


def test_progress_is_reported_like_any_task(daemon):
    result = wait_result(tasks.progress.enqueue(5))
    assert result.return_value == 5
    row = row_of(result)
    assert (row.progress_current, row.progress_total, row.progress_message) == (5, 5, "step 5")


def test_run_after_defers_and_priority_orders(start_daemon):
    later = tasks.add.using(run_after=timezone.now() + timedelta(seconds=2)).enqueue(1, 1)
    low = tasks.add.using(priority=-5).enqueue(0, 0)
    high = tasks.add.using(priority=50).enqueue(0, 1)
    assert row_of(later).run_after is not None
    start_daemon(concurrency=1)
    for result in (low, high, later):
        wait_result(result)
    assert high.started_at < low.started_at, "priority before FIFO"
    assert later.started_at >= later.enqueued_at + timedelta(seconds=2)
    assert later.return_value == 2


def test_a_daemon_serving_one_queue_never_claims_another_queues_tasks(start_daemon, tmp_path):
    reports_daemon = start_daemon(queues=["reports"])
    wait_until(lambda: "queues: reports" in reports_daemon.log)
    default = tasks.add.enqueue(1, 2)
    report = tasks.report_noop.enqueue()
    wait_result(report)
    assert report.worker_ids == [str(reports_daemon.worker.pk)]
    # The default-queue task waits for a daemon that serves it, however long.
    default.refresh()
    assert default.status == TaskResultStatus.READY
    status = io.StringIO()
    with pytest.raises(SystemExit):  # exit 3: no daemon on this pid file, which is fine here
        call_command("taskd", "status", "--pidfile", str(tmp_path / "none.pid"), stdout=status)
    assert "queue: 1 scheduled (default 1)" in status.getvalue()
    with pytest.raises(CommandError, match="--queue takes a name"):
        call_command("taskd", "run", "--queue", "")
    default_daemon = start_daemon()
    wait_result(default)
    assert default.worker_ids == [str(default_daemon.worker.pk)]


# -- transactions ---------------------------------------------------------------------------


def test_a_result_enqueued_in_a_transaction_runs_only_after_commit(daemon):
    with transaction.atomic():
        result = tasks.add.enqueue(3, 4)
        # Five times the poll interval, and far longer than a wake-up: the daemon would
        # have claimed the row by now if it could see it.
        time.sleep(1.0)
        row = Task.objects.get(object_id=result.id)
        assert (row.status, row.worker_id) == (Status.SCHEDULED, None)
    wait_result(result)
    assert result.return_value == 7


def test_a_rolled_back_enqueue_never_runs(daemon):
    try:
        with transaction.atomic():
            result = tasks.add.enqueue(5, 6)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    after = wait_result(tasks.add.enqueue(1, 1))  # the daemon ran what was committed
    assert after.return_value == 2
    with pytest.raises(TaskResultDoesNotExist):
        result.refresh()
    assert not Task.objects.filter(object_id=result.id).exists()


# -- signals ----------------------------------------------------------------------------------


def test_signals_are_sent_as_djangos_backends_send_them(start_daemon, tmp_path):
    from djangotasks.tasks_framework import task_enqueued

    enqueued = []

    def receiver(sender, task_result, **kwargs):
        enqueued.append((sender, task_result.id, task_result.status))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert enqueued == [(ProcessBackend, result.id, TaskResultStatus.READY)]
    log = tmp_path / "signals.log"
    start_daemon(DJANGOTASKS_SIGNAL_LOG=str(log))
    failed = tasks.fail.enqueue("no")
    wait_result(result)
    wait_result(failed)
    wait_until(lambda: log.exists() and log.read_text().count("django_task_finished") == 2)
    lines = log.read_text().splitlines()
    assert f"django_task_started {result.id} RUNNING ProcessBackend" in lines
    assert f"django_task_finished {result.id} SUCCESSFUL ProcessBackend" in lines
    assert f"django_task_finished {failed.id} FAILED ProcessBackend" in lines


# -- the admin and the Task row -----------------------------------------------------------------


def test_run_again_enqueues_the_same_arguments_as_a_new_result(daemon):
    result = wait_result(tasks.add.enqueue(20, 22))
    row = row_of(result)
    again = row.run()
    assert again.pk != row.pk and again.object_id != row.object_id
    second = tasks.add.get_result(again.object_id)
    assert second.args == [20, 22]
    assert wait_result(second).return_value == 42
    assert Task.objects.filter(pk=row.pk, archived=False).exists(), "the first result stays"


@pytest.mark.django_db(transaction=True)
def test_a_django_task_cannot_be_run_without_its_arguments():
    from djangotasks.registry import registry

    with pytest.raises(InvalidTransition, match=r"through its \.enqueue"):
        registry.get("tests.backend_tasks.add").current(None).run()
    with pytest.raises(CommandError, match=r"\.enqueue\("):
        call_command("tasks", "run", "tests.backend_tasks.add")
    assert not Task.objects.exists()

"""Deadlocks between callers: the database rolls one back to let the others through, and
``run()``, ``run_for()``, ``cancel()`` and ``enqueue()`` run it again when they own their
transaction (inside the caller's transaction the caller sees the error: it lost all of it).

Real deadlocks, made with real connections in threads: on MariaDB the three-transaction
duplicate-key case (two INSERTs of one live key waiting on a third transaction that rolls
back), on both servers two transactions locking two rows in opposite orders. SQLite locks
the whole database and has no deadlocks to break.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from djangotasks import dberrors, routing
from djangotasks.models import Task
from djangotasks.statuses import Status
from tests.helpers import wait_until
from tests.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

servers_only = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite locks the whole database: no deadlocks"
)
mariadb_only = pytest.mark.skipif(
    connection.vendor != "mysql", reason="InnoDB's shared lock on a duplicate key"
)

DEADLOCK_LOG = "was chosen to break a deadlock"


class Caller(threading.Thread):
    """Run ``func`` on a connection of its own; keep what it returned or raised."""

    def __init__(self, func: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.func = func
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.func()
        except BaseException as exc:  # kept for the test to look at
            self.error = exc
        finally:
            connection.close()  # this thread's own

    def outcome(self) -> Any:
        self.join(60)
        assert not self.is_alive()
        return self.error if self.error is not None else self.result


def lock_waits() -> int:
    """How many transactions of this database wait for a lock right now."""
    with connection.cursor() as cursor:
        # Of this test database only: CI runs other suites beside this one.
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
                " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
                " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
            )
        else:
            cursor.execute(
                "SELECT COUNT(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        return cursor.fetchone()[0]


def duplicate_key_deadlock(second: Callable[[], Any]) -> tuple[Any, Any]:
    """Hold ``job.counter()``'s live row in an open transaction, start two ``second()``
    calls that wait on it, and roll it back once both wait: InnoDB gives both a shared lock
    on the key, both then want it exclusively, and it rolls one back. What each returned or
    raised."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Job.objects.get(pk=JOB_PK[0]).counter().run()
            holding.set()
            release.wait(60)
            transaction.set_rollback(True)

    holder = Caller(hold)
    holder.start()
    assert holding.wait(30)
    first, other = Caller(second), Caller(second)
    first.start()
    other.start()
    # InnoDB refreshes INNODB_TRX only when it was not read for 0.1 s: poll slower than that.
    wait_until(lambda: lock_waits() >= 2, interval=0.2)
    release.set()
    holder.outcome()
    return first.outcome(), other.outcome()


JOB_PK: list[int] = []  # the job the callers share (threads look it up by its id)


@pytest.fixture
def job() -> Job:
    created = Job.objects.create()
    JOB_PK[:] = [created.pk]
    return created


@mariadb_only
def test_run_chosen_to_break_a_deadlock_runs_again_and_returns_the_live_task(job, caplog):
    caplog.set_level("INFO", logger="djangotasks")

    first, other = duplicate_key_deadlock(lambda: Job.objects.get(pk=job.pk).counter().run())

    assert isinstance(first, Task) and isinstance(other, Task), (first, other)
    assert first.pk == other.pk  # the one that lost found the winner's row
    assert Task.objects.filter(name="tests.Job.counter").count() == 1
    assert Task.objects.get(pk=first.pk).status == Status.SCHEDULED
    # The deadlock did happen, and was run again rather than avoided by luck.
    assert sum(DEADLOCK_LOG in message for message in caplog.messages) == 1


@mariadb_only
def test_run_for_chosen_to_break_a_deadlock_runs_again(job, caplog):
    caplog.set_level("INFO", logger="djangotasks")
    others = [Job.objects.create() for _ in range(3)]

    def run_for() -> list[Task]:
        jobs = Job.objects.filter(pk__in=[job.pk, *(o.pk for o in others)]).order_by("pk")
        return Job.counter.run_for(jobs)

    first, other = duplicate_key_deadlock(run_for)

    assert isinstance(first, list) and isinstance(other, list), (first, other)
    assert [t.pk for t in first] == [t.pk for t in other]
    assert Task.objects.filter(name="tests.Job.counter").count() == 4
    assert sum(DEADLOCK_LOG in message for message in caplog.messages) == 1


@mariadb_only
def test_inside_the_callers_transaction_the_deadlock_is_the_callers_to_see(job, caplog):
    caplog.set_level("INFO", logger="djangotasks")

    def run_in_transaction() -> Task:
        with transaction.atomic():
            return Job.objects.get(pk=job.pk).counter().run()

    outcomes = duplicate_key_deadlock(run_in_transaction)

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1, outcomes
    assert dberrors.is_deadlock(errors[0])
    (winner,) = [o for o in outcomes if isinstance(o, Task)]
    assert list(Task.objects.values_list("pk", flat=True)) == [winner.pk]
    assert not any(DEADLOCK_LOG in message for message in caplog.messages)


@servers_only
def test_opposite_lock_orders_deadlock_and_the_victim_runs_again(caplog):
    caplog.set_level("INFO", logger="djangotasks")
    a, b = Job.objects.create(), Job.objects.create()
    both_locked_one = threading.Barrier(2, timeout=30)
    attempts: list[int] = []

    @routing.deadlock_retried
    def lock_both(first: int, second: int) -> int:
        attempts.append(first)
        with transaction.atomic():
            Job.objects.filter(pk=first).update(seconds=1)
            if len(attempts) <= 2:  # both first attempts: meet, then cross
                both_locked_one.wait()
            Job.objects.filter(pk=second).update(seconds=2)
        return first

    callers = [Caller(lambda: lock_both(a.pk, b.pk)), Caller(lambda: lock_both(b.pk, a.pk))]
    for caller in callers:
        caller.start()

    assert sorted(caller.outcome() for caller in callers) == sorted([a.pk, b.pk])
    assert len(attempts) == 3  # one of the two was rolled back and ran once more
    assert sum(DEADLOCK_LOG in message for message in caplog.messages) == 1


@servers_only
def test_cancel_chosen_to_break_a_deadlock_starts_again_from_what_the_row_holds(caplog):
    """The cancel's compare-and-set succeeds, then failing its dependent deadlocks with
    another transaction: both are rolled back, and the second attempt must not take the
    first one's "cancelled" (kept in memory only) for what the row holds."""
    caplog.set_level("INFO", logger="djangotasks")
    job = Job.objects.create()
    dependent = job.step_two().run()
    (dependency,) = dependent.dependencies.all()
    for _ in range(30):  # the other transaction writes more: the database picks the cancel
        Job.objects.create()
    other_locked, go_on = threading.Event(), threading.Event()

    def other() -> None:
        with transaction.atomic():
            Job.objects.update(count=1)
            Task.objects.filter(pk=dependent.pk).update(priority=5)
            other_locked.set()
            assert go_on.wait(30)
            Task.objects.filter(pk=dependency.pk).update(priority=5)

    writer = Caller(other)
    writer.start()
    assert other_locked.wait(30)
    canceller = Caller(dependency.cancel)
    canceller.start()
    wait_until(lambda: lock_waits() >= 1, interval=0.2)  # it waits on the dependent's row
    go_on.set()

    assert writer.outcome() is None
    cancelled = canceller.outcome()
    assert isinstance(cancelled, Task), cancelled  # not "already finished"
    assert sum("cancel was chosen to break a deadlock" in m for m in caplog.messages) == 1
    dependency.refresh_from_db()
    dependent.refresh_from_db()
    assert (dependency.status, dependency.priority) == (Status.CANCELLED, 5)
    assert (cancelled.status, cancelled.reason) == (Status.CANCELLED, dependency.reason)
    assert dependency.reason == "Cancelled before it started."
    assert (dependent.status, dependent.priority) == (Status.UNSUCCESSFUL, 5)


def test_only_deadlocks_are_run_again():
    calls = []

    @routing.deadlock_retried
    def fails() -> None:
        calls.append(1)
        raise OperationalError("no such table: nowhere")

    with pytest.raises(OperationalError):
        fails()
    assert len(calls) == 1
    assert not dberrors.is_deadlock(OperationalError("database is locked"))

"""The running totals behind the metrics: counted with each status change, buffered by the
daemon, written at once elsewhere, never taken back by pruning."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from djangotasks import tallies
from djangotasks.models import Task
from tests.helpers import tasks, wait_status, wait_until
from tests.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def histogram_count(totals: dict[tallies.Key, float], metric: str, name: str) -> float:
    return sum(v for (m, n, _label), v in totals.items() if m == metric and n == name)


def test_a_change_outside_the_daemon_is_counted_at_once_in_its_transaction():
    task = Job.objects.create().hello.run()
    task.cancel()  # scheduled: cancelled at once, by this process
    assert tallies.totals()[("finished", "tests.Job.hello", "cancelled")] == 1
    assert not tallies.has_pending()


def test_the_daemon_counts_ends_by_outcome_run_times_and_pickup_delays(daemon):
    ok = [Job.objects.create().hello.run() for _ in range(3)]
    bad = Job.objects.create().fail.run()
    for task in [*ok, bad]:
        wait_status(task)

    def counted() -> dict[tallies.Key, float]:
        totals = tallies.totals()
        ended = sum(v for (metric, *_rest), v in totals.items() if metric == "finished")
        return totals if ended == 4 else {}

    totals = wait_until(counted)  # the daemon writes its counts about once a second
    assert totals.get(("finished", "tests.Job.hello", "successful")) == 3
    assert totals.get(("finished", "tests.Job.fail", "failed")) == 1
    assert histogram_count(totals, "duration", "tests.Job.hello") == 3
    assert histogram_count(totals, "duration", "tests.Job.fail") == 1
    assert histogram_count(totals, "pickup", "default") == 4
    ran = sum((t.end_date - t.start_date).total_seconds() for t in Task.objects.all())
    sums = (
        totals[("duration_sum", "tests.Job.hello", "")]
        + totals[("duration_sum", "tests.Job.fail", "")]
    )
    assert sums == pytest.approx(ran)
    assert totals[("pickup_sum", "default", "")] >= 0


def test_buffered_counts_are_written_together_a_statement_or_two_per_key():
    tallies.buffer()
    try:
        for outcome in ("successful", "failed", "successful"):
            counts = tallies.Counts(float, {("finished", "tests.x", outcome): 1.0})
            tallies.add(counts)
        assert tallies.has_pending() and not tallies.totals()
        with CaptureQueriesContext(connection) as queries:
            tallies.flush()
        control = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")
        writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(control)]
        assert len(writes) == 4, writes  # per key: an UPDATE, and an INSERT where none was yet
    finally:
        tallies.unbuffer()
    assert tallies.totals() == {
        ("finished", "tests.x", "successful"): 2,
        ("finished", "tests.x", "failed"): 1,
    }


def test_pruning_old_tasks_takes_nothing_back():
    task = Job.objects.create().hello.run()
    task.cancel()
    before = tallies.totals()
    Task.objects.filter(pk=task.pk).update(end_date=task.end_date.replace(year=2000))
    tasks("prune", "--days", "1")
    assert not Task.objects.filter(pk=task.pk).exists()
    assert tallies.totals() == before


def test_buckets_hold_their_upper_bound():
    assert tallies.bucket(0.0, tallies.DURATION_BUCKETS) == "1"
    assert tallies.bucket(60.0, tallies.DURATION_BUCKETS) == "60"
    assert tallies.bucket(60.5, tallies.DURATION_BUCKETS) == "300"
    assert tallies.bucket(10**9, tallies.DURATION_BUCKETS) == tallies.INF
    assert tallies.bucket(float("nan"), tallies.PICKUP_BUCKETS) == tallies.INF

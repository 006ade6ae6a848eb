"""Schedules against real daemons: one run per tick across daemons, missed ticks, overlap.

A schedule made here is a row, as staff make it in the admin; schedules written in code
(``@task(schedule=...)``) are in tests/scheduled_tasks.py, loaded only where a test asks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from djangotasks import scheduler
from djangotasks.models import Schedule, ScheduleTick, Task
from djangotasks.models.schedule import Missed, Outcome, Overlap, Source
from djangotasks.statuses import Status
from tests.helpers import wait_until

EVERY_TICK = "tests.tasks.every_tick"
SLOW_TICK = "tests.tasks.slow_tick"
OTHER_TICK = "tests.tasks.other_tick"
THIRD_TICK = "tests.tasks.third_tick"


def seconds_since_epoch() -> float:
    return datetime.now(UTC).timestamp()


def wait_for_phase(period: float, phase: float) -> None:
    """Sleep until ``phase`` seconds after a multiple of ``period`` (epoch-aligned ticks)."""
    time.sleep((phase - seconds_since_epoch() % period) % period)


def runs_of(name: str) -> list[Task]:
    return list(Task.objects.filter(name=name).order_by("pk"))


def test_three_daemons_run_a_one_second_schedule_once_per_tick(start_daemon):
    daemons = [start_daemon(concurrency=2) for _ in range(3)]
    schedule = Schedule.objects.create(
        name="every second", task_name=EVERY_TICK, interval=timedelta(seconds=1)
    )
    time.sleep(30)
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    time.sleep(1)  # a tick being written as it was paused is still counted below
    wait_until(
        lambda: (
            not Task.objects.filter(name=EVERY_TICK, status__in=["scheduled", "running"]).exists()
        )
    )
    ticks = list(schedule.tick_rows.order_by("tick"))
    assert len(ticks) >= 25, [str(t) for t in ticks]
    # Every second from the first tick to the last, each once: none lost, none twice.
    times = [t.tick for t in ticks]
    assert times == [times[0] + timedelta(seconds=i) for i in range(len(times))]
    outcomes = {t.outcome for t in ticks}
    assert outcomes <= {Outcome.RUN, Outcome.SKIPPED}, [str(t) for t in ticks]
    run_ticks = [t for t in ticks if t.outcome == Outcome.RUN]
    runs = runs_of(EVERY_TICK)
    # One task row per run tick, and no other: no daemon ran a tick a second time.
    assert sorted(t.task_id for t in run_ticks) == [task.pk for task in runs]
    assert all(task.status == Status.SUCCESSFUL for task in runs), [str(t) for t in runs]
    assert all(task.log == "tick\n" for task in runs)
    # Each of the three daemons took part in firing and running (no leader).
    workers = {task.worker_id for task in runs}
    assert len(workers) >= 2, workers
    assert all(d.popen.poll() is None for d in daemons)


def test_overlap_skip_records_the_skipped_ticks(start_daemon):
    start_daemon(DJANGOTASKS_SLOW_TICK="3.5")
    schedule = Schedule.objects.create(
        name="slow", task_name=SLOW_TICK, interval=timedelta(seconds=1)
    )
    wait_until(lambda: schedule.tick_rows.filter(outcome=Outcome.SKIPPED).count() >= 2)
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    skipped = schedule.tick_rows.filter(outcome=Outcome.SKIPPED).first()
    first = schedule.tick_rows.filter(outcome=Outcome.RUN).order_by("tick").first()
    assert first is not None and skipped is not None
    assert skipped.task_id == first.task_id  # the run it would have overlapped
    assert f"Run #{first.task_id} was" in skipped.note
    assert len(runs_of(SLOW_TICK)) == 1


def test_overlap_queue_runs_the_tick_when_the_previous_run_ends(start_daemon):
    start_daemon(DJANGOTASKS_SLOW_TICK="2.5")
    schedule = Schedule.objects.create(
        name="queued", task_name=SLOW_TICK, interval=timedelta(seconds=1),
        overlap=Overlap.QUEUE,
    )  # fmt: skip
    # A tick that comes while a run goes on waits for it. (Not necessarily the second run: a
    # loaded machine may handle no tick during the first one, which then just runs later.)
    waited = wait_until(
        lambda: (
            schedule.tick_rows.filter(note="Waited for the previous run.", task__isnull=False)
            .order_by("tick")
            .first()
        ),
        timeout=30,
    )
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    runs = runs_of(SLOW_TICK)
    second = next(run for run in runs if run.pk == waited.task_id)
    first = runs[runs.index(second) - 1]  # the run it waited for
    assert runs.index(second) > 0
    assert first.end_date is not None and second.created_at >= first.end_date
    # While one run waited, the other ticks were skipped: never a pile of waiting runs.
    assert schedule.tick_rows.filter(outcome=Outcome.SKIPPED).exists()
    assert schedule.tick_rows.filter(outcome=Outcome.WAITING).count() <= 1


def test_missed_ticks_follow_each_schedules_policy(start_daemon):
    """Three 20 s schedules whose daemons were all down for their last four ticks."""
    period = 20
    wait_for_phase(period, 6)  # the latest tick is 6 s old: missed, not on time
    now = datetime.now(UTC)
    last_tick = now - timedelta(seconds=now.timestamp() % period)
    schedules = {}
    for policy, name in [(Missed.LATEST, EVERY_TICK), (Missed.NONE, OTHER_TICK),
                         (Missed.EACH, THIRD_TICK)]:  # fmt: skip
        schedules[policy] = Schedule.objects.create(
            name=f"missed {policy}", task_name=name, interval=timedelta(seconds=period),
            missed=policy, missed_within=timedelta(minutes=1, seconds=10),
        )  # fmt: skip
    # As if the daemons had stopped before the tick of 80 s ago.
    Schedule.objects.update(next_tick=last_tick - timedelta(seconds=4 * period))
    start_daemon()
    # "each": the oldest tick (86 s) is older than the 70 s window; the other four run one
    # after another (a function task has one live run: each waits for the previous one).
    started = time.monotonic()
    wait_until(lambda: [t.status for t in runs_of(THIRD_TICK)][:4] == [Status.SUCCESSFUL] * 4)
    print(f"four runs one after another in {time.monotonic() - started:.1f} s")

    def first_five(policy: str) -> list[ScheduleTick]:
        return list(schedules[policy].tick_rows.order_by("tick")[:5])

    latest = first_five(Missed.LATEST)
    assert [t.outcome for t in latest] == [Outcome.MISSED] * 4 + [Outcome.RUN]
    assert latest[4].task_id == runs_of(EVERY_TICK)[0].pk
    assert [t.outcome for t in first_five(Missed.NONE)] == [Outcome.MISSED] * 5
    each = first_five(Missed.EACH)
    assert [t.outcome for t in each] == [Outcome.MISSED] + [Outcome.RUN] * 4
    assert [t.task_id for t in each[1:]] == [t.pk for t in runs_of(THIRD_TICK)[:4]]


def test_a_schedule_removed_from_the_code_stops(start_daemon):
    daemon = start_daemon(DJANGOTASKS_TEST_SCHEDULES="1")
    wait_until(lambda: Schedule.objects.filter(name="tests.scheduled_tasks.every_second").exists())
    schedule = Schedule.objects.get(name="tests.scheduled_tasks.every_second")
    assert schedule.source == Source.CODE and schedule.interval == timedelta(seconds=1)
    paris = Schedule.objects.get(name="tests.scheduled_tasks.nightly_in_paris")
    assert (paris.cron, paris.time_zone, paris.missed) == ("0 3 * * *", "Europe/Paris", "none")
    wait_until(lambda: schedule.tick_rows.filter(outcome=Outcome.RUN).count() >= 2)
    daemon.stop()
    # The next start of the code has no such schedule: the row stays, with its history,
    # and no daemon ticks it any more.
    start_daemon()
    schedule.refresh_from_db()
    assert schedule.source == Source.REMOVED and schedule.next_tick is None
    count = schedule.tick_rows.count()
    time.sleep(2.5)
    assert schedule.tick_rows.count() == count


def test_run_now_records_a_tick_and_runs_at_once(start_daemon):
    start_daemon()
    schedule = Schedule.objects.create(
        name="nightly", task_name=EVERY_TICK, cron="0 3 * * *", time_zone="Europe/Paris"
    )
    task = scheduler.run_now(schedule)
    wait_until(lambda: Task.objects.get(pk=task.pk).status == Status.SUCCESSFUL)
    assert schedule.tick_rows.get().task_id == task.pk


def test_a_scheduled_run_runs_its_dependencies_first(start_daemon):
    start_daemon()
    schedule = Schedule.objects.create(
        name="after cleanup", task_name="tests.tasks.after_cleanup", interval=timedelta(hours=1)
    )
    task = scheduler.run_now(schedule)
    wait_until(lambda: Task.objects.get(pk=task.pk).status == Status.SUCCESSFUL)
    task.refresh_from_db()
    (dependency,) = task.dependencies.all()
    assert dependency.name == "tests.tasks.nightly_cleanup"
    assert dependency.status == Status.SUCCESSFUL and dependency.end_date <= task.start_date


@pytest.mark.skipif(not settings.HAVE_TASKS_FRAMEWORK, reason="Django's tasks framework")
def test_a_django_task_is_scheduled_with_its_arguments(start_daemon):
    start_daemon()
    schedule = Schedule(
        name="add", task_name="tests.backend_tasks.add", interval=timedelta(seconds=1),
        arguments={"args": [2], "kwargs": {"b": 3}},
    )  # fmt: skip
    schedule.full_clean()
    schedule.save()
    wait_until(lambda: schedule.tick_rows.filter(task__status=Status.SUCCESSFUL).exists())
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    run = schedule.tick_rows.filter(task__status=Status.SUCCESSFUL).first().task
    assert run.result == 5 and run.arguments["kwargs"] == {"b": 3}

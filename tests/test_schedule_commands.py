"""``manage.py tasks schedules`` (the list, ``--run``) and ``tasks prune`` of old ticks."""

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError
from django.utils import timezone

from djangotasks import task
from djangotasks.models import Schedule, ScheduleTick, Task
from djangotasks.models.schedule import Outcome, Source
from djangotasks.statuses import Status
from tests.helpers import tasks, wait_status
from tests.tasks import every_tick

EVERY_TICK = "tests.tasks.every_tick"
HOURLY = "tests.test_schedule_commands.hourly"
PARIS = ZoneInfo("Europe/Paris")


def line_of(output: str, name: str) -> str:
    """The line of schedule ``name``, its columns one space apart."""
    [line] = [line for line in output.splitlines() if line.startswith(f"{name} ")]
    return " ".join(line.split())


def hourly() -> None:  # pragma: no cover - scheduled in a test, never run
    pass


@pytest.mark.django_db
def test_schedules_lists_every_schedule_with_its_next_and_last_run(scratch_registry):
    task(schedule="0 * * * *", time_zone="Europe/Paris")(hourly)
    nightly = Schedule.objects.create(
        name="nightly", task_name=EVERY_TICK, cron="30 2 * * *", time_zone="Europe/Paris"
    )
    run = every_tick.run()
    tick = nightly.next_tick - timedelta(days=1)
    ScheduleTick.objects.create(schedule=nightly, tick=tick, outcome=Outcome.RUN, task=run)
    Schedule.objects.create(
        name="paused", task_name=EVERY_TICK, interval=timedelta(minutes=15), enabled=False
    )
    # A schedule of code that is gone: the listing syncs, as a daemon does when it starts.
    Schedule.objects.create(
        name="tests.gone", task_name="tests.gone", interval=timedelta(hours=1),
        source=Source.CODE,
    )  # fmt: skip

    output = tasks("schedules")

    header, *lines = output.splitlines()
    assert header.split() == ["NAME", "STATE", "TASK", "WHEN", "NEXT", "RUN", "LAST", "RUN"]
    assert [line.split()[0] for line in lines] == ["nightly", "paused", "tests.gone", HOURLY]
    code = Schedule.objects.get(name=HOURLY)
    assert code.source == Source.CODE and code.cron == "0 * * * *"
    line = line_of(output, HOURLY)
    assert f"{HOURLY} enabled (code) {HOURLY} 0 * * * * (Europe/Paris) " in line
    assert f"{code.next_tick.astimezone(PARIS):%Y-%m-%d %H:%M:%S %Z}" in line
    assert line.endswith(" -")  # never ran
    line = line_of(output, "nightly")
    assert f"nightly enabled (admin) {EVERY_TICK} 30 2 * * * (Europe/Paris) " in line
    # Next and last run in the schedule's own time zone.
    nightly.refresh_from_db()
    assert f"{nightly.next_tick.astimezone(PARIS):%Y-%m-%d %H:%M:%S %Z}" in line
    assert nightly.next_tick.astimezone(PARIS).strftime("%Z") in ("CET", "CEST")
    assert line.endswith(f"{tick.astimezone(PARIS):%Y-%m-%d %H:%M:%S %Z} run #{run.pk} scheduled")
    line = line_of(output, "paused")
    assert line == f"paused paused (admin) {EVERY_TICK} every 15 min - -"
    line = line_of(output, "tests.gone")
    assert line == "tests.gone removed from code tests.gone every 1 h - -"


@pytest.mark.django_db
def test_a_tick_no_daemon_acted_on_is_overdue():
    schedule = Schedule.objects.create(
        name="late", task_name=EVERY_TICK, interval=timedelta(minutes=1)
    )
    assert "overdue" not in tasks("schedules")
    Schedule.objects.filter(pk=schedule.pk).update(next_tick=timezone.now() - timedelta(minutes=5))
    assert "(overdue: is a daemon running?)" in line_of(tasks("schedules"), "late")


@pytest.mark.django_db
def test_no_schedules():
    assert tasks("schedules") == "No schedules: add one in the admin, or @task(schedule=...).\n"


@pytest.mark.django_db
def test_running_an_unknown_schedule_lists_the_known_ones():
    Schedule.objects.bulk_create(
        Schedule(name=f"s{i:02}", task_name=EVERY_TICK, cron="0 3 * * *") for i in range(25)
    )
    with pytest.raises(CommandError) as excinfo:
        tasks("schedules", "--run", "nope")
    message = str(excinfo.value)
    assert message.startswith("No schedule named 'nope'. Schedules: s00, s01, ")
    assert "s19, ... (tasks schedules lists them all)" in message
    assert "s20" not in message
    Schedule.objects.filter(name__gt="s01").delete()
    with pytest.raises(CommandError, match=r"No schedule named 'nope'\. Schedules: s00, s01$"):
        tasks("schedules", "--run", "nope")
    Schedule.objects.all().delete()
    with pytest.raises(CommandError, match=r"Schedules: none$"):
        tasks("schedules", "--run", "nope")


@pytest.mark.django_db
def test_running_a_schedule_whose_task_is_gone_is_a_clear_error():
    Schedule.objects.create(name="orphan", task_name="tests.gone", cron="0 3 * * *")
    with pytest.raises(CommandError, match="Schedule 'orphan' cannot run: No @task is registered"):
        tasks("schedules", "--run", "orphan")
    assert not ScheduleTick.objects.exists()


def test_run_starts_the_task_now_and_records_a_tick(start_daemon):
    start_daemon()
    schedule = Schedule.objects.create(
        name="nightly", task_name=EVERY_TICK, cron="0 3 * * *", time_zone="Europe/Paris",
        enabled=False,
    )  # fmt: skip
    output = tasks("schedules", "--run", "nightly")  # paused or not: a run by hand
    task = Task.objects.get(name=EVERY_TICK)
    assert output == f"#{task.pk} scheduled\n"
    assert wait_status(task).status == Status.SUCCESSFUL
    tick = schedule.tick_rows.get()
    assert (tick.task_id, tick.outcome, tick.note) == (task.pk, Outcome.RUN, "Run by hand.")
    assert line_of(tasks("schedules"), "nightly").endswith(f"run #{task.pk} successful")


@pytest.mark.django_db
def test_prune_deletes_old_ticks_but_each_schedules_newest(monkeypatch):
    monkeypatch.setattr("djangotasks.management.commands.tasks.PRUNE_BATCH", 2)
    now = timezone.now().astimezone(UTC).replace(microsecond=0)
    busy = Schedule.objects.create(name="busy", task_name=EVERY_TICK, cron="0 3 * * *")
    rare = Schedule.objects.create(name="rare", task_name=EVERY_TICK, cron="0 3 1 1 *")
    old_run = every_tick.run()

    def tick(schedule: Schedule, days: float, outcome: str = Outcome.RUN, **extra) -> int:
        when = now - timedelta(days=days)
        return ScheduleTick.objects.create(
            schedule=schedule, tick=when, outcome=outcome, **extra
        ).pk

    for days in range(31, 40):
        tick(busy, days, Outcome.MISSED)
    tick(busy, 40, task=old_run)
    waiting = tick(busy, 35.5, Outcome.WAITING)  # still to run
    recent = tick(busy, 29)
    only = tick(rare, 300)  # the last time it ran: still shown by "tasks schedules"

    assert "pruned 10 schedule tick(s)" in tasks("prune")
    assert set(ScheduleTick.objects.values_list("pk", flat=True)) == {waiting, recent, only}
    assert Task.objects.filter(pk=old_run.pk).exists()  # not finished: tasks prune keeps it
    assert "pruned 0 schedule tick(s)" in tasks("prune")
    output = tasks("prune", "--days", "0")
    assert "pruned 0 task(s)" in output and "pruned 0 schedule tick(s)" in output


@pytest.mark.django_db
def test_prune_keeps_the_ticks_of_pruned_tasks_when_recent():
    schedule = Schedule.objects.create(name="busy", task_name=EVERY_TICK, cron="0 3 * * *")
    run = every_tick.run()
    run.cancel()
    Task.objects.filter(pk=run.pk).update(end_date=timezone.now() - timedelta(days=40))
    for days in (1, 2):
        ScheduleTick.objects.create(
            schedule=schedule, tick=timezone.now() - timedelta(days=days),
            outcome=Outcome.RUN, task=run,
        )  # fmt: skip
    output = tasks("prune")
    assert "pruned 1 task(s)" in output and "pruned 0 schedule tick(s)" in output
    assert list(schedule.tick_rows.values_list("task", flat=True)) == [None, None]


@pytest.mark.django_db
def test_the_list_costs_the_same_few_queries_however_many_schedules(django_assert_num_queries):
    run = every_tick.run()
    for i in range(30):
        schedule = Schedule.objects.create(name=f"s{i:02}", task_name=EVERY_TICK, cron="0 3 * * *")
        ScheduleTick.objects.create(
            schedule=schedule, tick=timezone.now(), outcome=Outcome.RUN, task=run
        )
    # The code's schedules, the schedules with their last tick's id, those ticks with runs.
    with django_assert_num_queries(3):
        output = tasks("schedules")
    assert output.count(f"run #{run.pk} scheduled") == 30

"""Firing schedules: what every daemon does when a tick comes (no leader, no extra process).

Every daemon runs ``fire_due()`` when the soonest tick comes. For each due schedule it
writes, in one transaction, the rows of the ticks it acts on and the run it starts; the
unique constraint on (schedule, tick) lets the first daemon's transaction through and makes
every other one fail with an IntegrityError, rolled back whole: one run per tick.

"Now" is the database server's clock, the one every host agrees on (see models.clock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError
from django.db.models import Exists, OuterRef
from django.utils import timezone

from djangotasks import dberrors, routing
from djangotasks.exceptions import InvalidTransition
from djangotasks.logfields import fields
from djangotasks.models import Task
from djangotasks.models.clock import DatabaseClock, from_milliseconds
from djangotasks.models.schedule import (
    Missed,
    Outcome,
    Overlap,
    Schedule,
    ScheduleTick,
    Source,
    default_time_zone,
)
from djangotasks.registry import ScheduleSpec, TaskDefinition, UnknownTask, registry
from djangotasks.statuses import PENDING
from djangotasks.ticks import InvalidSchedule

logger = logging.getLogger("djangotasks")

# Missed ticks acted on at most per schedule and pass ("each" runs at most this many).
MAX_CATCH_UP = 10
# A tick found this late is still on time (a daemon's loop or the database was slow); older
# ones passed while no daemon was running: they are missed, and the policy decides.
ON_TIME = timedelta(seconds=2)
# The longest a running daemon takes to learn of a schedule saved elsewhere (5 s where the
# database cannot tell it, see daemon/schedules.py), with room for clocks and a busy loop.
LEARNT_WITHIN = timedelta(seconds=10)


@dataclass(frozen=True)
class Pass:
    """What a pass found: how long until the next tick (None: no schedule is active), and
    which tasks have a run waiting for their previous run to end."""

    next_in: timedelta | None
    waiting: frozenset[str]
    # Ticks were acted on, so runs may have been made: by this daemon, whose own commits
    # wake no one (SQLite), so it must look at the queue itself.
    acted: bool = False


def fire_due() -> Pass:
    """Act on every due tick of every schedule; say when the next one is.

    With nothing due this is one statement: the active schedules' next ticks, the database's
    clock, and whether a run waits, read together.
    """
    rows = _active()
    if not rows:
        return Pass(None, frozenset())
    now = from_milliseconds(rows[0].now)
    due = [row.pk for row in rows if row.next_tick is not None and row.next_tick <= now]
    # Loaded together (a deleted one is simply not there); each is acted on by itself.
    for pk, schedule in (Schedule.objects.in_bulk(due) if due else {}).items():
        try:
            if schedule.enabled and schedule.next_tick is not None:
                fire(schedule, now)
        except IntegrityError:
            pass  # another daemon acted on this tick first
        except Exception as exc:
            if dberrors.is_outage(exc):
                raise
            logger.exception("taskd: schedule #%s failed at %s", pk, now,
                             extra=fields("schedule_failed", schedule_id=pk,
                                          schedule_name=schedule.name))  # fmt: skip
    if due:
        rows = _active()  # moved on, and perhaps with a run waiting now
    waited = any(row.has_waiting for row in rows)
    if waited:
        start_waiting()
    soonest = min((row.next_tick for row in rows if row.next_tick is not None), default=None)
    waiting = frozenset(row.task_name for row in rows if row.has_waiting)
    return Pass(None if soonest is None else soonest - now, waiting, bool(due) or waited)


def _active() -> list[Any]:
    """(pk, next_tick, now, has_waiting, task_name) of every schedule that ticks."""
    active = Schedule.objects.filter(enabled=True, source__in=[Source.ADMIN, Source.CODE])
    waiting = ScheduleTick.objects.filter(schedule=OuterRef("pk"), outcome=Outcome.WAITING)
    return list(
        active.annotate(now=DatabaseClock(), has_waiting=Exists(waiting)).values_list(
            "pk", "next_tick", "now", "has_waiting", "task_name", named=True
        )
    )


def fire(schedule: Schedule, now: datetime) -> None:
    """Act on the due ticks of ``schedule`` (from ``next_tick`` to ``now``)."""
    assert schedule.next_tick is not None
    try:
        ticks = schedule.ticks
    except InvalidSchedule as exc:  # a row written by hand, or a time zone gone from tzdata
        _disable(schedule, str(exc))
        return
    due = ticks.latest(now, schedule.next_tick, MAX_CATCH_UP)  # newest first
    runs, missed = _plan(schedule, due, now)
    with routing.atomic():
        # Every daemon locks the schedule's row first; the others wait here, then find its
        # next tick moved and leave. Racing on the ticks' unique index instead deadlocked on
        # MariaDB: each insert's foreign-key check holds a shared lock on this row, which
        # the winner's UPDATE below then needs exclusively.
        if not _lock_unchanged(schedule):
            return  # another daemon acted on these ticks meanwhile, or someone edited it
        # Oldest first, in every daemon alike: the first insert decides.
        # "Run each" queues the catch-up runs one behind another, whatever the overlap.
        queue_behind = schedule.missed == Missed.EACH and len(runs) > 1
        for tick in sorted([*runs, *missed]):
            if tick in runs:
                _run_tick(schedule, tick, queue_behind)
            else:
                note = ""
                if tick == min(due) and len(due) == MAX_CATCH_UP:
                    note = f"Earlier ticks since {schedule.next_tick:%Y-%m-%d %H:%M:%S} too."
                ScheduleTick.objects.create(
                    schedule=schedule, tick=tick, outcome=Outcome.MISSED, note=note
                )
        # Compare-and-set: an edit in the admin meanwhile (a new next tick) wins.
        Schedule.objects.filter(pk=schedule.pk, next_tick=schedule.next_tick).update(
            next_tick=ticks.after(now)
        )


def _lock_unchanged(schedule: Schedule) -> bool:
    """Lock ``schedule``'s row (until the transaction ends) if its next tick is still the one
    read; False if it moved. A locking read sees the latest committed row."""
    row = Schedule.objects.select_for_update().filter(
        pk=schedule.pk, enabled=True, next_tick=schedule.next_tick
    )
    return bool(list(row.values_list("pk", flat=True)))


def _plan(
    schedule: Schedule, due: list[datetime], now: datetime
) -> tuple[set[datetime], set[datetime]]:
    """Which of the due ticks (newest first) to run, and which to record as missed."""
    if not due:
        return set(), set()
    recent = [tick for tick in due if now - tick <= max(schedule.missed_within, ON_TIME)]
    # On time: a daemon was up. Or the schedule was saved moments ago, and its first ticks
    # came before the daemons could learn of it (MySQL/MariaDB read schedules every 5 s).
    fresh = schedule.updated_at is not None and now - schedule.updated_at <= LEARNT_WITHIN
    runs = {
        tick for tick in due if now - tick <= ON_TIME or (fresh and tick >= schedule.updated_at)
    }
    if schedule.missed == Missed.EACH:
        runs |= set(recent)
    elif schedule.missed == Missed.LATEST:
        runs |= set(recent[:1])
    return runs, set(due) - runs


def _run_tick(schedule: Schedule, tick: datetime, queue_behind: bool = False) -> None:
    """Record ``tick`` of ``schedule`` (the compare-and-set) and start its run, or skip it."""
    row = ScheduleTick.objects.create(schedule=schedule, tick=tick, outcome=Outcome.RUN)
    try:
        definition = registry.get(schedule.task_name)
    except UnknownTask as exc:
        _record(row, Outcome.ERROR, None, str(exc))
        return
    previous = _pending_run(schedule, definition)
    if previous is not None:
        if queue_behind or (
            schedule.overlap == Overlap.QUEUE
            and not schedule.tick_rows.filter(outcome=Outcome.WAITING).exists()
        ):
            _record(row, Outcome.WAITING, None, f"Waits for run #{previous.pk}.")
        else:
            _record(row, Outcome.SKIPPED, previous, f"Run #{previous.pk} was {previous.status}.")
        return
    try:
        task = start_run(schedule, definition)
    except Exception as exc:
        if dberrors.is_outage(exc) or isinstance(exc, IntegrityError):
            raise
        _record(row, Outcome.ERROR, None, f"{type(exc).__name__}: {exc}")
        return
    _record(row, Outcome.RUN, task, "")


def _pending_run(schedule: Schedule, definition: TaskDefinition) -> Task | None:
    """The run of this task that is still scheduled or running, if any."""
    if definition.takes_arguments:
        # Each enqueue is a row of its own: the schedule's own last run is what overlaps.
        return (
            Task.objects.filter(schedule_ticks__schedule=schedule, status__in=list(PENDING))
            .order_by("-pk")
            .first()
        )
    current = definition.current(None)
    return current if current.pk is not None and current.status in PENDING else None


def start_run(schedule: Schedule, definition: TaskDefinition) -> Task:
    """Run the schedule's task now: an ordinary run (dependencies, retries, log, archive)."""
    if definition.takes_arguments:
        from djangotasks.backend import task_of

        arguments = schedule.arguments or {}
        result = definition.django_task.enqueue(
            *arguments.get("args", []), **arguments.get("kwargs", {})
        )
        return task_of(result)
    if definition.is_method:
        raise TypeError(f"{definition.name} is a model method: a schedule has no object")
    return definition.current(None).run()


def _record(row: ScheduleTick, outcome: str, task: Task | None, note: str) -> None:
    row.outcome, row.task, row.note = outcome, task, note[:500]
    row.save(update_fields=["outcome", "task", "note"])


def _disable(schedule: Schedule, why: str) -> None:
    logger.error("taskd: schedule %r cannot tick (%s); paused", schedule.name, why,
                 extra=fields("schedule_paused", schedule_id=schedule.pk,
                              schedule_name=schedule.name))  # fmt: skip
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False, next_tick=None)


def start_waiting() -> None:
    """Start the runs that waited for the previous run of their schedule to end."""
    waiting = ScheduleTick.objects.filter(outcome=Outcome.WAITING, schedule__enabled=True)
    for row in waiting.select_related("schedule").order_by("tick"):
        try:
            definition = registry.get(row.schedule.task_name)
        except UnknownTask:
            continue
        if _pending_run(row.schedule, definition) is not None:
            continue
        with routing.atomic():
            # Compare-and-set: one daemon starts it.
            if ScheduleTick.objects.filter(pk=row.pk, outcome=Outcome.WAITING).update(
                outcome=Outcome.RUN
            ):
                task = start_run(row.schedule, definition)
                ScheduleTick.objects.filter(pk=row.pk).update(
                    task=task, note="Waited for the previous run."
                )


def run_now(schedule: Schedule) -> Task:
    """``tasks schedules --run``: one run now, recorded as a tick of the schedule."""
    definition = registry.get(schedule.task_name)
    with routing.atomic():
        previous = _pending_run(schedule, definition)
        if previous is not None:  # running it again would only return it
            raise InvalidTransition(f"Run #{previous.pk} is still {previous.status}.")
        task = start_run(schedule, definition)
        ScheduleTick.objects.create(
            schedule=schedule,
            tick=timezone.now().astimezone(UTC),
            outcome=Outcome.RUN,
            task=task,
            note="Run by hand.",
        )
    return task


# -- schedules defined in code --------------------------------------------------------


def sync_code_schedules() -> None:
    """Make the schedule rows from ``@task(schedule=...)`` match the code that is loaded.

    A new one is added, a changed one updated (its next tick counted from now), and one
    whose ``@task`` has no schedule any more stops (kept, as "removed from the code", with
    its history). Writes only what differs: every daemon calls this when it starts.
    """
    declared = {d.name: d.schedule for d in registry if d.schedule is not None}
    rows = {s.name: s for s in Schedule.objects.exclude(source=Source.ADMIN)}
    for name, spec in declared.items():
        wanted = _code_fields(name, spec)
        row = rows.get(name)
        if row is None:
            if Schedule.objects.filter(name=name).exists():
                logger.warning("schedule %r of the code has the name of an admin schedule: "
                               "not added", name,
                               extra=fields("schedule_not_added", schedule_name=name))  # fmt: skip
                continue
            try:
                with routing.atomic():
                    Schedule(name=name, **wanted).save()
            except IntegrityError:
                pass  # another daemon added it at the same moment
        elif any(getattr(row, field) != value for field, value in wanted.items()):
            for field, value in wanted.items():
                setattr(row, field, value)
            row.save()
    for name, row in rows.items():
        if name not in declared and row.source == Source.CODE:
            Schedule.objects.filter(pk=row.pk).update(source=Source.REMOVED, next_tick=None)


def _code_fields(name: str, spec: ScheduleSpec) -> dict[str, object]:
    return {
        "task_name": name,
        "cron": spec.cron,
        "interval": spec.interval,
        "time_zone": spec.time_zone or default_time_zone(),
        "missed": spec.missed,
        "missed_within": spec.missed_within,
        "overlap": spec.overlap,
        "source": Source.CODE,
        "enabled": True,
        "arguments": {},
    }


def next_runs(count: int) -> list[tuple[datetime, Schedule]]:
    """The next ``count`` ticks of every active schedule, soonest first (the dashboard)."""
    now = timezone.now()
    runs = [
        (tick, schedule)
        for schedule in Schedule.objects.filter(enabled=True).exclude(source=Source.REMOVED)
        for tick in schedule.upcoming(count, now)
    ]
    return sorted(runs, key=lambda run: run[0])[:count]

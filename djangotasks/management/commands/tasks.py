"""``manage.py tasks list|show|run|cancel|logs|prune|schedules``: tasks from a terminal."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from djangotasks import conf, routing, scheduler
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Schedule, ScheduleTick, Task
from djangotasks.models.schedule import Outcome, Source
from djangotasks.registry import UnknownTask, registry
from djangotasks.statuses import FINISHED, Status
from djangotasks.ticks import InvalidSchedule, check_time_zone

FOLLOW_INTERVAL = 0.5
PRUNE_BATCH = 1000
# A Django task's call in a list line; "show" has it all.
SHORT_CALL = 60
# Longer JSON values (arguments, return value) are printed indented on lines of their own.
SHORT_JSON = 100
# An unknown schedule name lists the known ones, up to this many.
KNOWN_NAMES = 20
# A running daemon acts on a tick within seconds (a schedule edited elsewhere is learnt
# within 5 s, and this host's clock may be a little off the database's): a next run this
# far in the past means that no daemon is running.
OVERDUE = timedelta(minutes=1)


class Command(BaseCommand):
    help = "List, show, run, cancel and follow djangotasks tasks; prune old ones; schedules."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="recent tasks, newest first")
        listing.add_argument("--status", choices=Status.values)
        listing.add_argument("--name", help="task name, e.g. shop.Dataset.import_rows")
        listing.add_argument(
            "--queue", action="append", metavar="NAME", help="only this queue (repeatable)"
        )
        listing.add_argument("--archived", action="store_true", help="include earlier runs")
        listing.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="one task with its log")
        show.add_argument("task_id", type=int)
        run = sub.add_parser("run", help="schedule a @task by name (and optional object id)")
        run.add_argument("name")
        run.add_argument("object_id", nargs="?")
        cancel = sub.add_parser("cancel", help="cancel a scheduled or running task")
        cancel.add_argument("task_id", type=int)
        logs = sub.add_parser("logs", help="print a task's log")
        logs.add_argument("task_id", type=int)
        logs.add_argument("-f", "--follow", action="store_true", help="until the task ends")
        prune = sub.add_parser(
            "prune", help="delete finished tasks and schedule ticks older than N days"
        )
        prune.add_argument("--days", type=int, help="default: RETENTION_DAYS")
        sub.add_parser("names", help="every registered @task")
        schedules = sub.add_parser("schedules", help="every schedule, with its next run")
        schedules.add_argument("--run", metavar="NAME", help="run this schedule's task now")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"_{options['action']}")
        handler(options)

    def _get(self, task_id: int) -> Task:
        try:
            return Task.objects.select_related("content_type", "worker").get(pk=task_id)
        except Task.DoesNotExist:
            raise CommandError(f"No task #{task_id}.") from None

    def _list(self, options: dict[str, Any]) -> None:
        tasks = Task.objects.select_related("content_type").order_by("-created_at", "-id")
        if not options["archived"]:
            tasks = tasks.live()
        if options["status"]:
            tasks = tasks.filter(status=options["status"])
        if options["name"]:
            tasks = tasks.filter(name=options["name"])
        tasks = tasks.in_queues(options["queue"])
        for task in tasks[: options["limit"]]:
            duration = task.duration
            took = f"{duration.total_seconds():.1f}s" if duration is not None else "-"
            if task.is_django_task:
                target = f"{_call(task, SHORT_CALL)}  result {task.object_id}"
            else:
                model = task.content_type.model if task.content_type else "object"
                target = f"{model} #{task.object_id}" if task.object_id else "-"
            self.stdout.write(
                f"#{task.pk:<6} {task.status:<16} {took:>9}  {task.queue_name:<10} "
                f"{task.name}  {target}"
            )

    def _show(self, options: dict[str, Any]) -> None:
        task = self._get(options["task_id"])
        archives = ", ".join(f"#{pk}" for pk in task.archives().values_list("pk", flat=True))
        fields = [
            ("task", f"{task.label} ({task.name})"),
            *self._subject(task),
            ("status", task.status_display),
            ("reason", task.reason or "-"),
            ("scheduled", str(task.created_at)),
            ("started", str(task.start_date or "-")),
            ("ended", str(task.end_date or "-")),
            ("worker", f"{task.worker} pid {task.pid}" if task.worker else "-"),
            ("queue", task.queue_name),
            ("priority", str(task.priority)),
            ("run after", str(task.run_after or "-")),
            ("attempt", str(task.attempt)),
            ("archives", archives or "-"),
        ]
        for name, value in fields:
            self.stdout.write(f"{name:>12}: {value}")
        if task.is_django_task:
            args, kwargs = task.call_arguments
            call = {"args": args, "kwargs": kwargs}
            self.stdout.write(f"{'arguments':>12}: {_json(call)}")
            if task.status == Status.SUCCESSFUL:
                self.stdout.write(f"{'return value':>12}: {_json(task.result)}")
        error = task.error if isinstance(task.error, dict) else {}
        if error.get("exception_class_path"):
            self.stdout.write(f"{'error':>12}: {error['exception_class_path']}")
            traceback = str(error.get("traceback") or "").rstrip("\n")
            self.stdout.write(textwrap.indent(traceback, "    "))
        self.stdout.write("")
        self.stdout.write(task.log, ending="")

    def _subject(self, task: Task) -> list[tuple[str, str]]:
        if not task.is_django_task:
            return [("object", str(task.target) if task.object_id else "-")]
        backend = (task.arguments or {}).get("backend", "-")
        return [("result", f"{task.object_id} (backend {backend})"), ("call", _call(task))]

    def _run(self, options: dict[str, Any]) -> None:
        try:
            definition = registry.get(options["name"])
        except UnknownTask as exc:
            names = ", ".join(sorted(d.name for d in registry))
            raise CommandError(f"{exc} Registered: {names}") from None
        target = None
        if definition.is_method:
            assert definition.model is not None
            if options["object_id"] is None:
                raise CommandError(f"{definition.name} runs on a {definition.model.__name__}: "
                                   "give its primary key.")  # fmt: skip
            try:
                target = definition.model._default_manager.get(pk=options["object_id"])
            except (ObjectDoesNotExist, ValueError):
                raise CommandError(
                    f"No {definition.model.__name__} with primary key {options['object_id']!r}."
                ) from None
        try:
            task = definition.current(target).run()
        except InvalidTransition as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"#{task.pk} {task.status}")

    def _cancel(self, options: dict[str, Any]) -> None:
        task = self._get(options["task_id"])
        try:
            task.cancel()
        except InvalidTransition as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"#{task.pk} {task.status}")

    def _logs(self, options: dict[str, Any]) -> None:
        task = self._get(options["task_id"])
        offset = 0
        while True:
            text, offset = task.read_log(offset)
            if text:
                self.stdout.write(text, ending="")
                self.stdout.flush()
            if not options["follow"] or task.status in FINISHED:
                break
            time.sleep(FOLLOW_INTERVAL)
            task.refresh_from_db(fields=["status", "reason"])
        if options["follow"]:
            # Status first, then one last read: a finished task's log is complete.
            text, offset = task.read_log(offset)
            self.stdout.write(text, ending="")
            reason = f": {task.reason}" if task.reason else ""
            self.stderr.write(f"[task #{task.pk} {task.status}{reason}]")

    def _prune(self, options: dict[str, Any]) -> None:
        days = options["days"] if options["days"] is not None else conf.get().RETENTION_DAYS
        if days < 0:
            raise CommandError("--days cannot be negative")
        cutoff = timezone.now() - timedelta(days=days)
        # Ticks first: deleting their tasks afterwards has fewer tick rows to set null.
        ticks = _prune_ticks(cutoff)
        old = Task.objects.filter(status__in=FINISHED, end_date__lt=cutoff)
        total = old.count()

        def progress(deleted: int) -> None:
            if sys.stdout.isatty():
                self.stdout.write(f"\rpruned {deleted}/{total}", ending="")

        # Batches keep each transaction (and the chunks it cascades to) small.
        deleted = old.delete_in_batches(PRUNE_BATCH, progress)
        self.stdout.write(f"pruned {deleted} task(s) that ended before {cutoff:%Y-%m-%d %H:%M}")
        self.stdout.write(f"pruned {ticks} schedule tick(s) from before {cutoff:%Y-%m-%d %H:%M}")

    def _names(self, options: dict[str, Any]) -> None:
        for definition in sorted(registry, key=lambda d: d.name):
            self.stdout.write(f"{definition.name}  ({definition.label})")

    def _schedules(self, options: dict[str, Any]) -> None:
        # As a daemon does when it starts: the listing shows the code that is loaded here.
        scheduler.sync_code_schedules()
        if options["run"] is not None:
            self._run_schedule(options["run"])
            return
        last = ScheduleTick.objects.filter(schedule=OuterRef("pk")).order_by("-tick", "-pk")
        schedules = list(Schedule.objects.annotate(last_tick=Subquery(last.values("pk")[:1])))
        ticks = ScheduleTick.objects.select_related("task").in_bulk(
            [s.last_tick for s in schedules if s.last_tick is not None]
        )
        rows = [("NAME", "STATE", "TASK", "WHEN", "NEXT RUN", "LAST RUN")]
        now = timezone.now()
        for schedule in schedules:
            zone = _zone(schedule)
            tick = ticks.get(schedule.last_tick)
            rows.append(
                (
                    schedule.name,
                    _state(schedule),
                    schedule.task_name,
                    schedule.when,
                    _next_run(schedule, zone, now),
                    _last_run(tick, zone) if tick is not None else "-",
                )
            )
        if len(rows) == 1:
            self.stdout.write("No schedules: add one in the admin, or @task(schedule=...).")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())

    def _run_schedule(self, name: str) -> None:
        try:
            schedule = Schedule.objects.get(name=name)
        except Schedule.DoesNotExist:
            names = list(Schedule.objects.values_list("name", flat=True)[: KNOWN_NAMES + 1])
            known = ", ".join(names[:KNOWN_NAMES]) or "none"
            if len(names) > KNOWN_NAMES:
                known += ", ... (tasks schedules lists them all)"
            raise CommandError(f"No schedule named {name!r}. Schedules: {known}") from None
        try:
            task = scheduler.run_now(schedule)
        except (UnknownTask, InvalidTransition, TypeError) as exc:
            raise CommandError(f"Schedule {name!r} cannot run: {exc}") from None
        self.stdout.write(f"#{task.pk} {task.status}")


def _prune_ticks(cutoff: datetime) -> int:
    """Delete the tick rows older than ``cutoff``, a batch per transaction.

    Each schedule's newest tick stays, so that ``tasks schedules`` still shows when it last
    ran, and so does a tick whose run waits for the previous one (it is still to run).
    """
    newest = ScheduleTick.objects.filter(schedule=OuterRef("schedule")).order_by("-tick", "-pk")
    old = (
        ScheduleTick.objects.filter(tick__lt=cutoff)
        .exclude(outcome=Outcome.WAITING)
        .exclude(pk=Subquery(newest.values("pk")[:1]))
    )
    deleted = 0
    while True:
        ids = list(old.order_by().values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            return deleted
        with routing.atomic():
            ScheduleTick.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def _zone(schedule: Schedule) -> tzinfo:
    try:
        return check_time_zone(schedule.time_zone)
    except InvalidSchedule:
        return UTC  # a row written by hand; the daemons pause it


def _state(schedule: Schedule) -> str:
    if schedule.source == Source.REMOVED:
        return "removed from code"
    state = "enabled" if schedule.enabled else "paused"
    return f"{state} ({schedule.source})"


def _next_run(schedule: Schedule, zone: tzinfo, now: datetime) -> str:
    if schedule.next_tick is None:
        return "-"
    text = _local(schedule.next_tick, zone)
    if schedule.is_active() and now - schedule.next_tick > OVERDUE:
        text += " (overdue: is a daemon running?)"
    return text


def _last_run(tick: ScheduleTick, zone: tzinfo) -> str:
    text = f"{_local(tick.tick, zone)} {tick.outcome}"
    if tick.task is not None:
        text += f" #{tick.task.pk} {tick.task.status}"
    return text


def _local(instant: datetime, zone: tzinfo) -> str:
    return f"{instant.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"


def _call(task: Task, limit: int | None = None) -> str:
    """A Django task's call as written: ``build_report(42, full=True)``."""
    args, kwargs = task.call_arguments
    parts = [repr(value) for value in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = f"{task.name.rpartition('.')[2]}({', '.join(parts)})"
    return text if limit is None or len(text) <= limit else text[: limit - 2] + "…)"


def _json(value: Any) -> str:
    """One line when it is short, else indented under its label."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= SHORT_JSON:
        return text
    return "\n" + textwrap.indent(json.dumps(value, indent=2, ensure_ascii=False), "    ")

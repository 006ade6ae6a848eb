"""Schedules (periodic runs of a function task) and their ticks (one row per tick acted on).

A tick's row is created in the same transaction as the run it starts, and the unique
constraint on (schedule, tick) lets only one daemon create it: that is the whole of the
"exactly once per tick" guarantee, with no leader and no extra process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from djangotasks import notify, routing
from djangotasks.registry import UnknownTask, registry
from djangotasks.ticks import InvalidSchedule, Ticks

MAX_NAME = 200
NEEDS_USE_TZ = (
    "Schedules need USE_TZ = True (Django's default): their ticks are instants, and a "
    "local time without a zone repeats or skips an hour at each DST change."
)


def default_time_zone() -> str:
    return settings.TIME_ZONE or "UTC"


class Missed(models.TextChoices):
    LATEST = "latest", _("Run the most recent missed tick, if recent enough")
    NONE = "none", _("Run none")
    EACH = "each", _("Run each missed tick (at most 10), if recent enough")


class Overlap(models.TextChoices):
    SKIP = "skip", _("Skip the tick")
    QUEUE = "queue", _("Run it when the previous run ends")


class Source(models.TextChoices):
    ADMIN = "admin", _("Admin")
    CODE = "code", _("Code (@task schedule)")
    REMOVED = "removed", _("Removed from the code")


class Outcome(models.TextChoices):
    RUN = "run", _("Run")
    SKIPPED = "skipped", _("Skipped: the previous run was still going")
    WAITING = "waiting", _("Waiting for the previous run")
    MISSED = "missed", _("Missed: no daemon was running")
    ERROR = "error", _("Could not run")


class Schedule(models.Model):
    name = models.CharField(_("name"), max_length=MAX_NAME, unique=True)
    task_name = models.CharField(
        _("task"), max_length=255, help_text=_("A registered @task function, or Django task.")
    )
    cron = models.CharField(
        _("cron expression"),
        max_length=200,
        blank=True,
        help_text=_(
            "Five fields: minute hour day-of-month month day-of-week (“0 3 * * *” is 03:00 "
            "every day); six with seconds first. Leave empty to use an interval."
        ),
    )
    interval = models.DurationField(
        _("interval"),
        null=True,
        blank=True,
        help_text=_("Instead of a cron expression: every so long, e.g. “00:15:00”."),
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default=default_time_zone, help_text=_("For cron.")
    )
    arguments = models.JSONField(
        _("arguments"),
        default=dict,
        blank=True,
        help_text=_('For a Django task: {"args": [...], "kwargs": {...}}.'),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    missed = models.CharField(
        _("missed ticks"),
        max_length=10,
        choices=Missed.choices,
        default=Missed.LATEST,
        help_text=_("What to do with ticks that passed while no daemon was running."),
    )
    missed_within = models.DurationField(
        _("catch up within"),
        default=timedelta(hours=1),
        help_text=_("Missed ticks older than this are never run."),
    )
    overlap = models.CharField(
        _("overlap"),
        max_length=10,
        choices=Overlap.choices,
        default=Overlap.SKIP,
        help_text=_("What to do when a tick comes while the previous run is still going."),
    )
    source = models.CharField(
        _("defined in"), max_length=10, choices=Source.choices, default=Source.ADMIN
    )
    # The first tick not acted on yet (UTC); None while disabled or removed from the code.
    next_tick = models.DateTimeField(_("next run"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["name"]
        indexes = [models.Index(fields=["enabled", "next_tick"], name="djangotasks_next_tick")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not settings.USE_TZ:
            raise ImproperlyConfigured(NEEDS_USE_TZ)
        if "update_fields" not in kwargs:
            self.next_tick = self._first_tick()
        with routing.atomic():
            super().save(*args, **kwargs)
            # Daemons woken by it (PostgreSQL, MariaDB) take an earlier next tick into account
            # at once or within seconds; the others read the schedules again within
            # daemon.schedules.REREAD seconds.
            notify.wake_workers("schedules", routing.alias())

    def clean(self) -> None:
        if not settings.USE_TZ:
            raise ValidationError(NEEDS_USE_TZ)
        errors: dict[str, Any] = {}
        if self.cron and self.interval is not None:
            errors["interval"] = _("Give a cron expression or an interval, not both.")
        elif not self.cron and self.interval is None:
            errors["cron"] = _("Give a cron expression or an interval.")
        else:
            try:
                Ticks(self.cron, self.interval, self.time_zone)
            except InvalidSchedule as exc:
                field = "cron" if self.cron else "interval"
                if "time zone" in str(exc):
                    field = "time_zone"
                errors[field] = str(exc)
        errors.update(_task_errors(self.task_name, self.arguments))
        if errors:
            raise ValidationError(errors)

    @property
    def ticks(self) -> Ticks:
        return Ticks(self.cron, self.interval, self.time_zone)

    @property
    def when(self) -> str:
        """The timing in a few words: the cron expression (and zone) or the interval."""
        if self.interval is not None:
            return f"every {_duration(self.interval)}"
        return f"{self.cron} ({self.time_zone})"

    def is_active(self) -> bool:
        return self.enabled and self.source != Source.REMOVED

    def upcoming(self, count: int, now: datetime | None = None) -> list[datetime]:
        """The next ``count`` ticks from the next one not acted on yet (empty when paused)."""
        if not self.is_active():
            return []
        now = now or timezone.now()
        start = self.next_tick or now
        if start > now:
            return [start, *self.ticks.upcoming(start, count - 1)][:count]
        return self.ticks.upcoming(now, count)

    def _first_tick(self) -> datetime | None:
        """From now on: an edit or a resume takes effect from the next tick, not before."""
        if not self.is_active():
            return None
        try:
            return self.ticks.after(timezone.now())
        except InvalidSchedule:
            return None  # a row written by hand; the admin refuses it (clean())


def _duration(interval: timedelta) -> str:
    """``1 s``, ``15 min``, ``1 day 6 h``: a whole number of seconds in words."""
    seconds = int(interval.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}")
    return " ".join(parts) or "0 s"


def _task_errors(task_name: str, arguments: Any) -> dict[str, str]:
    try:
        definition = registry.get(task_name)
    except UnknownTask as exc:
        return {"task_name": str(exc)}
    if definition.is_method:
        return {
            "task_name": f"{task_name} is a model method: a schedule has no object to run it "
            f"on. Schedule a @task function, or a Django task."
        }
    if not definition.takes_arguments:
        return {"arguments": "Only Django tasks take arguments."} if arguments else {}
    if not isinstance(arguments, dict) or set(arguments) - {"args", "kwargs"}:
        return {"arguments": 'Arguments are {"args": [...], "kwargs": {...}}.'}
    if not isinstance(arguments.get("args", []), list) or not isinstance(
        arguments.get("kwargs", {}), dict
    ):
        return {"arguments": '"args" is a list and "kwargs" an object.'}
    return {}


class ScheduleTick(models.Model):
    schedule = models.ForeignKey(
        Schedule, models.CASCADE, related_name="tick_rows", verbose_name=_("schedule")
    )
    tick = models.DateTimeField(_("tick"))
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    task = models.ForeignKey(
        "djangotasks.Task",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="schedule_ticks",
        verbose_name=_("run"),
    )
    note = models.CharField(_("note"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        verbose_name = _("schedule tick")
        verbose_name_plural = _("schedule ticks")
        ordering = ["-tick"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "tick"], name="djangotasks_one_per_tick")
        ]
        indexes = [models.Index(fields=["outcome"], name="djangotasks_tick_outcome")]

    def __str__(self) -> str:
        return f"{self.schedule} at {self.tick:%Y-%m-%d %H:%M:%S}: {self.outcome}"

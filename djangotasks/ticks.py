"""When a schedule ticks: cron expressions (through ``cronsim``) and fixed intervals.

Every function here is pure: given the same schedule and instant, every daemon on every host
computes the same tick times, which is what lets a unique constraint on (schedule, tick) make
each tick run once. Instants in and out are aware datetimes in UTC.

Cron expressions are evaluated in the schedule's time zone with cronsim, which follows
Debian cron across DST changes: a time skipped by a spring-forward runs once, at the first
valid time after it (02:30 runs at 03:00); a time repeated by a fall-back runs once (the
first 02:30). Intervals are counted from the Unix epoch in UTC, so ``timedelta(minutes=15)``
ticks at :00, :15, :30 and :45, and no DST change moves it.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_INTERVAL = timedelta(seconds=1)
# A far-apart cron tick (Feb 29 on a Monday) is still found; an impossible one fails.
MAX_STEPS = 100_000
# Longer than any repeated stretch of local time (DST shifts are at most two hours).
REWIND = timedelta(hours=3)


class InvalidSchedule(ValueError):
    """A cron expression, interval or time zone that cannot be used; the message says why."""


def check_cron(expression: str) -> str:
    """``expression`` stripped, or ``InvalidSchedule`` saying what is wrong with it."""
    if not isinstance(expression, str):
        raise InvalidSchedule(f"A cron expression is a string, not {expression!r}.")
    expression = " ".join(expression.split())
    fields = len(expression.split(" ")) if expression else 0
    if fields not in (5, 6):
        raise InvalidSchedule(
            f"{expression!r} is not a cron expression: it needs 5 fields (minute hour "
            f"day-of-month month day-of-week), or 6 with seconds first; it has {fields}."
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidSchedule(f"{expression!r} is not a valid cron expression: {exc}.") from None
    return expression


def check_interval(interval: timedelta) -> timedelta:
    if not isinstance(interval, timedelta):
        raise InvalidSchedule(f"An interval is a timedelta, not {interval!r}.")
    if interval < MIN_INTERVAL or interval % MIN_INTERVAL:
        raise InvalidSchedule(
            f"An interval is a whole number of seconds, at least one, not {interval}."
        )
    return interval


def check_time_zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            f"{name!r} is not a known time zone; use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from None


class Ticks:
    """The tick times of one schedule: a cron expression in a time zone, or an interval."""

    def __init__(
        self, cron: str = "", interval: timedelta | None = None, time_zone: str = "UTC"
    ) -> None:
        if bool(cron) == (interval is not None):
            raise InvalidSchedule("A schedule has a cron expression or an interval (one).")
        self.cron = check_cron(cron) if cron else ""
        self.interval = check_interval(interval) if interval is not None else None
        self.zone = check_time_zone(time_zone)

    def after(self, instant: datetime) -> datetime:
        """The first tick strictly after ``instant``."""
        return next(self._forward(instant))

    def upcoming(self, instant: datetime, count: int) -> list[datetime]:
        """The ``count`` ticks after ``instant``, in order."""
        ticks = self._forward(instant)
        return [next(ticks) for _ in range(count)]

    def latest(self, instant: datetime, since: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` ticks in [``since``, ``instant``], newest first."""
        found: list[datetime] = []
        for tick in self._backward(instant):
            if tick < since or len(found) >= limit:
                break
            found.append(tick)
        return found

    def _forward(self, instant: datetime) -> Iterator[datetime]:
        instant = _utc(instant)
        if self.interval is not None:
            step = self.interval
            tick = EPOCH + ((instant - EPOCH) // step + 1) * step
            while True:
                yield tick
                tick += step
        last = instant
        # cronsim walks local wall-clock time, and from inside a repeated hour (a fall-back)
        # its answers depend on which pass through that hour it starts in. Started before
        # the hour, it answers as it does for everyone; earlier answers are skipped.
        start = instant.astimezone(self.zone)
        if start.replace(fold=1 - start.fold).utcoffset() != start.utcoffset():
            start = (instant - REWIND).astimezone(self.zone)
        for steps, local in enumerate(CronSim(self.cron, start)):
            tick = local.astimezone(UTC)
            if tick > last:
                last = tick
                yield tick
            elif steps > MAX_STEPS:
                raise InvalidSchedule(f"{self.cron!r} has no next tick after {instant}.")

    def _backward(self, instant: datetime) -> Iterator[datetime]:
        instant = _utc(instant)
        if self.interval is not None:
            step = self.interval
            tick = EPOCH + ((instant - EPOCH) // step) * step
            while True:
                yield tick
                tick -= step
        last = instant + timedelta(microseconds=1)
        # Backwards cronsim answers only times before its start: start a second later, so
        # that a tick at ``instant`` itself is found.
        start = (instant + timedelta(seconds=1)).astimezone(self.zone)
        for local in CronSim(self.cron, start, reverse=True):
            tick = local.astimezone(UTC)
            # Walking back through a DST change, cronsim can answer a time that walking
            # forward never gives (a zone whose shift is 30 minutes): only real ticks count.
            if tick < last and self.after(tick - timedelta(microseconds=1)) == tick:
                last = tick
                yield tick


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{instant} is naive: schedules work with aware datetimes")
    return instant.astimezone(UTC)

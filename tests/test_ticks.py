"""When schedules tick: cron (5 fields, or 6 with seconds first) in a time zone across DST
changes, intervals counted from the epoch, bad input, and the missed-tick policy (``_plan``).

All pure computation: no database, no daemon.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from djangotasks.models.schedule import Missed, Schedule
from djangotasks.scheduler import ON_TIME, _plan
from djangotasks.ticks import EPOCH, InvalidSchedule, Ticks

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
# The DST changes of 2024: Paris springs forward at 02:00 on 31 March and falls back at 03:00
# on 27 October (02:00-03:00 twice); New York at 02:00 on 10 March and 02:00 on 3 November
# (01:00-02:00 twice).
PARIS_SPRING, PARIS_FALL = datetime(2024, 3, 31), datetime(2024, 10, 27)
NEW_YORK_SPRING, NEW_YORK_FALL = datetime(2024, 3, 10), datetime(2024, 11, 3)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def local(ticks: list[datetime], zone: ZoneInfo) -> list[str]:
    """Ticks as wall-clock times with their offset: "2024-03-31 03:00+02:00"."""
    return [f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S%z}" for t in ticks]


def ticks_between(ticks: Ticks, start: datetime, end: datetime) -> list[datetime]:
    """Every tick in (start, end], by chaining after() as the daemons do."""
    found = []
    tick = ticks.after(start)
    while tick <= end:
        found.append(tick)
        tick = ticks.after(tick)
    return found


def spacing(ticks: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in itertools.pairwise(ticks)}


# -- cron ---------------------------------------------------------------------------------


def test_five_field_cron_ticks_on_minutes():
    ticks = Ticks("0 3 * * *")
    assert ticks.upcoming(utc(2024, 1, 1, 3), 2) == [utc(2024, 1, 2, 3), utc(2024, 1, 3, 3)]
    assert Ticks("*/15 9-10 * * MON").upcoming(utc(2024, 1, 1, 10, 20), 3) == [
        utc(2024, 1, 1, 10, 30),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 8, 9, 0),
    ]


def test_six_field_cron_has_seconds_first():
    # Seconds first (not a year last): second 0, minute 30, hour 3.
    assert Ticks("0 30 3 * * *").after(utc(2024, 1, 1)) == utc(2024, 1, 1, 3, 30)
    assert Ticks("15 0 3 * * *").after(utc(2024, 1, 1)) == utc(2024, 1, 1, 3, 0, 15)
    every_ten = Ticks("*/10 * * * * *").upcoming(utc(2024, 1, 1, 0, 0, 5), 3)
    assert every_ten == [
        utc(2024, 1, 1, 0, 0, 10),
        utc(2024, 1, 1, 0, 0, 20),
        utc(2024, 1, 1, 0, 0, 30),
    ]


def test_a_cron_expression_is_stored_with_single_spaces():
    assert Ticks("  0   3 * *\t* ").cron == "0 3 * * *"


def test_cron_runs_in_its_time_zone():
    nightly = Ticks("0 3 * * *", time_zone="Europe/Paris")
    assert nightly.after(utc(2024, 1, 15)) == utc(2024, 1, 15, 2)  # CET, UTC+1
    assert nightly.after(utc(2024, 7, 15)) == utc(2024, 7, 15, 1)  # CEST, UTC+2


def test_after_is_strictly_after_a_tick():
    assert Ticks("0 3 * * *").after(utc(2024, 1, 1, 3)) == utc(2024, 1, 2, 3)
    assert Ticks(interval=timedelta(hours=1)).after(utc(2024, 1, 1, 3)) == utc(2024, 1, 1, 4)


def test_instants_in_any_zone_give_the_same_ticks():
    instant = utc(2024, 1, 1, 12, 7)
    ticks = Ticks("*/5 * * * *", time_zone="America/New_York")
    assert ticks.after(instant.astimezone(PARIS)) == ticks.after(instant) == utc(2024, 1, 1, 12, 10)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="naive"):
        Ticks("0 3 * * *").after(datetime(2024, 1, 1))


# -- intervals ----------------------------------------------------------------------------


def test_intervals_are_aligned_to_the_epoch():
    quarter = Ticks(interval=timedelta(minutes=15))
    assert quarter.upcoming(utc(2024, 5, 6, 10, 7, 31), 3) == [
        utc(2024, 5, 6, 10, 15),
        utc(2024, 5, 6, 10, 30),
        utc(2024, 5, 6, 10, 45),
    ]
    # Every daemon, whenever it started, finds the same ticks: multiples of the interval.
    seven_hours = timedelta(hours=7)
    for start in (utc(2024, 5, 6), utc(2024, 5, 6, 13, 59, 59), utc(1999, 12, 31, 23)):
        for tick in Ticks(interval=seven_hours).upcoming(start, 5):
            assert (tick - EPOCH) % seven_hours == timedelta(0)
    assert Ticks(interval=timedelta(days=1)).after(utc(2024, 5, 6, 10)) == utc(2024, 5, 7)


def test_an_interval_keeps_real_time_across_dst_changes():
    hourly = Ticks(interval=timedelta(hours=1), time_zone="Europe/Paris")
    ticks = hourly.upcoming(utc(2024, 10, 26, 22, 30), 6)
    assert spacing(ticks) == {timedelta(hours=1)}
    assert all(tick.minute == 0 for tick in ticks)


# -- DST ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day"), [(PARIS, PARIS_SPRING), (NEW_YORK, NEW_YORK_SPRING)], ids=["Paris", "NY"]
)
def test_a_time_skipped_by_spring_forward_runs_once_at_the_first_valid_time(zone, day):
    ticks = Ticks("30 2 * * *", time_zone=zone.key)
    start = (day - timedelta(days=1)).replace(hour=12, tzinfo=zone)
    found = ticks.upcoming(start, 3)
    offset = f"{day.replace(tzinfo=zone) + timedelta(hours=12):%z}"  # summer time
    assert local(found, zone)[0] == f"{day:%Y-%m-%d} 03:00:00{offset}"
    # And back to 02:30 the next days.
    assert [f"{t.astimezone(zone):%H:%M}" for t in found] == ["03:00", "02:30", "02:30"]


def test_a_time_repeated_by_fall_back_runs_once():
    # Paris repeats 02:00-03:00: 02:30 runs at the first 02:30 (summer time) only.
    paris = Ticks("30 2 * * *", time_zone="Europe/Paris")
    found = paris.upcoming(datetime(2024, 10, 26, 12, tzinfo=PARIS), 3)
    assert local(found, PARIS) == [
        "2024-10-27 02:30:00+0200",
        "2024-10-28 02:30:00+0100",
        "2024-10-29 02:30:00+0100",
    ]
    # New York repeats 01:00-02:00.
    new_york = Ticks("30 1 * * *", time_zone="America/New_York")
    found = new_york.upcoming(datetime(2024, 11, 2, 12, tzinfo=NEW_YORK), 3)
    assert local(found, NEW_YORK) == [
        "2024-11-03 01:30:00-0400",
        "2024-11-04 01:30:00-0500",
        "2024-11-05 01:30:00-0500",
    ]


def test_hourly_runs_through_the_repeated_hour_an_hour_apart():
    hourly = Ticks("0 * * * *", time_zone="Europe/Paris")
    found = hourly.upcoming(datetime(2024, 10, 27, 0, 30, tzinfo=PARIS), 5)
    assert local(found, PARIS) == [
        "2024-10-27 01:00:00+0200",
        "2024-10-27 02:00:00+0200",
        "2024-10-27 02:00:00+0100",  # the same wall-clock hour, an hour later
        "2024-10-27 03:00:00+0100",
        "2024-10-27 04:00:00+0100",
    ]
    assert spacing(found) == {timedelta(hours=1)}


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (NEW_YORK, NEW_YORK_FALL, 5 * 3 + 3),  # 00:00-04:40 wall clock, 01:xx twice
        (NEW_YORK, NEW_YORK_SPRING, 5 * 3 - 3),  # 02:xx does not exist
        (PARIS, PARIS_FALL, 5 * 3 + 3),
        (PARIS, PARIS_SPRING, 5 * 3 - 3),
    ],
    ids=["NY fall", "NY spring", "Paris fall", "Paris spring"],
)
def test_every_twenty_minutes_keeps_real_time_spacing_across_dst(zone, day, expected):
    every_20 = Ticks("*/20 * * * *", time_zone=zone.key)
    start = day.replace(tzinfo=zone) - timedelta(seconds=1)
    end = day.replace(hour=4, minute=40, tzinfo=zone)
    found = ticks_between(every_20, start, end)
    assert spacing(found) == {timedelta(minutes=20)}
    assert len(found) == expected


@pytest.mark.parametrize(
    "cron", ["*/20 * * * *", "0 * * * *", "30 1 * * *", "15 1 * * *", "0 2 * * *", "* * * * *"]
)
def test_after_from_inside_the_repeated_hour_never_goes_back(cron):
    ticks = Ticks(cron, time_zone="America/New_York")
    instant = utc(2024, 11, 3, 4, 0)  # 00:00 EDT; the repeated 01:xx are 05:xx and 06:xx UTC
    while instant < utc(2024, 11, 3, 7, 30):
        after = ticks.after(instant)
        assert after > instant, (cron, instant.astimezone(NEW_YORK), after.astimezone(NEW_YORK))
        assert ticks.upcoming(instant, 1) == [after]
        instant += timedelta(minutes=7)


def test_after_from_the_second_pass_of_the_repeated_hour():
    second_pass = datetime(2024, 11, 3, 1, 10, fold=1, tzinfo=NEW_YORK)
    assert f"{second_pass:%z}" == "-0500"
    instant = second_pass.astimezone(UTC)
    every_20 = Ticks("*/20 * * * *", time_zone="America/New_York")
    assert local([every_20.after(instant)], NEW_YORK) == ["2024-11-03 01:20:00-0500"]
    # 01:30 ran in the first pass: the next is tomorrow's, not the one 20 minutes ago.
    daily = Ticks("30 1 * * *", time_zone="America/New_York")
    assert local([daily.after(instant)], NEW_YORK) == ["2024-11-04 01:30:00-0500"]


@pytest.mark.parametrize(
    ("cron", "zone", "day"),
    [
        ("0 * * * *", "Europe/Paris", PARIS_FALL),
        ("*/20 * * * *", "America/New_York", NEW_YORK_FALL),
        ("30 1 * * *", "America/New_York", NEW_YORK_FALL),
        ("30 2 * * *", "Europe/Paris", PARIS_SPRING),
        ("30 2 * * *", "Europe/Paris", PARIS_FALL),
        ("0 30 2 * * *", "Europe/Paris", PARIS_FALL),
        ("*/20 * * * *", "America/New_York", NEW_YORK_SPRING),
    ],
)
def test_latest_finds_the_ticks_that_after_finds(cron, zone, day):
    """fire() acts on latest() from the next tick that after() gave: they must agree."""
    ticks = Ticks(cron, time_zone=zone)
    start = utc(day.year, day.month, day.day) - timedelta(days=2)
    end = start + timedelta(days=4)
    forward = ticks_between(ticks, start, end)
    assert ticks.latest(end, start + timedelta(microseconds=1), 1000) == forward[::-1]


# -- latest() -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ticks",
    [Ticks("*/10 * * * *"), Ticks(interval=timedelta(minutes=10)), Ticks("0 */10 * * * *")],
    ids=["cron", "interval", "cron with seconds"],
)
def test_latest_includes_a_tick_at_the_instant_is_bounded_and_respects_since(ticks):
    instant = utc(2024, 5, 6, 10, 30)
    hour_before = instant - timedelta(hours=1)
    assert ticks.latest(instant, hour_before, 3) == [
        instant,
        utc(2024, 5, 6, 10, 20),
        utc(2024, 5, 6, 10, 10),
    ]
    # [since, instant]: both ends included.
    assert len(ticks.latest(instant, hour_before, 100)) == 7
    assert ticks.latest(instant, instant, 100) == [instant]
    assert ticks.latest(instant + timedelta(minutes=9), instant, 100) == [instant]
    assert ticks.latest(instant - timedelta(seconds=1), instant, 100) == []
    assert ticks.latest(instant, hour_before, 0) == []


def test_latest_in_a_time_zone():
    nightly = Ticks("0 3 * * *", time_zone="Europe/Paris")
    found = nightly.latest(utc(2024, 1, 10, 12), utc(2024, 1, 1), 3)
    assert found == [utc(2024, 1, 10, 2), utc(2024, 1, 9, 2), utc(2024, 1, 8, 2)]


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "0 3 * *",
            r"needs 5 fields \(minute hour day-of-month month day-of-week\), or 6 "
            r"with seconds first; it has 4",
        ),
        ("0 0 3 * * * 2024", "it has 7"),
        ("@daily", "it has 1"),
        ("61 * * * *", "'61 \\* \\* \\* \\*' is not a valid cron expression: Bad minute"),
        ("60 * * * * *", "Bad second"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("0 3 * * funday", "Bad day-of-week"),
        (3, "A cron expression is a string, not 3"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(cron, message):
    with pytest.raises(InvalidSchedule, match=message):
        Ticks(cron)


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (timedelta(0), "at least one, not 0:00:00"),
        (timedelta(seconds=-60), "at least one"),
        (timedelta(seconds=1.5), r"whole number of seconds, at least one, not 0:00:01\.5"),
        (60, "An interval is a timedelta, not 60"),
    ],
)
def test_bad_intervals_say_what_is_wrong(interval, message):
    with pytest.raises(InvalidSchedule, match=message):
        Ticks(interval=interval)


@pytest.mark.parametrize("zone", ["Europe/Pariss", "", "../../etc/passwd", "Europe/Paris "])
def test_unknown_time_zones_are_refused(zone):
    with pytest.raises(InvalidSchedule, match="is not a known time zone; use an IANA name"):
        Ticks("0 3 * * *", time_zone=zone)


def test_a_schedule_has_a_cron_expression_or_an_interval():
    with pytest.raises(InvalidSchedule, match=r"a cron expression or an interval \(one\)"):
        Ticks()
    with pytest.raises(InvalidSchedule, match=r"a cron expression or an interval \(one\)"):
        Ticks("0 3 * * *", timedelta(hours=1))


# -- the missed-tick policy ---------------------------------------------------------------

NOW = utc(2024, 5, 6, 12, 0, 0, 500_000)
HOUR = timedelta(hours=1)


def plan(due: list[datetime], missed: str, within: timedelta = HOUR):
    runs, skipped = _plan(Schedule(missed=missed, missed_within=within), due, NOW)
    assert runs.isdisjoint(skipped) and runs | skipped == set(due)
    return runs


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.mark.parametrize("policy", Missed.values)
def test_a_tick_on_time_runs_whatever_the_policy(policy):
    assert plan([ago(seconds=1)], policy) == {ago(seconds=1)}
    assert plan([ago(seconds=1)], policy, within=timedelta(seconds=1)) == {ago(seconds=1)}
    assert plan([], policy) == set()


@pytest.mark.parametrize("policy", Missed.values)
def test_ticks_of_a_fast_schedule_that_are_all_on_time_run(policy):
    # A slow pass (a busy database) is not downtime: ticks within ON_TIME are not missed.
    due = [ago(seconds=0.5), ago(seconds=1.5)]
    assert ago(seconds=1.5) >= NOW - ON_TIME
    assert plan(due, policy) == set(due)


def test_missed_latest_runs_the_newest_missed_tick_if_recent_enough():
    due = [ago(minutes=5), ago(minutes=65), ago(minutes=125)]
    assert plan(due, Missed.LATEST) == {ago(minutes=5)}
    assert plan(due, Missed.LATEST, within=timedelta(minutes=4)) == set()


def test_missed_latest_with_a_tick_on_time_runs_only_that_one():
    due = [ago(seconds=1), ago(hours=1, seconds=1), ago(hours=2, seconds=1)]
    assert plan(due, Missed.LATEST, within=timedelta(hours=3)) == {ago(seconds=1)}


def test_missed_none_runs_no_missed_tick():
    assert plan([ago(minutes=5), ago(minutes=65)], Missed.NONE) == set()
    due = [ago(seconds=1), ago(hours=1, seconds=1)]
    assert plan(due, Missed.NONE, within=timedelta(hours=3)) == {ago(seconds=1)}


def test_missed_each_runs_every_missed_tick_within_the_window():
    due = [ago(minutes=5), ago(minutes=65), ago(minutes=125)]
    assert plan(due, Missed.EACH) == {ago(minutes=5)}
    assert plan(due, Missed.EACH, within=timedelta(minutes=70)) == {ago(minutes=5), ago(minutes=65)}
    assert plan(due, Missed.EACH, within=timedelta(hours=3)) == set(due)
    assert plan(due, Missed.EACH, within=timedelta(minutes=1)) == set()


@pytest.mark.parametrize("policy", Missed.values)
def test_the_first_ticks_of_a_schedule_saved_moments_ago_are_late_not_missed(policy):
    # A daemon that reads schedules every 5 s (MySQL/MariaDB) finds them 5 s late.
    saved = ago(seconds=6)
    schedule = Schedule(missed=policy, missed_within=HOUR, updated_at=saved)
    due = [ago(seconds=s) for s in (1, 3, 5)]
    runs, missed = _plan(schedule, due, NOW)
    assert runs == set(due) and missed == set()
    # Ticks from before it was saved (a next tick set by hand) follow the policy: only
    # "each" catches up on them.
    earlier = {ago(seconds=8), ago(seconds=7)}
    runs, missed = _plan(schedule, [*due, *sorted(earlier, reverse=True)], NOW)
    assert runs == set(due) | (earlier if policy == Missed.EACH else set())

"""System checks and settings validation: each bad configuration gets a clear message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from djangotasks import conf, task
from djangotasks.checks import (
    check_schedules,
    check_settings,
    check_wakeups,
    sqlite_problems,
    wakeup_problems,
)
from djangotasks.registry import ScheduleSpec, TaskDefinition, registry

GOOD = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": "/srv/app/db.sqlite3",
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    },
}


def test_a_well_configured_sqlite_database_passes():
    assert sqlite_problems(GOOD) == []


def test_sqlite_without_wal_immediate_and_timeout_is_explained():
    [warning] = sqlite_problems({**GOOD, "OPTIONS": {}})
    assert warning.id == "djangotasks.W001"
    for missing in ("IMMEDIATE", "journal_mode=WAL", "timeout"):
        assert missing in warning.msg
    assert "database is locked" in warning.hint


def test_in_memory_sqlite_is_an_error():
    [error] = sqlite_problems({**GOOD, "NAME": ":memory:"})
    assert error.id == "djangotasks.E002"


def test_other_databases_are_not_checked():
    assert sqlite_problems({"ENGINE": "django.db.backends.postgresql", "NAME": "x"}) == []


def test_the_test_settings_pass_every_check():
    assert check_settings() == []
    assert check_schedules() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"MAX_CONCURRENCY": "4"}, "MAX_CONCURRENCY'] must be an integer"),
        ({"MAX_CONCURRENCY": 0}, "must be at least 1"),
        ({"MAX_LOG_SIZE": 100}, "must be at least 1,024 characters"),
        ({"CANCEL_GRACE": -1}, "must be a positive number of seconds"),
        ({"DEFAULT_TIMEOUT": "1h"}, "positive number or None"),
        ({"START_METHOD": "spawn"}, "one of auto, fork, exec"),
        ({"MAX_CONCURENCY": 4}, "Unknown DJANGOTASKS key(s): MAX_CONCURENCY"),
        ({"WORKER_TIMEOUT": 3, "HEARTBEAT_INTERVAL": 2}, "at least twice HEARTBEAT_INTERVAL"),
        ([], "must be a dict"),
    ],
)
def test_settings_with_wrong_types_are_clear_errors(value, message):
    with override_settings(DJANGOTASKS=value):
        with pytest.raises(ImproperlyConfigured) as excinfo:
            conf.get()
        assert message in str(excinfo.value)
        [error] = check_settings()
        assert error.id == "djangotasks.E001"
    assert conf.get().CANCEL_GRACE == 2.0  # reset once the override ends


def test_the_thread_setting_keeps_its_original_name():
    with override_settings(DJANGOTASK_DAEMON_THREAD=True):
        assert conf.get().DAEMON_THREAD is True
    with (
        override_settings(DJANGOTASK_DAEMON_THREAD="yes"),
        pytest.raises(ImproperlyConfigured, match="True or False"),
    ):
        conf.get()


def test_the_django_tasks_backend_without_a_tasks_framework_is_explained(monkeypatch):
    import sys

    from djangotasks.checks import check_tasks_backend

    tasks_setting = {"default": {"BACKEND": "djangotasks.backend.ProcessBackend"}}
    with override_settings(TASKS=tasks_setting):
        # Django >= 6.0 or the backport: the framework's own checks run the backend's.
        assert check_tasks_backend() == []
        # Django 5.2 without the backport: importing the framework fails.
        monkeypatch.setitem(sys.modules, "djangotasks.tasks_framework", None)
        [error] = check_tasks_backend()
    assert error.id == "djangotasks.E013"
    assert "Django >= 6.0, or the django-tasks backport" in error.msg
    assert "djangotasks[backport]" in error.hint


def nightly() -> None:  # pragma: no cover - scheduled in a test, never run
    pass


def hourly() -> None:  # pragma: no cover - scheduled in a test, never run
    pass


# These run without database access (pytest-django would refuse it): no query, so plain
# "manage.py check" runs them.
def test_schedules_need_use_tz(scratch_registry):
    with override_settings(USE_TZ=False):
        assert check_schedules() == []  # no schedule, no problem
        task(schedule="0 3 * * *", time_zone="Europe/Paris")(nightly)
        task(schedule=timedelta(hours=1))(hourly)
        [error] = check_schedules()
    assert error.id == "djangotasks.E014"
    assert error.msg.startswith(
        "USE_TZ = False, but tasks have a schedule (tests.test_checks.hourly, "
        "tests.test_checks.nightly): schedules compare aware datetimes in UTC"
    )
    assert "USE_TZ = True" in error.hint
    assert check_schedules() == []


def test_schedules_in_the_default_time_zone_need_a_known_one(scratch_registry):
    task(schedule="0 3 * * *", time_zone="Europe/Paris")(nightly)
    with override_settings(TIME_ZONE="Europe/Pariss"):
        assert check_schedules() == []  # every schedule has its own time zone
        task(schedule=timedelta(hours=1))(hourly)
        [error] = check_schedules()
    assert error.id == "djangotasks.E015"
    assert error.msg == (
        "TIME_ZONE = 'Europe/Pariss' is not a time zone that zoneinfo knows, and the "
        "schedules of tests.test_checks.hourly tick in it (they have no time_zone=...)."
    )
    assert "@task(time_zone=...)" in error.hint
    assert check_schedules() == []


def test_a_check_names_a_few_tasks_however_many_there_are(scratch_registry):
    for name in "edcba":
        registry.register(
            TaskDefinition(
                name=f"tests.scheduled.{name}",
                func=nightly,
                label=name,
                schedule=ScheduleSpec(cron="0 3 * * *"),
            )
        )
    with override_settings(USE_TZ=False):
        [error] = check_schedules()
    assert "(tests.scheduled.a, tests.scheduled.b, tests.scheduled.c and 2 more)" in error.msg


# -- MySQL/MariaDB: can run() and cancel() wake the daemons? ----------------------------------


def test_the_wake_up_check_needs_a_database_only_when_asked_for_one():
    # Plain "manage.py check" (no --database): nothing to say, and no query made.
    assert check_wakeups() == []
    assert check_wakeups(databases=["other"]) == []


@pytest.mark.django_db
def test_the_test_database_can_wake_its_daemons():
    assert check_wakeups(databases=["default"]) == []


def test_mysql_cannot_wake_the_daemons():
    [warning] = wakeup_problems(mariadb=False, processlist_error=None, poll_interval=1.0)
    assert warning.id == "djangotasks.W002"
    assert "MySQL, which has no KILL QUERY ID" in warning.msg
    assert "polling, every POLL_INTERVAL (1 s)" in warning.msg
    assert "Lower POLL_INTERVAL" in warning.hint


def test_mariadb_without_the_process_list_cannot_wake_the_daemons():
    [warning] = wakeup_problems(True, processlist_error="access denied", poll_interval=0.5)
    assert warning.id == "djangotasks.W002"
    assert "cannot read information_schema.PROCESSLIST (access denied)" in warning.msg
    assert "every POLL_INTERVAL (0.5 s)" in warning.msg
    assert "same user" in warning.hint
    assert wakeup_problems(True, processlist_error=None, poll_interval=0.5) == []

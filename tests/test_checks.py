"""System checks and settings validation: each bad configuration gets a clear message."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from djangotasks import conf
from djangotasks.checks import check_settings, sqlite_problems

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

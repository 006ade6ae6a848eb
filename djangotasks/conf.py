"""The one settings entry point: ``settings.DJANGOTASKS`` merged with defaults, read lazily.

Settings are read on first use (never at import time) and re-read after Django's
``setting_changed`` signal, so ``override_settings`` works in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "DJANGOTASKS"
# The original djangotasks spelled the thread-mode switch as its own top-level setting; kept.
THREAD_SETTING_NAME = "DJANGOTASK_DAEMON_THREAD"


@dataclass(frozen=True)
class TaskSettings:
    """Every setting with its default; docs/settings.md says what each one does."""

    MAX_CONCURRENCY: int = 4
    # Where the database cannot wake the daemon (MySQL; MariaDB or PostgreSQL while their
    # wake-up connection is lost), it polls this often.
    POLL_INTERVAL: float = 1.0
    HEARTBEAT_INTERVAL: float = 10.0
    # A daemon whose heartbeat is older than this is lost; its tasks are recovered.
    WORKER_TIMEOUT: float = 30.0
    # Seconds between SIGTERM and SIGKILL when a task is cancelled or times out.
    CANCEL_GRACE: float = 5.0
    # Seconds a task may run when its @task has no timeout; None means no limit.
    DEFAULT_TIMEOUT: float | None = None
    # Bytes of address space a task process may use when its @task sets none; None: no limit.
    DEFAULT_MEMORY_LIMIT: int | None = None
    # On SIGTERM the daemon lets running tasks finish for this long, then cancels them.
    SHUTDOWN_WAIT: float = 30.0
    # Captured output is written to the database at most this often per task.
    LOG_FLUSH_INTERVAL: float = 0.1
    # Characters kept per task log; the start and the end are kept, the middle is cut.
    MAX_LOG_SIZE: int = 32 * 1024 * 1024
    # Level of the handler installed in task processes when the project configured none.
    TASK_LOG_LEVEL: str = "INFO"
    # "auto" forks a preloaded parent; "exec" starts a fresh interpreter per task.
    START_METHOD: str = "auto"
    PIDFILE: str | None = None
    LOGFILE: str | None = None
    # Finished tasks older than this many days are removed by ``tasks prune``.
    RETENTION_DAYS: int = 30
    # The bearer token Prometheus sends to the metrics view; None: logged-in users only.
    METRICS_TOKEN: str | None = None
    # Mail ADMINS (Django's mail_admins) about tasks that fail, time out or are lost.
    ALERT_MAIL_ADMINS: bool = False
    # The bad ends within this many seconds of the first one are one mail (alerts.py).
    ALERT_INTERVAL: float = 60.0
    DAEMON_THREAD: bool = False


_NUMBER_FIELDS = {
    "POLL_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "WORKER_TIMEOUT",
    "CANCEL_GRACE",
    "SHUTDOWN_WAIT",
    "LOG_FLUSH_INTERVAL",
    "ALERT_INTERVAL",
}
_OPTIONAL_NUMBER_FIELDS = {"DEFAULT_TIMEOUT", "DEFAULT_MEMORY_LIMIT"}
_INT_FIELDS = {"MAX_CONCURRENCY", "MAX_LOG_SIZE", "RETENTION_DAYS"}
_OPTIONAL_STR_FIELDS = {"PIDFILE", "LOGFILE"}
START_METHODS = ("auto", "fork", "exec")
MIN_LOG_SIZE = 1024
# Set in every task process; its descendants inherit it, which is how the daemon tells a
# task's escaped descendants apart when they are reparented to it.
TASK_ID_ENV = "DJANGOTASKS_TASK_ID"


def _validate(name: str, value: Any) -> None:
    def fail(expected: str) -> None:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{name!r}] must be {expected}, not {value!r} ({type(value).__name__})."
        )

    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in _NUMBER_FIELDS and not (is_number and value > 0):
        fail("a positive number of seconds")
    if name in _OPTIONAL_NUMBER_FIELDS and value is not None and not (is_number and value > 0):
        fail("a positive number or None")
    if name in _INT_FIELDS and not (isinstance(value, int) and not isinstance(value, bool)):
        fail("an integer")
    if name in _INT_FIELDS and value < 1:
        fail("at least 1")
    if name == "MAX_LOG_SIZE" and value < MIN_LOG_SIZE:
        # Room for the start, the end and the line that says what was cut between them.
        fail(f"at least {MIN_LOG_SIZE:,} characters")
    if name in _OPTIONAL_STR_FIELDS and value is not None and not isinstance(value, str):
        fail("a path (str) or None")
    if name == "METRICS_TOKEN" and value is not None and not (isinstance(value, str) and value):
        fail("a non-empty string or None")
    if name == "START_METHOD" and value not in START_METHODS:
        fail(f"one of {', '.join(START_METHODS)}")
    if name == "TASK_LOG_LEVEL" and value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("a logging level name such as 'INFO'")
    if name in ("DAEMON_THREAD", "ALERT_MAIL_ADMINS") and not isinstance(value, bool):
        fail("True or False")


def load() -> TaskSettings:
    """Read and validate the project's settings; raise ImproperlyConfigured on bad values."""
    from django.conf import settings

    user = getattr(settings, SETTING_NAME, {})
    if not isinstance(user, dict):
        raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict, not {type(user).__name__}.")
    known = {f.name for f in fields(TaskSettings)}
    unknown = sorted(set(user) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown {SETTING_NAME} key(s): {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(known))}."
        )
    values = dict(user)
    if hasattr(settings, THREAD_SETTING_NAME):
        values["DAEMON_THREAD"] = getattr(settings, THREAD_SETTING_NAME)
    for name, value in values.items():
        _validate(name, value)
    result = TaskSettings(**values)
    if result.WORKER_TIMEOUT < 2 * result.HEARTBEAT_INTERVAL:
        # Otherwise one late heartbeat gets a healthy daemon declared lost and fenced.
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['WORKER_TIMEOUT'] ({result.WORKER_TIMEOUT:g} s) must be at least "
            f"twice HEARTBEAT_INTERVAL ({result.HEARTBEAT_INTERVAL:g} s)."
        )
    return result


_cached: TaskSettings | None = None


def get() -> TaskSettings:
    global _cached
    if _cached is None:
        _cached = load()
    return _cached


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting in (SETTING_NAME, THREAD_SETTING_NAME):
        _cached = None


def in_task_process() -> bool:
    """True inside a task process (forked or fresh), where no daemon may ever start."""
    return TASK_ID_ENV in os.environ

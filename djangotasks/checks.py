"""System checks: valid settings, a SQLite database that several processes can share, and
what schedules need."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from djangotasks import conf

SQLITE_HINT = (
    'Use a file database with "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, '
    '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"} (Django >= 5.1). '
    "The daemon, the web server and every task process use the database at once: WAL lets "
    "them read while one writes, IMMEDIATE takes the write lock up front instead of failing "
    'midway with "database is locked", and the timeout makes a writer wait for its turn.'
)


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        conf.load()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="djangotasks.E001")]
    return []


# Registered as a static check (it only reads settings), so plain "manage.py check" runs it;
# Django skips checks tagged "database" unless --database is given.
@checks.register(checks.Tags.compatibility)
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.db import connections

    from djangotasks import routing

    return sqlite_problems(connections.settings.get(routing.alias()))


def sqlite_in_memory(name: str) -> bool:
    """True for a SQLite NAME that is no file (":memory:", a "mode=memory" URI, or none):
    no other process (daemon, task) can open it."""
    return not name or name == ":memory:" or "mode=memory" in name


def sqlite_problems(settings: dict[str, Any] | None) -> list[checks.CheckMessage]:
    """What keeps this database (a DATABASES entry) from serving several processes."""
    messages: list[checks.CheckMessage] = []
    if settings is None or "sqlite" not in settings.get("ENGINE", ""):
        return messages
    if sqlite_in_memory(str(settings.get("NAME") or "")):
        messages.append(
            checks.Error(
                "djangotasks needs a file SQLite database: an in-memory one cannot be shared "
                "with the daemon and the task processes.",
                hint=SQLITE_HINT,
                id="djangotasks.E002",
            )
        )
        return messages
    options = settings.get("OPTIONS", {})
    missing = []
    if options.get("transaction_mode") != "IMMEDIATE":
        missing.append('"transaction_mode": "IMMEDIATE"')
    if "wal" not in str(options.get("init_command", "")).lower():
        missing.append('"init_command" with "PRAGMA journal_mode=WAL"')
    if not options.get("timeout") or float(options["timeout"]) < 5:
        missing.append('"timeout" of at least 5 seconds')
    if missing:
        messages.append(
            checks.Warning(
                "The SQLite database is not set up for several processes: missing "
                + ", ".join(missing)
                + '. Expect "database is locked" errors under load.',
                hint=SQLITE_HINT,
                id="djangotasks.W001",
            )
        )
    return messages


# A database check: Django runs it only with "check --database ..." (and migrate), so a plain
# "manage.py check" needs no reachable database.
@checks.register(checks.Tags.database)
def check_wakeups(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Can committers wake the daemons on this MySQL/MariaDB database?"""
    from django.db import DatabaseError, connections

    from djangotasks import notify, routing

    alias = routing.alias()
    if not databases or alias not in databases or connections[alias].vendor != "mysql":
        return []
    connection = connections[alias]
    try:
        mariadb = notify.is_mariadb(connection)
        error = notify.processlist_error(connection) if mariadb else None
    except DatabaseError:
        return []  # unreachable: Django's own database checks report that
    return wakeup_problems(mariadb, error, conf.get().POLL_INTERVAL)


def wakeup_problems(
    mariadb: bool, processlist_error: str | None, poll_interval: float
) -> list[checks.CheckMessage]:
    """Why run() and cancel() cannot wake the daemons on a MySQL/MariaDB database."""
    polling = (
        f"daemons find new work and cancels only by polling, every POLL_INTERVAL "
        f"({poll_interval:g} s), one query per daemon each time."
    )
    if not mariadb:
        return [
            checks.Warning(
                f"The tasks' database is MySQL, which has no KILL QUERY ID to wake the "
                f"daemons with (MariaDB has): {polling}",
                hint="Lower POLL_INTERVAL for a faster pickup, at one query per poll per "
                "daemon; or use MariaDB or PostgreSQL, which wake the daemons at once.",
                id="djangotasks.W002",
            )
        ]
    if processlist_error is not None:
        return [
            checks.Warning(
                f"The tasks' database user cannot read information_schema.PROCESSLIST "
                f"({processlist_error}), where run() and cancel() find the daemons to wake: "
                f"{polling}",
                hint="Let the database user read information_schema.PROCESSLIST; the "
                "daemons and the web processes must connect as the same user (a user may "
                "interrupt its own statements without further privileges).",
                id="djangotasks.W002",
            )
        ]
    return []


BACKEND_PATH = "djangotasks.backend.ProcessBackend"


@checks.register(checks.Tags.compatibility)
def check_tasks_backend(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The ``django.tasks`` backend needs Django's tasks framework: Django >= 6.0, or the
    django-tasks backport on Django 5.2."""
    import django
    from django.conf import settings

    try:
        import_module("djangotasks.tasks_framework")
    except ImportError:
        pass
    else:
        return []  # the framework checks the backend itself (ProcessBackend.check)
    configured = getattr(settings, "TASKS", {})
    aliases = [
        alias
        for alias, params in (configured.items() if isinstance(configured, dict) else [])
        if isinstance(params, dict) and params.get("BACKEND") == BACKEND_PATH
    ]
    return [
        checks.Error(
            f"TASKS[{alias!r}] uses {BACKEND_PATH}, which needs Django's tasks framework "
            f"(Django >= 6.0, or the django-tasks backport); this is Django "
            f"{django.get_version()} without the backport.",
            hint="pip install 'djangotasks[backport]' (and add 'django_tasks' to "
            "INSTALLED_APPS), or upgrade to Django 6.0.",
            id="djangotasks.E013",
        )
        for alias in aliases
    ]


@checks.register(checks.Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The settings that ``@task(schedule=...)`` needs (the registry only: no query)."""
    from django.conf import settings

    from djangotasks.models.schedule import default_time_zone
    from djangotasks.registry import registry
    from djangotasks.ticks import InvalidSchedule, check_time_zone

    scheduled = sorted(d.name for d in registry if d.schedule is not None)
    messages: list[checks.CheckMessage] = []
    if scheduled and not settings.USE_TZ:
        messages.append(
            checks.Error(
                f"USE_TZ = False, but tasks have a schedule ({_some(scheduled)}): schedules "
                f"compare aware datetimes in UTC (each one's next tick against the database's "
                f"clock).",
                hint="Set USE_TZ = True. Each schedule still ticks in its own time zone.",
                id="djangotasks.E014",
            )
        )
    # Without time_zone=..., a schedule ticks in settings.TIME_ZONE.
    in_default = [d.name for d in registry if d.schedule and d.schedule.time_zone is None]
    if in_default:
        try:
            check_time_zone(default_time_zone())
        except InvalidSchedule:
            messages.append(
                checks.Error(
                    f"TIME_ZONE = {settings.TIME_ZONE!r} is not a time zone that zoneinfo "
                    f"knows, and the schedules of {_some(sorted(in_default))} tick in it "
                    f"(they have no time_zone=...).",
                    hint="Set TIME_ZONE to an IANA name such as 'Europe/Paris', or give "
                    "those schedules @task(time_zone=...). On a system without a time zone "
                    "database, pip install tzdata.",
                    id="djangotasks.E015",
                )
            )
    return messages


def _some(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: a message stays short however many tasks there are."""
    text = ", ".join(names[:shown])
    return f"{text} and {len(names) - shown} more" if len(names) > shown else text


@checks.register(checks.Tags.urls)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The project routes the metrics view, but prometheus-client is not installed."""
    from djangotasks import metrics

    # Installed (the usual case): no need to load the URLconf to know.
    if metrics.installed() or metrics.url() is None:
        return []
    return [
        checks.Warning(
            f"The URL {metrics.URL_NAME!r} routes djangotasks' metrics view, but "
            f"prometheus-client is not installed: every scrape gets a 503.",
            hint="pip install 'djangotasks[metrics]', or remove the route.",
            id="djangotasks.W003",
        )
    ]

"""Settings of the demo: SQLite, the admin, djangotasks. Not for production (DEBUG, a fixed key)."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent
# DJANGOTASKS_DEMO_DB lets the smoke test (or you) keep the database elsewhere.
DATABASE_PATH = Path(os.environ.get("DJANGOTASKS_DEMO_DB") or BASE_DIR / "var" / "demo.sqlite3")
DATABASE_PATH.parent.mkdir(parents=True, exist_ok=True)
VAR = DATABASE_PATH.parent

SECRET_KEY = "demo-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "djangotasks",
    "catalog",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATABASE_PATH),
        # The daemon, its task processes and the web server write to one file: WAL lets
        # readers go on while one writes, IMMEDIATE takes the write lock up front (no
        # deadlock on upgrade) and the timeout waits for it instead of failing.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        },
    }
}

DJANGOTASKS = {
    "MAX_CONCURRENCY": 4,
    "HEARTBEAT_INTERVAL": 2.0,
    "POLL_INTERVAL": 0.5,
    # Ctrl-C should not wait for a one-minute import to finish.
    "SHUTDOWN_WAIT": 3.0,
    "CANCEL_GRACE": 2.0,
    "PIDFILE": str(VAR / "taskd.pid"),
    # For a Prometheus scrape of /djangotasks/metrics; unset: logged-in staff only.
    "METRICS_TOKEN": os.environ.get("DJANGOTASKS_METRICS_TOKEN") or None,
}

# Django's tasks framework runs in the same daemon (catalog/reports.py): Django's own on
# Django >= 6.0, the django-tasks backport on 5.2 where it is installed.
TASKS_FRAMEWORK = django.VERSION >= (6, 0) or find_spec("django_tasks") is not None
if django.VERSION < (6, 0) and TASKS_FRAMEWORK:
    INSTALLED_APPS.append("django_tasks")
if TASKS_FRAMEWORK:
    TASKS = {
        "default": {
            "BACKEND": "djangotasks.backend.ProcessBackend",
            "QUEUES": ["default", "reports"],
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"djangotasks": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

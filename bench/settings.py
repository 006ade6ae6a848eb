"""Django settings of the benchmarks. ``BENCH_DB`` picks sqlite (default), postgres or mysql.

SQLite uses a throwaway file in ``BENCH_DIR`` (a temporary directory made by the runner);
PostgreSQL and MariaDB use a ``djangotasks_bench`` database that the runner creates and drops.
The daemon runs with the package's default settings: the figures are those a user gets.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import django

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "djangotasks",
    "bench.benchapp",
]
# The peer (Django's own tasks framework with the django-tasks-db backend), when installed:
# `pip install -e '.[bench]'`.
HAVE_PEER = importlib.util.find_spec("django_tasks_db") is not None
TASKS: dict[str, dict[str, Any]] = {}
if HAVE_PEER:
    INSTALLED_APPS.append("django_tasks_db")
    TASKS["default"] = {"BACKEND": "django_tasks_db.DatabaseBackend"}
# djangotasks itself as a backend of Django's tasks framework (Django >= 6.0), measured with
# the same enqueue() calls as the peer; its tasks are in bench/benchapp/tasks.py.
HAVE_BACKEND = django.VERSION >= (6, 0)
if HAVE_BACKEND:
    TASKS["djangotasks"] = {"BACKEND": "djangotasks.backend.ProcessBackend"}

DB = os.environ.get("BENCH_DB", "sqlite")
DB_NAME = os.environ.get("BENCH_DB_NAME", "djangotasks_bench")
BENCH_DIR = Path(os.environ.get("BENCH_DIR") or tempfile.gettempdir())

if DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME,
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DB_NAME,
            "USER": os.environ.get("MYSQL_USER", "root"),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BENCH_DIR / "bench.sqlite3"),
            # What the djangotasks system check asks for (several processes share the file).
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
    }

# Only the pid file is set: everything else is the default a user gets.
DJANGOTASKS = {"PIDFILE": str(BENCH_DIR / "taskd.pid")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"djangotasks": {"handlers": ["console"], "level": "WARNING"}},
}

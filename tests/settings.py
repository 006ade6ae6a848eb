"""Settings for the test suite. ``DJANGOTASKS_TEST_DB`` picks sqlite (default), postgres or mysql.

Daemons started by a test run in other processes; they get the test database's name in
``DJANGOTASKS_DB_NAME`` (Django renames the database only inside the test process).
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
VAR = Path(os.environ.get("DJANGOTASKS_TEST_VAR", BASE_DIR / "var"))
VAR.mkdir(exist_ok=True)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
# As on Django 6 (its default): the suite also runs on 5.2, whose default is AutoField.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "djangotasks",
    "tests",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
ROOT_URLCONF = "tests.urls"
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

DB = os.environ.get("DJANGOTASKS_TEST_DB", "sqlite")
DB_NAME = os.environ.get("DJANGOTASKS_DB_NAME")
# One test database per test run, so that two runs on one machine never share one.
RUN = os.getpid()
if DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME or "djangotasks",
            "USER": os.environ.get("PGUSER", "postgres"),
            "TEST": {"NAME": f"test_djangotasks_{RUN}"},
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DB_NAME or "djangotasks",
            "USER": os.environ.get("MYSQL_USER", "root"),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {
                "NAME": f"test_djangotasks_{RUN}",
                "CHARSET": "utf8mb4",
                "COLLATION": "utf8mb4_unicode_ci",
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DB_NAME or str(VAR / "db.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
            # A file, not memory: daemons and task processes must see the test database.
            "TEST": {"NAME": str(VAR / f"test-{RUN}.sqlite3")},
        }
    }

DJANGOTASKS = {
    "HEARTBEAT_INTERVAL": float(os.environ.get("DJANGOTASKS_HEARTBEAT", "1")),
    "WORKER_TIMEOUT": float(os.environ.get("DJANGOTASKS_WORKER_TIMEOUT", "30")),
    "CANCEL_GRACE": 2.0,
    "POLL_INTERVAL": 0.2,
    "SHUTDOWN_WAIT": float(os.environ.get("DJANGOTASKS_SHUTDOWN_WAIT", "30")),
    "PIDFILE": os.environ.get("DJANGOTASKS_PIDFILE") or None,
}
DJANGOTASK_DAEMON_THREAD = os.environ.get("DJANGOTASKS_THREAD") == "1"

# Mail. Tests read Django's locmem outbox; a daemon started with DJANGOTASKS_TEST_MAIL_DIR
# mails its alerts to ADMINS as files in that directory (test_alerts.py).
MAIL_DIR = os.environ.get("DJANGOTASKS_TEST_MAIL_DIR")
MAIL_BACKEND = f"django.core.mail.backends.{'filebased' if MAIL_DIR else 'locmem'}.EmailBackend"
MAIL_OPTIONS = {"file_path": MAIL_DIR} if MAIL_DIR else {}
if django.VERSION >= (6, 1):  # MAILERS replaces EMAIL_BACKEND; sending without either warns
    MAILERS = {"default": {"BACKEND": MAIL_BACKEND, "OPTIONS": MAIL_OPTIONS}}
else:
    EMAIL_BACKEND, EMAIL_FILE_PATH = MAIL_BACKEND, MAIL_DIR
if MAIL_DIR:
    # Django 6 takes addresses; 5.2 takes (name, address) pairs.
    ADMINS = ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
    DJANGOTASKS |= {"ALERT_MAIL_ADMINS": True, "ALERT_INTERVAL": 0.2}

# Django's tasks framework with the djangotasks backend (tests/backend_tasks.py): Django's own
# on Django >= 6.0, the django-tasks backport on 5.2 where it is installed (make test-django52).
HAVE_TASKS_FRAMEWORK = django.VERSION >= (6, 0) or find_spec("django_tasks") is not None
if django.VERSION < (6, 0) and HAVE_TASKS_FRAMEWORK:
    INSTALLED_APPS.append("django_tasks")
if HAVE_TASKS_FRAMEWORK:
    IMMEDIATE = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    TASKS = {
        "default": {
            "BACKEND": "djangotasks.backend.ProcessBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"retry_delay": 0.1},
        },
        "immediate": {"BACKEND": f"{IMMEDIATE}.backends.immediate.ImmediateBackend"},
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"djangotasks": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

# Tests only: hashing each test user's password at full strength costs about a second, and
# most admin tests make one or two users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

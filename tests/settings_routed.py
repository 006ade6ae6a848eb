"""tests.settings with djangotasks' models routed to a database of their own, alias "tasks".

Used by tests/test_routing.py for the subprocesses it starts: ``DJANGOTASKS_TASKS_DB_NAME``
names the "tasks" database (same server and user as "default"); ``DJANGOTASKS_DB_NAME``
still names "default", as with tests.settings.
"""

from __future__ import annotations

import os
from typing import Any

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

TASKS_ALIAS = "tasks"

DATABASES[TASKS_ALIAS] = {
    **{key: value for key, value in DATABASES["default"].items() if key != "TEST"},
    "NAME": os.environ.get("DJANGOTASKS_TASKS_DB_NAME", "djangotasks_tasks"),
}
DATABASE_ROUTERS = ["tests.settings_routed.TasksRouter"]


class TasksRouter:
    """djangotasks on "tasks"; content types on both (Task has a foreign key to them)."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return TASKS_ALIAS if model._meta.app_label == "djangotasks" else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return TASKS_ALIAS if model._meta.app_label == "djangotasks" else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        if app_label == "djangotasks":
            return db == TASKS_ALIAS
        if app_label == "contenttypes":
            return True
        return db == "default"

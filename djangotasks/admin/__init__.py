"""The djangotasks admin: the Task admin, the dashboard, and ``TaskAdminMixin``.

Importing this module (Django's admin autodiscovery does) registers the ``Task`` and ``Worker``
admins on the default admin site. On a custom site, register them yourself::

    site.register(Task, TaskAdmin)
"""

from __future__ import annotations

from django.contrib import admin

from djangotasks.admin.mixin import TaskAdminMixin
from djangotasks.admin.task_admin import TaskAdmin, WorkerAdmin
from djangotasks.models import Task, Worker

admin.site.register(Task, TaskAdmin)
admin.site.register(Worker, WorkerAdmin)

__all__ = ["TaskAdmin", "TaskAdminMixin", "WorkerAdmin"]

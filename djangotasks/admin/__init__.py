"""The djangotasks admin: the Task admin, the dashboard, and ``TaskAdminMixin``.

Importing this module (Django's admin autodiscovery does) registers the ``Task`` and ``Worker``
admins, and the "Dashboard" entry of the app list, on the default admin site. On a custom
site, register them yourself::

    site.register(Task, TaskAdmin)
    site.register(Worker, WorkerAdmin)
    site.register(Dashboard, DashboardEntryAdmin)
"""

from __future__ import annotations

from django.contrib import admin

from djangotasks.admin.dashboard_entry import DashboardEntryAdmin
from djangotasks.admin.mixin import TaskAdminMixin
from djangotasks.admin.task_admin import TaskAdmin
from djangotasks.admin.worker_admin import WorkerAdmin
from djangotasks.models import Dashboard, Task, Worker

admin.site.register(Task, TaskAdmin)
admin.site.register(Worker, WorkerAdmin)
admin.site.register(Dashboard, DashboardEntryAdmin)

__all__ = ["DashboardEntryAdmin", "TaskAdmin", "TaskAdminMixin", "WorkerAdmin"]

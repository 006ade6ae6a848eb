"""The djangotasks admin: the Task admin, the dashboard, and ``TaskAdminMixin``.

Importing this module (Django's admin autodiscovery does) registers the ``Task``, ``Worker``
and ``Schedule`` admins, and the "Dashboard" entry of the app list, on the default admin
site. On a custom site, register them yourself::

    site.register(Task, TaskAdmin)
    site.register(Worker, WorkerAdmin)
    site.register(Schedule, ScheduleAdmin)
    site.register(Dashboard, DashboardEntryAdmin)
"""

from __future__ import annotations

from django.contrib import admin

from djangotasks.admin.dashboard_entry import DashboardEntryAdmin
from djangotasks.admin.mixin import TaskAdminMixin
from djangotasks.admin.schedule_admin import ScheduleAdmin
from djangotasks.admin.task_admin import TaskAdmin
from djangotasks.admin.worker_admin import WorkerAdmin
from djangotasks.models import Dashboard, Schedule, Task, Worker

admin.site.register(Task, TaskAdmin)
admin.site.register(Worker, WorkerAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(Dashboard, DashboardEntryAdmin)

__all__ = ["DashboardEntryAdmin", "ScheduleAdmin", "TaskAdmin", "TaskAdminMixin", "WorkerAdmin"]

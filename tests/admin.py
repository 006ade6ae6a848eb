from __future__ import annotations

from django.contrib import admin

from djangotasks.admin import TaskAdminMixin
from tests.models import Job


@admin.register(Job)
class JobAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "text"]
    search_fields = ["text"]

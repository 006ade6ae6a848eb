from __future__ import annotations

from django.contrib import admin

from catalog.models import Dataset
from djangotasks.admin import TaskAdminMixin


@admin.register(Dataset)
class DatasetAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "source", "rows", "imported_rows", "mean_value"]
    search_fields = ["name", "source"]
    readonly_fields = ["imported_rows", "mean_value"]

from __future__ import annotations

from django.contrib import admin

from catalog.models import Dataset
from djangotasks.admin import TaskAdminMixin


@admin.register(Dataset)
class DatasetAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "source", "rows", "imported_rows", "mean"]
    search_fields = ["name", "source"]
    readonly_fields = ["imported_rows", "mean_value"]

    @admin.display(description="mean value", ordering="mean_value")
    def mean(self, dataset: Dataset) -> str:
        return "—" if dataset.mean_value is None else f"{dataset.mean_value:.2f}"

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from catalog.models import Dataset
from djangotasks.admin import TaskAdminMixin

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

# Sections of the report the action asks for (a keyword argument of the task).
REPORT_SECTIONS = 4


@admin.register(Dataset)
class DatasetAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "source", "rows", "imported_rows", "mean"]
    search_fields = ["name", "source"]
    readonly_fields = ["imported_rows", "mean_value"]
    # Django's tasks framework: Django >= 6.0, or the django-tasks backport on 5.2.
    actions = ["build_report"] if settings.TASKS_FRAMEWORK else []

    @admin.display(description="mean value", ordering="mean_value")
    def mean(self, dataset: Dataset) -> str:
        return "—" if dataset.mean_value is None else f"{dataset.mean_value:.2f}"

    @admin.action(description="Build report (Django task)", permissions=["run_task"])
    def build_report(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        """Enqueue catalog.reports.build_report, a django.tasks task, once per dataset."""
        from catalog import reports
        from djangotasks.backend import task_of

        for dataset in queryset:
            result = reports.build_report.enqueue(dataset.pk, sections=REPORT_SECTIONS)
            row = task_of(result)
            url = reverse(f"{self.admin_site.name}:djangotasks_task_change", args=[row.pk])
            self.message_user(
                request,
                format_html(
                    'Report of {} enqueued: <a href="{}">watch task #{}</a>.', dataset, url, row.pk
                ),
                messages.SUCCESS,
            )

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from bench.adminapp.models import Project
from djangotasks.admin import TaskAdminMixin


@admin.register(Project)
class ProjectAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """A staff user sees only the projects it owns: the rule the task admin turns into a
    subquery."""

    list_display = ["title", "owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        queryset: QuerySet[Project] = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(owner=request.user.pk)

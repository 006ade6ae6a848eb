from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from djangotasks.admin import TaskAdminMixin
from tests.models import Document, Job, Keyed, Report, Tagged


@admin.register(Job)
class JobAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "text"]
    search_fields = ["text"]


@admin.register(Document)
class DocumentAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Each user sees only their own documents: rows hidden by the queryset."""

    list_display = ["title", "owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        queryset: QuerySet[Document] = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(owner=request.user.pk)


@admin.register(Report)
class ReportAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Per-object rules: a secret report is for superusers; a locked one is read-only."""

    list_display = ["title", "secret", "locked"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.secret and not request.user.is_superuser:
            return False
        return super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and (obj.secret or obj.locked) and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)


@admin.register(Keyed, Tagged)
class KeyAdmin(TaskAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Character and UUID primary keys, which a new object may reuse."""

"""Task list filters whose choices cost no query over the task table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from djangotasks.admin.results import known_queues
from djangotasks.models import Worker
from djangotasks.models.task import content_types
from djangotasks.registry import registry

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

# Daemons come and go (each start is a row); the filter offers the most recent ones.
RECENT_WORKERS = 20


class TaskNameFilter(admin.SimpleListFilter):
    """By task, with the choices read from the registry (not ``SELECT DISTINCT``)."""

    title = _("task")
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        visible = set(model_admin.access(request).visible_models())
        definitions = sorted(
            (d for d in registry if d.model is None or d.model in visible),
            key=lambda d: (d.model is None, d.label.lower()),
        )
        return [
            (d.name, f"{d.label} ({d.model._meta.verbose_name})" if d.model else d.label)
            for d in definitions
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(name=self.value())
        return queryset


class ModelFilter(admin.SimpleListFilter):
    """By the kind of object the task runs on; "no object" for function tasks."""

    title = _("model")
    parameter_name = "model"
    NONE = "none"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        models = model_admin.access(request).visible_models()
        by_model = content_types().get_for_models(*models) if models else {}
        choices = sorted(
            (str(ct.pk), str(model._meta.verbose_name).capitalize())
            for model, ct in by_model.items()
        )
        return [*choices, (self.NONE, str(_("No object (function tasks)")))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == self.NONE:
            return queryset.filter(content_type__isnull=True)
        if value and value.isdigit():
            return queryset.filter(content_type_id=int(value))
        return queryset


class WorkerFilter(admin.SimpleListFilter):
    title = _("worker")
    parameter_name = "worker"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        workers = Worker.objects.order_by("-last_seen")[:RECENT_WORKERS]
        return [(str(w.pk), str(w)) for w in workers]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(worker_id=int(value))
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """By queue, with the choices from the settings and the registry (not ``SELECT
    DISTINCT``); any queue name in the URL filters too."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        queues = known_queues()
        value = self.value()
        if value and value not in queues:
            queues.append(value)  # a queue removed since: still shown as the one chosen
        return [(queue, queue) for queue in queues]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(queue_name=self.value())
        return queryset

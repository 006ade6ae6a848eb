"""The admin of ``djangotasks.Task``: a read-only, live view of every task run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.options import ShowFacets
from django.core.exceptions import PermissionDenied
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from djangotasks.admin import dashboard, panels, permissions, results, schedule_admin
from djangotasks.admin.filters import ModelFilter, QueueFilter, TaskNameFilter, WorkerFilter
from djangotasks.admin.pagination import LookaheadPaginator, TaskChangeList, page_number
from djangotasks.admin.views import TaskViewsMixin
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Task, TaskLogChunk, graph, scheduling
from djangotasks.models.task import content_types
from djangotasks.statuses import ACTIVE, PENDING
from djangotasks.templatetags.djangotasks_admin import (
    duration,
    progress_bar,
    short_date,
    status_badge,
)

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest, HttpResponse
    from django.urls import URLPattern

    from djangotasks.models.task import TaskQuerySet

    _TaskModelAdmin = admin.ModelAdmin[Task]  # generic in the stubs only
else:
    _TaskModelAdmin = admin.ModelAdmin

MEDIA_CSS = {"all": ["djangotasks/djangotasks.css"]}
MEDIA_JS = ["djangotasks/djangotasks.js"]


class TaskAdmin(TaskViewsMixin, results.ResultFieldsMixin, _TaskModelAdmin):
    # Nine columns that fit a 1280 px window with the admin's sidebar and filters open: the
    # id rides along in the task column, which links to the task's page; a Django task's
    # arguments stand where an object would.
    list_display = [
        "status_column",
        "progress_column",
        "target_column",
        "task_column",
        "queue_name",
        "start_column",
        "duration_column",
        "worker_column",
    ]
    list_display_links = ["task_column"]
    list_filter = [
        "status",
        TaskNameFilter,
        QueueFilter,
        ModelFilter,
        WorkerFilter,
        ("created_at", admin.DateFieldListFilter),
        "archived",
    ]
    list_select_related = ["content_type", "worker"]
    search_fields = ["name", "=object_id", "reason", "progress_message"]
    actions = ["cancel_selected", "run_selected_again", "delete_selected"]
    # Counting a million rows on every page view is what makes big task lists slow.
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 100
    change_form_template = "djangotasks/admin/task_change_form.html"
    change_list_template = "djangotasks/admin/task_change_list.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "label_column",
                    "target_column",
                    "status_column",
                    "reason",
                    "progress_column",
                ]
            },
        ),
        (
            _("Timing"),
            {"fields": ["created_at", "run_after", "start_date", "end_date", "duration_column"]},
        ),
        (
            _("Execution"),
            {
                "fields": [
                    "name",
                    "worker",
                    "pid",
                    "attempt",
                    "priority",
                    "queue_name",
                    "log_size",
                    "archived",
                ]
            },
        ),
    ]
    readonly_fields = ["label_column", "target_column", "status_column", "progress_column"]
    readonly_fields += ["duration_column", *results.ResultFieldsMixin.result_fields]

    class Media:
        css = MEDIA_CSS
        js = MEDIA_JS

    # -- permissions: nobody edits a status, pid or log by hand ---------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        # One task (its page, history, delete page): its object must be visible as well,
        # which get_queryset cannot always say (a per-object rule with many objects).
        if obj is not None and not self.access(request).shows(obj):
            return False
        return super().has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        # A running task is cancelled first: deleting its row would orphan its process.
        if obj is not None and (obj.status in ACTIVE or not self.access(request).shows(obj)):
            return False
        return super().has_delete_permission(request, obj)

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.RUN)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.CANCEL)

    def get_queryset(self, request: HttpRequest) -> TaskQuerySet:
        """Tasks whose objects the user may see in their own admins (the visibility rule)."""
        # Task's default manager makes TaskQuerySets; the stubs know only QuerySet[Task].
        queryset = cast("TaskQuerySet", super().get_queryset(request))
        return cast("TaskQuerySet", self.access(request).visible(queryset))

    def access(self, request: HttpRequest) -> permissions.Access:
        return permissions.Access.of(request, self.admin_site)

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Task],
        per_page: int,
        *args: Any,
        **kwargs: Any,
    ) -> LookaheadPaginator:
        return LookaheadPaginator(queryset, per_page, page_number=page_number(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[TaskChangeList]:
        return TaskChangeList

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """What the confirmation page lists: counts, never the log chunks one by one (a
        long task has tens of thousands of them)."""
        ids = [obj.pk for obj in objs] if isinstance(objs, list) else objs.values("pk")
        tasks = Task.objects.filter(pk__in=ids)
        counts = {
            str(Task._meta.verbose_name_plural): tasks.count(),
            str(TaskLogChunk._meta.verbose_name_plural): TaskLogChunk.objects.filter(
                task__in=tasks
            ).count(),
        }
        summary = [f"{name}: {count:,}" for name, count in counts.items()]
        perms_needed = set() if self.has_delete_permission(request) else {"task"}
        running = [str(task) for task in tasks.filter(status__in=ACTIVE)[:20]]
        return summary, counts, perms_needed, running

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Delete in batches (bounded memory and transactions); running tasks are kept."""
        running = queryset.filter(status__in=ACTIVE).count()
        hidden = 0
        for shown, batch_hidden in self.access(request).batches(
            queryset.exclude(status__in=ACTIVE)
        ):
            hidden += batch_hidden
            Task.objects.filter(pk__in=[task.pk for task in shown]).delete_in_batches()
        if running:
            self.message_user(
                request,
                ngettext(
                    "%d running task was not deleted: cancel it first.",
                    "%d running tasks were not deleted: cancel them first.",
                    running,
                )
                % running,
                messages.WARNING,
            )
        if hidden:
            self.message_user(request, refused(hidden), messages.ERROR)

    # -- columns -------------------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, task: Task) -> str:
        return status_badge(task)

    @admin.display(description=_("progress"))
    def progress_column(self, task: Task) -> str:
        return progress_bar(task, compact=True)

    @admin.display(description=_("task"), ordering="name")
    def label_column(self, task: Task) -> str:
        return task.label

    @admin.display(description=_("task"), ordering="name")
    def task_column(self, task: Task) -> str:
        return format_html('{} <span class="djangotasks-id">#{}</span>', task.label, task.pk)

    @admin.display(description=_("started"), ordering="start_date")
    def start_column(self, task: Task) -> str:
        return short_date(task.start_date)

    @admin.display(description=_("worker"), ordering="worker")
    def worker_column(self, task: Task) -> str:
        if task.worker is None:
            return "—"
        # Host names can be long: the cell truncates, the tooltip keeps the whole name.
        return format_html('<span title="{}">{}</span>', task.worker, task.worker)

    @admin.display(description=_("object"))
    def target_column(self, task: Task) -> str:
        if task.is_django_task:
            # The arguments stand where an object would; the tooltip has the result's id.
            return format_html(
                '<span class="djangotasks-call" title="{}">{}</span>',
                _("result %s") % task.object_id,
                results.call_text(task),
            )
        if task.content_type_id is None:
            return "—"
        target = task.target
        if target is None:
            return format_html(
                '<span class="djangotasks-gone">{} #{} ({})</span>',
                content_types().get_for_id(task.content_type_id).name,
                task.object_id,
                _("deleted"),
            )
        opts = target._meta
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[target.pk],
            )
        except Exception:  # the model has no admin on this site
            return str(target)
        return format_html('<a href="{}">{}</a>', url, target)

    @admin.display(description=_("duration"))
    def duration_column(self, task: Task) -> str:
        return duration(task.duration)

    # -- actions -------------------------------------------------------------------------

    @admin.action(description=_("Cancel selected tasks"), permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        access = self.access(request)
        cancelled, skipped, denied = 0, 0, 0
        for shown, hidden in access.batches(queryset):
            denied += hidden
            for task in shown:
                if task.status not in PENDING:
                    skipped += 1
                elif not access.may_cancel(task):
                    denied += 1
                else:
                    try:
                        task.cancel()
                        cancelled += 1
                    except InvalidTransition:
                        skipped += 1  # it finished meanwhile
        message = ngettext("%d task cancelled.", "%d tasks cancelled.", cancelled) % cancelled
        if skipped:
            message += (
                " "
                + ngettext(
                    "%d was not running or scheduled.", "%d were not running or scheduled.", skipped
                )
                % skipped
            )
        self.message_user(request, message, messages.SUCCESS if cancelled else messages.WARNING)
        if denied:
            self.message_user(request, refused(denied), messages.ERROR)

    @admin.action(description=_("Run selected tasks again"), permissions=["run"])
    def run_selected_again(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        access = self.access(request)
        scheduled, pending, failed, denied = 0, 0, [], 0
        runnable: list[Task] = []
        for shown, hidden in access.batches(queryset.select_related("content_type")):
            denied += hidden
            for task in shown:
                if task.status in PENDING and not task.archived:
                    pending += 1
                elif task.definition is None:  # its code is gone: say so, not "denied"
                    failed.append(f"{results.title(task)} ({_('no such task any more')})")
                elif not access.may_run(task):
                    denied += 1
                else:
                    runnable.append(task)
        try:
            # All at once: one transaction, a bounded number of statements.
            scheduled = len(scheduling.run_again(runnable))
        except results.run_errors():
            # One of them is refused (its object is gone; for a Django task, settings
            # refuse it since): one at a time, to say which.
            for task in runnable:
                try:
                    task.run()
                    scheduled += 1
                except results.run_errors() as exc:
                    failed.append(f"{results.title(task)} ({exc})")
        message = ngettext("%d task scheduled.", "%d tasks scheduled.", scheduled) % scheduled
        if pending:
            message += (
                " "
                + ngettext(
                    "%d was already scheduled or running.",
                    "%d were already scheduled or running.",
                    pending,
                )
                % pending
            )
        self.message_user(request, message, messages.SUCCESS)
        if failed:
            self.message_user(request, _("Could not run: %s") % "; ".join(failed), messages.ERROR)
        if denied:
            self.message_user(request, refused(denied), messages.ERROR)

    # -- pages ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view

        def name(suffix: str) -> str:
            return f"djangotasks_task_{suffix}"

        urls = [
            path("dashboard/", view(self.dashboard_view), name=name("dashboard")),
            path("dashboard/live/", view(self.dashboard_live_view), name=name("dashboard_live")),
            path("run/<str:name>/", view(require_POST(self.run_view)), name=name("run")),
            path(
                "run/<str:name>/<int:content_type_id>/<path:object_id>/",
                view(require_POST(self.run_view)),
                name=name("run_object"),
            ),
            path(
                "panel/<int:content_type_id>/<path:object_id>/",
                view(self.panel_view),
                name=name("panel"),
            ),
            path("<int:pk>/cancel/", view(require_POST(self.cancel_view)), name=name("cancel")),
            path("<int:pk>/again/", view(require_POST(self.again_view)), name=name("again")),
            path("<int:pk>/head/", view(self.head_view), name=name("head")),
            path("<int:pk>/log/", view(self.log_view), name=name("log")),
            path("<int:pk>/log.txt", view(self.log_text_view), name=name("log_text")),
        ]
        return urls + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "djangotasks_dashboard_url": panels.url(self.admin_site, "dashboard"),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        task = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if task is not None and self.access(request).shows(task):
            extra_context["card"] = panels.card(
                request,
                self.admin_site,
                task,
                archives=list(task.archives()[: panels.HISTORY_LIMIT]),
            )
            extra_context["tree"] = graph.dependency_tree(task)
            extra_context["dependents"] = list(task.dependents.order_by("id"))
            extra_context["djangotasks_dashboard_url"] = panels.url(self.admin_site, "dashboard")
            extra_context["scheduled_by"] = schedule_admin.scheduled_by(
                request, self.admin_site, task
            )
            if task.is_django_task:
                extra_context["subtitle"] = results.title(task)
        elif task is not None:
            raise PermissionDenied
        return super().change_view(request, object_id, form_url, extra_context)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard.page(self, request)

    def dashboard_live_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard.live(self, request)


def refused(count: int) -> str:
    return (
        ngettext(
            "%d task was left alone: you may not see or change its object.",
            "%d tasks were left alone: you may not see or change their objects.",
            count,
        )
        % count
    )

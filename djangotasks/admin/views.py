"""The task admin's own views: run, cancel, and the htmx fragments that keep pages live.

Every state change is a POST through ``admin_site.admin_view`` (staff login and CSRF) and
a permission check; every fragment is also a plain GET a person could open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django_htmx.http import HTMX_STOP_POLLING
from django_htmx.middleware import HtmxDetails

from djangotasks.admin import panels, permissions, results
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.task import content_types
from djangotasks.registry import UnknownTask, registry
from djangotasks.statuses import PENDING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from django.contrib.admin import AdminSite
    from django.db.models import Model, QuerySet
    from django.http import HttpRequest

# A poll after a long pause may find megabytes of new output; the page gets the end of it.
MAX_POLL_CHARS = panels.LOG_TAIL_CHARS


def get_target(
    request: HttpRequest, admin_site: AdminSite, model: type[Model], object_id: str
) -> Model:
    """The object through its ModelAdmin (its queryset applies): 404 if hidden, 403 if its
    ``has_view_permission`` says no; a model without a ModelAdmin is for superusers."""
    access = permissions.Access.of(request, admin_site)
    model_admin = access.model_admin(model)
    obj: Model | None = None
    if model_admin is not None:
        obj = model_admin.get_object(request, object_id)
    elif access.superuser:
        obj = model._default_manager.filter(pk=object_id).first()
    if obj is None:
        raise Http404(_("The object of this task does not exist (any more)."))
    if not access.may_view_object(obj):
        raise PermissionDenied
    return obj


def panel_response(
    request: HttpRequest, admin_site: AdminSite, obj: Model, notice: str = "", error: str = ""
) -> TemplateResponse:
    context = {
        "djangotasks_cards": panels.object_cards(request, admin_site, obj),
        "djangotasks_panel_url": panels.url(
            admin_site,
            "panel",
            content_types().get_for_model(obj).pk,
            str(obj.pk),
        ),
        "djangotasks_notice": notice,
        "djangotasks_error": error,
    }
    return TemplateResponse(request, "djangotasks/_panel.html", context)


class TaskViewsMixin:
    """Views of ``TaskAdmin``; URLs are in ``TaskAdmin.get_urls``."""

    admin_site: AdminSite

    get_queryset: Callable[[HttpRequest], QuerySet[Task]]  # from ModelAdmin

    # -- helpers -------------------------------------------------------------------------

    def get_visible_task(self, request: HttpRequest, pk: int) -> Task:
        """404 unless the task's object is in its ModelAdmin's queryset; 403 unless its
        ``has_view_permission`` allows it (the rule of ``permissions.Access``)."""
        access = permissions.Access.of(request, self.admin_site)
        if not access.has(permissions.VIEW):
            raise PermissionDenied
        task = get_object_or_404(
            self.get_queryset(request).select_related("content_type", "worker"), pk=pk
        )
        if not access.shows(task):
            raise PermissionDenied
        return task

    def redirect_back(self, request: HttpRequest, fallback: str) -> HttpResponse:
        for candidate in (request.POST.get("next"), request.headers.get("referer")):
            if candidate and url_has_allowed_host_and_scheme(
                candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                return redirect(candidate)
        return redirect(fallback)

    def respond(
        self, request: HttpRequest, task: Task, notice: str = "", error: str = ""
    ) -> HttpResponse:
        """htmx from a tasks panel gets the fresh panel; everyone else a redirect + message."""
        target = task.target
        if HtmxDetails(request) and request.POST.get("panel") and target is not None:
            return panel_response(request, self.admin_site, target, notice, error)
        if request.POST.get("show") == "task" and not error:
            messages.success(request, notice)
            return redirect(panels.url(self.admin_site, "change", task.pk))
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return self.redirect_back(request, panels.url(self.admin_site, "change", task.pk))

    # -- state changes -------------------------------------------------------------------

    def run_view(
        self,
        request: HttpRequest,
        name: str,
        content_type_id: int | None = None,
        object_id: str | None = None,
    ) -> HttpResponse:
        try:
            definition = registry.get(name)
        except UnknownTask as exc:
            raise Http404(str(exc)) from exc
        if definition.takes_arguments:
            # A django.tasks task runs with arguments: from code, or again from a result.
            raise Http404(_("This task takes arguments: enqueue it from code."))
        target = None
        if definition.is_method:
            model = get_object_or_404(ContentType, pk=content_type_id).model_class()
            if model is None or model is not definition.model or object_id is None:
                raise Http404(_("This task does not belong to this kind of object."))
            target = get_target(request, self.admin_site, model, object_id)
        elif content_type_id is not None:
            raise Http404(_("This task does not belong to an object."))
        current = definition.current(target)
        if not permissions.Access.of(request, self.admin_site).may_run(current):
            raise PermissionDenied
        if current.pk is not None and current.status in PENDING:
            notice = _("%(task)s is already %(status)s.") % {
                "task": definition.label,
                "status": current.status_display.lower(),
            }
            return self.respond(request, current, notice=notice)
        try:
            task = current.run()
        except InvalidTransition as exc:  # it started being cancelled since we looked
            return self.respond(request, current, error=str(exc))
        return self.respond(
            request, task, notice=_("%(task)s scheduled.") % {"task": definition.label}
        )

    def again_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Run this task again: a Django task is enqueued with its arguments as a new result."""
        task = self.get_visible_task(request, pk)
        if not permissions.Access.of(request, self.admin_site).may_run(task):
            raise PermissionDenied
        if task.status in PENDING and not task.archived:
            notice = _("%(task)s is already %(status)s.") % {
                "task": results.title(task),
                "status": task.status_display.lower(),
            }
            return self.respond(request, task, notice=notice)
        try:
            again = task.run()
        except results.run_errors() as exc:
            # Settings changed since (a queue or backend removed), or the code is gone.
            error = _("%(task)s could not run again: %(error)s") % {
                "task": results.title(task),
                "error": exc,
            }
            return self.respond(request, task, error=error)
        return self.respond(
            request, again, notice=_("%(task)s scheduled.") % {"task": results.title(again)}
        )

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        task = self.get_visible_task(request, pk)
        if not permissions.Access.of(request, self.admin_site).may_cancel(task):
            raise PermissionDenied
        try:
            task.cancel()
        except InvalidTransition as exc:
            return self.respond(request, task, error=str(exc))
        return self.respond(
            request,
            task,
            notice=_("%(task)s: %(status)s.") % {"task": task.label, "status": task.status_display},
        )

    # -- fragments -----------------------------------------------------------------------

    def panel_view(self, request: HttpRequest, content_type_id: int, object_id: str) -> Any:
        if not request.user.has_perm(permissions.VIEW):
            raise PermissionDenied
        content_type = get_object_or_404(ContentType, pk=content_type_id)
        model = content_type.model_class()
        if model is None:
            raise Http404
        obj = get_target(request, self.admin_site, model, object_id)
        return panel_response(request, self.admin_site, obj)

    def head_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The status line of a task; polling stops (HTTP 286) once the task has ended."""
        task = self.get_visible_task(request, pk)
        card = panels.card(request, self.admin_site, task, with_log=False)
        response = TemplateResponse(
            request,
            "djangotasks/_task_head.html",
            {"card": card, "in_panel": request.GET.get("in") == "panel"},
        )
        if task.status not in PENDING:
            response.status_code = HTMX_STOP_POLLING
        return response

    def log_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The log after ``?offset=``, appended by htmx; HTTP 286 once it is complete."""
        try:
            offset = int(request.GET.get("offset", "0"))
        except ValueError:
            return HttpResponseBadRequest("offset must be an integer")
        if offset < 0:
            return HttpResponseBadRequest("offset must not be negative")
        task = self.get_visible_task(request, pk)
        # The status is read before the log: the daemon stores the whole log before it
        # records a final status, so a final status read first means nothing is missed.
        finished = task.status not in PENDING
        text, next_offset = task.read_log(offset)
        skipped = max(0, len(text) - MAX_POLL_CHARS)
        response = TemplateResponse(
            request,
            "djangotasks/_log_poll.html",
            {
                "task": task,
                "text": text[skipped:],
                "skipped": skipped,
                "offset": next_offset,
                "finished": finished,
                "log_url": panels.url(self.admin_site, "log", task.pk),
            },
        )
        if finished:
            response.status_code = HTMX_STOP_POLLING
        return response

    def log_text_view(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        """The whole log as text/plain, streamed chunk by chunk (a log may be huge)."""
        task = self.get_visible_task(request, pk)

        def chunks() -> Iterator[str]:
            texts = TaskLogChunk.objects.filter(task_id=task.pk).order_by("offset")
            yield from texts.values_list("text", flat=True).iterator(chunk_size=200)

        response = StreamingHttpResponse(chunks(), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="task-{task.pk}.log"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


__all__ = ["TaskViewsMixin", "get_target", "panel_response"]

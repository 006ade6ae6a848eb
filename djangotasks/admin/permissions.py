"""Who may see, run and cancel which tasks.

Viewing, running and cancelling are three permissions (``djangotasks.view_task``,
``djangotasks.run_task``, ``djangotasks.cancel_task``), and on top of each one the user must
be allowed to view the object the task belongs to: a task is as private as its object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_permission_codename

from djangotasks.models.task import content_types
from djangotasks.registry import registry

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.db.models import Model
    from django.http import HttpRequest

    from djangotasks.models import Task

VIEW = "djangotasks.view_task"
RUN = "djangotasks.run_task"
CANCEL = "djangotasks.cancel_task"


def can_view_model(
    request: HttpRequest, admin_site: AdminSite, model: type[Model], obj: Model | None = None
) -> bool:
    """The object's own ModelAdmin decides; an unregistered model falls back to its perms."""
    try:
        model_admin = admin_site.get_model_admin(model)
    except NotRegistered:
        opts = model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )
    return bool(model_admin.has_view_or_change_permission(request, obj))


def can_view_target(request: HttpRequest, admin_site: AdminSite, task: Task) -> bool:
    if task.content_type_id is None:
        return True  # a function task belongs to no object
    model = content_types().get_for_id(task.content_type_id).model_class()
    if model is None:
        return bool(request.user.is_superuser)  # its model was removed from the project
    return can_view_model(request, admin_site, model, task.target)


def can_view(request: HttpRequest, admin_site: AdminSite, task: Task) -> bool:
    return request.user.has_perm(VIEW) and can_view_target(request, admin_site, task)


def can_run(request: HttpRequest, admin_site: AdminSite, task: Task) -> bool:
    return request.user.has_perm(RUN) and can_view_target(request, admin_site, task)


def can_cancel(request: HttpRequest, admin_site: AdminSite, task: Task) -> bool:
    return request.user.has_perm(CANCEL) and can_view_target(request, admin_site, task)


def visible_content_types(request: HttpRequest, admin_site: AdminSite) -> list[int] | None:
    """Content types whose tasks the user may list; None means all (superusers).

    Decided per model, not per row, so the task list stays one query however long it is;
    object-level rules are applied again on each task's own page.
    """
    if request.user.is_superuser:
        return None
    models = {d.model for d in registry if d.model is not None}
    allowed = [m for m in models if can_view_model(request, admin_site, m)]
    if not allowed:
        return []
    return [ct.pk for ct in content_types().get_for_models(*allowed).values()]

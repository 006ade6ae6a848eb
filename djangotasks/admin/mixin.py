"""``TaskAdminMixin``: tasks of an object in its own admin, with nothing to configure.

    class DatasetAdmin(TaskAdminMixin, admin.ModelAdmin):
        ...

adds a "Run <task>" admin action per @task method, a tasks column to the change list (status
and Run / Cancel per task) and a live tasks panel to the change form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.options import IS_POPUP_VAR

try:
    from django.contrib.admin.options import ActionLocation
except ImportError:  # Django < 6.1 has actions in the change list only
    ActionLocation = None  # type: ignore[assignment,misc]
from django.template.loader import render_to_string, select_template
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from djangotasks.admin import panels, permissions
from djangotasks.admin.task_admin import MEDIA_CSS, MEDIA_JS
from djangotasks.models import Task
from djangotasks.models.scheduling import schedule_many
from djangotasks.models.task import content_types
from djangotasks.registry import TaskDefinition, registry
from djangotasks.statuses import PENDING

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.admin.views.main import ChangeList
    from django.db.models import Model, QuerySet
    from django.http import HttpRequest, HttpResponse

# Objects named one by one in an action's message; beyond that, only a count.
NAMED_OBJECTS = 5


@dataclass
class ColumnItem:
    label: str
    task: Task
    run_url: str
    cancel_url: str
    can_run: bool
    can_cancel: bool

    @property
    def pending(self) -> bool:
        return self.task.status in PENDING


def _named(objects: list[Model]) -> str:
    named = ", ".join(str(o) for o in objects[:NAMED_OBJECTS])
    if len(objects) > NAMED_OBJECTS:
        named += _(" and %d more") % (len(objects) - NAMED_OBJECTS)
    return named


def action_label(definition: TaskDefinition) -> str:
    label = definition.label
    if label[:1].isupper() and label[1:2].islower():
        label = label[0].lower() + label[1:]  # "Run import rows", but "Run CSV export"
    # Django %-formats action descriptions with the model's names: keep a "%" literal.
    return (_("Run %(task)s") % {"task": label}).replace("%", "%%")


class TaskAdminMixin:
    """Mix into a ``ModelAdmin`` whose model has ``@task`` methods (before ModelAdmin)."""

    change_form_template = "djangotasks/admin/change_form.html"

    class Media:
        css = MEDIA_CSS
        js = MEDIA_JS

    # These come from ModelAdmin.
    admin_site: Any
    model: type[Model]
    opts: Any
    actions: Any
    get_actions: Callable[..., Any]
    message_user: Callable[..., Any]

    # -- permissions ---------------------------------------------------------------------

    def has_run_task_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """``run_task``, and change permission on the object (on the model, without one)."""
        return request.user.has_perm(permissions.RUN) and self._may_change(request, obj)

    def has_cancel_task_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm(permissions.CANCEL) and self._may_change(request, obj)

    def _may_change(self, request: HttpRequest, obj: Model | None) -> bool:
        access = permissions.Access.of(request, self.admin_site)
        if obj is None:
            return access.may_change_model(self.model)
        return access.may_change_object(obj)

    # -- actions -------------------------------------------------------------------------

    def get_actions(  # type: ignore[no-redef]
        self, request: HttpRequest, action_location: Any = None
    ) -> dict[str, Any]:
        """Django's actions plus "Run <task>"; on Django 6.1+ in the change form too."""
        if ActionLocation is None:
            actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        else:
            action_location = action_location or ActionLocation.CHANGE_LIST
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[misc]
        if self.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        if not self.has_run_task_permission(request):
            return actions
        for definition in registry.for_model(self.model):
            name = f"run_task_{definition.attname}"
            actions[name] = (self._run_action(definition), name, action_label(definition))
        return actions

    def _run_action(self, definition: TaskDefinition) -> Callable[..., None]:
        def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
            modeladmin.run_task_for(request, queryset, definition)

        action.allowed_permissions = ("run_task",)  # type: ignore[attr-defined]
        return action

    def run_task_for(
        self, request: HttpRequest, queryset: QuerySet[Any], definition: TaskDefinition
    ) -> None:
        """Schedule ``definition`` on every selected object the user may change; say which
        were already running and which were refused."""
        scheduled: list[Model] = []
        already: list[Model] = []
        refused: list[Model] = []
        permitted: list[Model] = []
        for obj in queryset:
            (permitted if self.has_run_task_permission(request, obj) else refused).append(obj)
        # One transaction and a bounded number of statements, however many were selected.
        for obj, (_task, created) in zip(
            permitted, schedule_many(definition, permitted), strict=True
        ):
            # Not created: it was scheduled, running or being cancelled already.
            (scheduled if created else already).append(obj)
        opts = self.opts
        if scheduled:
            self.message_user(
                request,
                ngettext(
                    "%(task)s scheduled for %(count)d %(name)s.",
                    "%(task)s scheduled for %(count)d %(name)s.",
                    len(scheduled),
                )
                % {
                    "task": definition.label,
                    "count": len(scheduled),
                    "name": opts.verbose_name if len(scheduled) == 1 else opts.verbose_name_plural,
                },
                messages.SUCCESS,
            )
        if already:
            self.message_user(
                request,
                _("%(task)s was already scheduled or running for: %(objects)s.")
                % {"task": definition.label, "objects": _named(already)},
                messages.WARNING,
            )
        if refused:
            self.message_user(
                request,
                _("%(task)s was not run for: %(objects)s (you may not change them).")
                % {"task": definition.label, "objects": _named(refused)},
                messages.ERROR,
            )

    # -- change list column --------------------------------------------------------------

    def get_list_display(self, request: HttpRequest) -> Any:
        list_display = list(super().get_list_display(request))  # type: ignore[misc]
        if "djangotasks_column" not in list_display and request.user.has_perm(permissions.VIEW):
            list_display.append("djangotasks_column")
        return list_display

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist: ChangeList = super().get_changelist_instance(request)  # type: ignore[misc]
        if "djangotasks_column" in changelist.list_display:
            self._prefetch_column(request, list(changelist.result_list))
        return changelist

    def _prefetch_column(self, request: HttpRequest, objects: list[Model]) -> None:
        """One query for the live tasks of every object on the page."""
        definitions = registry.for_model(self.model)
        content_type = content_types().get_for_model(self.model)
        access = permissions.Access.of(request, self.admin_site)
        # A project may name the column in its own list_display: without view_task (or the
        # right to see the object) it stays empty.
        if not access.has(permissions.VIEW):
            objects, hidden = [], objects
            for obj in hidden:
                obj._djangotasks_column = []  # type: ignore[attr-defined]
        ids = [str(o.pk) for o in objects]
        live: dict[tuple[str, str], Task] = {
            (t.object_id, t.name): t
            for t in Task.objects.live().filter(content_type=content_type, object_id__in=ids)
        }
        for obj in objects:
            if not access.may_view_object(obj):
                obj._djangotasks_column = []  # type: ignore[attr-defined]  # its rule hides it
                continue
            can_run = self.has_run_task_permission(request, obj)
            can_cancel = self.has_cancel_task_permission(request, obj)
            items = []
            for definition in definitions:
                task = live.get((str(obj.pk), definition.name))
                if task is None:
                    task = Task.placeholder(definition, obj, content_type)
                items.append(
                    ColumnItem(
                        label=definition.label,
                        task=task,
                        run_url=panels.run_url(self.admin_site, task),
                        cancel_url=panels.url(self.admin_site, "cancel", task.pk)
                        if task.pk
                        else "",
                        can_run=can_run,
                        can_cancel=can_cancel,
                    )
                )
            obj._djangotasks_column = items  # type: ignore[attr-defined]

    def djangotasks_column(self, obj: Model) -> str:
        items = getattr(obj, "_djangotasks_column", None)
        if items is None:  # rendered outside the change list (e.g. a custom view)
            return ""
        return render_to_string("djangotasks/_column.html", {"items": items})

    djangotasks_column.short_description = gettext_lazy("tasks")  # type: ignore[attr-defined]

    # -- change form panel ---------------------------------------------------------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> HttpResponse:
        context["djangotasks_parent_template"] = self._parent_template()
        if obj is not None and not add and request.user.has_perm(permissions.VIEW):
            context["djangotasks_cards"] = panels.object_cards(request, self.admin_site, obj)
            context["djangotasks_panel_url"] = panels.url(
                self.admin_site,
                "panel",
                content_types().get_for_model(obj).pk,
                str(obj.pk),
            )
        return super().render_change_form(  # type: ignore[misc,no-any-return]
            request, context, add, change, form_url, obj
        )

    def _parent_template(self) -> Any:
        # Extend what the admin would have used without the mixin, so a project's own
        # admin/<app>/<model>/change_form.html keeps working under the panel.
        opts = self.opts
        return select_template(
            [
                f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
                f"admin/{opts.app_label}/change_form.html",
                "admin/change_form.html",
            ]
        )

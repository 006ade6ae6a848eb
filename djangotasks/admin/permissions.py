"""Who may see, run and cancel which tasks: the one rule of every page, fragment and action.

Viewing, running and cancelling are three permissions (``djangotasks.view_task``,
``djangotasks.run_task``, ``djangotasks.cancel_task``). On top of each, a task bound to an
object is as private as the object, as the object's own ``ModelAdmin`` decides:

- it is visible when the object is in that ModelAdmin's ``get_queryset(request)`` and
  ``has_view_permission(request, obj)`` allows it;
- running or cancelling it also needs ``has_change_permission(request, obj)``;
- a model without a ModelAdmin on this admin site is for superusers only;
- a function task (no object) needs the djangotasks permission only.

``get_queryset`` is applied as a query (a subquery per model, or the list of keys when there
are at most MAX_LISTED_KEYS objects), so a list of a million tasks is still one query;
``has_view_permission(request, obj)`` can only be asked per object, so it is asked of every
task that is shown or acted on, and of the objects themselves when they are few enough to be
listed. Counts and charts of a model with more objects than that and a per-object rule
apply its queryset part only (as Django's own change lists do).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.contrib.admin.exceptions import NotRegistered
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Collate, Concat, Substr

from djangotasks import routing
from djangotasks.models.task import content_types
from djangotasks.registry import registry

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite, ModelAdmin
    from django.db.models import Expression, Model, QuerySet
    from django.http import HttpRequest

    from djangotasks.models import Task

VIEW = "djangotasks.view_task"
RUN = "djangotasks.run_task"
CANCEL = "djangotasks.cancel_task"
# Tasks whose objects are checked one by one (has_view_permission) per query of objects.
BATCH = 500
# Up to this many visible objects of a model are listed in the task query; more: a subquery.
MAX_LISTED_KEYS = 1000
# The hex digits of each dash-separated group of str(uuid) (1-based, as SQL's SUBSTR).
UUID_GROUPS = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]


def target_admin(admin_site: AdminSite, model: type[Model]) -> ModelAdmin[Any] | None:
    try:
        return admin_site.get_model_admin(model)
    except NotRegistered:
        return None


def object_key(model: type[Model]) -> Expression | F:
    """The object's primary key as the text stored in ``Task.object_id`` (``str(obj.pk)``)."""
    pk = model._meta.pk
    assert pk is not None
    target = getattr(pk, "target_field", pk)  # a parent link: the parent's key
    connection = routing.connection()
    key: Expression | F
    if target.get_internal_type() == "UUIDField" and not (
        connection.features.has_native_uuid_field
    ):
        # Stored as 32 hex digits there; str(uuid) has the dashes.
        hex_key = Cast("pk", CharField())
        parts = [Substr(hex_key, start, length) for start, length in UUID_GROUPS]
        pieces: list[Any] = [parts[0]]
        for part in parts[1:]:
            pieces += [Value("-"), part]
        key = Concat(*pieces, output_field=CharField())
    elif target.get_internal_type() in ("CharField", "TextField", "SlugField"):
        key = F("pk")
    else:
        key = Cast("pk", CharField())
    if connection.vendor == "mysql":
        # MySQL/MariaDB refuse to compare texts of two implicit collations (a CAST takes the
        # connection's, the key column its table's): compare in object_id's own collation.
        key = Collate(key, object_id_collation())
    return key


_collations: dict[str, str] = {}


def object_id_collation() -> str:
    """The collation of ``djangotasks_task.object_id`` on MySQL/MariaDB (asked once)."""
    alias = routing.alias()
    if alias not in _collations:
        from djangotasks.models import Task

        with routing.connection().cursor() as cursor:
            cursor.execute(
                "SELECT collation_name FROM information_schema.columns WHERE "
                "table_schema = DATABASE() AND table_name = %s AND column_name = %s",
                [Task._meta.db_table, Task._meta.get_field("object_id").column],
            )
            row = cursor.fetchone()
        _collations[alias] = str(row[0]) if row and row[0] else "utf8mb4_general_ci"
    return _collations[alias]


def _decides_per_object(model_admin: ModelAdmin[Any]) -> bool:
    """Whether the ModelAdmin overrides has_view_permission (which may look at the object)."""
    from django.contrib.admin import ModelAdmin

    return type(model_admin).has_view_permission is not ModelAdmin.has_view_permission


class Access:
    """One request's rights over tasks. ``Access.of(request, admin_site)`` keeps one per
    request, so every ModelAdmin and every object is asked once."""

    def __init__(self, request: HttpRequest, admin_site: AdminSite) -> None:
        self.request = request
        self.admin_site = admin_site
        self.user: Any = request.user
        self.superuser = bool(self.user.is_active and self.user.is_superuser)
        self._admins: dict[type[Model], ModelAdmin[Any] | None] = {}
        self._shown: dict[tuple[int, str], bool] = {}
        self._changeable: dict[tuple[type[Model], Any], bool] = {}
        self._condition: Q | None = None

    @classmethod
    def of(cls, request: HttpRequest, admin_site: AdminSite) -> Access:
        cached: Access | None = getattr(request, "_djangotasks_access", None)
        if cached is None or cached.admin_site is not admin_site:
            cached = cls(request, admin_site)
            request._djangotasks_access = cached  # type: ignore[attr-defined]
        return cached

    def has(self, permission: str) -> bool:
        return bool(self.user.has_perm(permission))

    def model_admin(self, model: type[Model]) -> ModelAdmin[Any] | None:
        if model not in self._admins:
            self._admins[model] = target_admin(self.admin_site, model)
        return self._admins[model]

    # -- many tasks: a query ---------------------------------------------------------------

    def visible_models(self) -> list[type[Model]]:
        """Models with tasks whose ModelAdmin lets the user view some of their objects."""
        models = sorted({d.model for d in registry if d.model is not None}, key=str)
        if self.superuser:
            return models
        result = []
        for model in models:
            model_admin = self.model_admin(model)
            if model_admin is not None and model_admin.has_view_permission(self.request):
                result.append(model)
        return result

    def visible(self, tasks: QuerySet[Task]) -> QuerySet[Task]:
        """``tasks`` whose objects are in their ModelAdmins' querysets: one query."""
        if not self.has(VIEW):
            return tasks.none()
        if self.superuser:
            return tasks
        if self._condition is None:
            self._condition = Q(content_type__isnull=True)
            for model in self.visible_models():
                content_type = content_types().get_for_model(model)
                keys = self._object_keys(model)
                self._condition |= Q(content_type=content_type, object_id__in=keys)
        return tasks.filter(self._condition)

    def _object_keys(self, model: type[Model]) -> Any:
        """The keys of the objects the user may see: a list when there are few of them (the
        database then looks each up in the object index instead of filtering every task row
        by a subquery), else the subquery itself."""
        model_admin = self.model_admin(model)
        assert model_admin is not None
        objects = model_admin.get_queryset(self.request).order_by()
        if objects.db != routing.alias():
            # Task rows live in another database: no subquery across databases.
            return [str(pk) for pk in objects.values_list("pk", flat=True)]
        if _decides_per_object(model_admin):
            # Its has_view_permission(request, obj) is part of the rule: with few objects the
            # list can hold it too, so that counts and charts agree with the rows shown.
            few_objects = list(objects[: MAX_LISTED_KEYS + 1])
            if len(few_objects) <= MAX_LISTED_KEYS:
                return [str(o.pk) for o in few_objects if self.may_view_object(o)]
        keys = objects.values_list(object_key(model), flat=True)
        few = list(keys[: MAX_LISTED_KEYS + 1])
        return few if len(few) <= MAX_LISTED_KEYS else keys

    # -- one task: its object, asked one by one --------------------------------------------

    def shows(self, task: Task) -> bool:
        """For a task from ``visible()``: does its object's ModelAdmin let the user view it?"""
        return self.has(VIEW) and self._object_viewable(task)

    def may_run(self, task: Task) -> bool:
        """Run (again): ``run_task``, and change permission on the (visible) object."""
        return (
            self.has(RUN)
            and task.definition is not None
            and self._object_viewable(task)
            and self._object_changeable(task)
        )

    def may_cancel(self, task: Task) -> bool:
        """Cancel: ``cancel_task`` on a task the user sees, and change permission on its object."""
        return self.has(CANCEL) and self.shows(task) and self._object_changeable(task)

    def _object_changeable(self, task: Task) -> bool:
        if task.content_type_id is None or self.superuser:
            return True
        return self.may_change_object(task.target)

    def _object_viewable(self, task: Task) -> bool:
        if task.content_type_id is None or self.superuser:
            return True  # a function task belongs to no object
        key = (task.content_type_id, task.object_id)
        if key not in self._shown:
            model = content_types().get_for_id(task.content_type_id).model_class()
            # A model removed from the project has no ModelAdmin: superusers only.
            self._shown[key] = model is not None and self.may_view_object(task.target)
        return self._shown[key]

    def shown(self, tasks: list[Task]) -> list[Task]:
        """The tasks among ``tasks`` (from ``visible()``) the user may see, objects loaded."""
        from djangotasks.models.targets import load_targets

        if self.superuser:
            return tasks
        load_targets(tasks)
        return [task for task in tasks if self.shows(task)]

    def batches(self, tasks: QuerySet[Task]) -> Iterator[tuple[list[Task], int]]:
        """``tasks`` in batches: (the ones the user may see, how many were hidden)."""
        last = 0
        while True:
            batch = list(tasks.filter(pk__gt=last).order_by("pk")[:BATCH])
            if not batch:
                return
            last = batch[-1].pk
            shown = self.shown(batch)
            yield shown, len(batch) - len(shown)

    # -- objects: what their own ModelAdmin says ---------------------------------------

    def may_view_object(self, obj: Model | None) -> bool:
        """``has_view_permission(request, obj)`` of the object's ModelAdmin (no ModelAdmin, or
        no object any more: superusers only). The queryset part is the caller's: the object
        came through ``get_queryset`` (``visible()``, ``ModelAdmin.get_object``)."""
        if obj is None:
            return self.superuser
        model_admin = self.model_admin(type(obj))
        if model_admin is None:
            return self.superuser
        return self.superuser or bool(model_admin.has_view_permission(self.request, obj))

    def may_change_object(self, obj: Model | None) -> bool:
        """``has_change_permission(request, obj)`` on an object the user may view."""
        if obj is None:
            return self.superuser
        key = (type(obj), obj.pk)
        if key not in self._changeable:
            model_admin = self.model_admin(type(obj))
            self._changeable[key] = self.superuser or (
                model_admin is not None
                and self.may_view_object(obj)
                and bool(model_admin.has_change_permission(self.request, obj))
            )
        return self._changeable[key]

    def may_change_model(self, model: type[Model]) -> bool:
        """``has_change_permission(request)`` of the model's ModelAdmin, for no object yet."""
        model_admin = self.model_admin(model)
        return self.superuser or (
            model_admin is not None and bool(model_admin.has_change_permission(self.request))
        )

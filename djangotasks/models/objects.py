"""What becomes of an object's tasks when the object is deleted: they are detached.

A task refers to its object by content type and primary key. Once the object is deleted, a
new object may get the same key (a character or UUID key chosen again, MySQL before 8.0
reusing integer keys after a restart, a fixture loaded twice), and it must never inherit
the old object's live task or history. So when an object is deleted through Django (the
admin, ``obj.delete()``, ``queryset.delete()``, a cascade), its tasks are detached in the
same transaction: their ``object_id`` becomes ``"<pk> (deleted <time>)"``, which no object's
key matches, and none of them stays the live run. The history is kept, for superusers in
the task admin (no ModelAdmin can show a deleted object, so nobody else may see it);
``tasks prune`` removes it with the rest. A running task goes on with the object it loaded;
a scheduled one fails as "Its object (… #<pk> (deleted …)) no longer exists."

Deleting rows behind Django's back (raw SQL, another program) bypasses this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models.signals import post_delete
from django.utils import timezone

from djangotasks.models.task import Task, content_types

if TYPE_CHECKING:
    from django.db.models import Model

OBJECT_ID_LENGTH = 255


def detached_id(object_id: str) -> str:
    """The ``object_id`` of the tasks of a deleted object: matches no object's key."""
    suffix = f" (deleted {timezone.now():%Y-%m-%d %H:%M:%S})"
    return object_id[: OBJECT_ID_LENGTH - len(suffix)] + suffix


def detach_tasks(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """``post_delete`` of a model with @task methods: detach the object's tasks."""
    if instance.pk is None:
        return
    object_id = str(instance.pk)
    Task.objects.filter(
        content_type=content_types().get_for_model(sender), object_id=object_id
    ).update(object_id=detached_id(object_id), live_key=None, archived=True)


def connect(models: set[type[Model]]) -> None:
    """Watch the deletion of every model that has @task methods (called once, at startup).

    A proxy's objects are also deleted through the concrete model: watch both.
    """
    concrete = {m._meta.concrete_model for m in models}
    for model in models | {m for m in concrete if m is not None}:
        post_delete.connect(
            detach_tasks, sender=model, dispatch_uid=f"djangotasks.detach:{model._meta.label}"
        )

"""Loading the objects of many tasks at once: one query per model, not one per task."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.core.exceptions import ValidationError

from djangotasks.models.task import Task, content_types


def load_targets(
    tasks: Iterable[Task], on_error: Callable[[list[Task], Exception], None] | None = None
) -> None:
    """Give each task its object (``task.target``), loaded with one query per model.

    Tasks whose object is loaded already are left alone; an object that is gone, or an
    id that does not fit the model's key, gives ``None``. ``on_error``: called with the
    tasks of a model whose objects could not be loaded (instead of raising); those tasks
    are left to load their object themselves.
    """
    groups: dict[int, list[Task]] = {}
    for task in tasks:
        if task.content_type_id is not None and "target" not in task.__dict__:
            groups.setdefault(task.content_type_id, []).append(task)
    for content_type_id, group in groups.items():
        try:
            _load_group(content_type_id, group)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(group, exc)


def _load_group(content_type_id: int, group: list[Task]) -> None:
    model = content_types().get_for_id(content_type_id).model_class()
    keys: dict[int, object] = {}
    if model is not None:  # None: the model was removed from the project
        for task in group:
            try:
                keys[task.pk] = model._meta.pk.to_python(task.object_id)
            except ValidationError:
                pass  # an id that does not fit the key (a UUID, a number): no such object
    found = model._default_manager.in_bulk(list(keys.values())) if keys and model else {}
    for task in group:
        task.set_target(found.get(keys.get(task.pk)))

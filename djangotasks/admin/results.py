"""How the admin shows what ``django.tasks`` stored on a task: its call, return value, error.

A task enqueued through the djangotasks backend has no object: it is told apart by its
arguments (``Task.is_django_task``), and its result id stands where an object would. The
module imports without the tasks framework too (Django 5.2 without the backport): it is
imported only where it is needed.
"""

from __future__ import annotations

import json
import reprlib
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from djangotasks.registry import UnknownTask, registry
from djangotasks.statuses import Status

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django.utils.safestring import SafeString

    from djangotasks.models import Task

# A result id is a uuid: its first block tells results apart on a page, as a short git hash.
SHORT_ID = 8
# The change list's call cell; the change page has the whole call.
SHORT_CALL = 60
LONG_CALL = 1000
# Shorter JSON reads best on one line; longer is indented.
ONE_LINE_JSON = 60
# A return value or traceback larger than this is cut on the page (the row keeps it all).
MAX_SHOWN_CHARS = 64 * 1024

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 24
_short.maxlist = _short.maxdict = 4
_short.maxlevel = 2


def short_id(task: Task) -> str:
    return task.object_id[:SHORT_ID]


def title(task: Task) -> str:
    """What a page calls a task: "#12 Build report · result 3f2a9c1e" for a Django task."""
    if not task.is_django_task:
        return f"#{task.pk} {task.label}"
    return _("#%(pk)s %(label)s · result %(id)s") % {
        "pk": task.pk,
        "label": task.label,
        "id": short_id(task),
    }


def call_text(task: Task, limit: int = SHORT_CALL) -> str:
    """The arguments as the call was written: ``(42, full=True)``, shortened to ``limit``."""
    args, kwargs = task.call_arguments
    shorten = _short.repr if limit <= SHORT_CALL else repr
    parts = [shorten(value) for value in args]
    parts += [f"{key}={shorten(value)}" for key, value in kwargs.items()]
    text = f"({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 2] + "…)"


def pretty_json(value: Any) -> str:
    """JSON on one line when it is short, else indented."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > ONE_LINE_JSON:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > MAX_SHOWN_CHARS:
        return text[:MAX_SHOWN_CHARS] + "\n" + _("… (cut: the value is longer)")
    return text


def block(text: str, css: str = "") -> SafeString:
    """Text in a ``<pre>``, escaped."""
    return format_html('<pre class="djangotasks-value {}">{}</pre>', css, text)


class ResultFieldsMixin:
    """The fields of a task's page that show a Django task's call and outcome, and the
    error of any failed task (``TaskAdmin`` mixes it in)."""

    result_fields = ["result_id_column", "call_column", "arguments_column",
                     "return_value_column", "error_column"]  # fmt: skip

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if obj is not None and obj.is_django_task:
            # No object: its result's id and its call say what it is.
            name, options = fieldsets[0]
            fields = [field for field in options["fields"] if field != "target_column"]
            fieldsets[0] = (name, {**options, "fields": fields})
            # Right under the status: what a reader of a Django task's page came for.
            outcome = "error_column" if obj.error else "return_value_column"
            fields = ["result_id_column", "call_column", "arguments_column", outcome]
            fieldsets.insert(1, (_("Call and result"), {"fields": fields}))
        elif obj is not None and obj.error:
            fieldsets.insert(1, (_("Error"), {"fields": ["error_column"]}))
        return fieldsets

    @admin.display(description=_lazy("result id"))
    def result_id_column(self, task: Task) -> SafeString:
        arguments = task.arguments if isinstance(task.arguments, dict) else {}
        return format_html(
            '<code>{}</code> <span class="djangotasks-quiet">{}</span>',
            task.object_id,
            _("backend “%s”") % arguments.get("backend", "default"),
        )

    @admin.display(description=_lazy("call"))
    def call_column(self, task: Task) -> SafeString:
        return format_html("<code>{}{}</code>", task.name, call_text(task, LONG_CALL))

    @admin.display(description=_lazy("arguments"))
    def arguments_column(self, task: Task) -> SafeString | str:
        if not task.is_django_task:
            return "—"
        args, kwargs = task.call_arguments
        return block(pretty_json({"args": args, "kwargs": kwargs}))

    @admin.display(description=_lazy("return value"))
    def return_value_column(self, task: Task) -> SafeString | str:
        if not task.is_django_task or task.status != Status.SUCCESSFUL:
            return "—"
        return block(pretty_json(task.result))

    @admin.display(description=_lazy("error"))
    def error_column(self, task: Task) -> SafeString | str:
        """The exception's class path and its traceback, escaped."""
        error = task.error if isinstance(task.error, dict) else {}
        path, traceback = error.get("exception_class_path"), error.get("traceback")
        if not isinstance(path, str) or not path:
            return "—"
        text = traceback if isinstance(traceback, str) else ""
        if len(text) > MAX_SHOWN_CHARS:
            # The end of a traceback says what happened.
            text = _("(cut: the start is in the task's row)") + "\n…" + text[-MAX_SHOWN_CHARS:]
        return format_html(
            '<code class="djangotasks-error-class">{}</code>{}',
            path,
            block(text, "djangotasks-traceback") if text.strip() else "",
        )


def known_queues() -> list[str]:
    """Queue names that cost no query: those of registered tasks and the ``QUEUES`` of the
    djangotasks backends (a row of a queue removed since is still found by its name)."""
    queues = {definition.queue for definition in registry}
    try:
        from djangotasks.backend import ProcessBackend
        from djangotasks.tasks_framework import InvalidTaskBackend, task_backends
    except ImportError:  # Django 5.2 without the django-tasks backport
        return sorted(queues)
    for alias in task_backends:
        try:
            backend = task_backends[alias]
        except InvalidTaskBackend:
            continue  # its system check says why
        if isinstance(backend, ProcessBackend):
            queues.update(backend.queues)
    return sorted(queues)


def run_errors() -> tuple[type[Exception], ...]:
    """What running a task again may raise and the admin tells the user: the code is gone,
    the object is gone, or (a Django task, enqueued again) settings changed since and refuse
    it: a queue or a backend removed from ``TASKS``."""
    errors: tuple[type[Exception], ...] = (UnknownTask, ValueError)
    try:
        from djangotasks.tasks_framework import InvalidTask, InvalidTaskBackend
    except ImportError:  # Django 5.2 without the django-tasks backport: no such tasks
        return errors
    return (*errors, InvalidTask, InvalidTaskBackend)

"""What the task panels show: one ``TaskCard`` per task, built with a bounded number of queries.

The same cards are rendered in three places: the tasks panel of an object's change form, the
read-only page of a task, and the htmx fragments that keep both live.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.urls import reverse

from djangotasks.admin import permissions, results
from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.task import content_types
from djangotasks.registry import registry
from djangotasks.statuses import PENDING, Status

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.db.models import Model
    from django.http import HttpRequest

# The page shows the end of a log; the full text is one click away (log.txt).
LOG_TAIL_CHARS = 64 * 1024
# Earlier runs listed per task in a panel; the task list has them all.
HISTORY_LIMIT = 10


@dataclass
class Dependency:
    label: str
    task: Task | None


@dataclass
class ArchivedRun:
    task: Task
    change_url: str
    log_text_url: str


@dataclass
class TaskCard:
    task: Task
    label: str
    can_run: bool
    can_cancel: bool
    run_url: str
    cancel_url: str = ""
    change_url: str = ""
    head_url: str = ""
    log_url: str = ""
    log_text_url: str = ""
    log_text: str = ""
    log_offset: int = 0
    log_skipped: int = 0
    next_url: str = ""
    dependencies: list[Dependency] = field(default_factory=list)
    archives: list[ArchivedRun] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        """Scheduled or running: its head and log are polled."""
        return self.task.pk is not None and self.task.status in PENDING

    @property
    def cancellable(self) -> bool:
        return self.pending and self.task.status != Status.REQUESTED_CANCEL

    @property
    def runnable(self) -> bool:
        return self.task.status not in PENDING

    @property
    def subject(self) -> str:
        """What it runs on: its object, or a Django task's arguments (it has no object)."""
        if self.task.is_django_task:
            return f"{results.call_text(self.task)} · {results.short_id(self.task)}"
        target = self.task.target
        return "—" if target is None else str(target)

    @property
    def dom_id(self) -> str:
        return f"djangotasks-task-{self.task.name.replace('.', '-')}"

    @property
    def log_dom_id(self) -> str:
        return f"djangotasks-log-{self.task.pk}"


def url(admin_site: AdminSite, name: str, *args: object) -> str:
    return reverse(f"{admin_site.name}:djangotasks_task_{name}", args=args)


def run_url(admin_site: AdminSite, task: Task) -> str:
    if task.is_django_task:
        return url(admin_site, "again", task.pk)  # its own arguments, as a new result
    if task.content_type_id is None:
        return url(admin_site, "run", task.name)
    return url(admin_site, "run_object", task.name, task.content_type_id, task.object_id)


def next_url(request: HttpRequest) -> str:
    """Where a button's plain POST returns to: the page, also when rendered in a fragment."""
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.current_url_abs_path:
        return str(htmx.current_url_abs_path)
    return request.get_full_path()


def log_tail(task: Task, chars: int = LOG_TAIL_CHARS) -> tuple[str, int, int]:
    """The last ``chars`` characters of the log: (text, offset to poll from, chars skipped)."""
    if task.pk is None:
        return "", 0, 0
    end = (
        TaskLogChunk.objects.filter(task_id=task.pk)
        .order_by("-offset")
        .values_list("end", flat=True)
        .first()
    )
    if end is None:
        return "", 0, 0
    start = max(0, end - chars)
    text, next_offset = task.read_log(start)
    return text, next_offset, start


def card(
    request: HttpRequest,
    admin_site: AdminSite,
    task: Task,
    *,
    dependencies: list[Dependency] | None = None,
    archives: list[Task] | None = None,
    with_log: bool = True,
) -> TaskCard:
    """One task's card; the caller has made sure the user may see the task."""
    access = permissions.Access.of(request, admin_site)
    result = TaskCard(
        task=task,
        label=task.label,
        can_run=access.may_run(task),
        can_cancel=access.may_cancel(task),
        run_url=run_url(admin_site, task),
        next_url=next_url(request),
        dependencies=dependencies if dependencies is not None else [],
        archives=[
            ArchivedRun(old, url(admin_site, "change", old.pk), url(admin_site, "log_text", old.pk))
            for old in archives or []
        ],
    )
    if task.pk is not None:
        result.cancel_url = url(admin_site, "cancel", task.pk)
        result.change_url = url(admin_site, "change", task.pk)
        result.head_url = url(admin_site, "head", task.pk)
        result.log_url = url(admin_site, "log", task.pk)
        result.log_text_url = url(admin_site, "log_text", task.pk)
        if with_log:
            result.log_text, result.log_offset, result.log_skipped = log_tail(task)
    return result


def object_cards(request: HttpRequest, admin_site: AdminSite, obj: Model) -> list[TaskCard]:
    """A card for every @task method of ``obj``: the live run, or a ``defined`` placeholder.

    Queries: the live tasks, their recent history, and the log tail of each task that has
    run — independent of how many runs the object has had.
    """
    definitions = registry.for_model(type(obj))
    if not definitions:
        return []
    content_type = content_types().get_for_model(obj)
    mine = Task.objects.filter(content_type=content_type, object_id=str(obj.pk))
    live = {t.name: t for t in mine.live().select_related("worker")}
    history: dict[str, list[Task]] = defaultdict(list)
    for old in mine.archived().order_by("-created_at", "-id")[: HISTORY_LIMIT * len(definitions)]:
        if len(history[old.name]) < HISTORY_LIMIT:
            history[old.name].append(old)
    cards = []
    for definition in definitions:
        task = live.get(definition.name) or Task.placeholder(definition, obj, content_type)
        task.set_target(obj)
        task.content_type = content_type
        dependencies = [_dependency(name, live) for name in definition.dependencies]
        cards.append(
            card(
                request,
                admin_site,
                task,
                dependencies=dependencies,
                archives=history[definition.name],
            )
        )
    return cards


def _dependency(name: str, live: dict[str, Task]) -> Dependency:
    task = live.get(name)
    if task is not None:
        return Dependency(task.label, task)
    try:
        return Dependency(registry.get(name).label, None)
    except LookupError:
        return Dependency(name, None)

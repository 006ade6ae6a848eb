"""The admin's costs do not grow with the data: query counts of the task list, a task page
with a deep dependency tree and the dashboard; deleting tasks with long logs; and the
history of a deleted object, which a new object with the same key never inherits.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.task import content_types
from djangotasks.statuses import Status
from tests.helpers import staff_user
from tests.models import Document, Job, Keyed, Tagged

pytestmark = pytest.mark.django_db


def url(name: str, *args: object) -> str:
    return reverse(f"admin:djangotasks_task_{name}", args=args)


def queries(client: Client, path: str) -> int:
    client.get(path)  # warm caches: content types, the session
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(captured.captured_queries)


def restricted_client() -> Client:
    """A user whose documents are hidden from each other (Document's get_queryset)."""
    perms = ("view_task", "run_task", "cancel_task", "view_document", "view_job")
    client = Client()
    client.force_login(staff_user("alice", *perms))
    return client


def add_tasks(count: int, owner: User | None) -> None:
    documents = Document.objects.bulk_create(
        [Document(owner=owner if i % 2 else None, title=f"d{i}") for i in range(count)]
    )
    content_type = content_types().get_for_model(Document)
    Task.objects.bulk_create(
        [
            Task(
                name="tests.Document.render",
                content_type=content_type,
                object_id=str(document.pk),
                archived=True,
                status=[Status.RUNNING, Status.SUCCESSFUL, Status.UNSUCCESSFUL][i % 3],
                reason="why",
            )
            for i, document in enumerate(documents)
        ]
    )


@pytest.mark.parametrize("who", ["restricted", "superuser"])
def test_task_list_and_dashboard_cost_the_same_queries_with_more_rows(who, admin_client):
    client = restricted_client() if who == "restricted" else admin_client
    owner = User.objects.get(username="alice") if who == "restricted" else None
    pages = [
        url("changelist"),
        url("changelist") + "?status__exact=unsuccessful",
        url("dashboard"),
        url("dashboard_live"),
        url("dashboard_live") + "?part=charts",
    ]
    add_tasks(20, owner)
    few = [queries(client, page) for page in pages]
    add_tasks(300, owner)
    many = [queries(client, page) for page in pages]
    assert few == many
    # Budgets: the list is one query for the rows and one capped count, plus the session,
    # the user, permissions, objects of the rows per model; the dashboard a fixed set.
    assert many[0] <= 12 and many[2] <= 30, many


def chain(depth: int) -> Task:
    """A task with a chain of ``depth`` dependencies below it (rows linked by hand)."""
    tasks = [
        Task.objects.create(name="tests.tasks.nightly_cleanup", status=Status.SUCCESSFUL)
        for _ in range(depth + 1)
    ]
    for dependent, dependency in itertools.pairwise(tasks):
        dependent.dependencies.add(dependency)
    return tasks[0]


def test_task_page_builds_any_dependency_tree_in_the_same_queries(admin_client):
    shallow, deep = chain(2), chain(30)

    shallow_queries = queries(admin_client, url("change", shallow.pk))
    deep_queries = queries(admin_client, url("change", deep.pk))

    assert shallow_queries == deep_queries
    html = admin_client.get(url("change", deep.pk)).content.decode()
    assert html.count('class="djangotasks-badge') >= 31  # the task and its 30 dependencies
    assert html.count("<ul>") == 29  # nested all the way down


def test_a_hand_made_cycle_of_dependencies_does_not_loop(admin_client):
    top = chain(3)
    bottom = top.dependencies.get().dependencies.get().dependencies.get()
    bottom.dependencies.add(top)  # rows edited into a cycle
    assert admin_client.get(url("change", top.pk)).status_code == 200


def test_deleting_tasks_with_long_logs_shows_a_summary_and_deletes_in_batches(admin_client):
    task = Task.objects.create(name="tests.tasks.nightly_cleanup", status=Status.SUCCESSFUL)
    TaskLogChunk.objects.bulk_create(
        [TaskLogChunk(task=task, offset=i, end=i + 1, text="x") for i in range(20_000)]
    )
    data = {"action": "delete_selected", "_selected_action": [task.pk]}

    confirm = admin_client.post(url("changelist"), data)

    assert confirm.status_code == 200
    assert len(confirm.content) < 30_000  # a summary, not 20,000 lines
    assert "20,000" in confirm.content.decode()
    admin_client.post(url("changelist"), {**data, "post": "yes"})
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not TaskLogChunk.objects.exists()


@pytest.mark.parametrize(
    ("model", "key"),
    [(Keyed, "report-2026"), (Tagged, uuid.UUID(int=7)), (Job, 4242)],
    ids=["char", "uuid", "integer"],
)
def test_a_new_object_with_a_deleted_objects_key_starts_with_no_history(model, key, admin_client):
    fields = {"key": key} if model is Keyed else {"pk": key}
    old = model.objects.create(**fields)
    old.hello().run()
    Task.objects.filter(pk=old.hello().pk).update(status=Status.SUCCESSFUL)
    old_task = old.hello()

    old.delete()
    new = model.objects.create(**fields)

    assert new.hello().pk is None and new.hello().status == Status.DEFINED
    assert not new.hello().archives().exists()
    kept = Task.objects.get(pk=old_task.pk)  # the history is kept, detached
    assert kept.object_id.startswith(f"{key} (deleted ") and kept.archived
    assert kept.target is None
    panel = admin_client.get(reverse(f"admin:tests_{model._meta.model_name}_change", args=[key]))
    assert url("change", old_task.pk) not in panel.content.decode()
    assert new.hello().run().pk != old_task.pk

"""One visibility rule everywhere in the admin: a user sees, runs and cancels only the tasks
of objects their own ModelAdmin lets them see (and change).

``Document`` hides other users' documents in its ModelAdmin's ``get_queryset``; ``Report``
hides a secret report in ``has_view_permission(request, obj)`` and makes a locked one
read-only in ``has_change_permission(request, obj)`` (tests/admin.py). Alice has every
permission on both models and on tasks; for each page, fragment, action and button she
gets nothing of Bob's document or the secret report, changes nothing of them or of the
locked report, and gets all of the rest. The browser half is in test_browser_visibility.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djangotasks.admin import permissions
from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.task import content_types, live_key
from djangotasks.statuses import Status
from tests.helpers import staff_user
from tests.models import Document, Fault, Report

pytestmark = pytest.mark.django_db

# Words that appear only in what Alice must never get: titles, logs and reasons.
HIDDEN = ("BOBSECRET", "TOPSECRET")
TASK_PERMS = ("view_task", "run_task", "cancel_task", "delete_task")
OBJECT_PERMS = ("view_document", "change_document", "view_report", "change_report")


def url(name: str, *args: object) -> str:
    return reverse(f"admin:djangotasks_task_{name}", args=args)


def make_task(
    obj: object, status: str, archived: bool = False, log: str = "", **fields: object
) -> Task:
    """A task row as the daemon leaves it (Document.render or Report.build)."""
    name = "tests.Document.render" if isinstance(obj, Document) else "tests.Report.build"
    object_id = str(obj.pk)  # type: ignore[attr-defined]
    now = timezone.now()
    task = Task.objects.create(
        name=name,
        content_type=content_types().get_for_model(obj),  # type: ignore[arg-type]
        object_id=object_id,
        live_key=None if archived else live_key(name, object_id),
        archived=archived,
        status=status,
        start_date=now - timedelta(minutes=2),
        end_date=None if status == Status.RUNNING else now - timedelta(minutes=1),
        log_size=len(log),
        **fields,
    )
    if log:
        TaskLogChunk.objects.create(task=task, offset=0, end=len(log), text=log)
    return task


def login(username: str, *perms: str) -> Client:
    client = Client()
    client.force_login(staff_user(username, *perms))
    return client


@dataclass
class World:
    alice: Client
    objects: dict[str, Document | Report]
    failed: dict[str, Task]  # an earlier, failed run of each object's task, with a log
    running: dict[str, Task]  # its live run
    # "listed": few objects, whose keys (after has_view_permission) are in the task query;
    # "subquery": many objects, a subquery and has_view_permission asked task by task.
    keys: str

    @property
    def secret_refused(self) -> int:
        """The status of a direct request for the secret report's task."""
        return 404 if self.keys == "listed" else 403

    def hidden(self) -> list[Task]:
        """Bob's document's tasks (hidden by the queryset), the secret report's (by the object)."""
        return [tasks[key] for tasks in (self.failed, self.running) for key in ("theirs", "secret")]

    def visible(self) -> set[int]:
        keys = ("mine", "public", "locked")
        return {tasks[key].pk for tasks in (self.failed, self.running) for key in keys}


@pytest.fixture(params=["listed", "subquery"])
def world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    if request.param == "subquery":
        monkeypatch.setattr(permissions, "MAX_LISTED_KEYS", 0)
    alice = login("alice", *TASK_PERMS, *OBJECT_PERMS)
    bob = User.objects.create_user("bob")
    objects: dict[str, Document | Report] = {
        "mine": Document.objects.create(owner=User.objects.get(username="alice"), title="mine"),
        "theirs": Document.objects.create(owner=bob, title="BOBSECRET plans"),
        "public": Report.objects.create(title="public report"),
        "secret": Report.objects.create(title="TOPSECRET report", secret=True),
        "locked": Report.objects.create(title="locked report", locked=True),
    }
    failed, running = {}, {}
    for key, obj in objects.items():
        failed[key] = make_task(
            obj, Status.UNSUCCESSFUL, archived=True, log=f"log of {obj}\n", reason=f"why {obj}"
        )
        running[key] = make_task(obj, Status.RUNNING, log=f"live log of {obj}\n")
    return World(alice, objects, failed, running, request.param)


def assert_nothing_hidden(content: bytes) -> None:
    text = content.decode()
    for word in HIDDEN:
        assert word not in text, word


# -- lists, pages and fragments --------------------------------------------------------


def test_task_list_has_only_the_tasks_of_objects_the_user_may_see(world, admin_client):
    response = world.alice.get(url("changelist"))

    assert response.status_code == 200
    assert {task.pk for task in response.context["cl"].result_list} == world.visible()
    assert_nothing_hidden(response.content)
    for query in ("q=BOBSECRET", "q=TOPSECRET", "q=why", "status__exact=unsuccessful"):
        response = world.alice.get(url("changelist") + "?" + query)
        found = {task.pk for task in response.context["cl"].result_list}
        assert found <= world.visible(), query  # (the page repeats the query itself)
    # A superuser sees every task.
    everything = admin_client.get(url("changelist")).context["cl"].result_list
    assert len(everything) == 10


def test_pages_and_fragments_of_hidden_tasks_give_nothing(world):
    for task in world.hidden():
        for name in ("change", "log_text", "log", "head", "history", "delete"):
            response = world.alice.get(url(name, task.pk))
            # Hidden by the queryset: not found (the task page redirects, as Django does for
            # a missing object); by has_view_permission: refused.
            assert response.status_code in (302, 403, 404), (name, task)
            assert_nothing_hidden(response.content if name != "log_text" else b"")
    for key in ("theirs", "secret"):
        obj = world.objects[key]
        panel = url("panel", content_types().get_for_model(obj).pk, obj.pk)
        assert world.alice.get(panel).status_code in (403, 404)
        # Deleting one by its own page (Alice may delete tasks she sees) is refused too.
        failed = world.failed[key]
        response = world.alice.post(url("delete", failed.pk), {"post": "yes"})
        assert response.status_code in (302, 403, 404)
        assert Task.objects.filter(pk=failed.pk).exists(), key


def test_pages_and_fragments_of_visible_tasks_give_everything(world):
    for key in ("mine", "public", "locked"):
        task = world.running[key]
        assert world.alice.get(url("change", task.pk)).status_code == 200
        text = b"".join(world.alice.get(url("log_text", task.pk)).streaming_content)
        assert text.decode() == f"live log of {world.objects[key]}\n"
        assert world.alice.get(url("log", task.pk)).status_code == 200
        assert world.alice.get(url("head", task.pk)).status_code == 200


def test_dashboard_shows_no_hidden_task_log_or_reason(world):
    for page in ("dashboard", "dashboard_live"):
        response = world.alice.get(url(page))
        assert response.status_code == 200
        assert_nothing_hidden(response.content)
        counts = {count.status: count.count for count in response.context["counts"]}
        assert len(response.context["running"]) == 3  # mine, the public and the locked one
        if world.keys == "listed":  # the counts agree with the rows
            assert counts[Status.RUNNING] == 3 and counts[Status.UNSUCCESSFUL] == 3
    charts = world.alice.get(url("dashboard_live") + "?part=charts")
    assert_nothing_hidden(charts.content)
    assert "why public report" in charts.content.decode()  # what she may see is there


# -- state changes ---------------------------------------------------------------------


def statuses(tasks: dict[str, Task]) -> dict[str, str]:
    return {key: Task.objects.get(pk=task.pk).status for key, task in tasks.items()}


def test_cancel_and_run_of_hidden_or_locked_objects_are_refused(world):
    before = Task.objects.count()
    for key, expected in (("theirs", 404), ("secret", world.secret_refused), ("locked", 403)):
        response = world.alice.post(url("cancel", world.running[key].pk))
        assert response.status_code == expected, key
    for key in ("theirs", "secret", "locked"):
        world.running[key].status = Status.SUCCESSFUL  # let "run" schedule a new one
        Task.objects.filter(pk=world.running[key].pk).update(status=Status.SUCCESSFUL)
        obj = world.objects[key]
        run = url("run_object", world.running[key].name, world.running[key].content_type_id, obj.pk)
        assert world.alice.post(run).status_code in (403, 404), key
    assert Task.objects.count() == before
    assert statuses(world.running)["mine"] == Status.RUNNING
    # What she may change, she may cancel.
    assert world.alice.post(url("cancel", world.running["mine"].pk)).status_code == 302
    assert statuses(world.running)["mine"] == Status.REQUESTED_CANCEL


def test_task_admin_actions_leave_hidden_and_locked_tasks_alone(world):
    running = [t.pk for t in world.running.values()]
    response = world.alice.post(
        url("changelist"),
        {"action": "cancel_selected", "_selected_action": running},
        follow=True,
    )
    assert statuses(world.running) == {
        "mine": Status.REQUESTED_CANCEL,
        "public": Status.REQUESTED_CANCEL,
        "theirs": Status.RUNNING,
        "secret": Status.RUNNING,
        "locked": Status.RUNNING,
    }
    assert "2 tasks cancelled." in response.content.decode()
    # The locked report's, and (found by the query only) the secret one's.
    left_alone = "1 task was left alone" if world.keys == "listed" else "2 tasks were left alone"
    assert left_alone in response.content.decode()

    failed = [t.pk for t in world.failed.values()]
    world.alice.post(
        url("changelist"), {"action": "run_selected_again", "_selected_action": failed}
    )
    assert Task.objects.filter(status=Status.SCHEDULED).count() == 0  # all still pending

    world.alice.post(
        url("changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": failed},
    )
    left = set(Task.objects.filter(pk__in=failed).values_list("pk", flat=True))
    assert left == {world.failed[key].pk for key in ("theirs", "secret")}


def test_generated_run_action_checks_each_object(world):
    for task in world.running.values():
        Task.objects.filter(pk=task.pk).update(status=Status.SUCCESSFUL)
    reports = [world.objects[key].pk for key in ("public", "secret", "locked")]

    response = world.alice.post(
        reverse("admin:tests_report_changelist"),
        {"action": "run_task_build", "_selected_action": reports},
        follow=True,
    )

    scheduled = Task.objects.filter(status=Status.SCHEDULED, name="tests.Report.build")
    assert list(scheduled.values_list("object_id", flat=True)) == [str(reports[0])]
    assert "Build scheduled for 1 report." in response.content.decode()
    assert "Build was not run for: " in response.content.decode()


def test_tasks_column_and_panel_buttons_follow_the_rule(world):
    html = world.alice.get(reverse("admin:tests_report_changelist")).content.decode()
    assert url("cancel", world.running["public"].pk) in html
    assert url("cancel", world.running["secret"].pk) not in html
    assert url("cancel", world.running["locked"].pk) not in html  # seen, not changeable
    locked = world.objects["locked"]
    panel = world.alice.get(reverse("admin:tests_report_change", args=[locked.pk]))
    assert panel.status_code == 200
    assert "live log of locked report" in panel.content.decode()
    assert url("cancel", world.running["locked"].pk) not in panel.content.decode()


def test_a_tasks_column_named_by_the_project_is_empty_without_view_task(world, monkeypatch):
    from tests.admin import ReportAdmin

    monkeypatch.setattr(ReportAdmin, "list_display", ["title", "djangotasks_column"])
    carol = login("carol", "run_task", "cancel_task", *OBJECT_PERMS)  # no view_task
    html = carol.get(reverse("admin:tests_report_changelist")).content.decode()
    assert "public report" in html  # the rows are there, their tasks are not
    assert url("cancel", world.running["public"].pk) not in html
    assert "djangotasks-badge" not in html
    # With view_task, the same column shows them.
    html = world.alice.get(reverse("admin:tests_report_changelist")).content.decode()
    assert url("cancel", world.running["public"].pk) in html


def test_function_tasks_need_only_view_task_and_models_without_admin_superusers(admin_client):
    viewer = login("viewer", "view_task")
    function_task = Task.objects.create(name="tests.tasks.nightly_cleanup", status="successful")
    fault = Fault.objects.create()
    no_admin = Task.objects.create(
        name="tests.Fault.segfault",
        content_type=content_types().get_for_model(Fault),
        object_id=str(fault.pk),
        status="successful",
    )
    shown = {t.pk for t in viewer.get(url("changelist")).context["cl"].result_list}
    assert shown == {function_task.pk}
    assert viewer.get(url("change", no_admin.pk)).status_code == 302
    everything = {t.pk for t in admin_client.get(url("changelist")).context["cl"].result_list}
    assert everything == {function_task.pk, no_admin.pk}

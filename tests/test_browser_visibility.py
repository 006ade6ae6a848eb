"""The visibility rule in headless Chromium: a staff user sees, runs and cancels only the
tasks of objects her ModelAdmins let her see (and change).

Alice (staff, not a superuser) may view and change documents and reports, and view, run and
cancel tasks. DocumentAdmin hides Bob's document in ``get_queryset``; ReportAdmin hides a
secret report in ``has_view_permission(obj)`` and makes a locked one read-only in
``has_change_permission(obj)`` (tests/admin.py). test_admin_visibility.py checks the same
rule with Django's test client; the browser set-up is tests/helpers.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from djangotasks.models import Task, TaskLogChunk
from djangotasks.models.task import content_types
from djangotasks.statuses import Status
from tests.helpers import DaemonProcess, logged_in, screenshot, staff_user, wait_status, wait_until
from tests.models import Document, Report

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser]

# Words only in Bob's document's and the secret report's titles, logs and reasons.
HIDDEN = ("BOBSECRET", "TOPSECRET")
PERMS = ("view_task", "run_task", "cancel_task")
PERMS += ("view_document", "change_document", "view_report", "change_report")


@pytest.fixture
def alice(transactional_db: None) -> User:
    return staff_user("alice", *PERMS)


@pytest.fixture
def page(live_server: Any, alice: User, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    yield from logged_in(live_server, "alice", monkeypatch)


def assert_nothing_hidden(page: Page, where: str) -> None:
    assert not [word for word in HIDDEN if word in page.content()], (where, page.url)


def failed_run(obj: Document | Report) -> Task:
    """An earlier, failed run of the object's task, with a log and a reason naming it."""
    name = "tests.Document.render" if isinstance(obj, Document) else "tests.Report.build"
    log, ended = f"log of {obj}\n", timezone.now() - timedelta(minutes=1)
    task = Task.objects.create(
        name=name, content_type=content_types().get_for_model(obj), object_id=str(obj.pk),
        live_key=None, archived=True, status=Status.UNSUCCESSFUL, reason=f"why {obj}",
        start_date=ended - timedelta(minutes=1), end_date=ended, log_size=len(log),
    )  # fmt: skip
    TaskLogChunk.objects.create(task=task, offset=0, end=len(log), text=log)
    return task


def test_runs_watches_and_cancels_the_task_of_her_document(page, live_server, alice, daemon):
    from playwright.sync_api import expect

    doc = Document.objects.create(owner=alice, title="alice notes", seconds=3)
    page.goto(f"{live_server.url}/admin/tests/document/{doc.pk}/change/")
    page.evaluate("window.djangotasksNotReloaded = true")
    card = page.locator("#djangotasks-panel #djangotasks-task-tests-Document-render")
    badge, log = card.locator(".djangotasks-badge").first, card.locator(".djangotasks-log")
    expect(card.locator("button.djangotasks-run")).to_have_text("Run")
    card.locator("button.djangotasks-run").click()
    expect(log).to_contain_text("rendering alice notes")
    expect(badge).to_have_text("Running")
    expect(log).to_contain_text("rendered alice notes", timeout=30_000)
    expect(badge).to_have_text("Successful")
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert log.inner_text().count("rendering alice notes") == 1
    screenshot(page, "visibility-panel")

    # Again, long enough to cancel it from the panel.
    Document.objects.filter(pk=doc.pk).update(seconds=600)
    expect(card.locator("button.djangotasks-run")).to_have_text("Run again")
    card.locator("button.djangotasks-run").click()
    expect(badge).to_have_text("Running", timeout=30_000)
    expect(log).to_contain_text("rendering alice notes")
    card.locator("button.djangotasks-cancel").click()
    expect(badge).to_have_text("Cancelled", timeout=30_000)
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert wait_status(doc.render()).status == Status.CANCELLED
    expect(card.locator("details.djangotasks-history summary")).to_have_text("1 earlier run")


def test_bobs_document_and_the_secret_report_appear_nowhere(
    page, live_server, alice, start_daemon: Callable[..., DaemonProcess]
):
    from playwright.sync_api import expect

    bob = User.objects.create_user("bob")
    mine = Document.objects.create(owner=alice, title="alice notes", seconds=600)
    theirs = Document.objects.create(owner=bob, title="BOBSECRET plans", seconds=600)
    public = Report.objects.create(title="public report")
    secret = Report.objects.create(title="TOPSECRET report", secret=True, seconds=600)
    failed = [failed_run(obj) for obj in (mine, theirs, public, secret)]
    # Each hidden object also has a run going on in a real daemon, its log growing.
    start_daemon(DJANGOTASKS_SHUTDOWN_WAIT="1")
    running = [theirs.render().run(), secret.build().run()]
    for task in running:
        wait_until(lambda task=task: "SECRET" in Task.objects.get(pk=task.pk).log)

    page.goto(f"{live_server.url}/admin/djangotasks/task/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("alice notes")
    expect(page.locator("#result_list")).to_contain_text("public report")
    assert_nothing_hidden(page, "task list")
    screenshot(page, "visibility-task-list")
    page.goto(f"{live_server.url}/admin/djangotasks/task/?q=why")  # searches reasons
    expect(rows).to_have_count(2)
    assert_nothing_hidden(page, "task list, searched")

    page.goto(f"{live_server.url}/admin/djangotasks/task/dashboard/")
    page.evaluate("window.djangotasksNotReloaded = true")
    expect(page.locator(".djangotasks-failures")).to_contain_text("why alice notes")
    expect(page.locator(".djangotasks-failures")).to_contain_text("why public report")
    assert_nothing_hidden(page, "dashboard")
    # Her own run shows up in "Running now" by the htmx refresh; the hidden two never do.
    mine.render().run()
    running_now = page.locator(".djangotasks-running tbody tr")
    expect(running_now).to_have_count(1, timeout=15_000)
    expect(running_now).to_contain_text("alice notes")
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert_nothing_hidden(page, "dashboard, refreshed")
    screenshot(page, "visibility-dashboard")

    for task in [*running, failed[1], failed[3]]:
        for path in (f"{task.pk}/change/", f"{task.pk}/log.txt"):
            response = page.goto(f"{live_server.url}/admin/djangotasks/task/{path}")
            assert response is not None
            status, url = response.status, page.url
            assert status in (403, 404) or url == f"{live_server.url}/admin/", (path, status)
            assert_nothing_hidden(page, path)


def test_a_locked_report_shows_its_task_but_no_buttons(page, live_server, daemon):
    from playwright.sync_api import expect

    Report.objects.create(title="public report")
    locked = Report.objects.create(title="locked report", locked=True, seconds=600)
    task = locked.build().run()
    wait_status(task, Status.RUNNING)

    def column(title: str) -> Any:
        return page.locator("#result_list tbody tr", has_text=title).locator(".djangotasks-column")

    page.goto(f"{live_server.url}/admin/tests/report/")
    expect(column("locked report")).to_contain_text("Running")
    expect(column("locked report").locator("button")).to_have_count(0)  # no Cancel
    expect(column("public report").locator("button")).to_have_text(["Run"])

    page.goto(f"{live_server.url}/admin/tests/report/{locked.pk}/change/")
    page.evaluate("window.djangotasksNotReloaded = true")
    card = page.locator("#djangotasks-panel #djangotasks-task-tests-Report-build")
    badge = card.locator(".djangotasks-badge").first
    expect(card.locator(".djangotasks-log")).to_contain_text("building locked report")
    expect(badge).to_have_text("Running")
    expect(card.locator("button")).to_have_count(0)
    screenshot(page, "visibility-locked")
    Task.objects.get(pk=task.pk).cancel()
    expect(badge).to_have_text("Cancelled", timeout=30_000)
    expect(card.locator("button")).to_have_count(0)  # finished: no Run again
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert wait_status(task).status == Status.CANCELLED
    actions = page.locator("select[name=CHANGE_FORM-action]")
    if actions.count():  # Django 6.1's change-form actions offer "Run build", which refuses
        actions.select_option("run_task_build")
        page.locator(".actions button[name=index]").click()
        expect(page.locator(".messagelist")).to_contain_text("Build was not run for: locked")
        assert list(Task.objects.values_list("pk", flat=True)) == [task.pk]

    page.goto(f"{live_server.url}/admin/tests/report/")
    expect(column("locked report")).to_contain_text("Cancelled")
    expect(column("locked report").locator("button")).to_have_count(0)  # no Run
    expect(column("public report").locator("button")).to_have_text(["Run"])

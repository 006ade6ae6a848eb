"""The admin in headless Chromium: run, watch the live log, cancel, see the dashboard move.

Uses Debian's chromium through Playwright's sync API (never a downloaded browser), a live
server and a real daemon.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connections

from djangotasks.statuses import Status
from tests.helpers import ARGS, CHROMIUM, logged_in, screenshot, wait_status
from tests.models import Job

pytestmark = [pytest.mark.browser]


@pytest.fixture
def page(live_server, admin_user, monkeypatch) -> Iterator[object]:
    yield from logged_in(live_server, "admin", monkeypatch)


def test_run_watch_and_cancel_from_the_admin(page, live_server, daemon, tmp_path):
    from playwright.sync_api import expect

    job = Job.objects.create(seconds=3)
    # Run it with the generated admin action.
    page.goto(f"{live_server.url}/admin/tests/job/")
    page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "run_task_sleep")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Sleep scheduled for 1 job.")

    # Open the object: the log grows without a reload, and the status follows.
    page.goto(f"{live_server.url}/admin/tests/job/{job.pk}/change/")
    page.evaluate("window.djangotasksNotReloaded = true")
    card = page.locator("#djangotasks-task-tests-Job-sleep")
    expect(card.locator(".djangotasks-log")).to_contain_text("sleeping")
    expect(card.locator(".djangotasks-badge").first).to_have_text("Running")
    screenshot(page, "panel")
    expect(card.locator(".djangotasks-log")).to_contain_text("woke up", timeout=30_000)
    expect(card.locator(".djangotasks-badge").first).to_have_text("Successful")
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert card.locator(".djangotasks-log").inner_text().count("sleeping") == 1

    # Run again from the panel (htmx), then cancel it from the panel.
    Job.objects.filter(pk=job.pk).update(seconds=600)
    card.locator("button.djangotasks-run").click()
    card = page.locator("#djangotasks-task-tests-Job-sleep")
    expect(card.locator(".djangotasks-badge").first).to_have_text("Running", timeout=30_000)
    expect(card.locator(".djangotasks-log")).to_contain_text("sleeping")
    card.locator("button.djangotasks-cancel").click()
    expect(card.locator(".djangotasks-badge").first).to_have_text("Cancelled", timeout=30_000)
    assert page.evaluate("window.djangotasksNotReloaded") is True
    assert wait_status(job.sleep()).status == Status.CANCELLED
    expect(card.locator("details.djangotasks-history summary")).to_have_text("1 earlier run")

    page.goto(f"{live_server.url}/admin/djangotasks/task/")
    expect(page.locator("#result_list")).to_contain_text("Cancelled")
    screenshot(page, "task-list")


def test_dashboard_updates_by_itself(page, live_server, daemon):
    from playwright.sync_api import expect

    # From the admin index, as a staff user finds it.
    page.goto(f"{live_server.url}/admin/")
    screenshot(page, "index")
    page.locator("#content-main").get_by_role("link", name="Dashboard", exact=True).click()
    page.wait_for_url("**/admin/djangotasks/task/dashboard/")
    successful = page.locator(".djangotasks-count-successful .djangotasks-count-number")
    expect(successful).to_have_text("0")
    expect(page.locator(".djangotasks-workers")).to_contain_text("/ 4")
    page.evaluate("window.djangotasksNotReloaded = true")
    job = Job.objects.create()
    assert wait_status(job.hello().run()).status == Status.SUCCESSFUL
    expect(successful).to_have_text("1", timeout=10_000)
    assert page.evaluate("window.djangotasksNotReloaded") is True
    screenshot(page, "dashboard")


def test_pages_show_the_state_without_javascript(live_server, admin_user, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    job = Job.objects.create()
    task = job.sleep().run()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(java_script_enabled=False)
        page.goto(f"{live_server.url}/admin/login/?next=/admin/tests/job/{job.pk}/change/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "password")
        page.click("input[type=submit]")
        card = page.locator("#djangotasks-task-tests-Job-sleep")
        assert card.locator(".djangotasks-badge").first.inner_text() == "Scheduled"
        card.locator("button.djangotasks-cancel").click()  # a plain POST, then a redirect
        card = page.locator("#djangotasks-task-tests-Job-sleep")
        assert card.locator(".djangotasks-badge").first.inner_text() == "Cancelled"
        browser.close()
        connections.close_all()
    task.refresh_from_db()
    assert task.status == Status.CANCELLED

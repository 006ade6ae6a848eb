"""Schedules in headless Chromium with a real daemon: staff add a schedule, see it tick,
pause it, and edit it; the daemon follows each change. The browser set-up is tests/helpers.py's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from djangotasks.models import Schedule
from djangotasks.models.schedule import Outcome
from tests.helpers import DaemonProcess, logged_in, screenshot, staff_user, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser]

EVERY_TICK = "tests.tasks.every_tick"
PERMS = ("view_task", "add_schedule", "change_schedule", "view_schedule")


@pytest.fixture
def page(
    live_server: Any, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    staff_user("carol", *PERMS)
    yield from logged_in(live_server, "carol", monkeypatch)


def test_staff_add_pause_and_edit_a_schedule(
    page: Page, live_server: Any, daemon: DaemonProcess
) -> None:
    from playwright.sync_api import expect

    admin = f"{live_server.url}/admin/djangotasks/schedule"
    messages = page.locator(".messagelist")

    # Add: every second.
    page.goto(f"{admin}/add/")
    page.fill("#id_name", "every second")
    page.select_option("#id_task_name", EVERY_TICK)
    page.fill("#id_interval", "00:00:01")
    page.click("input[name=_save]")
    expect(messages).to_contain_text("was added successfully")
    schedule = Schedule.objects.get(name="every second")
    runs = schedule.tick_rows.filter(outcome=Outcome.RUN, task__isnull=False)
    wait_until(lambda: runs.count() >= 3, timeout=20)

    # Its page lists the ticks, each with a link to its run.
    page.goto(f"{admin}/{schedule.pk}/change/")
    ticks = page.locator(".djangotasks-ticks tbody tr")
    expect(ticks.first).to_be_visible()
    links = page.locator(".djangotasks-ticks a[href*='/djangotasks/task/']")
    expect(links.first).to_be_visible()
    hrefs = links.evaluate_all("links => links.map(link => link.getAttribute('href'))")
    shown = [int(href.rstrip("/").split("/")[-2]) for href in hrefs]
    # Newest first, each the run of one of its ticks (a skipped tick links the run it would
    # have overlapped, so a run may be linked twice). It ticks every second: checked against
    # the ticks' rows, not against the newest tick now.
    assert shown and shown == sorted(shown, reverse=True)
    assert set(shown) <= set(runs.values_list("task_id", flat=True))
    expect(page.locator(".djangotasks-next-runs li")).to_have_count(5)
    screenshot(page, "schedules-change")

    # Pause it with the action: no tick after that.
    page.goto(f"{admin}/")
    expect(page.locator("#result_list .field-last_run_column a")).to_contain_text("#")
    page.check(f"input[name=_selected_action][value='{schedule.pk}']")
    page.select_option("select[name=action]", "pause_selected")
    page.click("button[name=index]")
    expect(messages).to_contain_text("1 schedule paused.")
    screenshot(page, "schedules-list")
    time.sleep(1)  # a tick being written as it was paused still counts
    paused_at = schedule.tick_rows.count()
    last = schedule.tick_rows.latest("tick").tick
    time.sleep(2.5)
    assert schedule.tick_rows.count() == paused_at

    # Edit it: every two seconds, enabled again.
    page.goto(f"{admin}/{schedule.pk}/change/")
    page.fill("#id_interval", "00:00:02")
    page.check("#id_enabled")
    page.click("input[name=_save]")
    expect(messages).to_contain_text("was changed successfully")
    since = schedule.tick_rows.filter(tick__gt=last)
    wait_until(lambda: since.filter(outcome=Outcome.RUN).count() >= 3, timeout=20)

    # The dashboard lists its next runs; a run's page names it.
    page.goto(f"{live_server.url}/admin/djangotasks/task/dashboard/")
    expect(page.locator(".djangotasks-next-runs-module tbody")).to_contain_text("every second")
    screenshot(page, "schedules-dashboard")
    run = since.filter(outcome=Outcome.RUN).latest("tick").task_id
    page.goto(f"{live_server.url}/admin/djangotasks/task/{run}/change/")
    expect(page.locator(".djangotasks-scheduled-by")).to_contain_text(
        "Run by schedule every second for the tick of"
    )
    screenshot(page, "schedules-run")

    page.goto(f"{admin}/")
    page.check(f"input[name=_selected_action][value='{schedule.pk}']")
    page.select_option("select[name=action]", "pause_selected")
    page.click("button[name=index]")
    expect(messages).to_contain_text("1 schedule paused.")
    times = [row.tick for row in since.order_by("tick")]
    # Two seconds apart, none lost; the ticks missed while paused were never run.
    assert times == [times[0] + timedelta(seconds=2 * i) for i in range(len(times))]
    assert times[0] - last > timedelta(seconds=3.5)

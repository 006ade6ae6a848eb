"""Take the documentation's screenshots of the admin from the demo project.

    .venv/bin/python docs/screenshots.py docs/images      (or: make screenshots)

The pictures in docs/images/ must show the admin as the code draws it today, not as it looked
the day someone took them by hand. This script makes them reproducible: it starts the demo
exactly as the test suite does (``tests.demo_process.running_demo``: ``rundemo`` on a free
port, a throwaway SQLite database, the demo's daemon, logged in as demo/demo), puts it through
the admin into a state worth showing (finished, failed, cancelled, running and waiting tasks,
a schedule that has fired, one added in the admin), then photographs the pages in headless
Chromium with Playwright, as tests/helpers.py drives it:

- ``panel.png``: a dataset's change page, its Tasks panel with a running import (progress,
  live log), its earlier runs and the tasks that wait for it;
- ``list.png``: the datasets' change list and its Tasks column;
- ``tasks.png``: the task list with its filters;
- ``dashboard.png``: the dashboard;
- ``dark.png``: a panel of finished tasks, one failed, in the dark theme;
- ``schedules.png``: the schedules, from the code and from the admin.

Every wait has a deadline and says what never came; the script then exits non-zero after
printing the end of the demo's output. The demo is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.demo_process import Demo

ROOT = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1280, "height": 900}
# running_demo sets 0.002 s a row: this import runs for minutes, longer than the script.
SLOW_ROWS = 50_000
# Rows the first long import gets through before it is cancelled.
CANCEL_AFTER = 1_000
# How long a step may take on a busy CI machine before the script gives up.
TIMEOUT = 90.0
BROWSER_TIMEOUT_MS = 30_000
PENDING = ("scheduled", "running", "requested_cancel")
RUN_IMPORT = "run_task_import_rows"
RUN_REPORT = "run_task_render_report"
IMPORT_CARD = "#djangotasks-task-catalog-Dataset-import_rows"
REPORT_CARD = "#djangotasks-task-catalog-Dataset-render_report"


def say(message: str) -> None:
    print(f"screenshots: {message}", flush=True)


class ScreenshotError(Exception):
    """Something the screenshots need never showed up."""


def until(
    what: str | Callable[[], str], predicate: Callable[[], Any], timeout: float = TIMEOUT
) -> Any:
    """Poll ``predicate`` until it returns something truthy; at the deadline, fail saying
    ``what`` never came (a callable is asked then, to say how things stand)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {said}")
        time.sleep(0.25)


# -- the demo's state, through its admin over HTTP ------------------------------------------


class Scene:
    """The logged-in demo, and what this script does to it through the admin."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.datasets = {
            name: pk for pk, name in self.query("SELECT id, name FROM catalog_dataset")
        }

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of the demo's database (read only: nothing is changed but through the admin)."""
        return self.demo.query(sql, *params)

    def pk(self, name: str) -> int:
        if name not in self.datasets:
            raise ScreenshotError(f"the demo has no dataset {name!r}: {sorted(self.datasets)}")
        return self.datasets[name]

    def task(self, dataset: str, method: str) -> tuple[int, str, int] | None:
        """The live run (id, status, rows done) of a dataset's task, if it has one."""
        rows = self.query(
            "SELECT id, status, COALESCE(progress_current, 0) FROM djangotasks_task "
            "WHERE name = ? AND object_id = ? AND NOT archived ORDER BY id DESC LIMIT 1",
            f"catalog.Dataset.{method}",
            str(self.pk(dataset)),
        )
        return rows[0] if rows else None

    def status(self, dataset: str, method: str) -> str:
        run = self.task(dataset, method)
        return run[1] if run else "defined"

    def wait_status(self, dataset: str, method: str, *statuses: str) -> str:
        return until(
            lambda: (
                f"{method} of {dataset!r} to be {' or '.join(statuses)} "
                f"(it is {self.status(dataset, method)})"
            ),
            lambda: (s := self.status(dataset, method)) in statuses and s,
        )

    def progressing(self, dataset: str, method: str, rows: int = 1) -> bool:
        """True once the task runs and has reported ``rows`` done."""
        run = self.task(dataset, method)
        return run is not None and run[1] == "running" and run[2] >= rows

    def pending(self) -> int:
        ((count,),) = self.query(
            "SELECT COUNT(*) FROM djangotasks_task WHERE status IN (?, ?, ?)", *PENDING
        )
        return int(count)

    def action(self, action: str, dataset: str) -> None:
        """Select ``dataset`` in the change list and apply ``action`` (a "Run <task>")."""
        page = self.demo.post(
            "/admin/catalog/dataset/",
            {"action": action, "_selected_action": str(self.pk(dataset)), "index": "0"},
        )
        if "scheduled for 1 dataset" not in page and "already" not in page:
            raise ScreenshotError(f"{action} on {dataset!r}: no confirmation in the change list")

    def post_form(self, path: str, data: dict[str, str], expect: str) -> None:
        page = self.demo.post(path, data)
        if expect not in page:
            raise ScreenshotError(f"POST {path}: the page does not say {expect!r}")

    def set_rows(self, dataset: str, rows: int) -> None:
        """Edit the dataset's number of rows in its change form."""
        ((source, failure_rate),) = self.query(
            "SELECT source, report_failure_rate FROM catalog_dataset WHERE id = ?",
            self.pk(dataset),
        )
        self.post_form(
            f"/admin/catalog/dataset/{self.pk(dataset)}/change/",
            {
                "name": dataset,
                "source": str(source),
                "rows": str(rows),
                "report_failure_rate": str(failure_rate),
                "_save": "Save",
            },
            "was changed successfully",
        )

    def cancel(self, task_id: int) -> None:
        """Press Cancel: a POST to the task's cancel view with the page's CSRF token."""
        from tests.demo_process import CSRF, fetch

        token = CSRF.search(self.demo.get(f"/admin/djangotasks/task/{task_id}/change/"))
        if token is None:
            raise ScreenshotError(f"task #{task_id}: its page has no CSRF token")
        fetch(
            self.demo.opener,
            f"{self.demo.base}/admin/djangotasks/task/{task_id}/cancel/",
            {"csrfmiddlewaretoken": token[1]},
        )

    def task_name(self, suffix: str) -> str:
        rows = self.query(
            "SELECT DISTINCT name FROM djangotasks_task WHERE name LIKE ?", f"%{suffix}"
        )
        if not rows:
            raise ScreenshotError(f"no task named *{suffix} has run in the demo")
        return str(rows[0][0])


def prepare_history(scene: Scene) -> None:
    """Finished work: the seeded tasks, a failed report, a second dataset's chain."""
    say("waiting for the seeded tasks, then running a few more")
    until(
        "the demo's seeded tasks to finish",
        lambda: scene.pending() == 0 and scene.status("Tiny sample", "render_report") != "defined",
    )
    # The flaky report fails nine times out of ten: run it again until it has failed.
    for _attempt in range(10):
        if scene.status("Flaky supplier feed", "render_report") == "unsuccessful":
            break
        scene.action(RUN_REPORT, "Flaky supplier feed")
        scene.wait_status("Flaky supplier feed", "render_report", "successful", "unsuccessful")
    else:
        raise ScreenshotError("the report of 'Flaky supplier feed' succeeded ten times in a row")
    # A whole chain on a second dataset (its report succeeds or fails, half and half).
    scene.action(RUN_REPORT, "Orders Q3")
    scene.wait_status("Orders Q3", "render_report", "successful", "unsuccessful")
    # A first, quick import of the dataset whose panel is shown: an earlier run.
    scene.action(RUN_IMPORT, "Customers 2024")
    scene.wait_status("Customers 2024", "import_rows", "successful")
    # A schedule added in the admin, next to the two from the code (catalog/tasks.py).
    scene.post_form(
        "/admin/djangotasks/schedule/add/",
        {
            "name": "Weekly report of Tiny sample",
            "task_name": scene.task_name("build_report"),
            "arguments": json.dumps({"args": [scene.pk("Tiny sample")], "kwargs": {"sections": 3}}),
            "enabled": "on",
            "cron": "30 6 * * MON",
            "interval": "",
            "time_zone": "Europe/Paris",
            "missed": "latest",
            "missed_within": "01:00:00",
            "overlap": "skip",
            "_save": "Save",
        },
        "was added successfully",
    )


def prepare_running(scene: Scene) -> None:
    """Work in progress: a long import of Customers 2024 (one run cancelled on the way) with
    its statistics and report waiting for it."""
    say("starting a long import of 'Customers 2024'")
    scene.set_rows("Customers 2024", SLOW_ROWS)
    scene.action(RUN_IMPORT, "Customers 2024")
    until(
        "the long import of 'Customers 2024' to make progress",
        lambda: scene.progressing("Customers 2024", "import_rows", CANCEL_AFTER),
    )
    run = scene.task("Customers 2024", "import_rows")
    assert run is not None
    scene.cancel(run[0])
    scene.wait_status("Customers 2024", "import_rows", "cancelled")
    # The report runs its dependencies first: the import again, then the statistics.
    scene.action(RUN_REPORT, "Customers 2024")
    until(
        "the import of 'Customers 2024' to run again, its report waiting",
        lambda: (
            scene.progressing("Customers 2024", "import_rows")
            and scene.status("Customers 2024", "render_report") == "scheduled"
        ),
    )


# -- the pictures ---------------------------------------------------------------------------


@contextmanager
def browser_page(browser: Browser, base: str, *, dark: bool = False) -> Iterator[Page]:
    """A page of its own (a context: cookies, colour scheme), logged in as demo/demo."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme="dark" if dark else "light")
    try:
        page = context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo")
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        yield page
    finally:
        context.close()


def shoot(page: Page, outdir: Path, name: str) -> None:
    # Nothing half-drawn: the page loaded, its fonts too, no htmx request in flight (htmx
    # marks the element that waits for one with the class htmx-request).
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.wait_for_function("!document.querySelector('.htmx-request')")
    # From the top: the admin's sidebar is sticky, and would be drawn where the page was
    # scrolled to (a click, a log kept scrolled to its end).
    page.evaluate("window.scrollTo(0, 0)")
    path = outdir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    say(f"wrote {path}")


def take_pictures(scene: Scene, browser: Browser, outdir: Path) -> None:
    from playwright.sync_api import expect

    base = scene.demo.base
    with browser_page(browser, base) as page:
        # panel.png: the running import, its log, its earlier runs, what waits for it.
        page.goto(f"{base}/admin/catalog/dataset/{scene.pk('Customers 2024')}/change/")
        card = page.locator(IMPORT_CARD)
        expect(card.locator(".djangotasks-badge").first).to_have_text("Running")
        expect(card.locator(".djangotasks-log")).to_contain_text("rows imported")
        expect(card.locator(".djangotasks-bar")).to_contain_text("%")
        history = card.locator("details.djangotasks-history")
        expect(history.locator("summary")).to_have_text("2 earlier runs")
        history.locator("summary").click()
        expect(history.locator("li")).to_have_count(2)
        expect(page.locator(REPORT_CARD).locator(".djangotasks-badge").first).to_have_text(
            "Scheduled"
        )
        # Let the live log grow once without a reload, as a reader would see it.
        log = card.locator(".djangotasks-log")
        expect(log).not_to_have_text(log.inner_text(), use_inner_text=True)
        shoot(page, outdir, "panel")

        # list.png: the Tasks column of every dataset.
        page.goto(f"{base}/admin/catalog/dataset/")
        column = page.locator("#result_list")
        expect(column.locator(".djangotasks-column")).to_have_count(len(scene.datasets))
        expect(column).to_contain_text("Running")
        expect(column).to_contain_text("Unsuccessful")
        shoot(page, outdir, "list")

        # tasks.png: the task list, its filters open.
        page.goto(f"{base}/admin/djangotasks/task/")
        results = page.locator("#result_list")
        for status in ("Running", "Scheduled", "Successful", "Unsuccessful", "Cancelled"):
            expect(results).to_contain_text(status)
        expect(page.locator("#changelist-filter")).to_be_visible()
        shoot(page, outdir, "tasks")

        # dashboard.png: reached as a user finds it, from the admin index.
        page.goto(f"{base}/admin/")
        page.locator("#content-main").get_by_role("link", name="Dashboard", exact=True).click()
        page.wait_for_url("**/dashboard/")
        expect(page.locator(".djangotasks-running")).to_contain_text("Import rows")
        expect(page.locator(".djangotasks-workers")).to_contain_text("/ 4")
        expect(page.locator("#djangotasks-charts svg").first).to_be_visible()
        expect(page.locator("body")).to_contain_text("Recent failures")
        shoot(page, outdir, "dashboard")

        # schedules.png: the two schedules of the code, the one added in the admin. Its
        # columns need the room of the admin's sidebar: closed, as its « button does.
        page.goto(f"{base}/admin/djangotasks/schedule/")
        page.locator("#toggle-nav-sidebar").click()
        expect(page.locator("#nav-sidebar")).not_to_be_visible()
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(3)
        expect(page.locator("#result_list .field-last_run_column a").first).to_contain_text("#")
        shoot(page, outdir, "schedules")

    with browser_page(browser, base, dark=True) as page:
        # dark.png: finished tasks, one failed with its traceback, in the dark theme.
        page.goto(f"{base}/admin/catalog/dataset/{scene.pk('Flaky supplier feed')}/change/")
        report = page.locator(REPORT_CARD)
        expect(report.locator(".djangotasks-badge").first).to_have_text("Unsuccessful")
        expect(report.locator(".djangotasks-log")).to_contain_text("RuntimeError")
        shoot(page, outdir, "dark")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="where to write the PNG files")
    args = parser.parse_args(argv)
    outdir: Path = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)

    # tests.demo_process (through tests.helpers) imports Django models: it needs settings.
    # The demo itself runs in a subprocess with its own (demo_site.settings).
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from tests.demo_process import running_demo
    from tests.helpers import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        print(f"screenshots: {CHROMIUM} is not installed", file=sys.stderr)
        return 1
    started = time.monotonic()
    say("starting the demo")
    with tempfile.TemporaryDirectory(prefix="djangotasks-screenshots-") as tmp:
        output = Path(tmp) / "rundemo.log"
        try:
            with running_demo(Path(tmp)) as demo:
                scene = Scene(demo)
                prepare_history(scene)
                # The schedule of catalog/tasks.py fires every minute: wait for its first run.
                say("waiting for the first run of the 'Check the feeds' schedule")
                until(
                    "the 'Check the feeds' schedule to run",
                    lambda: demo.query(
                        "SELECT 1 FROM djangotasks_task WHERE name LIKE ? AND status = ?",
                        "%check_feeds",
                        "successful",
                    ),
                    timeout=150,
                )
                prepare_running(scene)
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                    try:
                        take_pictures(scene, browser, outdir)
                    finally:
                        browser.close()
        # What a step that fails raises: a deadline here, Playwright's expect() (an
        # AssertionError) or its timeouts, the demo's HTTP errors.
        except (ScreenshotError, AssertionError, PlaywrightError, urllib.error.URLError) as exc:
            print(f"screenshots: FAILED: {exc}", file=sys.stderr)
            if output.exists():
                tail = output.read_text(errors="replace").splitlines()[-40:]
                print(
                    "screenshots: the end of the demo's output:", *tail, sep="\n", file=sys.stderr
                )
            return 1
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the test modules import: waiting with a deadline, processes and their environment, a
daemon started by the ``start_daemon`` fixture, staff users, and the admin in headless Chromium.
The fixtures themselves are in conftest.py."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection, connections

from djangotasks.models import Task, Worker
from djangotasks.statuses import FINISHED

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
# What a daemon logs once it is registered and serving (daemon.py, _setup).
STARTED = " started: up to "
# Where conftest.py keeps the report of a test's call phase, so that fixtures can tell in
# their teardown whether the test failed (and print what the processes they started said).
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def wait_status(task: Task, statuses: Any = FINISHED, timeout: float = 30.0) -> Task:
    """Refresh ``task`` until its status is one of ``statuses``; return it."""
    if isinstance(statuses, str):
        statuses = {statuses}

    def reached() -> bool:
        task.refresh_from_db()
        return task.status in statuses

    wait_until(reached, timeout)
    return task


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess that must use this test run's database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DJANGOTASKS_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["PYTHONPATH"] = str(ROOT)
    env.pop(("DJANGOTASKS_TASK_ID"), None)
    env.update(extra)
    return env


test_env.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def fd_closed(fd: int) -> bool:
    """True if descriptor ``fd`` is not open in this process."""
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tasks(*args: str) -> str:
    """What ``manage.py tasks ARGS`` prints, run in the test's own process."""
    out = StringIO()
    call_command("tasks", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@dataclass
class DaemonProcess:
    """A ``taskd run`` process started by the ``start_daemon`` fixture."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    pidfile: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def worker(self) -> Worker:
        return Worker.objects.filter(pid=self.pid).latest("started_at")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()


def staff_user(username: str, *codenames: str) -> User:
    """A staff user (password "password") with the permissions named by their codenames."""
    user = User.objects.create_user(username, password="password", is_staff=True)
    permissions = Permission.objects.filter(codename__in=codenames)
    # A misspelt codename would silently grant less than the test means to.
    assert {p.codename for p in permissions} == set(codenames), codenames
    user.user_permissions.add(*permissions)
    return user


# -- the admin in headless Chromium ---------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("DJANGOTASKS_SCREENSHOTS", "test-results"))


def logged_in(live_server: Any, username: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A Chromium page logged in to the admin as ``username`` (password "password")."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", "password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        try:
            yield page
        finally:
            browser.close()
            # Playwright's sync API runs in greenlets, and Django's connections are
            # context-local: the ORM calls of the test opened a connection of their own,
            # which must not outlive the test (PostgreSQL refuses to drop the database).
            connections.close_all()


def screenshot(page: Page, name: str) -> None:
    """Save the whole page as ``SCREENSHOTS/NAME.png`` (kept by CI for a person to look at)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

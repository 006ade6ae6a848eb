"""The demo's task of Django's tasks framework: enqueued from the admin, run, watched."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip(
    "djangotasks.tasks_framework",
    reason="Django's tasks framework: Django >= 6.0, or the django-tasks backport",
    exc_type=ImportError,
)

from tests.conftest import ROOT, wait_until
from tests.test_demo import fetch, free_port, processes_with

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Demo:
    base: str
    database: Path
    opener: urllib.request.OpenerDirector

    def get(self, path: str) -> str:
        return fetch(self.opener, self.base + path)[1]

    def post(self, path: str, data: dict[str, str]) -> str:
        token = CSRF.search(self.get(path))
        assert token, path
        return fetch(self.opener, self.base + path, {"csrfmiddlewaretoken": token[1], **data})[1]

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=20)) as db:
            return db.execute(sql, params).fetchall()


@contextlib.contextmanager
def running_demo(tmp_path: Path) -> Iterator[Demo]:
    """``rundemo`` logged in as the demo user; stopped, with every process it started."""
    port, token = free_port(), uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGOTASKS")}
    env.update(
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        DJANGOTASKS_DEMO_DB=str(tmp_path / "demo.sqlite3"),
        DEMO_ROW_SECONDS="0.002",
        DJANGOTASKS_DEMO_SMOKE=token,
    )
    output = tmp_path / "rundemo.log"
    with open(output, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "demo/manage.py", "rundemo", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    demo = Demo(
        f"http://127.0.0.1:{port}",
        tmp_path / "demo.sqlite3",
        urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())),
    )

    def login_page() -> bool:
        assert proc.poll() is None, output.read_text()
        with contextlib.suppress(OSError):
            return bool(demo.get("/admin/login/"))
        return False

    try:
        wait_until(login_page, timeout=60, interval=0.2)
        demo.post("/admin/login/", {"username": "demo", "password": "demo", "next": "/admin/"})
        yield demo
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        left = processes_with(f"DJANGOTASKS_DEMO_SMOKE={token}".encode())
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, output.read_text()
    assert left == [], f"rundemo left processes behind: {left}"
    assert "enqueued a Django task (catalog.reports.build_report)" in output.read_text()


@pytest.mark.timeout(180)
def test_build_report_is_enqueued_from_the_admin_and_watched(tmp_path):
    with running_demo(tmp_path) as demo:
        # The one the demo enqueues at its first start.
        def seeded() -> list[tuple[object, ...]]:
            return demo.query(
                "SELECT id FROM djangotasks_task WHERE name = ? AND status = 'successful'",
                "catalog.reports.build_report",
            )

        wait_until(seeded, timeout=60, interval=0.3)

        [(dataset_id,)] = demo.query("SELECT id FROM catalog_dataset WHERE name = 'Orders Q3'")
        datasets = demo.get("/admin/catalog/dataset/")
        assert '<option value="build_report">Build report (Django task)</option>' in datasets
        page = demo.post(
            "/admin/catalog/dataset/",
            {"action": "build_report", "_selected_action": str(dataset_id)},
        )
        link = re.search(r'Report of Orders Q3 enqueued: <a href="([^"]+)">watch task #(\d+)', page)
        assert link, page
        task_id = int(link[2])

        def finished() -> str:
            [(status,)] = demo.query("SELECT status FROM djangotasks_task WHERE id = ?", task_id)
            return str(status) if status in ("successful", "unsuccessful") else ""

        assert wait_until(finished, timeout=60, interval=0.3) == "successful"
        [(arguments, result, queue, progress)] = demo.query(
            "SELECT arguments, result, queue_name, progress_current FROM djangotasks_task "
            "WHERE id = ?",
            task_id,
        )
        assert '"args": [' + str(dataset_id) + "]" in str(arguments)
        assert '"sections": 4' in str(arguments) and queue == "reports" and progress == 4
        assert '"dataset": "Orders Q3"' in str(result)
        watched = demo.get(link[1])
        assert f"#{task_id} Build report · result" in watched
        assert "catalog.reports.build_report(" in watched and "sections=4)" in watched
        assert "section 4/4 done" in watched  # the log
        assert "&quot;path&quot;: &quot;reports/" in watched  # the return value
        dashboard = demo.get("/admin/djangotasks/task/dashboard/")
        assert "Queues" in dashboard and "?status__exact=scheduled&amp;queue=reports" in dashboard

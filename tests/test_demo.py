"""The demo boots with one command and its tasks really run through its daemon."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_with(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\x00"):
                    pids.append(int(entry.name))
    return pids


def fetch(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with opener.open(url, body, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.timeout(180)
def test_rundemo_serves_the_admin_and_runs_tasks(tmp_path):
    port = free_port()
    token = uuid.uuid4().hex
    database = tmp_path / "demo.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGOTASKS")}
    env.update(
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        DJANGOTASKS_DEMO_DB=str(database),
        DEMO_ROW_SECONDS="0.002",
        DJANGOTASKS_DEMO_SMOKE=token,
    )
    output = tmp_path / "rundemo.log"
    with open(output, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "demo/manage.py", "rundemo", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def login_page() -> str | None:
        assert proc.poll() is None, output.read_text()
        with contextlib.suppress(OSError):
            return fetch(opener, f"{base}/admin/login/")[1]
        return None

    try:
        page = wait_until(login_page, timeout=60, interval=0.2)
        assert "login: demo   password: demo" in output.read_text()
        token_match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token_match
        status, index = fetch(opener, f"{base}/admin/login/?next=/admin/", {
            "csrfmiddlewaretoken": token_match.group(1), "username": "demo",
            "password": "demo", "next": "/admin/"})  # fmt: skip
        assert status == 200
        assert "/admin/djangotasks/dashboard/" in index  # the Dashboard entry of the index
        datasets = fetch(opener, f"{base}/admin/catalog/dataset/")[1]
        assert '<option value="run_task_import_rows">Run import rows</option>' in datasets

        def finished() -> list[tuple[str, str]]:
            with contextlib.closing(sqlite3.connect(database, timeout=20)) as db:
                return db.execute(
                    "SELECT name, status FROM djangotasks_task WHERE status = 'successful'"
                ).fetchall()

        done = wait_until(finished, timeout=90, interval=0.5)
        assert ("catalog.Dataset.import_rows", "successful") in done
        dashboard = fetch(opener, f"{base}/admin/djangotasks/task/dashboard/")[1]
        assert "Daemons" in dashboard
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
    assert "demo stopped" in output.read_text()

"""``rundemo`` as a real process for the demo's tests: started, logged in, stopped with
every process it started (found by a marker in their environment)."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, free_port, wait_until

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


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


@dataclass
class Demo:
    base: str
    database: Path
    output: Path  # what rundemo printed
    opener: urllib.request.OpenerDirector
    index: str = ""  # the admin index, right after logging in

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
    """``rundemo`` logged in as the demo user. On leaving, it is stopped with SIGTERM and
    must exit 0 and leave no process behind."""
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
    cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    demo = Demo(
        f"http://127.0.0.1:{port}",
        tmp_path / "demo.sqlite3",
        output,
        urllib.request.build_opener(cookies),
    )

    def login_page() -> bool:
        assert proc.poll() is None, output.read_text()
        with contextlib.suppress(OSError):
            return bool(demo.get("/admin/login/"))
        return False

    try:
        wait_until(login_page, timeout=60, interval=0.2)
        demo.index = demo.post(
            "/admin/login/", {"username": "demo", "password": "demo", "next": "/admin/"}
        )
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

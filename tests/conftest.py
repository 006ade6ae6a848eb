"""Fixtures that start real daemons against the test database, and kill all they started."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from djangotasks.daemon import linux
from djangotasks.models import Task, Worker
from djangotasks.statuses import FINISHED

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)
# What a daemon logs once it is registered and serving (daemon.py, _setup).
STARTED = " started: up to "


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


@dataclass
class DaemonProcess:
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


@pytest.fixture
def start_daemon(
    transactional_db: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``manage.py taskd run`` processes; each is stopped after the test."""
    started: list[DaemonProcess] = []

    def start(
        concurrency: int = 4,
        wait: bool = True,
        prelude: str = "",
        queues: tuple[str, ...] | list[str] = (),
        **env: str,
    ) -> DaemonProcess:
        """``prelude``: Python run in the daemon before Django starts, to inject a fault;
        ``queues``: the only queues it serves (``--queue``)."""
        n = next(_counter)
        log_path = tmp_path / f"taskd-{n}.log"
        pidfile = tmp_path / f"taskd-{n}.pid"
        argv = ["taskd", "run", "--pidfile", str(pidfile), "--concurrency", str(concurrency)]
        for queue in queues:
            argv += ["--queue", queue]
        command = [sys.executable, "-m", "django", *argv]
        if prelude:
            run = f"management.execute_from_command_line({['django', *argv]!r})"
            code = f"{prelude}\nfrom django.core import management\n{run}"
            command = [sys.executable, "-c", code]
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                command,
                preexec_fn=_die_with_pytest,
                cwd=ROOT, env=test_env(**env), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        daemon = DaemonProcess(popen, log_path, pidfile)
        started.append(daemon)
        if wait:
            # Its start-up line comes after it registered and recovered its predecessors: a
            # test that kills another daemon from here on cannot race that recovery.
            wait_until(lambda: STARTED in daemon.log or popen.poll() is not None)
            assert popen.poll() is None, daemon.log
            assert Worker.objects.filter(pid=popen.pid).exists(), daemon.log
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
    _kill_leftover_tasks()
    report = request.node.stash.get(CALL_REPORT, None)
    if report is not None and report.failed:
        # What the daemons said is most of what there is to know about a failed test.
        for daemon in started:
            print(f"--- {daemon.log_path.name} (pid {daemon.pid}) ---\n{daemon.log}")


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


def _die_with_pytest() -> None:
    # A pytest killed outright (a CI time limit, ^C twice) must not leave daemons running
    # against a test database; their tasks die with them (their own parent-death signal).
    linux.set_parent_death_signal(signal.SIGKILL)


def _kill_leftover_tasks() -> None:
    """Kill any task process a failed test left behind (found by their environment marker)."""
    ours = f"DJANGOTASKS_DB_NAME={connection.settings_dict['NAME']}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\x00")
        except OSError:
            continue
        if ours in environ and any(i.startswith(b"DJANGOTASKS_TASK_ID=") for i in environ):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def daemon(start_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """One running daemon."""
    return start_daemon()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Django removes the SQLite test database; its WAL side files are ours to remove.
    from django.conf import settings

    name = str(settings.DATABASES["default"].get("TEST", {}).get("NAME") or "")
    if name.endswith(".sqlite3"):
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name + suffix)

"""Fixtures: real daemons started against the test database (and killed, with every task
process they left, after the test), and a registry a test may add tasks to. The helpers the
test modules import are in helpers.py."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from djangotasks.daemon import linux
from djangotasks.models import Worker
from djangotasks.registry import registry
from tests.helpers import CALL_REPORT, ROOT, STARTED, DaemonProcess, test_env, wait_until

_counter = itertools.count(1)


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
        options: tuple[str, ...] = (),
        **env: str,
    ) -> DaemonProcess:
        """``prelude``: Python run in the daemon before Django starts, to inject a fault;
        ``queues``: the only queues it serves (``--queue``); ``options``: more of
        ``taskd run``'s arguments."""
        n = next(_counter)
        log_path = tmp_path / f"taskd-{n}.log"
        pidfile = tmp_path / f"taskd-{n}.pid"
        argv = ["taskd", "run", "--pidfile", str(pidfile), "--concurrency", str(concurrency)]
        for queue in queues:
            argv += ["--queue", queue]
        argv += options
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
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks registered by the test are forgotten after it: the registry is process-wide,
    and a schedule left in it would be added by any later sync_code_schedules()."""
    monkeypatch.setattr(registry, "_definitions", dict(registry._definitions))


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

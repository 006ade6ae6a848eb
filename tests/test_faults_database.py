"""The database server goes away for 30 s, while tasks run and while the daemon is idle.

These tests stop and start the real PostgreSQL or MariaDB server, which disturbs every other
test run on the machine: they are slow, and skipped unless DJANGOTASKS_DB_FAULTS=1 (CI sets
it). The server is started again in a ``finally`` whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from djangotasks.statuses import Status
from tests.faulty import Fault
from tests.helpers import pid_alive, wait_status, wait_until
from tests.models import Job

DB = os.environ.get("DJANGOTASKS_TEST_DB", "sqlite")
OUTAGE = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DJANGOTASKS_DB_FAULTS") != "1",
        reason="stops the database server for everyone: set DJANGOTASKS_DB_FAULTS=1",
    ),
    pytest.mark.skipif(DB == "sqlite", reason="SQLite has no server to stop"),
]


def _answers() -> bool:
    if DB == "postgres":
        command = ["pg_isready", "-h", os.environ.get("PGHOST", "127.0.0.1"), "-q"]
    else:
        command = ["mariadb", "-uroot", "-h", os.environ.get("MYSQL_HOST", "127.0.0.1"),
                   "-e", "select 1"]  # fmt: skip
    return subprocess.run(command, capture_output=True).returncode == 0


def _postgres_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True
    )


def _mariadb_pid() -> int | None:
    result = subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True, text=True)
    return int(result.stdout.split()[0]) if result.stdout.split() else None


def stop_server() -> None:
    if DB == "postgres":
        _postgres_cluster("stop")
    else:
        pid = _mariadb_pid()
        assert pid is not None, "MariaDB is not running"
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: _mariadb_pid() is None, timeout=60)


def start_server() -> None:
    if DB == "postgres":
        _postgres_cluster("start")
    else:
        subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background",
             "--exec", "/usr/sbin/mariadbd"],
            check=True,
        )  # fmt: skip
    wait_until(_answers, timeout=120, interval=0.2)


@contextlib.contextmanager
def outage(seconds: float = OUTAGE) -> Iterator[None]:
    """The database server is down for ``seconds``; it is always started again."""
    stop_server()
    try:
        time.sleep(seconds)  # the fault itself: the length of the outage
        yield
    finally:
        start_server()
        # This test process's own connections died with the server.
        for connection in connections.all(initialized_only=True):
            with contextlib.suppress(Exception):
                connection.close()


def test_database_outage_while_tasks_run_loses_no_output_and_records_the_end(
    start_daemon, tmp_path
):
    # Running tasks survive an outage shorter than the daemon's lease (WORKER_TIMEOUT minus
    # one heartbeat interval): 60 s here, for a 30 s outage.
    daemon = start_daemon(DJANGOTASKS_WORKER_TIMEOUT="60")
    printer = Fault.objects.create(count=450, seconds=0.1)  # 45 s of output, across the outage
    sleeper = Job.objects.create(seconds=5, path=str(tmp_path / "pid"))  # ends during it
    printing = printer.steady().run()
    sleeping = sleeper.sleep().run()
    wait_until(lambda: "line 20 " in printing.log)
    wait_until(lambda: Path(sleeper.path).exists())

    with outage():
        pass

    wait_status(printing, timeout=120)
    wait_status(sleeping, timeout=60)
    assert printing.status == Status.SUCCESSFUL, printing.reason
    assert printing.log == "".join(f"line {i} of task {printing.pk}\n" for i in range(450))
    assert sleeping.status == Status.SUCCESSFUL, sleeping.reason
    assert sleeping.log == "sleeping\nwoke up\n"
    wait_until(lambda: "database reachable again" in daemon.log)
    assert daemon.log.count("database unavailable") == 1, daemon.log
    hello = wait_status(Job.objects.create().hello().run(), timeout=60)
    assert hello.status == Status.SUCCESSFUL, hello.reason


def test_database_outage_longer_than_the_lease_stops_the_tasks_and_records_why(
    start_daemon, tmp_path
):
    # The trade-off of the lease: the daemon cannot tell an outage from a partition, in
    # which other daemons may take its tasks over after WORKER_TIMEOUT. So when it has not
    # recorded a heartbeat for its lease, it stops its tasks; what happened is recorded as
    # soon as the database is back (and a task that allows retries is retried).
    daemon = start_daemon(DJANGOTASKS_WORKER_TIMEOUT="6")  # a lease of 5 s, heartbeat 1 s
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    wait_until(lambda: Path(job.path).exists())
    pid = int(Path(job.path).read_text())
    worker = daemon.worker

    with outage(seconds=15):
        wait_until(lambda: not pid_alive(pid), timeout=15)

    wait_status(task, timeout=60)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith(f"Worker lost: {worker} could not record a heartbeat for ")
    assert "lease" in daemon.log
    # Nobody else declared it lost: it goes on serving as the same worker.
    hello = wait_status(Job.objects.create().hello().run(), timeout=60)
    assert hello.status == Status.SUCCESSFUL, hello.reason
    assert hello.worker_id == worker.pk


def test_database_outage_while_idle_is_survived(start_daemon):
    daemon = start_daemon()
    wait_status(Job.objects.create().hello().run())

    with outage():
        assert daemon.popen.poll() is None

    hello = wait_status(Job.objects.create().hello().run(), timeout=60)
    assert hello.status == Status.SUCCESSFUL, hello.reason
    assert daemon.popen.poll() is None
    wait_until(lambda: "database reachable again" in daemon.log)
    assert daemon.log.count("database unavailable") == 1, daemon.log

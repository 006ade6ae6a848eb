"""One clock for every daemon on every host: the database's, in UTC, in milliseconds.

Heartbeats used to be written with one host's clock and judged with another's. These tests
give the database session odd time zones, give a daemon a clock 60 s ahead, and give a
worker row the same host name and pid as ours from another machine or pid namespace.
"""

from __future__ import annotations

import glob
import socket
import time

import pytest
from django.db import connection
from django.utils import timezone

from djangotasks.daemon.linux import host_key
from djangotasks.models import Task, Worker
from djangotasks.models.clock import DatabaseClock
from djangotasks.statuses import Status
from tests.faulty import Fault
from tests.helpers import wait_status, wait_until
from tests.models import Job

# Set in the session before reading the clock: zones with odd offsets, with and without DST.
SESSION_ZONES = {
    "postgresql": ["SET TIME ZONE 'Asia/Kathmandu'", "SET TIME ZONE 'America/New_York'"],
    "mysql": ["SET time_zone = '+05:45'", "SET time_zone = '-04:00'"],
    "sqlite": [],  # no session time zone: 'now' is UTC
}


def database_clock_ms() -> int:
    worker = Worker.objects.create(hostname="clock", pid=1, beat=DatabaseClock())
    worker.refresh_from_db(fields=["beat"])
    return worker.beat


# How to read and restore the session's time zone, which outlives the test's transaction.
SESSION_ZONE = {
    "postgresql": ("SHOW TIME ZONE", "SET TIME ZONE %s"),
    "mysql": ("SELECT @@session.time_zone", "SET time_zone = %s"),
}


@pytest.mark.django_db
def test_the_database_clock_is_utc_milliseconds_whatever_the_session_time_zone():
    statements = SESSION_ZONES[connection.vendor]
    readings = []
    show, restore = SESSION_ZONE.get(connection.vendor, ("", ""))
    if show:
        with connection.cursor() as cursor:
            cursor.execute(show)
            (original,) = cursor.fetchone()
    try:
        for statement in [None, *statements]:
            if statement is not None:
                with connection.cursor() as cursor:
                    cursor.execute(statement)
            before = time.time() * 1000
            reading = database_clock_ms()
            after = time.time() * 1000
            readings.append((before, reading, after))
    finally:
        if show:
            with connection.cursor() as cursor:
                cursor.execute(restore, [original])
    for before, reading, after in readings:
        # The server runs on this machine: its clock is ours. A time zone mistake is off by
        # whole quarter hours at least; a second covers the rounding of the readings.
        assert before - 1000 <= reading <= after + 1000, (before, reading, after)


@pytest.mark.django_db
def test_silence_and_loss_are_judged_by_the_database_clock():
    alive = Worker.objects.create(hostname="a", pid=1, beat=DatabaseClock())
    # A heartbeat "from the future" by the database clock counts as fresh, never as lost...
    ahead = Worker.objects.create(hostname="b", pid=2, beat=DatabaseClock() + 60_000)
    # ... and one older than WORKER_TIMEOUT (30 s in the tests) is lost.
    silent = Worker.objects.create(hostname="c", pid=3, beat=DatabaseClock() - 31_000)

    assert set(Worker.objects.alive()) == {alive, ahead}
    assert set(Worker.objects.lost()) == {silent}
    assert Worker.objects.get(pk=silent.pk).is_alive is False
    assert Worker.objects.get(pk=alive.pk).is_alive is True
    assert 31 <= Worker.objects.get(pk=silent.pk).silence.total_seconds() < 40


def test_same_host_name_and_pid_in_another_pid_namespace_is_not_taken_for_a_predecessor(
    start_daemon, tmp_path
):
    # A container with a fixed hostname, or a cloned VM: same host name, a pid that means
    # nothing here. A restarting daemon used to take such a row for its dead predecessor
    # and kill its tasks at once.
    elsewhere = Worker.objects.create(
        hostname=socket.gethostname(),
        pid=2**22 + 7,  # not a process on this machine
        host_key="another-boot-id/4:4026531836",
        beat=DatabaseClock(),
    )
    job = Job.objects.create(seconds=600, path=str(tmp_path / "pid"))
    task = job.sleep().run()
    Task.objects.filter(pk=task.pk).update(status=Status.RUNNING, worker=elsewhere)

    daemon = start_daemon()
    ours = daemon.worker
    assert ours.host_key == host_key()
    # Give the restart recovery every chance to act: it runs before the first claim.
    served = wait_status(Job.objects.create().hello().run())
    assert served.status == Status.SUCCESSFUL

    task.refresh_from_db()
    assert task.status == Status.RUNNING
    elsewhere.refresh_from_db()
    assert elsewhere.stopped_at is None


def _libfaketime() -> str | None:
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    return found[0] if found else None


def test_a_daemon_whose_clock_runs_a_minute_ahead_fences_nobody(start_daemon):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server clock: its daemons share one machine and its clock")
    library = _libfaketime()
    if library is None:
        pytest.skip("libfaketime is not installed (Debian package faketime)")
    timings = {"DJANGOTASKS_HEARTBEAT": "0.5", "DJANGOTASKS_WORKER_TIMEOUT": "3"}
    ahead = start_daemon(
        concurrency=1,
        LD_PRELOAD=library,
        FAKETIME="+60s",  # monotonic clocks too: FAKETIME_DONT_FAKE_MONOTONIC breaks sleep()
        **timings,
    )
    # The fault is in place: that daemon's host clock (its display-only last_seen) is ahead.
    assert (ahead.worker.last_seen - timezone.now()).total_seconds() > 50
    start_daemon(concurrency=1, **timings)
    fault = Fault.objects.create(seconds=0.3, count=25)  # 7.5 s: over twice WORKER_TIMEOUT
    tasks = [Fault.objects.create(seconds=0.3, count=25).steady().run(), fault.steady().run()]
    # Both run at once, one on each daemon.
    wait_until(lambda: Task.objects.filter(status=Status.RUNNING).values("worker").distinct()
               .count() == 2)  # fmt: skip
    for task in tasks:
        wait_status(task)
        assert task.status == Status.SUCCESSFUL, task.reason
    assert not Worker.objects.filter(stopped_at__isnull=False).exists()
    assert "declared lost" not in ahead.log

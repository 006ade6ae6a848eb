"""How an idle daemon learns of new work: it sleeps until told, and never busy-polls.

PostgreSQL wakes it with LISTEN/NOTIFY, SQLite on Linux with inotify on the database files;
MySQL, and SQLite where inotify is unavailable, poll. Wake-ups are counted as the voluntary
context switches of the daemon (it is one thread: each is one return from ``select()``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.db import connection

from djangotasks.daemon.linux import FileWrites
from djangotasks.statuses import Status
from tests.conftest import wait_status, wait_until
from tests.models import Job

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's watcher")


def voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def test_idle_daemon_sleeps_instead_of_polling(daemon):
    wait_status(Job.objects.create().hello().run())  # settled: started, a task served
    before = voluntary_switches(daemon.pid)
    time.sleep(2)
    wakeups = voluntary_switches(daemon.pid) - before
    # Heartbeats, the 1 s safety stat (SQLite) or poll (MySQL): a handful. Polling the
    # SQLite files every 10 ms, as a daemon without inotify does, would be about 200.
    assert wakeups < 40, wakeups
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL


@sqlite_only
def test_without_inotify_the_daemon_watches_sqlite_by_polling(start_daemon):
    # Not Linux, or the user's inotify instances used up: the daemon must still serve.
    no_inotify = (
        "from djangotasks.daemon import linux\n"
        "def refuse(self, directory, names): raise OSError('inotify refused (test)')\n"
        "linux.FileWrites.__init__ = refuse"
    )
    daemon = start_daemon(prelude=no_inotify)
    wait_until(lambda: "no inotify" in daemon.log)
    for _ in range(3):
        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL, task.reason


def test_file_writes_reports_writes_to_the_named_files_only(tmp_path):
    watch = FileWrites(str(tmp_path), {"db.sqlite3", "db.sqlite3-wal"})
    try:
        assert not watch.drain()
        (tmp_path / "other.log").write_text("unrelated")
        assert not watch.drain()
        (tmp_path / "db.sqlite3-wal").write_bytes(b"created after the watch began")
        assert watch.drain()
        assert not watch.drain()  # drained: nothing new
        with open(tmp_path / "db.sqlite3", "ab") as f:
            f.write(b"x")
        assert watch.drain()
    finally:
        watch.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(watch.fileno())  # closed

"""``manage.py taskd start/stop/restart/status`` and thread mode, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from djangotasks.models import Worker
from djangotasks.statuses import Status
from tests.helpers import ROOT, free_port, pid_alive, test_env, wait_status, wait_until
from tests.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def taskd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "taskd", *args],
        cwd=ROOT, env=test_env(**env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_start_status_stop(tmp_path):
    pidfile = str(tmp_path / "run" / "taskd.pid")
    logfile = tmp_path / "taskd.log"
    started = taskd("start", "--pidfile", pidfile, "--logfile", str(logfile))
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("taskd started (pid ")
    pid = int(Path(pidfile).read_text())
    try:
        assert pid_alive(pid)
        again = taskd("start", "--pidfile", pidfile)
        assert again.returncode != 0
        assert f"already running (pid {pid}" in again.stderr

        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL
        assert task.worker.pid == pid

        status = taskd("status", "--pidfile", pidfile)
        assert status.returncode == 0, status.stderr
        assert f"local daemon: running, pid {pid}" in status.stdout
        assert "daemons alive: 1" in status.stdout
        assert "queue: 0 scheduled" in status.stdout

        restarted = taskd("restart", "--pidfile", pidfile, "--logfile", str(logfile))
        assert restarted.returncode == 0, restarted.stderr
        assert f"taskd stopped (pid {pid})" in restarted.stdout
        new_pid = int(Path(pidfile).read_text())
        assert new_pid != pid
        assert not pid_alive(pid)
        pid = new_pid
    finally:
        stopped = taskd("stop", "--pidfile", pidfile)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"taskd stopped (pid {pid})"
    assert not pid_alive(pid)
    assert not Path(pidfile).exists()
    assert "taskd" in logfile.read_text()
    status = taskd("status", "--pidfile", pidfile)
    assert status.returncode == 3
    assert "local daemon: not running" in status.stdout
    assert Worker.objects.get(pid=pid).stopped_at is not None


def test_stop_without_a_daemon_is_a_clear_error(tmp_path):
    result = taskd("stop", "--pidfile", str(tmp_path / "none.pid"))
    assert result.returncode == 1
    assert "taskd is not running" in result.stderr


def test_an_unwritable_pidfile_location_is_a_clear_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = taskd("run", "--pidfile", str(blocked / "taskd.pid"))
    assert result.returncode != 0
    assert "Cannot write the taskd pid file" in result.stderr
    assert "PIDFILE" in result.stderr


def test_thread_mode_runs_tasks_in_the_web_process_and_nowhere_else(tmp_path):
    env = {"DJANGOTASKS_THREAD": "1"}
    # Management commands that serve no request never start the daemon thread.
    for command in (["migrate", "--check"], ["shell", "-c", "import time; time.sleep(1)"]):
        result = subprocess.run(
            [sys.executable, "-m", "django", *command],
            cwd=ROOT, env=test_env(**env), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert not Worker.objects.exists()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=test_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def request() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
            except OSError:
                return False
            return True

        wait_until(request, timeout=60, interval=0.1)
        worker = wait_until(lambda: Worker.objects.filter(pid=server.pid).first())
        assert worker.mode == "thread"
        request()  # a second request starts nothing more
        assert Worker.objects.count() == 1
        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL, task.log
        assert task.worker_id == worker.pk
        assert task.pid != server.pid
        assert task.log.endswith(f"hello from job {task.object_id}\n")
    finally:
        server.terminate()
        server.wait(30)

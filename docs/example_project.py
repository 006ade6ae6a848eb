"""What the documentation's examples run in: the demo project (demo/), a throwaway SQLite
database and a real daemon, set up once per ``sphinx-build -b doctest``.

The pages' ``{doctest}`` blocks import everything from here (``doctest_global_setup`` in
conf.py): ``Dataset`` and the demo's tasks, and ``finished(task)``, which waits for the
daemon to end a task and returns it as stored.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
_work = Path(tempfile.mkdtemp(prefix="djangotasks-docs-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="demo_site.settings",
    DJANGOTASKS_DEMO_DB=str(_work / "docs.sqlite3"),
    DEMO_ROW_SECONDS="0",  # the demo's tasks pause per row to be watched; not here
)
sys.path[:0] = [str(DEMO), str(ROOT)]

import django  # noqa: E402

django.setup()

from catalog.models import Dataset  # noqa: E402
from django.core.management import call_command  # noqa: E402

from djangotasks import current_task  # noqa: E402
from djangotasks.models import Task  # noqa: E402
from djangotasks.statuses import FINISHED  # noqa: E402

__all__ = ["Dataset", "Task", "current_task", "finished"]

call_command("migrate", interactive=False, verbosity=0)
_daemon = subprocess.Popen(
    [sys.executable, str(DEMO / "manage.py"), "taskd", "run", "--pidfile", str(_work / "pid")],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)


def _stop_daemon() -> None:
    _daemon.terminate()
    try:
        _daemon.wait(30)
    except subprocess.TimeoutExpired:
        _daemon.kill()


atexit.register(_stop_daemon)


def finished(task: Task, timeout: float = 60.0) -> Task:
    """Wait until the daemon has ended ``task``; the task as stored then."""
    deadline = time.monotonic() + timeout
    while True:
        task.refresh_from_db()
        if task.status in FINISHED:
            return task
        if _daemon.poll() is not None:
            raise RuntimeError(f"the docs' daemon exited ({_daemon.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"task #{task.pk} is still {task.status} after {timeout} s")
        time.sleep(0.05)

"""djangotasks with a database router that puts its models on an alias other than "default".

The daemon and a driver script run with tests.settings_routed: Task, Worker and
TaskLogChunk live in a second PostgreSQL database ("tasks"), the ``Job`` rows in "default".
This proves that a task runs and logs, a dependency chain runs in order and a running task
is cancelled, all through the routed alias: the claim's select_for_update, the transactions,
LISTEN/NOTIFY and content types (their ids differ between the two databases, so a lookup on
"default" breaks the Task's foreign key). A daemon that opened its transactions on "default"
died at its first claim (``select_for_update cannot be used outside of a transaction``);
here it must stay up with no traceback, and no row may reach default's djangotasks tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers import ROOT, DaemonProcess, test_env, wait_until

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="routes to a second PostgreSQL database"
)

SCENARIO = """
import json, sys, time
from pathlib import Path

import django

django.setup()
from djangotasks.models import Task, TaskLogChunk, Worker
from djangotasks.statuses import FINISHED
from tests.models import Job

def wait(task, timeout=30.0):
    deadline = time.monotonic() + timeout
    while task.status not in FINISHED:
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout} s waiting for {task} to finish")
        time.sleep(0.05)
        task.refresh_from_db()
    return task

out = {}
job = Job.objects.create()
hello = wait(job.hello().run())
out["hello"] = {"job": job.pk, "status": hello.status, "log": hello.log, "db": hello._state.db}

job2 = Job.objects.create()
wait(job2.step_three().run())
steps = [job2.step_one(), job2.step_two(), job2.step_three()]
out["chain"] = [step.status for step in steps]
out["chain_in_order"] = all(a.end_date <= b.start_date for a, b in zip(steps, steps[1:]))

started = Path(sys.argv[1])
sleeper = Job.objects.create(seconds=600, path=str(started)).sleep().run()
deadline = time.monotonic() + 30
while not started.exists():
    if time.monotonic() > deadline:
        sys.exit(f"the sleep task never started: {sleeper}")
    time.sleep(0.05)
sleeper.refresh_from_db()
cancelled_at = time.monotonic()
wait(sleeper.cancel(), timeout=10)
out["cancel"] = {"status": sleeper.status, "seconds": time.monotonic() - cancelled_at}

models = (Task, Worker, TaskLogChunk)
out["rows"] = {
    alias: {m.__name__: m.objects.using(alias).count() for m in models}
    for alias in ("default", "tasks")
}
out["worker_in_tasks"] = Worker.objects.filter(pid=int(sys.argv[2]), stopped_at=None).exists()
out["job_db"] = job._state.db
print(json.dumps(out))
"""


@pytest.fixture
def routed_env(transactional_db: None) -> Iterator[dict[str, str]]:
    """Environment for tests.settings_routed, with a migrated "tasks" database dropped after."""
    import psycopg

    params = connection.settings_dict
    name = f"{params['NAME']}_tasks"
    server = {"host": params["HOST"], "port": params["PORT"], "user": params["USER"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DJANGO_SETTINGS_MODULE": "tests.settings_routed", "DJANGOTASKS_TASKS_DB_NAME": name}
        migrate = [sys.executable, "-m", "django", "migrate", "--database", "tasks", "-v", "0"]
        done = subprocess.run(
            migrate, cwd=ROOT, env=test_env(**env), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # Content type ids that differ from default's: a lookup on the wrong alias shows.
        with psycopg.connect(dbname=name, autocommit=True, **server) as tasks:
            tasks.execute("UPDATE django_content_type SET id = id + 1000")
        yield env
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# routed_env before start_daemon: fixtures are torn down in reverse, so the daemons are
# stopped before their database is dropped.
def test_daemon_runs_tasks_on_a_routed_database(
    routed_env: dict[str, str], start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    # start_daemon(wait=True) looks for the Worker row in "default"; it is in "tasks".
    daemon = start_daemon(wait=False, **routed_env)
    wait_until(lambda: " started: " in daemon.log or daemon.popen.poll() is not None)
    assert daemon.popen.poll() is None, daemon.log

    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    argv = [sys.executable, str(script), str(tmp_path / "sleep-started"), str(daemon.pid)]
    done = subprocess.run(
        argv, cwd=ROOT, env=test_env(**routed_env), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n--- daemon ---\n{daemon.log}"
    out = json.loads(done.stdout.strip().splitlines()[-1])

    hello = out["hello"]
    assert (hello["status"], hello["db"]) == ("successful", "tasks")
    assert hello["log"] == f"hello from job {hello['job']}\n"
    assert out["job_db"] == "default"
    assert out["chain"] == ["successful"] * 3
    assert out["chain_in_order"]
    assert out["cancel"]["status"] == "cancelled"
    assert out["cancel"]["seconds"] < 10
    assert out["rows"]["default"] == {"Task": 0, "Worker": 0, "TaskLogChunk": 0}
    tasks_rows = out["rows"]["tasks"]
    assert tasks_rows["Task"] == 5 and tasks_rows["TaskLogChunk"] >= 3, tasks_rows
    assert out["worker_in_tasks"]

    assert "Traceback" not in daemon.log, daemon.log
    assert daemon.popen.poll() is None, daemon.log

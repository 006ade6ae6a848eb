"""Tasks of Django's tasks framework run by the djangotasks backend (Django >= 6.0, or the
django-tasks backport on 5.2)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime
from typing import Any

import django

from djangotasks import current_task
from djangotasks.tasks_framework import SOURCE, task, task_finished, task_started

# Django >= 6.1 and the backport forward @task's other keyword arguments to the backend's
# ProcessTask; Django 6.0's @task refuses them (its tasks take OPTIONS from the backend only).
PER_TASK_OPTIONS = SOURCE == "django_tasks" or django.VERSION >= (6, 1)


def options(**values: Any) -> dict[str, Any]:
    """``values`` where ``@task`` takes them; nothing on Django 6.0 (the tests that need
    them are skipped there)."""
    return values if PER_TASK_OPTIONS else {}


@task
def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    return a + b


@task(priority=10, queue_name="reports")
def build_report(report_id: int, *, full: bool = False) -> dict:
    print(f"building report {report_id}", flush=True)
    return {"report": report_id, "full": full, "rows": [1, 2, 3]}


@task(queue_name="reports")
def report_noop() -> None:
    print("report")


@task
def fail(message: str) -> None:
    print("about to fail")
    raise ValueError(message)


@task(takes_context=True)
def with_context(context, label: str) -> dict:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True, **options(retries=2, retry_delay=0.1))
def flaky(context, succeed_on: int) -> int:
    print(f"attempt {context.attempt}")
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} failed")
    return context.attempt


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    print("async task ran in pid", os.getpid())
    return a + b


@task
def sleeper(seconds: float) -> str:
    print("sleeping", flush=True)
    time.sleep(seconds)
    return "woke up"


@task(**options(timeout=1))
def too_slow() -> None:
    print("starting", flush=True)
    time.sleep(60)


@task(**options(memory_limit=300 * 1024 * 1024))
def hog() -> None:
    blocks = [bytearray(10 * 1024 * 1024) for _ in range(100)]
    print(len(blocks))


@task
def crash() -> None:
    print("crashing", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


@task
def not_json_return() -> dict:
    return {"when": datetime(2026, 1, 1)}


@task
def nul_return() -> str:
    return "a\x00b"


@task
def progress(steps: int) -> int:
    for i in range(steps):
        current_task.set_progress(i + 1, steps, f"step {i + 1}")
    return steps


@task
def noop() -> None:
    pass


def _record_signal(name: str):
    def receiver(sender, task_result, **kwargs):
        path = os.environ.get("DJANGOTASKS_SIGNAL_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{name} {task_result.id} {task_result.status} {sender.__name__}\n")

    return receiver


# Daemons started with DJANGOTASKS_SIGNAL_LOG write the django.tasks signals they send there.
task_started.connect(_record_signal("django_task_started"), weak=False)
task_finished.connect(_record_signal("django_task_finished"), weak=False)

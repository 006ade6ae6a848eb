"""Function tasks, found by autodiscovery of each app's tasks.py."""

from __future__ import annotations

import os
import time

from django.conf import settings

from djangotasks import signals, task


@task
def nightly_cleanup() -> None:
    print("cleaning up")


@task(nightly_cleanup)
def after_cleanup() -> None:
    print("after cleanup")


def _record_signal(name: str):
    def receiver(sender, task, object, **kwargs):
        path = os.environ.get("DJANGOTASKS_SIGNAL_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{name} {task.pk} {task.status} {object!s} {os.getpid()}\n")

    return receiver


# Daemons started with DJANGOTASKS_SIGNAL_LOG write every task_started/task_completed they
# send to that file, so a test can check the signals are sent in the daemon process.
signals.task_started.connect(_record_signal("started"), weak=False)
signals.task_completed.connect(_record_signal("completed"), weak=False)

if settings.HAVE_TASKS_FRAMEWORK:
    from tests import backend_tasks  # noqa: F401 - Django's tasks framework


@task
def every_tick() -> None:
    """What the schedule tests run: quick, and says which tick it serves."""
    print("tick")


@task
def other_tick() -> None:
    print("other tick")


@task
def third_tick() -> None:
    print("third tick")


@task
def slow_tick() -> None:
    """A scheduled run that outlasts its schedule's interval: the next ticks overlap it."""
    print("slow tick")
    time.sleep(float(os.environ.get("DJANGOTASKS_SLOW_TICK", "3")))


if os.environ.get("DJANGOTASKS_TEST_SCHEDULES"):
    # Schedules written in code would tick in every test's daemons: only where asked for.
    from tests import scheduled_tasks  # noqa: F401

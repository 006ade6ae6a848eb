"""Function tasks, found by autodiscovery of each app's tasks.py."""

from __future__ import annotations

from djangotasks import task


@task
def nightly_cleanup() -> None:
    print("cleaning up")


@task(nightly_cleanup)
def after_cleanup() -> None:
    print("after cleanup")

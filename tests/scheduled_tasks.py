"""Tasks with a schedule in code; imported only where DJANGOTASKS_TEST_SCHEDULES is set."""

from __future__ import annotations

from datetime import timedelta

from djangotasks import task


@task(schedule=timedelta(seconds=1))
def every_second() -> None:
    print("every second, from the code")


@task(schedule="0 3 * * *", time_zone="Europe/Paris", missed="none")
def nightly_in_paris() -> None:
    print("03:00 in Paris")

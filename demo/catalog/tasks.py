"""Function tasks: work that belongs to no object."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from djangotasks import task


@task(label="Nightly cleanup", schedule="0 3 * * *")  # 03:00 in settings.TIME_ZONE
def nightly_cleanup() -> None:
    from catalog.models import Dataset

    for dataset in Dataset.objects.all():
        print(f"checked {dataset.name}: {dataset.imported_rows:,} rows")
    print("nothing to clean up")


@task(label="Check the feeds", schedule=timedelta(minutes=1))
def check_feeds() -> None:
    """Every minute: what a demo can show of a schedule without making you wait."""
    print(f"feeds checked at {timezone.localtime():%H:%M:%S}")


if settings.TASKS_FRAMEWORK:
    # Django's tasks framework: every process imports this module, so the daemon knows them.
    from catalog import reports  # noqa: F401

"""Function tasks: work that belongs to no object."""

from __future__ import annotations

from django.conf import settings

from djangotasks import task


@task(label="Nightly cleanup")
def nightly_cleanup() -> None:
    from catalog.models import Dataset

    for dataset in Dataset.objects.all():
        print(f"checked {dataset.name}: {dataset.imported_rows:,} rows")
    print("nothing to clean up")


if settings.TASKS_FRAMEWORK:
    # Django's tasks framework: every process imports this module, so the daemon knows them.
    from catalog import reports  # noqa: F401

"""A task of Django's tasks framework, run by the djangotasks backend (Django >= 6.0, or the
django-tasks backport on 5.2).

Enqueued with arguments (``build_report.enqueue(dataset.pk, sections=4)``, or the "Build
report (Django task)" action of the datasets' list), it runs in the daemon like any task:
its own process, a live log, progress, cancel; its return value is the result's.
"""

from __future__ import annotations

import time

from catalog.models import Dataset, row_seconds
from djangotasks import current_task
from djangotasks.tasks_framework import task


@task(queue_name="reports")
def build_report(dataset_id: int, *, sections: int = 4) -> dict[str, object]:
    dataset = Dataset.objects.get(pk=dataset_id)
    print(f"Building the report of {dataset.name} ({sections} sections)", flush=True)
    for i in range(1, sections + 1):
        current_task.set_progress(i - 1, sections, f"section {i} of {sections}")
        # One second a section by default: long enough to watch the log and the bar move.
        time.sleep(row_seconds() * 10)
        print(f"  section {i}/{sections} done", flush=True)
    current_task.set_progress(sections, sections, "done")
    path = f"reports/{dataset.pk}-summary.html"
    print(f"Report written to {path}")
    return {"dataset": dataset.name, "rows": dataset.imported_rows, "sections": sections,
            "path": path}  # fmt: skip

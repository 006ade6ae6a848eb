"""Example data, so that every panel of the admin has something to show on first start."""

from __future__ import annotations

from django.conf import settings

from catalog.models import Dataset

DATASETS = [
    # name, source, rows, report failure rate
    ("Customers 2024", "s3://demo/customers-2024.csv", 600, 0.3),
    ("Orders Q3", "s3://demo/orders-q3.csv", 300, 0.5),
    ("Tiny sample", "fixtures/sample.csv", 20, 0.0),
    ("Flaky supplier feed", "ftp://supplier/feed.xml", 80, 0.9),
]


def seed() -> list[str]:
    """Create the datasets once and start a few tasks; returns what it did."""
    done = []
    if not Dataset.objects.exists():
        for name, source, rows, failure_rate in DATASETS:
            Dataset.objects.create(
                name=name, source=source, rows=rows, report_failure_rate=failure_rate
            )
        done.append(f"created {len(DATASETS)} datasets")
        # Something to watch at once: a chain that succeeds, one that fails, a subprocess.
        tiny = Dataset.objects.get(name="Tiny sample")
        tiny.render_report().run()
        Dataset.objects.get(name="Flaky supplier feed").render_report().run()
        Dataset.objects.get(name="Orders Q3").archive().run()
        done.append("scheduled a report chain, a flaky report and an archive")
        if settings.TASKS_FRAMEWORK:
            from catalog.reports import build_report

            build_report.enqueue(tiny.pk, sections=3)
            done.append("enqueued a Django task (catalog.reports.build_report)")
    return done

"""The demo's task of Django's tasks framework: enqueued from the admin, run, watched."""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "djangotasks.tasks_framework",
    reason="Django's tasks framework: Django >= 6.0, or the django-tasks backport",
    exc_type=ImportError,
)

from tests.demo_process import running_demo
from tests.helpers import wait_until


@pytest.mark.timeout(180)
def test_build_report_is_enqueued_from_the_admin_and_watched(tmp_path):
    with running_demo(tmp_path) as demo:
        # The one the demo enqueues at its first start.
        def seeded() -> list[tuple[object, ...]]:
            return demo.query(
                "SELECT id FROM djangotasks_task WHERE name = ? AND status = 'successful'",
                "catalog.reports.build_report",
            )

        wait_until(seeded, timeout=60, interval=0.3)

        [(dataset_id,)] = demo.query("SELECT id FROM catalog_dataset WHERE name = 'Orders Q3'")
        datasets = demo.get("/admin/catalog/dataset/")
        assert '<option value="build_report">Build report (Django task)</option>' in datasets
        page = demo.post(
            "/admin/catalog/dataset/",
            {"action": "build_report", "_selected_action": str(dataset_id)},
        )
        link = re.search(r'Report of Orders Q3 enqueued: <a href="([^"]+)">watch task #(\d+)', page)
        assert link, page
        task_id = int(link[2])

        def finished() -> str:
            [(status,)] = demo.query("SELECT status FROM djangotasks_task WHERE id = ?", task_id)
            return str(status) if status in ("successful", "unsuccessful") else ""

        assert wait_until(finished, timeout=60, interval=0.3) == "successful"
        [(arguments, result, queue, progress)] = demo.query(
            "SELECT arguments, result, queue_name, progress_current FROM djangotasks_task "
            "WHERE id = ?",
            task_id,
        )
        assert '"args": [' + str(dataset_id) + "]" in str(arguments)
        assert '"sections": 4' in str(arguments) and queue == "reports" and progress == 4
        assert '"dataset": "Orders Q3"' in str(result)
        watched = demo.get(link[1])
        assert f"#{task_id} Build report · result" in watched
        assert "catalog.reports.build_report(" in watched and "sections=4)" in watched
        assert "section 4/4 done" in watched  # the log
        assert "&quot;path&quot;: &quot;reports/" in watched  # the return value
        dashboard = demo.get("/admin/djangotasks/task/dashboard/")
        assert "Queues" in dashboard and "?status__exact=scheduled&amp;queue=reports" in dashboard
    assert "enqueued a Django task (catalog.reports.build_report)" in demo.output.read_text()

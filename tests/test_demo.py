"""The demo boots with one command and its tasks really run through its daemon."""

from __future__ import annotations

import pytest

from tests.demo_process import running_demo
from tests.helpers import wait_until


@pytest.mark.timeout(180)
def test_rundemo_serves_the_admin_and_runs_tasks(tmp_path):
    with running_demo(tmp_path) as demo:
        assert "login: demo   password: demo" in demo.output.read_text()
        assert "/admin/djangotasks/dashboard/" in demo.index  # the Dashboard entry of the index
        datasets = demo.get("/admin/catalog/dataset/")
        assert '<option value="run_task_import_rows">Run import rows</option>' in datasets

        def finished() -> list[tuple[object, ...]]:
            return demo.query(
                "SELECT name, status FROM djangotasks_task WHERE status = 'successful'"
            )

        done = wait_until(finished, timeout=90, interval=0.5)
        assert ("catalog.Dataset.import_rows", "successful") in done
        assert "Daemons" in demo.get("/admin/djangotasks/task/dashboard/")
    assert "demo stopped" in demo.output.read_text()

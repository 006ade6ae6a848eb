"""Settings of ``bench/bench_admin.py``: the test suite's settings (admin, ``tests`` models)
plus ``bench.adminapp``, whose ``Project`` admin hides projects by owner.

``DJANGOTASKS_TEST_DB`` and ``DJANGOTASKS_DB_NAME`` pick the database, as for the tests.
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.adminapp"]

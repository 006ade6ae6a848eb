"""Server time of the task admin with many task rows, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_admin.py [--rows 1000000] [--runs 7] [--db sqlite postgres]

Each database is a throwaway one (a temp SQLite file; ``djangotasks_bench_admin`` on the local
PostgreSQL, dropped afterwards). Rows are created with one set-based INSERT, then every page is
rendered ``--runs`` times through Django's test client (in process: the figure is server
time) and the median is printed with the number of queries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = "djangotasks_bench_admin"

PAGES = [
    ("task list, page 1", "/admin/djangotasks/task/"),
    ("task list, page 50", "/admin/djangotasks/task/?p=50"),
    ("task list, unsuccessful", "/admin/djangotasks/task/?status__exact=unsuccessful"),
    ("task list, one task name", "/admin/djangotasks/task/?name=tests.Job.fail"),
    ("dashboard (full page)", "/admin/djangotasks/task/dashboard/"),
    ("dashboard live poll", "/admin/djangotasks/task/dashboard/live/"),
    ("dashboard charts poll", "/admin/djangotasks/task/dashboard/live/?part=charts"),
]

SQLITE_FILL = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %(rows)d)
INSERT INTO djangotasks_task (name, content_type_id, object_id, live_key, archived, status,
    reason, priority, queue_name, attempt, created_at, start_date, end_date, progress_message,
    log_size)
SELECT
    CASE i %% 3 WHEN 0 THEN 'tests.Job.hello' WHEN 1 THEN 'tests.Job.fail'
         ELSE 'tests.Job.sleep' END,
    %(ct)d, CAST(i %% 1000 + 1 AS TEXT), NULL, 1,
    CASE WHEN i %% 20 = 0 THEN 'unsuccessful' WHEN i %% 50 = 1 THEN 'cancelled'
         ELSE 'successful' END,
    '', 0, 'default', 1,
    strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (i * 5) || ' seconds'),
    strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (i * 5) || ' seconds'),
    strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (i * 5 - i %% 40) || ' seconds'),
    '', 0
FROM seq
"""

PG_FILL = """
INSERT INTO djangotasks_task (name, content_type_id, object_id, live_key, archived, status,
    reason, priority, queue_name, attempt, created_at, start_date, end_date, progress_message,
    log_size)
SELECT
    CASE i %% 3 WHEN 0 THEN 'tests.Job.hello' WHEN 1 THEN 'tests.Job.fail'
         ELSE 'tests.Job.sleep' END,
    %(ct)d, (i %% 1000 + 1)::text, NULL, true,
    CASE WHEN i %% 20 = 0 THEN 'unsuccessful' WHEN i %% 50 = 1 THEN 'cancelled'
         ELSE 'successful' END,
    '', 0, 'default', 1,
    now() - make_interval(secs => i * 5),
    now() - make_interval(secs => i * 5),
    now() - make_interval(secs => i * 5 - i %% 40),
    '', 0
FROM generate_series(1, %(rows)d) AS i
"""


def run_one(db: str, rows: int, runs: int) -> None:
    """In a child process: settings for ``db``, fill, measure, print."""
    import django
    from django.conf import settings

    django.setup()
    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from tests.models import Job

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    Job.objects.bulk_create([Job() for _ in range(1000)])
    ct = ContentType.objects.get_for_model(Job).pk
    with connection.cursor() as cursor:
        cursor.execute((SQLITE_FILL if db == "sqlite" else PG_FILL) % {"rows": rows, "ct": ct})
        if db == "postgres":
            cursor.execute("ANALYZE djangotasks_task")
    for job in Job.objects.all()[:20]:
        job.sleep().run()  # a live queue too
    print(f"{db}: {rows:,} task rows created in {time.monotonic() - started:.0f} s", flush=True)
    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    print(f"  {'page':<28}{'median ms':>10}{'min ms':>9}{'queries':>9}")
    for label, url in PAGES:
        times = []
        queries = 0
        client.get(url)  # warm caches
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = len(captured.captured_queries)
            full_counts = [
                q["sql"]
                for q in captured.captured_queries
                if "COUNT(" in q["sql"].upper() and "LIMIT" not in q["sql"].upper()
            ]
            assert not full_counts, full_counts
        print(f"  {label:<28}{statistics.median(times):>10.1f}{min(times):>9.1f}{queries:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args.rows, args.runs)
        return
    print(f"djangotasks admin benchmark: {args.rows:,} task rows, median of {args.runs} runs")
    for db in args.db:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(ROOT))
            env["DJANGOTASKS_TEST_DB"] = db
            env["DJANGOTASKS_TEST_VAR"] = tmp
            if db == "sqlite":
                env["DJANGOTASKS_DB_NAME"] = str(Path(tmp) / "bench.sqlite3")
            else:
                env["DJANGOTASKS_DB_NAME"] = PG_NAME
                _pg("DROP DATABASE IF EXISTS", env)
                _pg("CREATE DATABASE", env)
            try:
                subprocess.run(
                    [sys.executable, __file__, "--child", db, "--rows", str(args.rows),
                     "--runs", str(args.runs)],
                    env=env, check=True,
                )  # fmt: skip
            finally:
                if db == "postgres":
                    _pg("DROP DATABASE IF EXISTS", env)


def _pg(statement: str, env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(
        dbname="postgres",
        user=env.get("PGUSER", "postgres"),
        host=env.get("PGHOST", "127.0.0.1"),
        port=env.get("PGPORT", "5432"),
        autocommit=True,
    ) as conn:
        conn.execute(f"{statement} {PG_NAME}")


if __name__ == "__main__":
    main()

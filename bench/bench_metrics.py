"""Server time of the metrics view with many task rows, against the dashboard's live poll,
on SQLite and PostgreSQL.

    .venv/bin/python -m bench.bench_metrics [--rows 1000000] [--runs 15] [--db sqlite postgres]
        [--explain]

The rows are bench_admin.py's (``--rows`` finished tasks on 100,000 projects, one set-based
INSERT), all run by the one daemon that is alive: the worst case for anything that counts a
daemon's tasks. Then a live queue: ``RUNNING`` running tasks on that daemon, ``SCHEDULED`` due
ones, ``FUTURE`` ones due tomorrow, and the running totals (tallies) of a dozen task names.

Each page is rendered ``--runs`` times through Django's test client (in process: the figure
is server time): the metrics with the bearer token, the live poll as a superuser. The median
is printed with the number of queries; ``--explain`` prints each one's slowest query plan.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.bench_admin import (
    DB_LABELS,
    MODEL,
    _markdown,
    _pg,
    explain,
    fill_rows,
    fresh_database,
    measure,
)

PG_NAME = "djangotasks_bench_metrics"
TOKEN = "bench-token"
PAGES = [
    ("metrics", "/djangotasks/metrics"),
    ("dashboard live poll", "/admin/djangotasks/task/dashboard/live/"),
]
RUNNING = 90
SCHEDULED = 200
FUTURE = 50
TASK_NAMES = 12


def run_one(db: str, args: argparse.Namespace) -> None:
    """In a child process: settings for ``db``, fill, measure, write the figures as JSON."""
    import django
    from django.conf import settings

    django.setup()
    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from bench.adminapp.models import Project
    from djangotasks import tallies
    from djangotasks.models import Task, Worker
    from djangotasks.models.clock import DatabaseClock
    from djangotasks.models.task import live_key

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    settings.DJANGOTASKS = {**settings.DJANGOTASKS, "METRICS_TOKEN": TOKEN}
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    superuser = User.objects.create_superuser("bench", "bench@example.com", "bench")
    ct = ContentType.objects.get_for_model(Project).pk
    worker = Worker.objects.create(hostname="bench", pid=1, capacity=RUNNING + 10)
    # A heartbeat an hour ahead: alive for the whole run, by the database's clock.
    Worker.objects.filter(pk=worker.pk).update(beat=DatabaseClock() + 3_600_000)
    fill = {"rows": args.rows, "objects": 100_000, "share": 10, "mine": superuser.pk,
            "other": superuser.pk, "ct": ct, "model": MODEL}  # fmt: skip
    with connection.cursor() as cursor:
        fill_rows(cursor, db, fill)
        cursor.execute("UPDATE djangotasks_task SET worker_id = %s", [worker.pk])
        # As bench_admin.py: PostgreSQL settled (autovacuum would), SQLite as Django leaves
        # it (no ANALYZE, so no statistics).
        if db == "postgres":
            cursor.execute("VACUUM ANALYZE")
    now = timezone.now()
    live = []
    for pk in range(1, RUNNING + SCHEDULED + FUTURE + 1):
        status = "running" if pk <= RUNNING else "scheduled"
        live.append(
            Task(
                name=f"{MODEL}.sleep",
                content_type_id=ct,
                object_id=str(pk),
                live_key=live_key(f"{MODEL}.sleep", str(pk)),
                status=status,
                worker=worker if status == "running" else None,
                created_at=now - timedelta(seconds=pk),
                start_date=now - timedelta(seconds=pk) if status == "running" else None,
                run_after=now + timedelta(days=1) if pk > RUNNING + SCHEDULED else None,
            )
        )
    Task.objects.bulk_create(live)
    counts = tallies.Counts(float)
    for n in range(TASK_NAMES):
        for outcome in ("successful", "failed", "cancelled"):
            counts["finished", f"bench.task_{n}", outcome] += args.rows / TASK_NAMES / 3
        for bound in tallies.DURATION_BUCKETS:
            counts["duration", f"bench.task_{n}", tallies.label_of(bound)] += 1000
        counts["duration_sum", f"bench.task_{n}", ""] += 12345.0
    for bound in tallies.PICKUP_BUCKETS:
        counts["pickup", "default", tallies.label_of(bound)] += 1000
    tallies.add(counts)
    print(
        f"{db}: {Task.objects.count():,} task rows created in {time.monotonic() - started:.0f} s",
        flush=True,
    )

    client = Client()
    client.force_login(superuser)
    results: dict[str, Any] = {}
    headers = {"metrics": {"Authorization": f"Bearer {TOKEN}"}, "dashboard live poll": {}}
    for label, url in PAGES:
        figures = measure(connection, client, url, args.runs, **headers[label])
        response = figures.pop("response")
        slowest = figures.pop("slowest")
        results[label] = figures
        print(f"  {label:<22}{figures['median']:>8.1f} ms median, {figures['queries']} queries")
        if label == "metrics":
            text = response.content.decode()
            assert f'djangotasks_tasks{{queue="default",status="running"}} {RUNNING}.0' in text
            assert 'djangotasks_daemon_slots{state="busy"} 90.0' in text, text
        if args.explain:
            explain(connection, db, slowest)
    Path(args.out).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--explain", action="store_true", help="plans of the slowest queries")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args)
        return
    print(f"djangotasks metrics benchmark: {args.rows:,} task rows, median of {args.runs} runs")
    results = {}
    for db in args.db:
        with tempfile.TemporaryDirectory() as tmp:
            env = fresh_database(db, tmp, PG_NAME)
            out = Path(tmp) / "results.json"
            command = [sys.executable, "-m", "bench.bench_metrics", "--child", db]
            command += ["--out", str(out)]
            command += ["--rows", str(args.rows), "--runs", str(args.runs)]
            command += ["--explain"] if args.explain else []
            try:
                subprocess.run(command, env=env, check=True)
                results[db] = json.loads(out.read_text())
            finally:
                if db == "postgres" and not args.keep:
                    _pg("DROP DATABASE IF EXISTS", env, PG_NAME)
    print()
    print(f"Server time with {args.rows:,} task rows, median of {args.runs} runs, and queries:")
    print()
    header = ["page", *(DB_LABELS.get(db, db) for db in results)]
    rows = [
        [
            label,
            *(f"{r[label]['median']:.1f} ms, {r[label]['queries']} q" for r in results.values()),
        ]
        for label, _url in PAGES
    ]
    _markdown(header, rows)


if __name__ == "__main__":
    main()

"""Server time of the task admin with many task rows, on SQLite and PostgreSQL, for a
superuser and for a restricted staff user.

    .venv/bin/python bench/bench_admin.py [--rows 1000000] [--objects 100000] [--runs 7]
        [--db sqlite postgres] [--explain restricted|all]

Each database is a throwaway one (a temp SQLite file; ``djangotasks_bench_admin`` on the local
PostgreSQL, dropped afterwards). ``--objects`` projects (``bench.adminapp.Project``) are
created with one set-based INSERT, one in ``--share`` of them owned by the restricted user,
then ``--rows`` task rows spread evenly over the projects with another. ``ProjectAdmin``
shows a non-superuser only its own projects, so the task admin filters the restricted user's
tasks with a subquery over that queryset: the user sees one task in ``--share``.

Every page is rendered ``--runs`` times per user through Django's test client (in process:
the figure is server time); the median is printed with the number of queries. The rows each
page shows are checked: the restricted user's pages must not be empty and must hold only
tasks of its own projects. ``--explain`` prints the plan of each page's slowest query.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = "djangotasks_bench_admin"
DB_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
USERS = ("superuser", "restricted")

APP = "adminapp"
MODEL = "adminapp.Project"
# {chain}: the task at the end of a ten-task dependency chain, on a restricted user's project.
PAGES = [
    ("task list, page 1", "/admin/djangotasks/task/"),
    ("task list, page 50", "/admin/djangotasks/task/?p=50"),
    ("task list, unsuccessful", "/admin/djangotasks/task/?status__exact=unsuccessful"),
    ("task list, one task name", f"/admin/djangotasks/task/?name={MODEL}.fail"),
    ("dashboard (full page)", "/admin/djangotasks/task/dashboard/"),
    ("dashboard live poll", "/admin/djangotasks/task/dashboard/live/"),
    ("dashboard charts poll", "/admin/djangotasks/task/dashboard/live/?part=charts"),
    ("task page, 10-task chain", "/admin/djangotasks/task/{chain}/change/"),
]
# Running tasks: on projects 1..90 and on ten of the restricted user's (share, 2 share, ...).
RUNNING = 90
SCHEDULED = 20  # scheduled ones, on the next projects
# A WHERE that keeps live statuses only: bounded by the work in flight, through the index.
_LIVE = "'(?:scheduled|running|requested_cancel)'"
LIVE_ONLY = re.compile(rf'"status" (?:= {_LIVE}|IN \({_LIVE}(?:, {_LIVE})*\))')

SQLITE_PROJECTS = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %(objects)d)
INSERT INTO adminapp_project (id, owner_id, title)
SELECT i, CASE WHEN i %% %(share)d = 0 THEN %(mine)d ELSE %(other)d END, 'project ' || i
FROM seq
"""

PG_PROJECTS = """
INSERT INTO adminapp_project (id, owner_id, title)
SELECT i, CASE WHEN i %% %(share)d = 0 THEN %(mine)d ELSE %(other)d END, 'project ' || i
FROM generate_series(1, %(objects)d) AS i
"""

# Task i runs on project i % objects + 1, so each project has rows / objects tasks and the
# restricted user's are every share-th row. Statuses use moduli prime to the share (19, 47)
# so that the restricted user has failures too (5.3 % unsuccessful, 2.1 % cancelled).
SQLITE_FILL = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %(rows)d)
INSERT INTO djangotasks_task (name, content_type_id, object_id, live_key, archived, status,
    reason, priority, queue_name, attempt, created_at, start_date, end_date, progress_message,
    log_size)
SELECT
    CASE i %% 3 WHEN 0 THEN '%(model)s.hello' WHEN 1 THEN '%(model)s.fail'
         ELSE '%(model)s.sleep' END,
    %(ct)d, CAST(i %% %(objects)d + 1 AS TEXT), NULL, 1,
    CASE WHEN i %% 19 = 0 THEN 'unsuccessful' WHEN i %% 47 = 1 THEN 'cancelled'
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
    CASE i %% 3 WHEN 0 THEN '%(model)s.hello' WHEN 1 THEN '%(model)s.fail'
         ELSE '%(model)s.sleep' END,
    %(ct)d, (i %% %(objects)d + 1)::text, NULL, true,
    CASE WHEN i %% 19 = 0 THEN 'unsuccessful' WHEN i %% 47 = 1 THEN 'cancelled'
         ELSE 'successful' END,
    '', 0, 'default', 1,
    now() - make_interval(secs => i * 5),
    now() - make_interval(secs => i * 5),
    now() - make_interval(secs => i * 5 - i %% 40),
    '', 0
FROM generate_series(1, %(rows)d) AS i
"""


# -- the child: one database -------------------------------------------------------------


def run_one(db: str, args: argparse.Namespace) -> None:
    """In a child process: settings for ``db``, fill, measure, write the figures as JSON."""
    import django
    from django.conf import settings

    django.setup()
    from django.contrib.auth.models import Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from bench.adminapp.models import Project
    from djangotasks.models import Task
    from djangotasks.models.task import live_key

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    started = time.monotonic()

    superuser = User.objects.create_superuser("bench", "bench@example.com", "bench")
    restricted = User.objects.create_user("staff", "staff@example.com", "staff", is_staff=True)
    restricted.user_permissions.add(
        Permission.objects.get(content_type__app_label="djangotasks", codename="view_task"),
        Permission.objects.get(content_type__app_label=APP, codename="view_project"),
    )
    other = User.objects.create_user("other", "other@example.com", "other", is_staff=True)
    ct = ContentType.objects.get_for_model(Project).pk
    fill = {
        "rows": args.rows,
        "objects": args.objects,
        "share": args.share,
        "mine": restricted.pk,
        "other": other.pk,
        "ct": ct,
        "model": MODEL,
    }
    with connection.cursor() as cursor:
        fill_rows(cursor, db, fill)
        # PostgreSQL's autovacuum would vacuum and analyze the new rows (a table that has
        # settled, with its visibility map set for index-only scans); SQLite has statistics
        # only when something runs ANALYZE (Django does not): --sqlite-analyze.
        if db == "postgres":
            cursor.execute("VACUUM ANALYZE")
        elif args.sqlite_analyze:
            cursor.execute("ANALYZE")
    # A live queue: running tasks (no daemon runs: nothing changes them), scheduled ones,
    # and a ten-task dependency chain on one of the restricted user's projects.
    now = timezone.now()
    Task.objects.bulk_create(
        Task(
            name=f"{MODEL}.sleep",
            content_type_id=ct,
            object_id=str(pk),
            live_key=live_key(f"{MODEL}.sleep", str(pk)),
            status="running",
            created_at=now - timedelta(seconds=pk),
            start_date=now - timedelta(seconds=pk),
        )
        for pk in sorted({*range(1, RUNNING + 1), *(args.share * k for k in range(1, 11))})
    )
    for project in Project.objects.filter(pk__gt=RUNNING).order_by("pk")[:SCHEDULED]:
        project.hello().run()
    mine = Project.objects.get(pk=args.share)  # pk % share == 0: the restricted user's
    assert mine.owner_id == restricted.pk
    chain = mine.step_10().run()
    theirs = Project.objects.get(pk=args.share + 1)
    assert theirs.owner_id == other.pk
    hidden_chain = theirs.step_10().run()
    total = Task.objects.count()
    print(
        f"{db}: {total:,} task rows on {args.objects:,} projects created in "
        f"{time.monotonic() - started:.0f} s (the restricted user owns one project in "
        f"{args.share})",
        flush=True,
    )

    clients = {}
    for name, user in (("superuser", superuser), ("restricted", restricted)):
        clients[name] = Client()
        clients[name].force_login(user)
    # The restricted user must not reach a task of someone else's project.
    response = clients["restricted"].get(f"/admin/djangotasks/task/{hidden_chain.pk}/change/")
    assert response.status_code in (302, 403, 404), response.status_code
    print(
        f"  restricted user, task page of another user's project: {response.status_code}",
        flush=True,
    )

    results: dict[str, Any] = {}
    print(f"  {'page':<28}{'user':<12}{'median ms':>10}{'min ms':>9}{'queries':>9}  rows shown")
    for label, url in PAGES:
        url = url.format(chain=chain.pk)
        results[label] = {}
        for name, client in clients.items():
            if name == "restricted" and "p=50" in url and args.rows // args.share <= 49 * 100:
                results[label][name] = None
                print(f"  {label:<28}{name:<12}  (fewer than 50 pages: not measured)")
                continue
            figures = measure(connection, client, url, args.runs)
            rows = check_rows(figures.pop("response"), name, args.share, label)
            slowest = figures.pop("slowest")
            figures["rows"] = rows
            results[label][name] = figures
            print(
                f"  {label:<28}{name:<12}{figures['median']:>10.1f}{figures['min']:>9.1f}"
                f"{figures['queries']:>9}  {rows['text']}",
                flush=True,
            )
            if args.explain == "all" or (args.explain == "restricted" and name == "restricted"):
                explain(connection, db, slowest)
    Path(args.out).write_text(json.dumps(results))


def fill_rows(cursor: Any, db: str, fill: dict[str, Any]) -> None:
    """``fill["objects"]`` projects, then ``fill["rows"]`` finished task rows on them."""
    cursor.execute((SQLITE_PROJECTS if db == "sqlite" else PG_PROJECTS) % fill)
    cursor.execute((SQLITE_FILL if db == "sqlite" else PG_FILL) % fill)
    if db == "postgres":
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('adminapp_project', 'id'), %s)",
            [fill["objects"]],
        )


def measure(connection: Any, client: Any, url: str, runs: int, **headers: str) -> dict[str, Any]:
    """Median and min server time of ``runs`` GETs of ``url``, and the queries of the last:
    none may count the table without a LIMIT (a count of the live statuses is bounded)."""
    from django.test.utils import CaptureQueriesContext

    times = []
    client.get(url, headers=headers)  # warm caches
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            response = client.get(url, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        full_counts = [
            q["sql"]
            for q in captured.captured_queries
            if "COUNT(" in q["sql"].upper()
            and "LIMIT" not in q["sql"].upper()
            and not LIVE_ONLY.search(q["sql"])
        ]
        assert not full_counts, full_counts
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))
    return {
        "median": statistics.median(times),
        "min": min(times),
        "queries": len(captured.captured_queries),
        "response": response,
        "slowest": slowest,
    }


def check_rows(response: Any, user: str, share: int, label: str) -> dict[str, Any]:
    """The tasks a page shows: how many, how many on the restricted user's projects.

    The restricted user's pages must show tasks, and only tasks of its own projects.
    """
    context = response.context
    tasks: list[Any] = []
    depth = None
    if "cl" in context:
        tasks = list(context["cl"].result_list)
        kind = "rows"
    elif "tree" in context:
        tasks = [context["original"]]
        nodes = context["tree"]
        depth = 0
        while nodes:
            depth += 1
            tasks += [node.task for node in nodes]
            nodes = [child for node in nodes for child in node.children]
        kind = "tasks"
    else:
        running = [card.task for card in context.get("running", [])]
        failures = [failure.task for failure in context.get("failures", [])]
        tasks = running + failures
        parts = []
        if "running" in context:
            parts.append(f"{len(running)} running")
        if "failures" in context:
            parts.append(f"{len(failures)} failures")
        kind = " + ".join(parts)
    own = sum(1 for task in tasks if int(task.object_id) % share == 0)
    if user == "restricted":
        assert tasks, f"{label}: the restricted user's page shows no task"
        assert own == len(tasks), f"{label}: {len(tasks) - own} tasks of others' projects"
        if "running" in kind:
            assert context["running"], f"{label}: no running task shown"
        if "failures" in kind:
            assert context["failures"], f"{label}: no failure shown"
    text = f"{len(tasks)} {kind}" if kind in ("rows", "tasks") else kind
    text += f", {own} on own projects" if user == "superuser" else ", all own"
    if depth is not None:
        text += f", tree {depth} deep"
    return {"shown": len(tasks), "own": own, "depth": depth, "text": text}


def explain(connection: Any, db: str, query: dict[str, str]) -> None:
    """The plan of one captured query (ANALYZE on PostgreSQL: it runs the query again)."""
    sql = query["sql"]
    prefix = "EXPLAIN QUERY PLAN " if db == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        rows = cursor.fetchall()
    print(f"    slowest query ({float(query['time']) * 1000:.1f} ms): {sql}")
    for row in rows:
        print(f"      {row[-1]}")


# -- the parent: one child per database, then one table ----------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=100_000, help="projects the rows are on")
    parser.add_argument(
        "--share", type=int, default=10, help="the restricted user owns one project in SHARE"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--explain",
        choices=["restricted", "all"],
        help="print the plan of each page's slowest query (the restricted user's, or all)",
    )
    parser.add_argument(
        "--sqlite-analyze",
        action="store_true",
        help="run ANALYZE on SQLite after the fill (PostgreSQL is always analyzed)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the databases (SQLite file, PostgreSQL database) to look at plans by hand",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args)
        return
    assert args.objects > 10 * args.share + RUNNING + SCHEDULED, "--objects is too small"
    print(
        f"djangotasks admin benchmark: {args.rows:,} task rows on {args.objects:,} projects, "
        f"median of {args.runs} runs",
        flush=True,
    )
    results = {}
    for db in args.db:
        kept = tempfile.mkdtemp(prefix="bench_admin_") if args.keep else None
        with contextlib.nullcontext(kept) if kept else tempfile.TemporaryDirectory() as tmp:
            env = fresh_database(db, tmp, PG_NAME)
            out = Path(tmp) / "results.json"
            command = [sys.executable, __file__, "--child", db, "--out", str(out)]
            for option in ("rows", "objects", "share", "runs"):
                command += [f"--{option}", str(getattr(args, option))]
            if args.explain:
                command += ["--explain", args.explain]
            if args.sqlite_analyze:
                command += ["--sqlite-analyze"]
            try:
                subprocess.run(command, env=env, check=True)
                results[db] = json.loads(out.read_text())
            finally:
                if kept:
                    print(f"{db}: kept in {env['DJANGOTASKS_DB_NAME']}", flush=True)
                elif db == "postgres":
                    _pg("DROP DATABASE IF EXISTS", env)
    print_table(results, args)


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    dbs = list(results)
    print()
    print(
        f"The admin with {args.rows:,} task rows on {args.objects:,} projects: server time, "
        f"median of {args.runs} runs, and queries. The restricted user is staff with "
        f"view_task and view_project and sees its own projects: one in {args.share}."
    )
    print()
    header = ["page"] + [f"{DB_LABELS.get(db, db)} {user}" for db in dbs for user in USERS]
    rows = []
    for label, _url in PAGES:
        cells = [label]
        for db in dbs:
            for user in USERS:
                figures = results[db][label][user]
                if figures is None:
                    cells.append("n/a")
                else:
                    cells.append(f"{figures['median']:.0f} ms, {figures['queries']} q")
        rows.append(cells)
    _markdown(header, rows)
    print()
    print("Tasks shown (checked: the restricted user's are all on its own projects):")
    print()
    header = ["page", *(f"{user}" for user in USERS)]
    rows = []
    for label, _url in PAGES:
        cells = [label]
        for user in USERS:
            texts = {
                results[db][label][user]["rows"]["text"] if results[db][label][user] else "n/a"
                for db in dbs
            }
            cells.append(" / ".join(sorted(texts)))
        rows.append(cells)
    _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    align = ["<"] + [">"] * (len(header) - 1)

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(f"{cell:{a}{w}}" for cell, a, w in zip(cells, align, widths, strict=True))
            + " |"
        )

    print(line(header))
    print("|" + "|".join(("-" * (w + 1) + ":") if a == ">" else "-" * (w + 2)
                         for a, w in zip(align, widths, strict=True)) + "|")  # fmt: skip
    for row in rows:
        print(line(row))


def fresh_database(db: str, tmp: str, pg_name: str) -> dict[str, str]:
    """The environment of a child on an empty database: a file in ``tmp`` (SQLite), or
    PostgreSQL's ``pg_name`` dropped and created again."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["DJANGO_SETTINGS_MODULE"] = "bench.admin_settings"
    env["DJANGOTASKS_TEST_DB"] = db
    env["DJANGOTASKS_TEST_VAR"] = tmp
    if db == "sqlite":
        env["DJANGOTASKS_DB_NAME"] = str(Path(tmp) / "bench.sqlite3")
    else:
        env["DJANGOTASKS_DB_NAME"] = pg_name
        _pg("DROP DATABASE IF EXISTS", env, pg_name)
        _pg("CREATE DATABASE", env, pg_name)
    return env


def _pg(statement: str, env: dict[str, str], name: str = PG_NAME) -> None:
    import psycopg

    with psycopg.connect(
        dbname="postgres",
        user=env.get("PGUSER", "postgres"),
        host=env.get("PGHOST", "127.0.0.1"),
        port=env.get("PGPORT", "5432"),
        autocommit=True,
    ) as conn:
        conn.execute(f"{statement} {name}")


if __name__ == "__main__":
    main()

"""Run the benchmarks on each database and print the figures next to their targets.

    python -m bench.run                       # sqlite and postgres (mysql with --db ...)
    python -m bench.run --db sqlite,postgres,mysql --runs 30
    python -m bench.run --db sqlite --runs 5 --tasks 100 --idle-seconds 10   # quick look

Each database runs in its own ``bench.suite`` process (Django's settings are per process);
a database whose server does not answer is reported and skipped. Figures are medians and
p95 of the runs; the peer is Django's own tasks framework with django-tasks-db's
``db_worker`` (measured when django-tasks-db is installed: ``pip install -e '.[bench]'``),
next to djangotasks fed by the same ``enqueue()`` through ``djangotasks.backend.ProcessBackend``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATABASES = ("sqlite", "postgres", "mysql")


@dataclass(frozen=True)
class Target:
    """What a figure should be on this kind of machine (2 cores)."""

    limit: float
    higher_is_better: bool = False
    databases: tuple[str, ...] = DATABASES

    def met(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value <= self.limit

    def text(self, unit: str) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {self.limit:g} {unit}"


# Figure key -> (row label, target). Figures without a target are printed for information.
ROWS: list[tuple[str, str, Target | None]] = [
    ("spawn", "spawn: claim to first line of task code", Target(15)),
    (
        "pickup",
        "pickup: enqueue to first line, idle daemon",
        Target(50, databases=("sqlite", "postgres")),
    ),
    ("cancel", "cancel to process group gone", Target(500)),
    ("cancel_status", "cancel to status 'cancelled'", None),
    ("log", "print to visible in task.log", Target(300)),
    ("drain", "drain rate, no-op tasks", Target(150, higher_is_better=True)),
    ("idle_sql", "idle daemon: SQL statements", Target(1)),
    ("idle_sql_scheduled", "idle daemon with a nightly schedule: SQL statements", Target(1)),
    ("idle_cpu", "idle daemon: CPU", None),
    ("rss_idle", "daemon RSS, idle", Target(60)),
    ("rss_busy", "daemon RSS, after the drain", Target(60)),
    # The same enqueue() of Django's tasks framework: djangotasks' backend, then the peer.
    ("backend_pickup", "djangotasks via django.tasks enqueue(): pickup", None),
    ("peer_pickup", "peer: pickup (db_worker)", None),
    ("backend_drain", "djangotasks via django.tasks enqueue(): drain rate", None),
    ("peer_drain", "peer: drain rate (db_worker)", None),
    ("peer_rss", "peer: db_worker RSS after the drain", None),
]


def run_suite(db: str, args: argparse.Namespace, out: Path) -> int:
    command = [
        sys.executable, "-m", "bench.suite", "--db", db, "--json", str(out),
        "--runs", str(args.runs), "--drain-runs", str(args.drain_runs), "--tasks", str(args.tasks),
        "--idle-seconds", str(args.idle_seconds), "--peer-interval", str(args.peer_interval),
        "--peer" if args.peer else "--no-peer",
    ]  # fmt: skip
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    return subprocess.call(command, cwd=ROOT)


def server_answers(db: str) -> str | None:
    """None if the database server answers, else why not."""
    if db == "sqlite":
        return None
    from bench import databases

    try:
        if db == "postgres":
            databases._postgres("SELECT 1")
        else:
            databases._mysql("SELECT 1")
    except Exception as exc:  # any driver error means: skip this database
        return f"{type(exc).__name__}: {exc}"
    return None


def cell(figure: dict[str, Any] | None, db: str, target: Target | None) -> str:
    if not figure or figure["median"] is None:
        return "-"
    median, p95, unit = figure["median"], figure["p95"], figure["unit"]
    digits = 0 if unit in ("tasks/s",) or median >= 100 else 1
    text = f"{median:.{digits}f}"
    if len(figure["samples"]) > 1:
        text += f" (p95 {p95:.{digits}f})"
    if target is not None and db in target.databases and not target.met(median):
        text += " MISS"
    return text


def print_table(results: dict[str, dict[str, Any]]) -> None:
    dbs = [db for db in DATABASES if db in results]
    headers = ["figure", *dbs, "target"]
    rows = []
    for key, label, target in ROWS:
        figures = [results[db].get(key) for db in dbs]
        if not any(figures):
            continue
        unit = next(f["unit"] for f in figures if f)
        target_text = target.text(unit) if target else ""
        if target and set(target.databases) != set(DATABASES):
            target_text += f" ({', '.join(target.databases)})"
        rows.append(
            [
                f"{label} [{unit}]",
                *(cell(f, db, target) for f, db in zip(figures, dbs, strict=True)),
                target_text,
            ]
        )
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(line)
    print("median (p95 of the runs); MISS: the median misses its target.")
    for db in dbs:
        for key in ("idle_sql", "idle_sql_scheduled"):
            note = (results[db].get(key) or {}).get("note")
            if note:
                print(f"{key} on {db}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default="sqlite,postgres", help="comma-separated: sqlite,postgres,mysql"
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of each latency figure")
    parser.add_argument("--drain-runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=500, help="no-op tasks per drain")
    parser.add_argument("--concurrency", type=int, help="daemon concurrency (default: its own)")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peer-interval", type=float, default=1.0, help="db_worker --interval")
    parser.add_argument("--json", type=Path, help="also write all figures here")
    args = parser.parse_args(argv)

    dbs = [db.strip() for db in args.db.split(",") if db.strip()]
    unknown = set(dbs) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    results: dict[str, dict[str, Any]] = {}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in dbs:
            why = server_answers(db)
            if why:
                print(f"[{db}] skipped: the server does not answer ({why})")
                continue
            out = Path(tmp) / f"{db}.json"
            if run_suite(db, args, out) != 0 or not out.exists():
                failed.append(db)
                continue
            results[db] = json.loads(out.read_text())
    if results:
        print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if failed:
        print(f"benchmark failed on: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

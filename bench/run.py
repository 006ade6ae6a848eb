"""Run the benchmarks on each database and print the figures next to the peer's and the targets.

    python -m bench.run                       # sqlite and postgres (mysql with --db ...)
    python -m bench.run --db sqlite,postgres,mysql --runs 30
    python -m bench.run --db sqlite --runs 5 --tasks 100 --idle-seconds 10   # quick look
    python -m bench.run --db sqlite,postgres --only calls,bulk,statements     # a few groups

Each database runs in its own ``bench.suite`` process (Django's settings are per process);
a database whose server does not answer is reported and skipped. Figures are medians and
p95 of the runs; the peer is Django's own tasks framework with django-tasks-db's
``db_worker`` (measured when django-tasks-db is installed: ``pip install -e '.[bench]'``),
next to djangotasks, in the same run. The table is Markdown: it pastes into an issue.
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

from bench.calls import BULK_OBJECTS
from bench.suite import add_options, pass_on

ROOT = Path(__file__).resolve().parent.parent
DATABASES = ("sqlite", "postgres", "mysql")
TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
PEER = "django-tasks-db"


@dataclass(frozen=True)
class Target:
    """What a figure should be on this kind of machine (2 cores), and/or next to the peer."""

    limit: float | None = None
    higher_is_better: bool = False
    databases: tuple[str, ...] = DATABASES
    peer: bool = False  # at least as good as the peer's figure of the same row

    def met(self, value: float, peer: float | None) -> bool:
        ok = self._better(value, self.limit) if self.limit is not None else True
        if self.peer and peer is not None:
            ok = ok and self._better(value, peer)
        return ok

    def _better(self, value: float, than: float) -> bool:
        return value >= than if self.higher_is_better else value <= than

    def text(self, unit: str) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        parts = [f"{sign} {self.limit:g} {unit}"] if self.limit is not None else []
        if self.peer:
            parts.append(f"{sign} the peer")
        text = ", ".join(parts)
        if set(self.databases) != set(DATABASES):
            text += f" ({', '.join(TITLES[db] for db in self.databases)})"
        return text


@dataclass(frozen=True)
class Row:
    """A row of the table: djangotasks' figure(s), the peer's, the target.

    Two keys make one cell "a / b" (statements / round trips). ``peer_text`` fills the
    peer's column where it has no such figure; ``ratio`` prints "0.5x the peer".
    """

    label: str
    ours: tuple[str, ...]
    peer: tuple[str, ...] = ()
    target: Target | None = None
    peer_text: str = ""
    ratio: bool = False


def _phase_rows() -> list[Row]:
    rows = []
    for phase in ("claim", "start", "output", "finish", "other", "all"):
        label = "all phases" if phase == "all" else phase
        rows.append(
            Row(
                f"daemon SQL per task, {label}: statements / round trips",
                (f"sql_{phase}", f"rt_{phase}"),
                (f"peer_sql_{phase}", f"peer_rt_{phase}"),
            )
        )
    return rows


ROWS: list[Row] = [
    Row("spawn: claim to first line of task code", ("spawn",), target=Target(15),
        peer_text="no process per task"),
    Row("pickup: enqueue to first line, idle daemon", ("pickup",), ("peer_pickup",),
        Target(50, databases=("sqlite", "postgres")), ratio=True),
    Row("pickup via django.tasks `enqueue()`", ("backend_pickup",), ("peer_pickup",), ratio=True),
    Row("`probe.noop.run()` call (peer: `enqueue()`)", ("run_call",), ("peer_enqueue_call",),
        Target(peer=True), ratio=True),
    Row("`probe.noop().run()` call", ("run_long_call",), ("peer_enqueue_call",), ratio=True),
    Row("django.tasks `enqueue()` call", ("backend_enqueue_call",), ("peer_enqueue_call",),
        ratio=True),
    Row("enqueue {tasks} in a loop: `run()` (peer: `enqueue()`)", ("run_loop",),
        ("peer_enqueue_loop",), ratio=True),
    Row("enqueue {tasks} in a loop: django.tasks `enqueue()`", ("backend_enqueue_loop",),
        ("peer_enqueue_loop",), ratio=True),
    Row(f"bulk: `Probe.noop.run_for()` of {BULK_OBJECTS:,} objects", ("bulk",),
        peer_text="no bulk enqueue"),
    Row("bulk: statements / round trips", ("bulk_sql", "bulk_rt"), peer_text="no bulk enqueue"),
    Row("cancel to process group gone", ("cancel",), target=Target(500),
        peer_text="cannot cancel"),
    Row("cancel to status 'cancelled'", ("cancel_status",), peer_text="cannot cancel"),
    Row("print to visible in task.log", ("log",), target=Target(300),
        peer_text="no output capture"),
    Row("drain: {tasks} no-op tasks, excl. boot", ("drain",), ("peer_drain",),
        Target(150, higher_is_better=True, peer=True), ratio=True),
    Row("drain: {tasks} via django.tasks `enqueue()`", ("backend_drain",), ("peer_drain",),
        ratio=True),
    # The peer runs its tasks in its worker: its one figure is all of its CPU.
    Row("drain: CPU per task, daemon / task processes (peer: its worker)",
        ("cpu_daemon", "cpu_children"), ("peer_cpu",)),
    Row("drain: CPU per task, all processes", ("cpu_total",), ("peer_cpu",), ratio=True),
    Row("fork + exit of the daemon's process: CPU parent / child", ("fork_parent", "fork_child"),
        peer_text="no process per task"),
    Row("idle daemon: SQL statements", ("idle_sql",), ("peer_idle_sql",), Target(1)),
    Row("idle daemon with a nightly schedule: SQL statements", ("idle_sql_scheduled",),
        target=Target(1), peer_text="no schedules"),
    Row("idle daemon: CPU", ("idle_cpu",), ("peer_idle_cpu",)),
    Row("daemon RSS, idle", ("rss_idle",), target=Target(60)),
    Row("daemon RSS, after the drain", ("rss_busy",), ("peer_rss",), Target(60)),
    *_phase_rows(),
    Row("daemon: connections opened", ("conn_all",), ("peer_conn_all",)),
    Row("task processes: SQL statements", ("sql_children",),
        peer_text="runs in the worker"),
    Row("server-side transactions, all processes (PostgreSQL)", ("xact",), ("peer_xact",),
        ratio=True),
]  # fmt: skip
# Notes printed under the table: (figure key, what it is).
NOTES = [
    ("idle_sql", "idle statements"),
    ("idle_sql_scheduled", "idle statements with a schedule"),
    ("peer_idle_sql", "the peer's idle statements"),
    ("sql_all", "daemon SQL per task"),
    ("peer_sql_all", "the peer's SQL per task"),
    ("sql_children", "task processes"),
    ("xact", "server-side transactions"),
    ("bulk", "bulk"),
    ("fork_parent", "fork floor"),
]


def run_suite(db: str, args: argparse.Namespace, out: Path) -> int:
    command = [sys.executable, "-m", "bench.suite", "--db", db, "--json", str(out)]
    return subprocess.call(command + pass_on(args), cwd=ROOT)


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


def _number(value: float, unit: str) -> str:
    if unit == "/task":
        return f"{value:.2f}"
    if unit in ("tasks/s", "count") or value >= 100:
        return f"{value:.0f}"
    return f"{value:.{1 if value >= 10 else 2}f}"


def _median(figures: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    figure = figures.get(keys[0]) if keys else None
    return figure["median"] if figure else None


def cell(figures: dict[str, Any], keys: tuple[str, ...], unit: str) -> str:
    """The median (and p95 of several runs), or "a / b" for two figures."""
    found = [figures.get(key) for key in keys]
    if not found or not found[0]:
        return "-"
    if found[0]["median"] is None:
        return "n/a" if found[0].get("note") else "-"
    if len(keys) > 1:
        return " / ".join(_number(f["median"], unit) if f else "-" for f in found)
    figure = found[0]
    text = _number(figure["median"], unit)
    if len(figure["samples"]) > 1:
        text += f" (p95 {_number(figure['p95'], unit)})"
    return text


def table(results: dict[str, dict[str, Any]], tasks: int) -> list[list[str]]:
    dbs = [db for db in DATABASES if db in results]
    header = ["figure"]
    for db in dbs:
        title = str(results[db].get("_server") or TITLES[db]).split(" ")[0]
        header += [f"{title}: {PEER}", f"{title}: djangotasks"]
    rows = [[*header, "target"]]
    for row in ROWS:
        found = [results[db][k] for db in dbs for k in row.ours if results[db].get(k)]
        if not found:
            continue
        unit = found[0]["unit"]
        cells = [f"{row.label.format(tasks=f'{tasks:,}')} [{unit}]"]
        for db in dbs:
            figures = results[db]
            peer = cell(figures, row.peer, unit) if row.peer else row.peer_text or "-"
            ours = cell(figures, row.ours, unit)
            value, peer_value = _median(figures, row.ours), _median(figures, row.peer)
            if row.ratio and value is not None and peer_value:
                ratio = value / peer_value
                ours += f", {ratio:.1f}x" if ratio >= 1 else f", {ratio:.2g}x"
                ours += " the peer"
            target = row.target
            if target and value is not None and db in target.databases:
                if not target.met(value, peer_value):
                    ours += " MISS"
            cells += [peer, ours]
        cells.append(row.target.text(unit) if row.target else "")
        rows.append(cells)
    return rows


def print_table(results: dict[str, dict[str, Any]], tasks: int) -> None:
    rows = table(results, tasks)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print("\n" + line(rows[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print(line(row))
    print(
        "\nmedian (p95 of the runs); 0.5x the peer: djangotasks' median is half the peer's; "
        "MISS: the median misses its target."
    )
    for db in (db for db in DATABASES if db in results):
        print(f"{TITLES[db]}: {results[db].get('_server', '?')}")
        for key, what in NOTES:
            note = (results[db].get(key) or {}).get("note")
            if note:
                print(f"  {what}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default="sqlite,postgres", help="comma-separated: sqlite,postgres,mysql"
    )
    add_options(parser)
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
        print_table(results, args.tasks)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if failed:
        print(f"benchmark failed on: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

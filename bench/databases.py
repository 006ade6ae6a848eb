"""Create and drop the throwaway benchmark database, with the drivers alone (before Django)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

DB_NAME = os.environ.get("BENCH_DB_NAME", "djangotasks_bench")


def create(db: str, bench_dir: Path, name: str = DB_NAME) -> None:
    """An empty database for ``db`` (sqlite, postgres, mysql); an old one is dropped first."""
    if db == "postgres":
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    elif db == "mysql":
        _mysql(
            f"DROP DATABASE IF EXISTS `{name}`",
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    else:
        bench_dir.mkdir(parents=True, exist_ok=True)


def drop(db: str, bench_dir: Path, name: str = DB_NAME) -> None:
    if db == "postgres":
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif db == "mysql":
        _mysql(f"DROP DATABASE IF EXISTS `{name}`")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(bench_dir)


def _postgres(*statements: str) -> None:
    with _postgres_connection() as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def postgres_rows(query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of one query, sent from the server's ``postgres`` database: the bench
    database's own statistics count nothing of it."""
    with _postgres_connection() as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _postgres_connection() -> Any:
    import psycopg

    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    )


def _mysql(*statements: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        passwd=os.environ.get("MYSQL_PASSWORD", ""),
    )
    try:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
    finally:
        conn.close()

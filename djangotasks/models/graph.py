"""A task's dependency tree in three queries, whatever its depth.

One recursive query (``WITH RECURSIVE``: SQLite, PostgreSQL, MySQL 8 and MariaDB all have it)
finds every dependency link below the task, one query loads those tasks, and the tree is
built in Python. Rows edited by hand into a cycle cannot loop: the walk stops at
``MAX_DEPTH``, and a task never appears below itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from djangotasks import routing
from djangotasks.models.task import Task

MAX_DEPTH = 50
MAX_LINKS = 1000
# A shared dependency appears under each task that needs it; this many nodes at most.
MAX_NODES = 2000


@dataclass
class Node:
    task: Task
    children: list[Node] = field(default_factory=list)


def dependency_links(task: Task) -> list[tuple[int, int]]:
    """(dependent, dependency) pairs reachable from ``task``, at most MAX_LINKS of them."""
    connection = routing.connection()
    quote = connection.ops.quote_name
    through = Task.dependencies.through._meta
    table = quote(through.db_table)
    dependent = quote(through.get_field("from_task").column)
    dependency = quote(through.get_field("to_task").column)
    sql = (
        "WITH RECURSIVE reach (dependent, dependency, depth) AS ("
        f" SELECT {dependent}, {dependency}, 1 FROM {table} WHERE {dependent} = %s"
        " UNION"
        f" SELECT link.{dependent}, link.{dependency}, reach.depth + 1"
        f" FROM {table} link JOIN reach ON link.{dependent} = reach.dependency"
        " WHERE reach.depth < %s"
        ") SELECT DISTINCT dependent, dependency FROM reach ORDER BY dependency LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [task.pk, MAX_DEPTH, MAX_LINKS])
        return [(int(a), int(b)) for a, b in cursor.fetchall()]


def dependency_tree(task: Task) -> list[Node]:
    """The tasks ``task`` depends on, each with its own dependencies below it."""
    if task.pk is None:
        return []
    links = dependency_links(task)
    below: dict[int, list[int]] = defaultdict(list)
    for dependent, dependency in links:
        below[dependent].append(dependency)
    tasks = Task.objects.in_bulk({dependency for _dependent, dependency in links})
    budget = [MAX_NODES]

    def grow(pk: int, ancestors: frozenset[int], depth: int) -> list[Node]:
        nodes = []
        for child in below.get(pk, []):
            if child not in tasks or child in ancestors or depth > MAX_DEPTH or budget[0] <= 0:
                continue
            budget[0] -= 1
            nodes.append(Node(tasks[child], grow(child, ancestors | {child}, depth + 1)))
        return nodes

    return grow(task.pk, frozenset({task.pk}), 1)

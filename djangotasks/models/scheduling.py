"""Putting tasks in the queue: ``run()`` of one task, and of many objects at once.

The unique ``live_key`` column decides between concurrent runs: whoever inserts the live row
of a (task, object) first wins, and the others find it and return it. So the common case,
a task that has no live row yet, costs one INSERT and no transaction of its own; a finished
live row is archived first (a compare-and-set), and dependencies are scheduled with their
dependent in one transaction.

``schedule_many`` does the same for many objects in one transaction with a bounded number
of statements (a few per ``CHUNK`` objects and definition, whatever their number): the
admin's "Run <task>" on 5,000 selected objects is one round of reads and bulk inserts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from djangotasks import notify, routing
from djangotasks.exceptions import InvalidTransition
from djangotasks.models.rows import insert_row
from djangotasks.models.task import Task, live_key
from djangotasks.models.transitions import MAX_CAS_ROUNDS, _announce, archive
from djangotasks.registry import TaskDefinition, UnknownTask, registry
from djangotasks.statuses import FINISHED, PENDING, Status

if TYPE_CHECKING:
    from django.db.models import Model

# Live keys per SELECT and rows per INSERT: within every database's parameter limits
# (SQLite's is 32,766 since 3.32; a Task row has 17 columns).
CHUNK = 500

# What schedule_many returns for each object: its live task, and whether this call created it.
Scheduled = tuple[Task, bool]


@routing.deadlock_retried
def schedule(definition: TaskDefinition, target: Model | None, known: Task | None = None) -> Task:
    """Schedule ``definition`` on ``target`` after its dependencies; return the live Task.

    ``known``: the unsaved ``defined`` task the caller holds; it saves reading the live row
    first (the INSERT finds out whether there is one).
    """
    _refuse_arguments(definition)
    if definition.dependencies:
        with routing.atomic():
            task, created = _schedule(definition, target)
            if created:
                notify.wake_workers("run", routing.alias())
        return task
    task, created = _create_or_get_live(definition, target, [], known)
    if created:
        notify.wake_workers("run", routing.alias())
    return task


@routing.deadlock_retried
def schedule_many(definition: TaskDefinition, targets: Iterable[Model | None]) -> list[Scheduled]:
    """Schedule ``definition`` on each of ``targets`` in one transaction.

    Returns, in the order given, each target's live task and whether this call created it
    (False: it was already scheduled or running, or being cancelled, and is left as it is).
    """
    _refuse_arguments(definition)
    with routing.atomic():
        scheduled = _schedule_many(definition, list(targets))
        if any(created for _task, created in scheduled):
            notify.wake_workers("run", routing.alias())
    return scheduled


def announce_scheduled(task: Task) -> None:
    """Tell ``task_status_changed`` listeners about a row created scheduled."""
    _announce(task, Status.DEFINED, Status.SCHEDULED)


@routing.deadlock_retried
def run_again(tasks: Sequence[Task]) -> list[Task]:
    """Run each of ``tasks`` again, as ``task.run()`` does, in one transaction: grouped by
    task, with one query per model for their objects. Returns the live tasks, in order.

    Raises what ``run()`` raises (``UnknownTask``, ``ValueError`` for an object that is
    gone, a Django task refused by its backend) before anything is written.
    """
    from djangotasks.models.targets import load_targets

    load_targets(tasks)
    django_tasks: list[int] = []
    groups: dict[str, list[int]] = {}  # task name -> indexes of its tasks
    for index, task in enumerate(tasks):
        definition = task.definition
        if definition is None:
            raise UnknownTask(task.name)
        if task.is_django_task:
            django_tasks.append(index)
        elif definition.is_method and task.target is None:
            raise ValueError(f"Cannot run task #{task.pk} ({task.name}): its object is gone.")
        else:
            groups.setdefault(task.name, []).append(index)
    live: dict[int, Task] = {}
    with routing.atomic():
        if django_tasks:
            from djangotasks.backend import enqueue_again_many

            again = enqueue_again_many([tasks[index] for index in django_tasks])
            live.update(zip(django_tasks, again, strict=True))
        for name, indexes in groups.items():
            targets = [tasks[index].target for index in indexes]
            scheduled = schedule_many(registry.get(name), targets)
            live.update(zip(indexes, (task for task, _created in scheduled), strict=True))
    return [live[index] for index in range(len(tasks))]


def _refuse_arguments(definition: TaskDefinition) -> None:
    if definition.takes_arguments:
        # Without its arguments it would run as f(): refused rather than failing later.
        raise InvalidTransition(
            f"{definition.name} is a task of Django's tasks framework: it runs with its "
            'arguments, through its .enqueue(...) (or "Run again" on one of its results).'
        )


# -- one task ------------------------------------------------------------------------------


def _schedule(definition: TaskDefinition, target: Model | None) -> Scheduled:
    dependencies = []
    for dependency in definition.dependency_definitions():
        dependency_target = target if dependency.is_method else None
        current = dependency.current(dependency_target)
        if current.status != Status.SUCCESSFUL:
            current, _created = _schedule(dependency, dependency_target)
        dependencies.append(current)
    return _create_or_get_live(definition, target, dependencies)


def _create_or_get_live(
    definition: TaskDefinition,
    target: Model | None,
    dependencies: list[Task],
    known: Task | None = None,
) -> Scheduled:
    for round_ in range(MAX_CAS_ROUNDS):
        if round_ == 0 and known is not None and known.pk is None:
            current = known  # tried first as it is: a conflict sends us to the live row
        else:
            current = definition.current(target)  # the live row, or an unsaved one
        if current.pk is not None:
            if current.status == Status.REQUESTED_CANCEL:
                raise InvalidTransition(
                    f"Task #{current.pk} ({current.label}) is being cancelled; run it again "
                    "once it has stopped."
                )
            if current.status in PENDING:
                return current, False
            if not archive(current):
                continue  # someone else archived or changed it meanwhile: look again
        # The caller's own unsaved task becomes the row (one model instance less to build).
        task = (
            _scheduled(definition, current) if current is known else _new_row(definition, current)
        )
        try:
            _insert(task, dependencies)
        except DatabaseError as exc:
            if task is known:  # the caller's object, as it was
                task.status, task.live_key, task.pk = Status.DEFINED, None, None
            if not isinstance(exc, IntegrityError):
                raise
            continue  # a concurrent run() created the live row first: return that one
        task.set_target(target)
        announce_scheduled(task)
        return task, True
    raise RuntimeError(f"Could not schedule {definition.name}: the live row kept changing")


def _new_row(definition: TaskDefinition, current: Task) -> Task:
    """The scheduled live row that replaces ``current`` (unsaved, or archived just now)."""
    row = Task(
        name=definition.name,
        content_type_id=current.content_type_id,
        object_id=current.object_id,
        live_key=live_key(definition.name, current.object_id),
        status=Status.SCHEDULED,
        priority=definition.priority,
        queue_name=definition.queue,
    )
    if Task.content_type.is_cached(current):
        row.content_type = current.content_type  # no query to read it back
    return row


def _scheduled(definition: TaskDefinition, placeholder: Task) -> Task:
    placeholder.live_key = live_key(definition.name, placeholder.object_id)
    placeholder.status = Status.SCHEDULED
    placeholder.created_at = timezone.now()  # it may have been built long before
    return placeholder


def _insert(task: Task, dependencies: list[Task]) -> None:
    if dependencies or routing.connection().in_atomic_block:
        # A savepoint: a conflicting INSERT must not abort the caller's transaction (on
        # PostgreSQL a failed statement does), and a row comes with its dependencies or not.
        with routing.atomic():
            insert_row(task)
            task.dependencies.set(dependencies)
    else:
        insert_row(task)  # one statement, committed by itself


# -- many objects ----------------------------------------------------------------------------


def _schedule_many(definition: TaskDefinition, targets: Sequence[Model | None]) -> list[Scheduled]:
    wanted: dict[str, Task] = {}  # live key -> placeholder, one per distinct object
    keys = []
    for target in targets:
        placeholder = Task.placeholder(definition, target if definition.is_method else None)
        key = live_key(definition.name, placeholder.object_id)
        wanted.setdefault(key, placeholder)
        keys.append(key)
    found: dict[str, Scheduled] = {}
    finished = []
    for key, row in _live_rows(list(wanted)).items():
        row.set_target(wanted[key].target)
        if row.status in PENDING:
            found[key] = (row, False)  # like run(): left as it is (a cancel is shown as such)
        else:
            finished.append(row)
    if not _archive_all(finished):
        return _one_by_one(definition, targets)  # changed meanwhile: the careful path
    new = {key: placeholder for key, placeholder in wanted.items() if key not in found}
    if new:
        dependencies = _dependencies_many(definition, new)
        rows = [_new_row(definition, placeholder) for placeholder in new.values()]
        try:
            with routing.atomic():
                created = _bulk_insert(rows)
                _link(created, dependencies)
        except IntegrityError:
            return _one_by_one(definition, targets)  # a concurrent run() got there first
        for row in created:
            row.set_target(new[row.live_key or ""].target)
            announce_scheduled(row)
            found[row.live_key or ""] = (row, True)
    return [found[key] for key in keys]


def _one_by_one(definition: TaskDefinition, targets: Sequence[Model | None]) -> list[Scheduled]:
    done: dict[str, Scheduled] = {}
    result = []
    for target in targets:
        object_id = str(target.pk) if definition.is_method and target is not None else ""
        key = live_key(definition.name, object_id)
        if key not in done:
            done[key] = _schedule(definition, target if definition.is_method else None)
        result.append(done[key])
    return result


def _live_rows(keys: list[str]) -> dict[str, Task]:
    rows: dict[str, Task] = {}
    for start in range(0, len(keys), CHUNK):
        for row in Task.objects.filter(live_key__in=keys[start : start + CHUNK]):
            rows[row.live_key or ""] = row
    return rows


def _archive_all(rows: list[Task]) -> bool:
    """Archive finished live rows; False if any changed meanwhile (nothing is then lost:
    the careful path reads them again)."""
    by_status: dict[str, list[int]] = {}
    for row in rows:
        by_status.setdefault(row.status, []).append(row.pk)
    for status, pks in by_status.items():
        if status not in FINISHED:
            return False  # an unknown status (edited by hand): let run() explain
        for start in range(0, len(pks), CHUNK):
            chunk = pks[start : start + CHUNK]
            changed = Task.objects.filter(
                pk__in=chunk, status=status, live_key__isnull=False
            ).update(live_key=None, archived=True)
            if changed != len(chunk):
                return False
    for row in rows:
        row.live_key, row.archived = None, True
    return True


def _dependencies_many(definition: TaskDefinition, new: dict[str, Task]) -> dict[str, list[Task]]:
    """For each new row (by live key), the tasks it waits on: each dependency's live task if
    it succeeded, else scheduled now, as ``run()`` does for one object."""
    waits: dict[str, list[Task]] = {key: [] for key in new}
    for dependency in definition.dependency_definitions():
        targets = [p.target if dependency.is_method else None for p in new.values()]
        dependency_keys = [
            live_key(dependency.name, str(t.pk) if t is not None else "") for t in targets
        ]
        live = _live_rows(sorted(set(dependency_keys)))
        done = {k: row for k, row in live.items() if row.status == Status.SUCCESSFUL}
        rest = [t for t, k in zip(targets, dependency_keys, strict=True) if k not in done]
        for task, _created in _schedule_many(dependency, rest):
            done[task.live_key or ""] = task
        for key, dependency_key in zip(new, dependency_keys, strict=True):
            waits[key].append(done[dependency_key])
    return waits


def _bulk_insert(rows: list[Task]) -> list[Task]:
    created = Task.objects.bulk_create(rows, batch_size=CHUNK)
    if all(row.pk is not None for row in created):
        return created
    # MySQL returns no ids from a bulk INSERT: read them back by their live keys.
    live = _live_rows([row.live_key or "" for row in rows])
    return [live[row.live_key or ""] for row in rows]


def _link(rows: list[Task], dependencies: dict[str, list[Task]]) -> None:
    through = Task.dependencies.through
    links = [
        through(from_task_id=row.pk, to_task_id=dependency.pk)
        for row in rows
        for dependency in dependencies.get(row.live_key or "", [])
    ]
    if links:
        through.objects.bulk_create(links, batch_size=CHUNK)

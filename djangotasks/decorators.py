"""The ``@task`` decorator for parameterless model methods and module-level functions.

Calling a decorated method or function never runs it: it returns the current ``Task``
(``obj.import_rows()``), which ``.run()`` schedules.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models.signals import class_prepared

from djangotasks import routing
from djangotasks.registry import ScheduleSpec, TaskDefinition, registry
from djangotasks.ticks import InvalidSchedule, Ticks

if TYPE_CHECKING:
    from django.db.models import Model

    from djangotasks.models import Task

OPTIONS = ("label", "timeout", "memory_limit", "priority", "retries", "retry_delay", "queue")
# A schedule and the options that go with it (function tasks only).
SCHEDULE_OPTIONS = ("schedule", "time_zone", "missed", "missed_within", "overlap")


def task(*args: Any, **options: Any) -> Any:
    """Register a task. Use as ``@task``, ``@task(dep, ...)`` or ``@task(dep, label=...)``.

    Dependencies are other @task methods of the same model (or their names as strings, for
    forward references) and @task functions.
    """
    unknown = sorted(set(options) - set(OPTIONS) - set(SCHEDULE_OPTIONS))
    if unknown:
        known = OPTIONS + SCHEDULE_OPTIONS
        raise TypeError(f"@task got unknown option(s) {', '.join(unknown)}; known: {known}")
    check_options(options)
    options = _with_schedule(options)
    if len(args) == 1 and inspect.isfunction(args[0]) and not options:
        return _make(args[0], (), {})
    for dependency in args:
        if not isinstance(dependency, TaskMethod | TaskFunction | str):
            raise TypeError(
                f"@task dependencies must be @task methods, @task functions or method names, "
                f"not {dependency!r}. Did you forget @task on it?"
            )

    def decorator(func: Callable[..., Any]) -> TaskMethod | TaskFunction:
        return _make(func, args, options)

    return decorator


def check_options(options: dict[str, Any]) -> None:
    queue = options.get("queue")
    if queue is not None and (not isinstance(queue, str) or not 0 < len(queue) <= 100):
        raise TypeError(f"@task(queue=...) must be a name of 1 to 100 characters, not {queue!r}")
    for name in ("timeout", "retry_delay"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"@task({name}=...) must be a number of seconds, not {value!r}")
        if value is not None and value <= 0:
            raise TypeError(f"@task({name}=...) must be positive, not {value!r}")
    for name in ("retries", "priority", "memory_limit"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"@task({name}=...) must be an integer, not {value!r}")
    if options.get("retries", 0) < 0:
        raise TypeError("@task(retries=...) cannot be negative")


def _with_schedule(options: dict[str, Any]) -> dict[str, Any]:
    """The options with the schedule's gathered into one ``ScheduleSpec`` (checked)."""
    given = {name: options[name] for name in SCHEDULE_OPTIONS if name in options}
    options = {name: value for name, value in options.items() if name not in given}
    if not given:
        return options
    when = given.pop("schedule", None)
    if when is None:
        raise TypeError(f"@task({', '.join(given)}=...) goes with schedule=...")
    if isinstance(when, str):
        spec = ScheduleSpec(cron=when, **given)
    elif isinstance(when, timedelta):
        spec = ScheduleSpec(interval=when, **given)
    else:
        raise TypeError(f"@task(schedule=...) is a cron expression or a timedelta, not {when!r}")
    try:
        ticks = Ticks(spec.cron, spec.interval, spec.time_zone or "UTC")
    except InvalidSchedule as exc:
        raise TypeError(f"@task(schedule=...): {exc}") from None
    spec = replace(spec, cron=ticks.cron)  # as written once: "0  3 * * *" is "0 3 * * *"
    if spec.missed not in ("latest", "none", "each"):
        raise TypeError(f"@task(missed=...) is 'latest', 'none' or 'each', not {spec.missed!r}")
    if spec.overlap not in ("skip", "queue"):
        raise TypeError(f"@task(overlap=...) is 'skip' or 'queue', not {spec.overlap!r}")
    if not isinstance(spec.missed_within, timedelta) or spec.missed_within <= timedelta(0):
        raise TypeError(
            f"@task(missed_within=...) is a positive timedelta, not {spec.missed_within!r}"
        )
    options["schedule"] = spec
    return options


def _make(
    func: Callable[..., Any], dependencies: tuple[Any, ...], options: dict[str, Any]
) -> TaskMethod | TaskFunction:
    if not inspect.isfunction(func):
        raise TypeError(f"@task decorates functions and methods, not {func!r}")
    qualname = func.__qualname__
    parameters = list(inspect.signature(func).parameters.values())
    # "Model.method" is a method; "outer.<locals>.f" is a function nested in a function.
    is_method = "." in qualname and not qualname.rsplit(".", 1)[0].endswith("<locals>")
    if is_method and "schedule" in options:
        raise TypeError(
            f"@task method {qualname} cannot have a schedule: a scheduled run has no object "
            f"to run it on. Schedule a @task function (which may run methods of objects)."
        )
    if is_method:
        if len(parameters) != 1 or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(
                f"@task method {qualname} must take no parameters besides self; a task runs "
                f"later in another process, so store its inputs on the model instead."
            )
        return TaskMethod(func, dependencies, options)
    if parameters:
        raise TypeError(
            f"@task function {qualname} must take no parameters; a task runs later in "
            f"another process. For tasks with arguments use Django's tasks framework with "
            f"the djangotasks backend."
        )
    if "." in qualname:
        raise TypeError(f"@task {qualname}: tasks must be defined at module or class level")
    return TaskFunction(func, dependencies, options)


def _default_label(func: Callable[..., Any]) -> str:
    return func.__name__.replace("_", " ").strip().capitalize()


def _definition_kwargs(func: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(options)
    kwargs["label"] = str(options.get("label") or _default_label(func))
    return kwargs


class TaskFunction:
    """A registered module-level function. ``f()`` returns its current Task."""

    definition: TaskDefinition

    def __init__(
        self, func: Callable[[], Any], dependencies: tuple[Any, ...], options: dict[str, Any]
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        names = []
        for dependency in dependencies:
            if not isinstance(dependency, TaskFunction):
                raise TypeError(
                    f"@task function {func.__qualname__} can only depend on other @task "
                    f"functions, not {dependency!r}: it has no object to run methods on."
                )
            names.append(dependency.definition.name)
        self.definition = TaskDefinition(
            name=f"{func.__module__}.{func.__qualname__}",
            func=func,
            dependencies=tuple(names),
            **_definition_kwargs(func, options),
        )
        registry.register(self.definition)

    def __call__(self) -> Task:
        return self.definition.current(None)

    def run(self) -> Task:
        """Shortcut for ``f().run()``, without reading the live task first."""
        from djangotasks.models import Task

        return Task.placeholder(self.definition, None).run()

    def __repr__(self) -> str:
        return f"<@task {self.definition.name}>"


class TaskMethod:
    """A @task model method. ``obj.method()`` returns the current Task of ``obj``.

    Registration happens when the model class is prepared (``class_prepared``), once for
    every concrete model that has the method, including subclasses of abstract models.
    """

    def __init__(
        self, func: Callable[[Any], Any], dependencies: tuple[Any, ...], options: dict[str, Any]
    ) -> None:
        functools.update_wrapper(self, func)  # type: ignore[arg-type]  # a descriptor
        self.func = func
        self.dependencies = dependencies
        self.options = options
        self.attname = func.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        # Django models take the contribute_to_class() path instead, so reaching this means
        # the class is not a model: there would be no object to store the task against.
        raise TypeError(f"@task method {owner.__qualname__}.{name} must be on a Django model")

    def contribute_to_class(self, cls: type[Model], name: str) -> None:
        self.attname = name
        setattr(cls, name, self)

    def __get__(self, instance: Model | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundTaskMethod(self, instance)

    def definition_for(self, model: type[Model]) -> TaskDefinition:
        return registry.get(f"{model._meta.label}.{self.attname}")

    @routing.deadlock_retried
    def run_for(self, objects: Iterable[Model]) -> list[Task]:
        """Run this task on each of ``objects`` in one transaction, with a bounded number of
        statements: ``Article.import_rows.run_for(queryset)``.

        Returns each object's live task in the order given: new, or the one that was
        already scheduled or running (left as it is, as ``run()`` does).
        """
        from djangotasks.models.scheduling import schedule_many

        objects = list(objects)
        by_model: dict[type[Model], list[Model]] = {}
        for obj in objects:
            by_model.setdefault(type(obj), []).append(obj)
        live: dict[tuple[type[Model], object], Task] = {}
        with routing.atomic():
            for model, group in by_model.items():
                for obj, (task, _created) in zip(
                    group, schedule_many(self.definition_for(model), group), strict=True
                ):
                    live[model, obj.pk] = task
        return [live[type(obj), obj.pk] for obj in objects]

    def __repr__(self) -> str:
        return f"<@task method {self.func.__qualname__}>"


class BoundTaskMethod:
    """``obj.import_rows``: call it to get the current Task of ``obj``."""

    def __init__(self, method: TaskMethod, instance: Model) -> None:
        self.method = method
        self.instance = instance
        functools.update_wrapper(self, method.func)

    @property
    def definition(self) -> TaskDefinition:
        return self.method.definition_for(type(self.instance))

    def __call__(self) -> Task:
        return self.definition.current(self.instance)

    def run(self) -> Task:
        """Shortcut for ``obj.method().run()``, without reading the live task first."""
        from djangotasks.models import Task

        return Task.placeholder(self.definition, self.instance).run()


def _dependency_name(model: type[Model], method: TaskMethod, dependency: Any) -> str:
    if isinstance(dependency, TaskFunction):
        return dependency.definition.name
    attname = dependency.attname if isinstance(dependency, TaskMethod) else dependency
    candidate = getattr(model, attname, None)
    if not isinstance(candidate, TaskMethod) or (
        isinstance(dependency, TaskMethod) and candidate is not dependency
    ):
        raise TypeError(
            f"@task {model.__name__}.{method.attname} depends on {dependency!r}, which is not "
            f"a @task method of {model.__name__}"
        )
    return f"{model._meta.label}.{attname}"


def register_model_tasks(sender: type[Model], **kwargs: Any) -> None:
    if sender._meta.abstract:
        return
    methods = {}
    for klass in reversed(sender.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, TaskMethod):
                methods[name] = value
            elif name in methods:
                del methods[name]  # overridden by something that is not a task
    for method in methods.values():
        registry.register(
            TaskDefinition(
                name=f"{sender._meta.label}.{method.attname}",
                func=method.func,
                model=sender,
                attname=method.attname,
                dependencies=tuple(
                    _dependency_name(sender, method, d) for d in method.dependencies
                ),
                **_definition_kwargs(method.func, method.options),
            )
        )


class_prepared.connect(register_model_tasks, dispatch_uid="djangotasks.register_model_tasks")

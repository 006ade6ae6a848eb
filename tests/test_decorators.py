"""``@task`` rejects what cannot work at definition (import) time, with a clear TypeError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import models
from django.test.utils import isolate_apps

from djangotasks import task
from djangotasks.registry import ScheduleSpec, UnknownTask, registry
from tests.tasks import nightly_cleanup


def nightly() -> None:  # pragma: no cover - decorated in the tests, never run
    pass


def test_a_function_with_parameters_is_rejected():
    with pytest.raises(TypeError, match="must take no parameters"):

        @task
        def with_argument(path):  # pragma: no cover - never registered
            pass


def test_a_method_with_parameters_is_rejected_when_the_class_is_defined():
    with pytest.raises(TypeError, match="no parameters besides self"):

        class Model:
            @task
            def import_rows(self, path):  # pragma: no cover - never registered
                pass


def test_a_nested_function_is_rejected():
    with pytest.raises(TypeError, match="module or class level"):

        @task
        def nested():  # pragma: no cover
            pass


def test_unknown_options_and_bad_values_are_rejected():
    with pytest.raises(TypeError, match="unknown option"):
        task(lable="typo")
    with pytest.raises(TypeError, match="timeout"):
        task(timeout="10")
    with pytest.raises(TypeError, match="retries"):
        task(retries=-1)
    with pytest.raises(TypeError, match="must be @task methods"):
        task(print)


def test_a_method_task_on_a_class_that_is_not_a_model_is_rejected():
    with pytest.raises((TypeError, RuntimeError), match="must be on a Django model"):

        class NotAModel:
            @task
            def run_me(self):  # pragma: no cover
                pass


@isolate_apps("tests")
def test_dependency_cycles_are_rejected_at_definition():
    with pytest.raises(TypeError, match=r"cycle: tests\.Cyclic\.(a|b) -> .* -> tests\.Cyclic"):

        class Cyclic(models.Model):
            @task("b")
            def a(self):  # pragma: no cover
                pass

            @task(a)
            def b(self):  # pragma: no cover
                pass

    assert "tests.Cyclic.b" not in registry


@isolate_apps("tests")
def test_a_dependency_must_be_a_task_of_the_same_model():
    with pytest.raises(TypeError, match="not a @task method"):

        class Dangling(models.Model):
            @task("missing")
            def a(self):  # pragma: no cover
                pass


@isolate_apps("tests")
def test_tasks_of_abstract_models_register_on_each_concrete_subclass():
    class Base(models.Model):
        class Meta:
            abstract = True

        @task(label="Index it")
        def index(self):  # pragma: no cover
            pass

        @task(index, nightly_cleanup)
        def publish(self):  # pragma: no cover
            pass

    class Book(Base):
        pass

    class Film(Base):
        pass

    assert registry.get("tests.Book.index").label == "Index it"
    assert registry.get("tests.Film.index").model is Film
    assert registry.get("tests.Book.publish").dependencies == (
        "tests.Book.index",
        nightly_cleanup.definition.name,
    )
    assert [d.attname for d in registry.for_model(Book)] == ["index", "publish"]


def test_unknown_names_are_a_clear_error():
    with pytest.raises(UnknownTask, match="No @task is registered as 'nope'"):
        registry.get("nope")


def test_labels_default_to_the_name():
    assert registry.get("tests.Job.step_one").label == "Step one"
    assert registry.get("tests.Job.hello").label == "Say hello"


@isolate_apps("tests")
def test_a_schedule_on_a_model_method_is_rejected_when_the_class_is_defined():
    with pytest.raises(TypeError, match="cannot have a schedule: a scheduled run has no object"):

        class Digest(models.Model):
            @task(schedule="0 3 * * *")
            def send(self):  # pragma: no cover
                pass

    assert "tests.Digest.send" not in registry


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"schedule": "0 3 * *"},
            r"@task\(schedule=...\): '0 3 \* \*' is not a cron expression: "
            r"it needs 5 fields",
        ),
        ({"schedule": "0 25 * * *"}, "is not a valid cron expression: Bad hour"),
        ({"schedule": timedelta(0)}, "An interval is a whole number of seconds, at least one"),
        ({"schedule": 3600}, r"is a cron expression or a timedelta, not 3600"),
        (
            {"schedule": "0 3 * * *", "time_zone": "Europe/Pariss"},
            "'Europe/Pariss' is not a known time zone",
        ),
        ({"schedule": "0 3 * * *", "missed": "all"}, "'latest', 'none' or 'each', not 'all'"),
        ({"schedule": "0 3 * * *", "overlap": "allow"}, "'skip' or 'queue', not 'allow'"),
        ({"schedule": "0 3 * * *", "missed_within": 3600}, "positive timedelta, not 3600"),
        ({"schedule": "0 3 * * *", "missed_within": timedelta(0)}, "positive timedelta"),
        ({"time_zone": "Europe/Paris"}, r"@task\(time_zone=...\) goes with schedule=..."),
        ({"missed": "none", "overlap": "queue"}, r"@task\(missed, overlap=...\) goes with"),
        ({"schedule": None, "missed": "none"}, r"@task\(missed=...\) goes with schedule"),
        ({"schedule": "0 3 * * *", "every": 2}, "unknown option"),
    ],
)
def test_bad_schedules_are_rejected_at_definition(options, message):
    with pytest.raises(TypeError, match=message):
        task(**options)


def test_a_schedule_is_part_of_the_definition(scratch_registry):
    options = {"time_zone": "Europe/Paris", "missed": "each", "overlap": "queue"}
    decorated = task(
        schedule="0 3 * * *", missed_within=timedelta(hours=6), label="Nightly", **options
    )(nightly)
    assert decorated.definition.label == "Nightly"
    assert decorated.definition.schedule == ScheduleSpec(
        cron="0 3 * * *",
        time_zone="Europe/Paris",
        missed="each",
        missed_within=timedelta(hours=6),
        overlap="queue",
    )
    assert registry.get("tests.test_decorators.nightly").schedule is not None


def test_an_interval_schedule_has_the_defaults(scratch_registry):
    decorated = task(schedule=timedelta(minutes=15))(nightly)
    assert decorated.definition.schedule == ScheduleSpec(interval=timedelta(minutes=15))
    spec = decorated.definition.schedule
    assert (spec.cron, spec.time_zone, spec.missed, spec.overlap) == ("", None, "latest", "skip")
    assert spec.missed_within == timedelta(hours=1)
    assert task(nightly).definition.schedule is None

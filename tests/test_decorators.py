"""``@task`` rejects what cannot work at definition (import) time, with a clear TypeError."""

from __future__ import annotations

import pytest
from django.db import models
from django.test.utils import isolate_apps

from djangotasks import task
from djangotasks.registry import UnknownTask, registry
from tests.tasks import nightly_cleanup


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

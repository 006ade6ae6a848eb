"""``Project``: an object whose tasks a restricted staff user sees only when it owns it.

``ProjectAdmin.get_queryset`` (admin.py) keeps a non-superuser's own projects, so the task
admin filters tasks with a subquery over it. ``step_01`` … ``step_10`` are a chain of ten
dependent tasks: the task page of ``step_10`` draws a dependency tree nine levels deep.
Nothing here ever runs (the benchmark starts no daemon); the bodies are placeholders.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from djangotasks import task


class Project(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    title = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.title

    @task(label="Say hello")
    def hello(self) -> None:
        print(f"hello from {self.title}")

    @task
    def fail(self) -> None:
        raise ValueError(f"bad row in {self.title}")

    @task
    def sleep(self) -> None:
        print(f"sleeping on {self.title}")

    @task
    def step_01(self) -> None:
        pass

    @task("step_01")
    def step_02(self) -> None:
        pass

    @task("step_02")
    def step_03(self) -> None:
        pass

    @task("step_03")
    def step_04(self) -> None:
        pass

    @task("step_04")
    def step_05(self) -> None:
        pass

    @task("step_05")
    def step_06(self) -> None:
        pass

    @task("step_06")
    def step_07(self) -> None:
        pass

    @task("step_07")
    def step_08(self) -> None:
        pass

    @task("step_08")
    def step_09(self) -> None:
        pass

    @task("step_09")
    def step_10(self) -> None:
        pass

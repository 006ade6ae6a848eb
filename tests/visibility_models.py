"""Fixture models for the admin's visibility rule (tests/test_admin_visibility.py).

Each hides objects the way Django projects do: ``Document`` by owner in its ModelAdmin's
``get_queryset``, ``Report`` per object in ``has_view_permission`` and
``has_change_permission`` (tests/admin.py). ``Keyed`` and ``Tagged`` have character and
UUID primary keys, which a new object can reuse after the old one was deleted.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.db import models

from djangotasks import task

__all__ = ["Document", "Keyed", "Report", "Tagged"]


class Document(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, null=True, blank=True, related_name="+"
    )
    title = models.CharField(max_length=100)
    seconds = models.FloatField(default=0)

    def __str__(self) -> str:
        return self.title

    @task(label="Render")
    def render(self) -> None:
        print(f"rendering {self.title}")
        time.sleep(self.seconds)
        print(f"rendered {self.title}")


class Report(models.Model):
    title = models.CharField(max_length=100)
    secret = models.BooleanField(default=False)  # only superusers see it
    locked = models.BooleanField(default=False)  # seen, but not changed, by staff
    seconds = models.FloatField(default=0)

    def __str__(self) -> str:
        return self.title

    @task(label="Build")
    def build(self) -> None:
        print(f"building {self.title}")
        time.sleep(self.seconds)
        print(f"built {self.title}")


class Keyed(models.Model):
    key = models.CharField(primary_key=True, max_length=40)

    def __str__(self) -> str:
        return self.key

    @task
    def hello(self) -> None:
        print(f"hello from {self.key}")


class Tagged(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)

    def __str__(self) -> str:
        return str(self.id)

    @task
    def hello(self) -> None:
        print(f"hello from {self.id}")

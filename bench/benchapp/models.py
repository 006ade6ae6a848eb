"""Bench tasks. Each one records ``time.time()`` as its first line, so a figure can be taken
from timestamps rather than from how often the benchmark polls."""

from __future__ import annotations

import time

from django.db import models

from djangotasks import task

# The first line a timestamped task prints: "t0=<time.time()>".
T0_PREFIX = "t0="


class Probe(models.Model):
    """An object to hang bench tasks on (one live task per object and task)."""

    count = models.IntegerField(default=0)
    interval = models.FloatField(default=0.05)

    def __str__(self) -> str:
        return f"probe {self.pk}"

    @task
    def first_line(self) -> None:
        print(f"{T0_PREFIX}{time.time():.6f}")

    @task
    def noop(self) -> None:
        pass

    @task
    def sleeper(self) -> None:
        print(f"{T0_PREFIX}{time.time():.6f}")
        time.sleep(600)

    @task
    def ticker(self) -> None:
        """Print ``count`` timestamps, one every ``interval`` seconds."""
        for _ in range(self.count):
            print(f"{time.time():.6f}")
            time.sleep(self.interval)

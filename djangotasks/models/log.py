"""Task output, stored as append-only chunks so a long log costs linear writes."""

from __future__ import annotations

from django.db import models


class TaskLogChunk(models.Model):
    """A piece of a task's output: characters ``offset`` to ``end`` of its log."""

    task = models.ForeignKey("djangotasks.Task", models.CASCADE, related_name="log_chunks")
    offset = models.BigIntegerField()
    # Stored (not derived) so "what came after N" is one indexed range query.
    end = models.BigIntegerField()
    text = models.TextField()

    class Meta:
        verbose_name = "task log chunk"
        constraints = [
            models.UniqueConstraint(fields=["task", "offset"], name="djangotasks_chunk_offset")
        ]
        indexes = [models.Index(fields=["task", "end"], name="djangotasks_chunk_end")]

    def __str__(self) -> str:
        return f"task #{self.task_id} log [{self.offset}:{self.end}]"

"""Batches captured output into append-only ``TaskLogChunk`` rows.

Output is buffered in memory and written every ``LOG_FLUSH_INTERVAL`` as one INSERT for all
tasks together. If the database is away, nothing is dropped: the buffer waits for the next
successful flush. A log longer than ``MAX_LOG_SIZE`` keeps its start (written live) and its
end (held back in memory, written when the task ends) with a line that says what was cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from django.db import transaction

from djangotasks.models import Task, TaskLogChunk

# PostgreSQL text cannot hold NUL; MySQL packets have a size limit. One chunk stays small.
MAX_CHUNK = 256 * 1024
NUL = "\x00"


@dataclass
class _TaskLog:
    offset: int  # characters already stored
    limit: int
    pending: list[str] = field(default_factory=list)
    pending_size: int = 0
    tail: deque[str] = field(default_factory=deque)
    tail_size: int = 0
    cut: int = 0  # characters dropped from the middle

    @property
    def head_full(self) -> bool:
        return self.offset + self.pending_size >= self.limit // 2


class LogWriter:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._logs: dict[int, _TaskLog] = {}

    def open(self, task: Task) -> None:
        self._logs[task.pk] = _TaskLog(offset=task.log_size, limit=self.max_size)

    def append(self, task_id: int, text: str) -> None:
        if not text:
            return
        log = self._logs[task_id]
        text = text.replace(NUL, "\ufffd")
        if not log.head_full:
            room = log.limit // 2 - log.offset - log.pending_size
            log.pending.append(text[:room])
            log.pending_size += len(text[:room])
            text = text[room:]
            if not text:
                return
        # Past the head: keep only the last half of the limit in memory.
        log.tail.append(text)
        log.tail_size += len(text)
        while log.tail_size - len(log.tail[0]) >= log.limit // 2:
            dropped = log.tail.popleft()
            log.tail_size -= len(dropped)
            log.cut += len(dropped)

    def has_pending(self) -> bool:
        return any(log.pending_size for log in self._logs.values())

    def flush(self, task_ids: list[int] | None = None) -> None:
        """Write pending output (of ``task_ids``, or all) in one transaction; keep it on error."""
        chunks: list[TaskLogChunk] = []
        sizes: dict[int, int] = {}
        for task_id, log in self._logs.items():
            if (task_ids is not None and task_id not in task_ids) or not log.pending_size:
                continue
            text = "".join(log.pending)
            offset = log.offset
            for start in range(0, len(text), MAX_CHUNK):
                piece = text[start : start + MAX_CHUNK]
                chunks.append(
                    TaskLogChunk(
                        task_id=task_id, offset=offset, end=offset + len(piece), text=piece
                    )
                )
                offset += len(piece)
            sizes[task_id] = offset
        if not chunks:
            return
        with transaction.atomic():
            TaskLogChunk.objects.bulk_create(chunks)
        for task_id, size in sizes.items():
            log = self._logs[task_id]
            log.offset = size
            log.pending.clear()
            log.pending_size = 0

    def close(self, task_id: int) -> int:
        """Write everything left of a finished task, the kept end included; return its size."""
        log = self._logs[task_id]
        if log.tail:
            tail = "".join(log.tail)
            kept = len(tail) - max(0, log.tail_size - log.limit // 2)
            log.cut += len(tail) - kept
            tail = tail[len(tail) - kept :]
            notice = (
                f"\n[djangotasks: {log.cut:,} characters cut here; the log is limited to "
                f"{log.limit:,} (MAX_LOG_SIZE). Its start and end are kept.]\n"
            )
            log.pending.extend([notice, tail])
            log.pending_size += len(notice) + len(tail)
            log.tail.clear()
            log.tail_size = 0
        self.flush([task_id])
        del self._logs[task_id]
        return log.offset

    def discard(self, task_id: int) -> None:
        self._logs.pop(task_id, None)

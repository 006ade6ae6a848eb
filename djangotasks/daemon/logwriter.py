"""Batches captured output into append-only ``TaskLogChunk`` rows.

Output is buffered in memory and written every ``LOG_FLUSH_INTERVAL`` as one INSERT for all
tasks together. If the database is away, nothing is dropped: the buffer waits for the next
successful flush. A log longer than ``MAX_LOG_SIZE`` keeps its start (written live) and its
end (held back in memory, written when the task ends) with a line that says what was cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from djangotasks.models import Task, TaskLogChunk

# PostgreSQL text cannot hold NUL; MySQL packets have a size limit (max_allowed_packet,
# 16 MB by default on MariaDB): one chunk stays small, and so does one INSERT.
MAX_CHUNK = 256 * 1024
MAX_INSERT = 4 * 1024 * 1024
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
        # Tasks whose rows were deleted while they ran: their output has nowhere to go.
        self.orphaned: set[int] = set()

    def open(self, task: Task) -> None:
        self._logs[task.pk] = _TaskLog(offset=task.log_size, limit=self.max_size)

    def append(self, task_id: int, text: str) -> None:
        if not text or task_id in self.orphaned:
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
        try:
            with transaction.atomic():
                for batch in _batches(chunks):
                    TaskLogChunk.objects.bulk_create(batch)
        except IntegrityError:
            # A task row was deleted: drop its output, keep everyone else's and retry.
            existing = set(Task.objects.filter(pk__in=sizes).values_list("pk", flat=True))
            missing = set(sizes) - existing
            if not missing:
                raise
            for task_id in missing:
                self.orphaned.add(task_id)
                self._logs[task_id].pending.clear()
                self._logs[task_id].pending_size = 0
            self.flush(task_ids)
            return
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


def _batches(chunks: list[TaskLogChunk]) -> list[list[TaskLogChunk]]:
    batches: list[list[TaskLogChunk]] = [[]]
    size = 0
    for chunk in chunks:
        if batches[-1] and size + len(chunk.text) > MAX_INSERT:
            batches.append([])
            size = 0
        batches[-1].append(chunk)
        size += len(chunk.text)
    return batches

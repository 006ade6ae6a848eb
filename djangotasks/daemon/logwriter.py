"""Batches captured output into append-only ``TaskLogChunk`` rows.

Output is buffered in memory and written every ``LOG_FLUSH_INTERVAL`` as one INSERT for all
tasks together. If the database is away, nothing is dropped: the buffer waits for the next
successful flush. If the database refuses one task's output (a value it cannot store, a
packet it will not take), that task's output is replaced by a note saying so and every
other task's output is stored as usual: nothing one task prints can block the others.

A log longer than ``MAX_LOG_SIZE`` keeps its start (written live) and its end (held back in
memory, written when the task ends) with a line that says how much was cut from the middle.
A log within the cap is stored exactly as printed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from djangotasks import dberrors, routing
from djangotasks.logfields import fields
from djangotasks.models import Task, TaskLogChunk
from djangotasks.untrusted import NUL, REPLACEMENT, clean_text

logger = logging.getLogger("djangotasks")

# One chunk row holds at most this much; a live view fetches whole chunks.
MAX_CHUNK_CHARS = 256 * 1024
MAX_CHUNK_BYTES = 1024 * 1024
# One INSERT carries at most this many bytes of text. On MySQL/MariaDB also at most half of
# the server's max_allowed_packet (read from the server, never assumed): mysqlclient
# escapes text into the statement, which can double it (every newline becomes "\n").
MAX_INSERT_BYTES = 4 * 1024 * 1024
ROW_OVERHEAD_BYTES = 64
PACKET_MARGIN_BYTES = 64 * 1024


@dataclass
class _TaskLog:
    offset: int  # characters already stored
    head_room: int  # characters that may still be written live
    tail_window: int  # characters of the end kept in memory once the head is full
    pending: list[str] = field(default_factory=list)
    pending_size: int = 0
    tail: deque[str] = field(default_factory=deque)
    tail_size: int = 0
    cut: int = 0  # characters dropped from the middle
    head_ends_line: bool = True  # of what went to the head, whether it ended a line
    stored_ends_line: bool = True  # of what was stored, the same


class LogWriter:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._logs: dict[int, _TaskLog] = {}
        # Tasks whose rows were deleted while they ran: their output has nowhere to go.
        self.orphaned: set[int] = set()
        self._packet_connection: object = None
        self._packet_bytes = 0

    def open(self, task: Task) -> None:
        head = self.max_size // 2
        self._logs[task.pk] = _TaskLog(
            offset=task.log_size,
            head_room=max(0, head - task.log_size),
            tail_window=self.max_size - head,
        )

    def append(self, task_id: int, text: str) -> None:
        if not text or task_id in self.orphaned or task_id not in self._logs:
            return
        log = self._logs[task_id]
        if NUL in text:
            text = text.replace(NUL, REPLACEMENT)  # PostgreSQL text cannot hold NUL
        if log.head_room:
            piece = text[: log.head_room]
            log.pending.append(piece)
            log.pending_size += len(piece)
            log.head_room -= len(piece)
            log.head_ends_line = piece.endswith("\n")
            text = text[len(piece) :]
            if not text:
                return
        # Past the head: keep only the last tail_window characters in memory.
        log.tail.append(text)
        log.tail_size += len(text)
        while log.tail_size - len(log.tail[0]) >= log.tail_window:
            dropped = log.tail.popleft()
            log.tail_size -= len(dropped)
            log.cut += len(dropped)

    def note(self, task_id: int, text: str) -> None:
        """Add a line of the daemon's own to a task's log: ``[djangotasks: text]``."""
        log = self._logs.get(task_id)
        if log is None:
            return
        ends_line = log.tail[-1].endswith("\n") if log.tail else log.head_ends_line
        self.append(task_id, ("" if ends_line else "\n") + f"[djangotasks: {text}]\n")

    def has_pending(self) -> bool:
        return any(log.pending_size for log in self._logs.values())

    def flush(self, task_ids: list[int] | None = None) -> None:
        """Write pending output (of ``task_ids``, or all); keep it while the database is out."""
        wanted = {
            task_id: log
            for task_id, log in self._logs.items()
            if log.pending_size and (task_ids is None or task_id in task_ids)
        }
        if not wanted:
            return
        limit = self._insert_bytes()
        rows = {task_id: list(self._rows(task_id, log, limit)) for task_id, log in wanted.items()}
        try:
            self._insert([row for task_rows in rows.values() for row in task_rows], limit)
        except Exception as exc:
            if dberrors.is_outage(exc):
                raise
            # Someone's output was refused: store each task's on its own to find whose.
            self._drop_unusable_connection()
            for task_id, task_rows in rows.items():
                try:
                    self._insert(task_rows, limit)
                except Exception as task_exc:
                    if dberrors.is_outage(task_exc):
                        raise
                    self._drop_unusable_connection()
                    self._refused(task_id, task_exc, limit)
                else:
                    self._stored(task_id, task_rows)
        else:
            for task_id, task_rows in rows.items():
                self._stored(task_id, task_rows)

    def close(self, task_id: int) -> int:
        """Write everything left of a finished task, the kept end included; return its size."""
        log = self._logs[task_id]
        if log.tail:
            tail = "".join(log.tail)
            if log.cut or len(tail) > log.tail_window:
                tail = self._cut_notice(log, tail)
            log.pending.append(tail)
            log.pending_size += len(tail)
            log.tail.clear()
            log.tail_size = 0
        self.flush([task_id])
        del self._logs[task_id]
        return log.offset

    def discard(self, task_id: int) -> None:
        self._logs.pop(task_id, None)

    # -- internals -----------------------------------------------------------------------

    def _cut_notice(self, log: _TaskLog, tail: str) -> str:
        """The notice and as much of the end as fits: the log is then exactly MAX_LOG_SIZE."""
        before = "" if log.head_ends_line else "\n"
        kept = log.tail_window
        while True:  # the notice's length depends on the count it gives: settle both
            cut = log.cut + len(tail) - kept
            notice = (
                f"{before}[djangotasks: {cut:,} characters cut here; the log is limited to "
                f"{self.max_size:,} (MAX_LOG_SIZE). Its start and end are kept.]\n"
            )
            fits = max(0, log.tail_window - len(notice))
            if fits >= kept:
                break
            kept = fits
        log.cut = cut
        return notice + (tail[len(tail) - kept :] if kept else "")

    def _rows(self, task_id: int, log: _TaskLog, limit: int) -> Iterator[TaskLogChunk]:
        text = "".join(log.pending)
        offset = log.offset
        for piece in _pieces(text, min(MAX_CHUNK_BYTES, limit - ROW_OVERHEAD_BYTES)):
            yield TaskLogChunk(task_id=task_id, offset=offset, end=offset + len(piece), text=piece)
            offset += len(piece)

    def _insert(self, rows: list[TaskLogChunk], limit: int) -> None:
        with routing.atomic():
            for batch in _batches(rows, limit):
                TaskLogChunk.objects.bulk_create(batch)

    def _stored(self, task_id: int, rows: list[TaskLogChunk]) -> None:
        log = self._logs[task_id]
        if rows:
            log.offset = rows[-1].end
            log.stored_ends_line = rows[-1].text.endswith("\n")
        log.pending.clear()
        log.pending_size = 0

    def _refused(self, task_id: int, exc: Exception, limit: int) -> None:
        """The database will not take this task's output: store a note in its place."""
        log = self._logs[task_id]
        lost = log.pending_size
        log.pending.clear()
        log.pending_size = 0
        if not Task.objects.filter(pk=task_id).exists():
            self.orphaned.add(task_id)  # deleted while it ran: nowhere to put anything
            return
        error, _notes = clean_text(f"{type(exc).__name__}: {exc}", 300, "the error")
        logger.error("taskd: the database refused %d characters of task #%s's output: %s",
                     lost, task_id, error,
                     extra=fields("task_output_refused", task_id=task_id))  # fmt: skip
        # Written at once, where the refused output would have been, on a line of its own.
        before = "" if log.stored_ends_line else "\n"
        note = (
            f"{before}[djangotasks: {lost:,} characters of output could not be stored ({error})]\n"
        )
        log.head_room = max(0, log.head_room - len(note))
        log.head_ends_line = True
        rows = [TaskLogChunk(task_id=task_id, offset=log.offset, end=log.offset + len(note),
                             text=note)]  # fmt: skip
        try:
            self._insert(rows, limit)
        except Exception as note_exc:
            if dberrors.is_outage(note_exc):
                raise
            self._drop_unusable_connection()
        else:
            self._stored(task_id, rows)

    def _insert_bytes(self) -> int:
        """How many bytes of text one INSERT may carry on this connection."""
        connection = routing.connection()
        if connection.vendor != "mysql":
            return MAX_INSERT_BYTES
        connection.ensure_connection()
        if connection.connection is not self._packet_connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@max_allowed_packet")
                (value,) = cursor.fetchone()
            self._packet_connection, self._packet_bytes = connection.connection, int(value)
        return max(1024, min(MAX_INSERT_BYTES, (self._packet_bytes - PACKET_MARGIN_BYTES) // 2))

    def _drop_unusable_connection(self) -> None:
        # MariaDB closes the connection after refusing a packet; the next statement would
        # fail as "server has gone away" and be taken for an outage. Start afresh instead.
        connection = routing.connection()
        if connection.connection is not None and not connection.is_usable():
            connection.close()


def _pieces(text: str, max_bytes: int) -> Iterator[str]:
    """``text`` in chunks of at most MAX_CHUNK_CHARS characters and ``max_bytes`` UTF-8 bytes."""
    start = 0
    while start < len(text):
        piece = text[start : start + MAX_CHUNK_CHARS]
        # isascii() is O(1) in CPython; only other text needs encoding to be measured.
        while len(piece) > 1 and not piece.isascii() and len(piece.encode()) > max_bytes:
            piece = piece[: len(piece) // 2]
        yield piece
        start += len(piece)


def _batches(rows: list[TaskLogChunk], limit: int) -> Iterator[list[TaskLogChunk]]:
    batch: list[TaskLogChunk] = []
    size = 0
    for row in rows:
        length = ROW_OVERHEAD_BYTES + (
            len(row.text) if row.text.isascii() else len(row.text.encode())
        )
        if batch and size + length > limit:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += length
    if batch:
        yield batch

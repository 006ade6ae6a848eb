"""djangotasks/daemon/logwriter.py without a daemon: output batched into chunk rows, the cap
(start and end kept, a notice between), the daemon's notes, and output the database refuses
(replaced by a note; the other tasks' output stored as usual).

Task rows are real; the output is appended by the test as the daemon would.
"""

from __future__ import annotations

import pytest
from django.db import DataError, OperationalError

from djangotasks.daemon import logwriter
from djangotasks.daemon.logwriter import LogWriter
from djangotasks.models import Task, TaskLogChunk
from djangotasks.statuses import Status

pytestmark = pytest.mark.django_db

POISON = "POISON"


def running() -> Task:
    return Task.objects.create(name="tests.unit", status=Status.RUNNING)


def stored(task: Task) -> str:
    return Task.objects.get(pk=task.pk).log


def refusing(writer: LogWriter, error: Exception, notes_too: bool = False):
    """Make ``writer``'s INSERTs fail with ``error`` when they carry POISON (or any note)."""
    insert = writer._insert

    def refuse(rows: list[TaskLogChunk], limit: int) -> None:
        if any(POISON in row.text or (notes_too and "[djangotasks:" in row.text) for row in rows):
            raise error
        insert(rows, limit)

    return refuse


def test_output_within_the_cap_is_stored_exactly_in_order():
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    for piece in ("one\n", "two ", "", "three\x00\n"):
        writer.append(task.pk, piece)
    assert writer.has_pending()
    writer.flush()
    assert not writer.has_pending()
    writer.append(task.pk, "four\n")
    assert writer.close(task.pk) == len("one\ntwo three\x00\nfour\n")
    assert stored(task) == "one\ntwo three\ufffd\nfour\n"  # PostgreSQL text cannot hold NUL


def test_output_over_the_cap_keeps_start_and_end_and_says_what_was_cut():
    writer, task = LogWriter(max_size=1000), running()
    writer.open(task)
    printed = "".join(f"line {i:04}\n" for i in range(300))  # 3,000 characters
    for i in range(0, len(printed), 70):
        writer.append(task.pk, printed[i : i + 70])
    writer.flush()
    assert stored(task) == printed[:500]  # the head, written live
    assert writer.close(task.pk) == 1000
    log = stored(task)
    assert len(log) == 1000
    head, notice, tail = log[:500], *log[500:].split("]\n", 1)
    assert head == printed[:500]
    assert printed.endswith(tail)
    cut = len(printed) - len(head) - len(tail)
    assert notice == (
        f"[djangotasks: {cut:,} characters cut here; the log is limited to 1,000 "
        "(MAX_LOG_SIZE). Its start and end are kept."
    )


def test_an_earlier_attempts_log_is_continued():
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    writer.append(task.pk, "attempt 1\n")
    task.log_size = writer.close(task.pk)
    writer.open(task)
    writer.append(task.pk, "attempt 2\n")
    writer.close(task.pk)
    assert stored(task) == "attempt 1\nattempt 2\n"


def test_a_note_starts_on_a_line_of_its_own():
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    writer.note(task.pk, "first")
    writer.append(task.pk, "no line end")
    writer.note(task.pk, "second")
    writer.close(task.pk)
    assert stored(task) == "[djangotasks: first]\nno line end\n[djangotasks: second]\n"


def test_a_note_in_the_kept_end_starts_on_a_line_of_its_own_too():
    writer, task = LogWriter(max_size=1000), running()
    writer.open(task)
    writer.append(task.pk, "x" * 600)  # past the head: the rest is the kept end
    writer.note(task.pk, "noted")
    writer.close(task.pk)
    assert stored(task) == "x" * 600 + "\n[djangotasks: noted]\n"


def test_output_of_a_task_not_open_or_orphaned_goes_nowhere():
    writer, task = LogWriter(max_size=10_000), running()
    writer.append(task.pk, "not open")
    writer.note(task.pk, "not open")
    assert not writer.has_pending()
    writer.open(task)
    writer.orphaned.add(task.pk)
    writer.append(task.pk, "orphaned")
    assert not writer.has_pending()
    writer.discard(task.pk)
    writer.discard(task.pk)
    assert stored(task) == ""


def test_output_the_database_refuses_becomes_a_note_and_others_are_stored(monkeypatch):
    writer, good, bad = LogWriter(max_size=10_000), running(), running()
    for task in (good, bad):
        writer.open(task)
        writer.append(task.pk, "before\n")
    writer.flush()
    monkeypatch.setattr(writer, "_insert", refusing(writer, DataError("value too long")))
    writer.append(good.pk, "fine\n")
    writer.append(bad.pk, f"no line end {POISON}")
    writer.flush()
    assert stored(good) == "before\nfine\n"
    assert stored(bad) == (
        f"before\n[djangotasks: {len('no line end ' + POISON)} characters of output could not "
        "be stored (DataError: value too long)]\n"
    )
    writer.append(bad.pk, "after\n")  # the task goes on, and so does its log
    writer.close(bad.pk)
    assert stored(bad).endswith("stored (DataError: value too long)]\nafter\n")


def test_refused_output_after_a_line_without_its_end_puts_the_note_on_its_own_line(monkeypatch):
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    writer.append(task.pk, "half a line")
    writer.flush()
    monkeypatch.setattr(writer, "_insert", refusing(writer, DataError("refused")))
    writer.append(task.pk, POISON)
    writer.flush()
    assert stored(task).startswith("half a line\n[djangotasks: 6 characters of output")


def test_output_of_a_task_deleted_while_it_ran_is_dropped(monkeypatch):
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    monkeypatch.setattr(writer, "_insert", refusing(writer, DataError("no such task")))
    writer.append(task.pk, POISON)
    Task.objects.filter(pk=task.pk).delete()
    writer.flush()
    assert task.pk in writer.orphaned
    assert not writer.has_pending()


def test_when_even_the_note_is_refused_the_output_is_dropped(monkeypatch):
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    monkeypatch.setattr(writer, "_insert", refusing(writer, DataError("no"), notes_too=True))
    writer.append(task.pk, POISON)
    writer.flush()
    assert not writer.has_pending()
    assert stored(task) == ""


@pytest.mark.parametrize("when", ["at first", "for the note"])
def test_an_outage_keeps_the_output_for_the_next_flush(monkeypatch, when):
    writer, task = LogWriter(max_size=10_000), running()
    writer.open(task)
    outage = OperationalError("database is locked")
    if when == "at first":
        monkeypatch.setattr(writer, "_insert", refusing(writer, outage))
        writer.append(task.pk, POISON)
    else:
        # Refused, then the database goes away while the note is written.
        calls = []
        insert = writer._insert

        def refuse_then_go_away(rows: list[TaskLogChunk], limit: int) -> None:
            calls.append(rows)
            if len(calls) <= 2:
                raise DataError("refused")
            if len(calls) == 3:
                raise outage
            insert(rows, limit)

        monkeypatch.setattr(writer, "_insert", refuse_then_go_away)
        writer.append(task.pk, "refused\n")
    with pytest.raises(OperationalError):
        writer.flush()
    if when == "at first":
        assert writer.has_pending()  # nothing is dropped while the database is away


def test_an_outage_while_finding_whose_output_was_refused_is_raised(monkeypatch):
    writer, good, bad = LogWriter(max_size=10_000), running(), running()
    for task in (good, bad):
        writer.open(task)
    writer.append(good.pk, "fine\n")
    writer.append(bad.pk, POISON)
    calls = []

    def refuse_then_go_away(rows: list[TaskLogChunk], limit: int) -> None:
        calls.append(rows)
        raise DataError("refused") if len(calls) == 1 else OperationalError("disk I/O error")

    monkeypatch.setattr(writer, "_insert", refuse_then_go_away)
    with pytest.raises(OperationalError):
        writer.flush()
    assert writer.has_pending()


# -- chunks and batches ----------------------------------------------------------------


def test_text_is_cut_into_chunks_of_bounded_characters_and_bytes():
    text = "é" * 100 + "a" * 50
    pieces = list(logwriter._pieces(text, max_bytes=64))
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= 64 for piece in pieces)
    assert list(logwriter._pieces("", max_bytes=64)) == []


def test_rows_are_batched_by_the_bytes_one_insert_may_carry():
    rows = [
        TaskLogChunk(task_id=1, offset=i * 10, end=(i + 1) * 10, text=text)
        for i, text in enumerate(["a" * 10, "é" * 10, "b" * 10])
    ]
    overhead = logwriter.ROW_OVERHEAD_BYTES
    batches = list(logwriter._batches(rows, limit=2 * overhead + 30))
    assert [[row.text for row in batch] for batch in batches] == [
        ["a" * 10, "é" * 10],  # 10 + 20 bytes of text
        ["b" * 10],
    ]
    assert list(logwriter._batches([], limit=1000)) == []

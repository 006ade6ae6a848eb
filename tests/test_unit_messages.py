"""djangotasks/daemon/messages.py without a daemon: what a task sends on its control pipe
(progress, reason, error) parsed and cleaned, junk and floods ignored with a note, output
decoded across reads, and progress saved at most every PROGRESS_SAVE_INTERVAL.

The task process is played by the test, writing to real pipes.
"""

from __future__ import annotations

import json
import os
import selectors
from collections.abc import Iterator

import pytest
from django.db import DataError, InterfaceError, OperationalError

from djangotasks.daemon import messages
from djangotasks.daemon.messages import (
    MAX_CONTROL_LINE,
    MAX_PROGRESS_MESSAGE,
    MAX_REASON,
    PROGRESS_SAVE_INTERVAL,
    TaskMessages,
)
from djangotasks.daemon.process import TaskProcess
from djangotasks.models import Task
from djangotasks.statuses import Status
from djangotasks.untrusted import BIGINT_MAX


class FakeLogs:
    """The part of LogWriter that TaskMessages uses: the task's output and notes, as text."""

    def __init__(self) -> None:
        self.text = ""

    def append(self, task_id: int, text: str) -> None:
        self.text += text

    def note(self, task_id: int, text: str) -> None:
        self.text += f"[djangotasks: {text}]\n"


class Messages(TaskMessages):
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.processes: dict[int, TaskProcess] = {}
        self.logs = FakeLogs()  # type: ignore[assignment]


class Pipes:
    """The task's ends of its output and control pipes."""

    def __init__(self, output: int, control: int) -> None:
        self.output = output
        self.control = control

    def send(self, *messages: object) -> None:
        for message in messages:
            os.write(self.control, json.dumps(message).encode() + b"\n")


@pytest.fixture
def daemon() -> Messages:
    return Messages()


@pytest.fixture
def task_pipes(daemon: Messages) -> Iterator[tuple[TaskProcess, Pipes]]:
    output_r, output_w = os.pipe()
    control_r, control_w = os.pipe()
    os.set_blocking(output_r, False)
    os.set_blocking(control_r, False)
    proc = TaskProcess(Task(pk=1, name="tests.unit"), 4242, output_r, control_r, 0.0)
    daemon.processes[proc.pid] = proc
    daemon.selector.register(output_r, selectors.EVENT_READ)
    yield proc, Pipes(output_w, control_w)
    for fd in (output_r, output_w, control_r, control_w):
        try:
            os.close(fd)
        except OSError:
            pass  # closed by the test or by the daemon's side


@pytest.fixture
def proc(task_pipes: tuple[TaskProcess, Pipes]) -> TaskProcess:
    return task_pipes[0]


def notes(daemon: Messages) -> list[str]:
    return [line for line in daemon.logs.text.splitlines() if line.startswith("[djangotasks:")]


# -- control messages ------------------------------------------------------------------


def test_progress_is_taken_and_marked_for_saving(daemon, proc):
    daemon._control_message(proc, b'{"progress": {"current": 3, "total": 10, "message": "a"}}')
    assert proc.progress == {"current": 3, "total": 10, "message": "a"}
    assert proc.progress_dirty
    assert notes(daemon) == []


def test_progress_with_only_a_message_counts_from_zero(daemon, proc):
    daemon._control_message(proc, b'{"progress": {"message": null}}')
    assert proc.progress == {"current": 0, "total": None, "message": ""}


def test_progress_values_that_cannot_be_stored_are_cleaned_with_a_note_each(daemon, proc):
    progress = {"current": "three", "total": 2**70, "message": "\x00" + "m" * 300}
    daemon._control_message(proc, json.dumps({"progress": progress}).encode())
    assert proc.progress == {
        "current": 0,
        "total": BIGINT_MAX,
        "message": "\ufffd" + "m" * (MAX_PROGRESS_MESSAGE - 2) + "…",
    }
    said = notes(daemon)
    assert len(said) == 3
    assert "the progress value was a str, not a number" in said[0]
    assert "the progress total" in said[1]
    assert "the progress message" in said[2]
    # The same problems again are not said again.
    daemon._control_message(proc, json.dumps({"progress": progress}).encode())
    assert len(notes(daemon)) == 3


def test_progress_that_is_not_an_object_is_ignored(daemon, proc):
    daemon._control_message(proc, b'{"progress": [1, 2]}')
    assert proc.progress is None
    assert not proc.progress_dirty


def test_the_reason_is_cleaned_and_cut_to_its_maximum(daemon, proc):
    daemon._control_message(proc, json.dumps({"reason": "why"}).encode())
    assert proc.reason == "why"
    daemon._control_message(proc, json.dumps({"reason": "w" * (MAX_REASON + 10)}).encode())
    assert proc.reason == "w" * (MAX_REASON - 1) + "…"
    assert len(notes(daemon)) == 1
    daemon._control_message(proc, b'{"reason": 42}')
    assert proc.reason == "42"


def test_an_error_needs_its_class_path_and_traceback_as_text(daemon, proc):
    error = {"exception_class_path": "builtins.ValueError", "traceback": "Traceback ...\n"}
    daemon._control_message(proc, json.dumps({"error": error}).encode())
    assert proc.error == error
    proc.error = None
    for junk in (
        {"error": "ValueError"},
        {"error": {"exception_class_path": "builtins.ValueError"}},
        {"error": {"exception_class_path": 1, "traceback": "..."}},
    ):
        daemon._control_message(proc, json.dumps(junk).encode())
        assert proc.error is None, junk
    assert notes(daemon) == []


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"[" * 100_000,  # nested beyond the parser's stack: RecursionError
        b'{"reason": "' + b"x" * MAX_CONTROL_LINE + b'"}',
    ],
    ids=["junk", "a list", "a string", "deeply nested", "too long"],
)
def test_a_malformed_message_is_ignored_with_one_note(daemon, proc, line):
    daemon._control_message(proc, line)
    daemon._control_message(proc, line)
    assert notes(daemon) == ["[djangotasks: ignored a malformed control message]"]
    assert proc.reason == ""
    assert proc.progress is None


# -- reading the pipes -----------------------------------------------------------------


def test_messages_are_lines_and_a_partial_line_waits_for_its_end(daemon, task_pipes):
    proc, pipes = task_pipes
    os.write(pipes.control, b'{"reason": "first"}\n{"reason": "sec')
    daemon._read_control(proc)
    assert proc.reason == "first"
    assert proc.control_buffer == b'{"reason": "sec'
    os.write(pipes.control, b'ond"}\n')
    daemon._read_control(proc)
    assert proc.reason == "second"
    assert proc.control_buffer == b""


def test_lines_read_before_the_read_limit_are_handled(daemon, task_pipes):
    proc, pipes = task_pipes
    pipes.send({"reason": "a"}, {"reason": "b"})
    daemon._read_control(proc, max_reads=1)  # one read takes both; the loop ends by its count
    assert proc.reason == "b"


def test_a_flood_without_line_ends_is_dropped_with_a_note(daemon, task_pipes):
    proc, pipes = task_pipes
    half = b"x" * (MAX_CONTROL_LINE // 2 + 1)
    os.write(pipes.control, half)
    daemon._read_control(proc)
    assert proc.control_buffer == half  # a long line may still end
    os.write(pipes.control, half)
    daemon._read_control(proc)
    assert proc.control_buffer == b""
    assert notes(daemon) == [
        f"[djangotasks: ignored {2 * len(half):,} bytes written to the control pipe "
        "without a line end]"
    ]
    pipes.send({"reason": "still heard"})
    daemon._read_control(proc)
    assert proc.reason == "still heard"


def test_the_end_of_the_control_pipe_closes_it(daemon, task_pipes):
    proc, pipes = task_pipes
    pipes.send({"reason": "last words"})
    os.close(pipes.control)
    daemon._read_control(proc)
    assert proc.reason == "last words"
    assert proc.control_closed
    daemon._read_control(proc)  # nothing more to read, and no error


def test_output_split_inside_a_character_is_decoded_whole(daemon, task_pipes):
    proc, pipes = task_pipes
    os.write(pipes.output, "hé".encode()[:2])
    daemon._read_output(proc)
    os.write(pipes.output, "hé\n".encode()[2:])
    daemon._read_output(proc)
    assert daemon.logs.text == "hé\n"


def test_the_end_of_output_flushes_the_decoder_and_closes_the_pipe(daemon, task_pipes):
    proc, pipes = task_pipes
    os.write(pipes.output, b"cut \xc3")  # the task died in the middle of a character
    os.close(pipes.output)
    daemon._read_output(proc)
    assert daemon.logs.text == "cut \ufffd"
    assert proc.output_closed
    assert proc.output_fd not in daemon.selector.get_map()
    daemon._read_output(proc)  # nothing more to read, and no error
    assert daemon.logs.text == "cut \ufffd"


# -- saving progress -------------------------------------------------------------------


def test_progress_is_due_at_the_earliest_pending_save(daemon, proc):
    assert daemon.progress_due() is None
    proc.progress, proc.progress_dirty, proc.progress_saved_at = {"current": 1}, True, 100.0
    assert daemon.progress_due() == 100.0 + PROGRESS_SAVE_INTERVAL


@pytest.mark.django_db
def test_progress_is_saved_at_most_every_interval_unless_forced(daemon, proc):
    task = Task.objects.create(name="tests.unit", status=Status.RUNNING)
    proc.task = task
    daemon._save_progress(proc, now=100.0)  # nothing reported: nothing to save
    daemon._control_message(proc, b'{"progress": {"current": 1, "total": 4}}')
    daemon._save_progress(proc, now=100.0)
    assert Task.objects.get(pk=task.pk).progress_current == 1
    assert task.progress_current == 1
    daemon._control_message(proc, b'{"progress": {"current": 2, "total": 4}}')
    daemon._save_progress(proc, now=100.0 + PROGRESS_SAVE_INTERVAL / 2)  # too soon
    assert Task.objects.get(pk=task.pk).progress_current == 1
    assert proc.progress_dirty
    daemon._save_progress(proc, now=100.0 + PROGRESS_SAVE_INTERVAL / 2, force=True)
    saved = Task.objects.get(pk=task.pk)
    assert (saved.progress_current, saved.progress_total) == (2, 4)
    assert not proc.progress_dirty


class Refusing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def update(self, **fields: object) -> int:
        raise self.exc


def test_progress_the_database_refuses_is_dropped_with_a_note(daemon, proc, monkeypatch):
    monkeypatch.setattr(
        messages.Task.objects, "filter", lambda **kw: Refusing(DataError("too long"))
    )
    daemon._control_message(proc, b'{"progress": {"current": 1}}')
    daemon._save_progress(proc, now=100.0)
    assert not proc.progress_dirty  # not tried again: the same value would fail again
    assert notes(daemon) == ["[djangotasks: progress could not be stored (DataError: too long)]"]


def test_progress_is_kept_for_later_while_the_database_is_away(daemon, proc, monkeypatch):
    outage = OperationalError("database is locked")
    monkeypatch.setattr(messages.Task.objects, "filter", lambda **kw: Refusing(outage))
    daemon._control_message(proc, b'{"progress": {"current": 1}}')
    with pytest.raises(OperationalError):
        daemon._save_progress(proc, now=100.0)
    assert proc.progress_dirty
    assert notes(daemon) == []


def test_progress_is_kept_for_later_when_the_connection_is_closed(daemon, proc, monkeypatch):
    # InterfaceError is no DatabaseError (they are siblings): still an outage, not a refusal.
    closed = InterfaceError("connection already closed")
    monkeypatch.setattr(messages.Task.objects, "filter", lambda **kw: Refusing(closed))
    daemon._control_message(proc, b'{"progress": {"current": 1}}')
    with pytest.raises(InterfaceError):
        daemon._save_progress(proc, now=100.0)
    assert proc.progress_dirty
    assert notes(daemon) == []

"""The daemon's log for an operator's tools: structured fields, ``--log-format json``."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import sys
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType

from djangotasks.logfields import fields, log_as
from djangotasks.logformat import STANDARD_ATTRIBUTES, JsonFormatter
from djangotasks.management.commands.taskd import _configure_logging
from djangotasks.models import Task, Worker
from djangotasks.models.task import live_key
from djangotasks.statuses import Status
from tests.helpers import ROOT, wait_status, wait_until
from tests.models import Job

ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# A name read from a row: it must stay one field of one line, whatever it holds.
FORGED_NAME = 'tests.Job.forged\n{"event": "task_finished", "outcome": "successful"}\u2028"'


def without_logging(directory: Path) -> dict[str, str]:
    """Environment for ``start_daemon(**env)``: tests.settings without LOGGING (which gives
    the djangotasks logger a handler of its own), so that ``taskd`` sets up its logging."""
    (directory / "no_logging_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\nLOGGING = {}\n"
    )
    return {
        "DJANGO_SETTINGS_MODULE": "no_logging_settings",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{directory}",
    }


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of a log as JSON; fails on a line that is not one JSON object."""
    assert text.endswith("\n"), text
    records = []
    for line in text[:-1].split("\n"):
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_json_log_names_the_task_worker_and_outcome_of_each_start_and_end(start_daemon, tmp_path):
    daemon = start_daemon(options=("--log-format", "json"), **without_logging(tmp_path))
    job = Job.objects.create(seconds=600, path=str(tmp_path / "sleeping"))
    forged = Task.objects.create(
        name=FORGED_NAME,
        content_type=ContentType.objects.get_for_model(Job),
        object_id=str(job.pk),
        live_key=live_key(FORGED_NAME, str(job.pk)),
        status=Status.SCHEDULED,
    )
    tasks = {
        "successful": job.hello().run(),
        "failed": job.fail().run(),
        "timed_out": job.too_slow().run(),
        "cancelled": job.sleep().run(),
    }
    wait_until((tmp_path / "sleeping").exists)
    tasks["cancelled"].cancel()
    for task in [*tasks.values(), forged]:
        wait_status(task)
    assert daemon.stop() == 0
    worker = Worker.objects.get(pid=daemon.pid)

    records = json_lines(daemon.log)

    for record in records:
        assert ISO_UTC_MS.fullmatch(record["time"]), record
        assert record["logger"] == "djangotasks", record
        assert record["level"] in {"INFO", "WARNING", "ERROR"}, record
        # Every line the daemon logs: what happened, and which daemon says so.
        assert record["event"], record
        assert (record["worker"], record["worker_id"]) == (str(worker), worker.pk), record
        assert not (STANDARD_ATTRIBUTES - {"message"}) & record.keys(), record
    (started,) = [r for r in records if r["event"] == "daemon_started"]
    assert " started: up to 4 tasks at once" in started["message"]
    assert started["capacity"] == 4
    (stopped,) = [r for r in records if r["event"] == "daemon_stopped"]
    assert stopped["message"] == f"taskd {worker} stopped"

    def lines_of(task: Task, event: str) -> list[dict[str, object]]:
        return [r for r in records if r["event"] == event and r.get("task_id") == task.pk]

    for outcome, task in [*tasks.items(), ("failed", forged)]:
        task.refresh_from_db()
        (start,) = lines_of(task, "task_started")
        assert start["task_name"] == task.name
        assert start["task_pid"] == task.pid
        assert "outcome" not in start
        (end,) = lines_of(task, "task_finished")
        assert end["task_name"] == task.name
        assert end["outcome"] == outcome, end
        assert end["message"].startswith(f"task #{task.pk} {task.name} {task.status}")
    # An outcome is said once per end, on its "task_finished" line.
    assert all(r["event"] == "task_finished" for r in records if "outcome" in r)
    assert lines_of(tasks["timed_out"], "task_finished")[0]["message"].endswith(
        "unsuccessful: Timed out after 1 s."
    )


def test_the_project_logging_wins_over_log_format_and_the_daemon_says_so(start_daemon):
    # tests.settings' LOGGING gives the djangotasks logger a handler (plain messages).
    daemon = start_daemon(options=("--log-format", "json"))
    assert daemon.stop() == 0

    first, *rest = daemon.log.splitlines()
    assert first == (
        "taskd: --log-format json has no effect: LOGGING configures handlers for the "
        "djangotasks logger (or the root logger); use djangotasks.logformat.JsonFormatter there"
    )
    assert f"taskd {daemon.worker} stopped" in rest


def test_configure_logging_installs_the_json_formatter_unless_logging_has_handlers(
    monkeypatch,
):
    root = logging.getLogger()
    ours = logging.getLogger("djangotasks")
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(ours, "propagate", ours.propagate)
    level = ours.level
    try:
        monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
        assert not _configure_logging(1, "json")
        assert ours.handlers == []

        monkeypatch.setattr(root, "handlers", [])
        assert _configure_logging(1, "json")
        (handler,) = ours.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.stream is sys.stderr
    finally:
        ours.setLevel(level)  # through setLevel: logging caches who is enabled


# -- JsonFormatter ------------------------------------------------------------------------


def record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("djangotasks", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_json_formatter_keeps_odd_text_in_one_ascii_line():
    odd = 'NUL \x00 newline \n CR \r separator \u2028 surrogate \ud800 quote " euro \u20ac'
    line = JsonFormatter().format(record("%s | %d | %r", odd, 7, b"\xff", task_name=odd))

    assert "\n" not in line and "\r" not in line
    assert line.isascii()
    parsed = json.loads(line)
    assert parsed["message"] == f"{odd} | 7 | b'\\xff'"
    assert parsed["task_name"] == odd
    assert parsed["level"] == "WARNING"
    assert parsed["logger"] == "djangotasks"
    assert ISO_UTC_MS.fullmatch(parsed["time"])


def test_json_formatter_writes_extra_fields_but_no_standard_attribute():
    made = record("task #%s", 5, **fields("task_finished", outcome="failed", task_id=5))
    parsed = json.loads(JsonFormatter().format(made))

    assert parsed == {
        "time": parsed["time"],
        "level": "WARNING",
        "logger": "djangotasks",
        "message": "task #5",
        "event": "task_finished",
        "task_id": 5,
        "outcome": "failed",
    }


def test_json_formatter_never_raises_on_odd_values():
    loop: list[object] = []
    loop.append(loop)
    made = record(
        "%s and %s",  # one argument short
        Unprintable(),
        a_set={1},
        nan=float("nan"),
        loop=loop,
        tuple_keys={(1, 2): 3},
        unprintable=Unprintable(),
    )
    parsed = json.loads(JsonFormatter().format(made))

    assert parsed["message"].startswith("%s and %s % ")
    assert parsed["a_set"] == "{1}"
    assert parsed["nan"] == "nan"
    assert parsed["loop"] == "[[...]]"
    assert parsed["tuple_keys"] == "{(1, 2): 3}"
    assert parsed["unprintable"] == "<unprintable Unprintable>"


def test_json_formatter_writes_the_traceback():
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        made = record("boom")
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(made))

    assert parsed["message"] == "boom"
    assert parsed["traceback"].startswith("Traceback (most recent call last):\n")
    assert parsed["traceback"].endswith("ZeroDivisionError: division by zero")


def test_json_formatter_is_made_from_a_logging_dict_config():
    # What dictConfig does with a project's "formatters" entry (dictConfig itself would
    # close every handler of this process, pytest's too).
    configurator = logging.config.DictConfigurator({"version": 1})
    made = configurator.configure_formatter({"()": "djangotasks.logformat.JsonFormatter"})

    assert isinstance(made, JsonFormatter)
    assert json.loads(made.format(record("hello", task_id=3)))["task_id"] == 3


# -- fields -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fields_name_the_worker_of_the_thread_and_leave_out_what_is_none():
    worker = Worker.objects.create(hostname="host", pid=42)
    task = Task(pk=7, name="tests.Job.hello")
    assert fields("task_started", task, outcome=None) == {
        "event": "task_started",
        "task_id": 7,
        "task_name": "tests.Job.hello",
    }
    log_as(worker)
    try:
        named = fields("daemon_started", capacity=4)
    finally:
        log_as(None)
    assert named == {"event": "daemon_started", "worker": "host:42", "worker_id": worker.pk,
                     "capacity": 4}  # fmt: skip
    assert fields("daemon_crashed", worker=worker)["worker"] == "host:42"
    assert "worker" not in fields("daemon_started")
    # Passed as extra=, no key may be one that logging refuses (KeyError).
    assert not STANDARD_ATTRIBUTES & named.keys()

"""What task code sends is untrusted: no value, flood or refused write can stop the daemon.

Each test has a real daemon run a task that sends something a database or the daemon
cannot take as it is (a NUL in an exception, a lone surrogate, numbers beyond 64 bits, junk
on the control pipe, 20 MB of 4-byte characters, output the database refuses), next to a
bystander task on the same daemon. The bad task ends with a clear status and a note in its
log; the bystander is untouched and the daemon keeps serving. Runs on every database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from djangotasks.statuses import Status
from djangotasks.untrusted import BIGINT_MAX
from tests.faulty import Fault
from tests.helpers import wait_status, wait_until
from tests.models import Job

# Injected into a daemon: its log writer is refused (DataError) any output with "POISON".
REFUSE_POISON = """
import django
django.setup()
from django.db import DataError
from djangotasks.daemon import logwriter
_insert = logwriter.LogWriter._insert
def refuse_poison(self, rows, limit):
    if any("POISON" in row.text for row in rows):
        raise DataError("injected: the database refuses this value")
    return _insert(self, rows, limit)
logwriter.LogWriter._insert = refuse_poison
"""

# Injected into a daemon: handling a progress message "boom" raises in the daemon itself.
CHOKE_ON_BOOM = """
import django
django.setup()
from djangotasks.daemon import supervision
_take = supervision.Supervisor._take_progress
def choke(self, proc, progress):
    if progress.get("message") == "boom":
        raise RuntimeError("injected: the daemon chokes on this progress")
    return _take(self, proc, progress)
supervision.Supervisor._take_progress = choke
"""


def start_bystander(tmp_path: Path, seconds: float = 4.0) -> Job:
    job = Job.objects.create(seconds=seconds, path=str(tmp_path / "bystander"))
    job.sleep().run()
    wait_until(lambda: Path(job.path).exists())  # running before the bad task starts
    return job


def assert_bystander_untouched(job: Job) -> None:
    task = wait_status(job.sleep(), timeout=60)
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == "sleeping\nwoke up\n"


def assert_still_serving(daemon) -> None:
    assert daemon.popen.poll() is None, daemon.log
    task = wait_status(Job.objects.create().hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason


def test_nul_in_an_exception_is_stored_as_a_replacement_character(daemon, tmp_path):
    bystander = start_bystander(tmp_path)

    task = wait_status(Fault.objects.create().fail_with_nul().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "ValueError: bad byte \ufffd here"
    assert task.log.startswith("about to fail with a NUL\n")
    assert "[djangotasks: the reason contained NUL or invalid characters" in task.log
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)


def test_lone_surrogate_in_an_exception_is_stored_as_a_replacement_character(daemon, tmp_path):
    bystander = start_bystander(tmp_path)

    task = wait_status(Fault.objects.create().fail_with_surrogate().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "ValueError: lone \ufffd surrogate"
    assert "[djangotasks: the reason contained NUL or invalid characters" in task.log
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)


def test_progress_beyond_64_bits_is_clamped_and_said(daemon, tmp_path):
    bystander = start_bystander(tmp_path)
    task = Fault.objects.create(seconds=600).huge_progress().run()

    def progress_saved() -> bool:
        task.refresh_from_db()
        return task.progress_current is not None

    wait_until(progress_saved)
    assert task.progress == (BIGINT_MAX, BIGINT_MAX, "big \ufffd numbers \ufffd")
    wait_until(lambda: "still running" in task.log)
    log = task.log
    assert "[djangotasks: the progress value was out of range, over 64 bits" in log
    assert "[djangotasks: the progress total was out of range" in log
    assert "[djangotasks: the progress message contained NUL or invalid characters" in log
    task.cancel()
    assert wait_status(task).status == Status.CANCELLED
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)


def test_junk_on_the_control_pipe_is_ignored_and_said(daemon, tmp_path):
    bystander = start_bystander(tmp_path)

    task = wait_status(Fault.objects.create().control_junk().run(), timeout=60)

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "RuntimeError: the reason in the control pipe must not replace this one"
    assert task.progress == (3, 4, "after the junk")  # the last good message counts
    log = task.log
    assert "survived my own junk\n" in log
    assert "[djangotasks: ignored a malformed control message]" in log
    assert "bytes written to the control pipe without a line end]" in log
    assert "[djangotasks: the progress value was nan, not a number (left empty)]" in log
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)


def test_an_error_in_the_daemon_while_handling_one_task_ends_only_that_task(start_daemon, tmp_path):
    daemon = start_daemon(prelude=CHOKE_ON_BOOM)
    bystander = start_bystander(tmp_path)

    task = wait_status(Fault.objects.create(seconds=600).bad_progress_message().run())

    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == (
        "Internal error in the daemon: RuntimeError: injected: the daemon chokes on this "
        "progress (the traceback is in the log)."
    )
    log = task.log
    assert "[djangotasks: internal error in the daemon; the task was stopped." in log
    assert "Traceback (most recent call last):" in log
    assert "in choke" in log  # the daemon-side traceback, not the task's
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)


def test_output_the_database_refuses_is_replaced_by_a_note(start_daemon, tmp_path):
    daemon = start_daemon(prelude=REFUSE_POISON)
    bystander = start_bystander(tmp_path)
    fault = Fault.objects.create(seconds=1)

    task = wait_status(fault.poison_output().run())

    assert task.status == Status.SUCCESSFUL, task.reason
    log = task.log
    assert "POISON" not in log
    assert "characters of output could not be stored (DataError: injected: the database " in log
    assert log.endswith("last line\n")  # what came after the refused batch is stored
    assert task.log_size == len(log)
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)
    assert "refused" in daemon.log and "database unavailable" not in daemon.log


def test_millions_of_four_byte_characters_are_stored_whole(daemon, tmp_path):
    # 5,000,000 emoji are 20 MB of UTF-8: on MariaDB more than max_allowed_packet (16 MiB)
    # if written in one statement; it used to be taken for an outage and retried forever.
    bystander = start_bystander(tmp_path, seconds=1)
    count = 5_000_000

    task = wait_status(Fault.objects.create(count=count).emoji_flood().run(), timeout=240)

    assert task.status == Status.SUCCESSFUL, task.reason
    log = task.log
    assert len(log) == count + len("\ndone\n") == task.log_size
    assert log == "\U0001f600" * count + "\ndone\n"
    assert_bystander_untouched(bystander)
    assert_still_serving(daemon)
    assert "database unavailable" not in daemon.log


@pytest.mark.parametrize("second_signal", [False, True], ids=["graceful", "at-once"])
def test_sigterm_stops_a_daemon_that_cannot_store_anything(start_daemon, tmp_path, second_signal):
    # The database takes nothing (every log write fails as an outage would): the daemon
    # backs off and retries forever, but a stop request still ends it.
    always_out = (
        "import django\ndjango.setup()\n"
        "from django.db import InterfaceError\n"
        "from djangotasks.daemon import logwriter\n"
        "def out(self, rows, limit): raise InterfaceError('injected: no connection')\n"
        "logwriter.LogWriter._insert = out\n"
    )
    daemon = start_daemon(prelude=always_out, DJANGOTASKS_SHUTDOWN_WAIT="1")
    fault = Fault.objects.create(count=100000, seconds=0.05, path=str(tmp_path / "done"))
    task = fault.steady().run()
    wait_status(task, Status.RUNNING)
    wait_until(lambda: "database unavailable" in daemon.log)

    daemon.popen.send_signal(15)
    if second_signal:
        wait_until(lambda: "stopping" in daemon.log)  # two signals at once would be one
        daemon.popen.send_signal(15)
    # Graceful: SHUTDOWN_WAIT (1 s), CANCEL_GRACE (2 s), then 10 s for the database.
    daemon.popen.wait(timeout=10 if second_signal else 30)

    assert "stopping without recording the end of task(s)" in daemon.log
    # Nothing stays running: the next daemon on this host recovers the task at once.
    start_daemon()
    wait_status(task)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith("Worker lost:")

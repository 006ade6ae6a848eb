"""MAX_LOG_SIZE: a log within the cap is exactly what was printed; a longer one keeps its start
and its end, with one line between them that says truly how much was cut.

Real tasks print exact amounts of mixed-width text (1- to 4-byte characters, lines cut by
odd-sized writes) around the two boundaries that matter, MAX_LOG_SIZE / 2 (where the live
head ends) and MAX_LOG_SIZE; on every database.
"""

from __future__ import annotations

import re

from djangotasks.statuses import Status
from tests.faulty import Fault, settings_env
from tests.helpers import wait_status
from tests.untrusted_tasks import exact_text

CAP = 10_000
HALF = CAP // 2
NOTICE = re.compile(
    r"\[djangotasks: ([\d,]+) characters cut here; the log is limited to 10,000 "
    r"\(MAX_LOG_SIZE\)\. Its start and end are kept\.\]\n"
)
UNDER = [1, HALF - 1, HALF, HALF + 1, CAP - 1, CAP]
OVER = [CAP + 1, CAP + 150, 3 * CAP + 7, 40 * CAP]


def run_all(start_daemon, tmp_path, counts: list[int]) -> dict[int, Fault]:
    start_daemon(concurrency=4, **settings_env(tmp_path, MAX_LOG_SIZE=CAP))
    faults = {count: Fault.objects.create(count=count) for count in counts}
    tasks = {count: fault.print_exactly().run() for count, fault in faults.items()}
    for count, task in tasks.items():
        wait_status(task, timeout=60)
        assert task.status == Status.SUCCESSFUL, (count, task.reason)
    return {count: fault for count, fault in faults.items()}


def test_logs_within_the_cap_are_exactly_what_was_printed(start_daemon, tmp_path):
    faults = run_all(start_daemon, tmp_path, UNDER)

    for count, fault in faults.items():
        task = fault.print_exactly()
        assert task.log == exact_text(count), count
        assert task.log_size == count


def test_logs_over_the_cap_keep_start_and_end_and_say_truly_what_was_cut(start_daemon, tmp_path):
    faults = run_all(start_daemon, tmp_path, OVER)

    for count, fault in faults.items():
        task = fault.print_exactly()
        printed = exact_text(count)
        log = task.log
        assert len(log) == CAP == task.log_size, count
        assert log[:HALF] == printed[:HALF], count
        [notice] = NOTICE.finditer(log)
        # The notice stands on a line of its own.
        start = notice.start()
        if log[start - 1] == "\n" and not printed[:HALF].endswith("\n"):
            start -= 1  # the line end the notice added after a head cut mid-line
        assert start == HALF, count
        assert log[notice.start() - 1] == "\n", count
        end = log[notice.end() :]
        assert printed.endswith(end), count
        cut = int(notice.group(1).replace(",", ""))
        assert cut == count - HALF - len(end), count

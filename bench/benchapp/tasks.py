"""The bench tasks of djangotasks' backend for Django's tasks framework (``TASKS["djangotasks"]``).

They are here because djangotasks imports each app's ``tasks.py`` in every process: the daemon
runs only the ``django.tasks`` tasks it found declared. They do what ``Probe.first_line`` and
``Probe.noop`` do, so the figures compare the two ways of enqueueing.
"""

from __future__ import annotations

import time

import django

from bench.benchapp.models import T0_PREFIX

if django.VERSION >= (6, 0):  # Django's tasks framework; bench.settings.HAVE_BACKEND
    from django.tasks import task

    @task(backend="djangotasks")
    def backend_first_line() -> None:
        print(f"{T0_PREFIX}{time.time():.6f}")

    @task(backend="djangotasks")
    def backend_noop() -> None:
        pass

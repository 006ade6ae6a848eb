"""Benchmarks of djangotasks: they print figures next to their targets; they are not tests.

Run ``python -m bench.run`` (or ``make bench``); see ``bench/run.py`` for the options.
"""

from __future__ import annotations

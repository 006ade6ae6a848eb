"""Fixture models and tasks for the fault-injection suite (tests/test_faults_*.py)."""

from __future__ import annotations

from __future__ import annotations

from djangotasks.registry import UnknownTask


class InvalidTransition(ValueError):
    """The task is not in a status that allows this (e.g. cancelling a finished task)."""


__all__ = ["InvalidTransition", "UnknownTask"]

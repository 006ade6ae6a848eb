"""The database as the daemon sees it: reachable, or out since when and tried again when."""

from __future__ import annotations

FIRST_BACKOFF = 0.5


class Outage:
    """Backoff while the database is out (or the daemon's own work keeps failing).

    Each failure doubles the wait before the next try, up to ``ceiling``; the first success
    ends the outage.
    """

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.since: float | None = None  # monotonic; None while the database is reachable
        self.retry_at = 0.0
        self.backoff = FIRST_BACKOFF

    @property
    def down(self) -> bool:
        return self.since is not None

    def may_try(self, now: float) -> bool:
        """Whether the database may be used now: reachable, or its next try is due."""
        return self.since is None or now >= self.retry_at

    def failed(self, now: float) -> bool:
        """Record a failure, schedule the next try; True if it begins an outage."""
        began = self.since is None
        if began:
            self.since = now
        self.retry_at = now + self.backoff
        self.backoff = min(self.backoff * 2, self.ceiling)
        return began

    def ended(self, now: float) -> float | None:
        """Record a success; how long the outage lasted, or None if there was none."""
        if self.since is None:
            return None
        lasted, self.since, self.backoff = now - self.since, None, FIRST_BACKOFF
        return lasted

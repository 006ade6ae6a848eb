"""How a daemon learns that something changed: one wake-up channel per database.

PostgreSQL: LISTEN/NOTIFY. SQLite: the database files are watched (inotify, or ``stat()``)
and ``PRAGMA data_version`` tells another connection's commit. MariaDB: a sleeping statement
that committers interrupt. MySQL (or a channel that cannot be had): polling. The daemon
opens one at start (``open_channel``) and calls only the ``WakeupChannel`` interface.
"""

from __future__ import annotations

import logging
import selectors

from django.db import connections

from djangotasks import notify
from djangotasks.checks import sqlite_in_memory
from djangotasks.daemon.channels.base import (
    SAFETY_POLL_INTERVAL,
    PollingChannel,
    Wakeup,
    WakeupChannel,
)
from djangotasks.logfields import fields

__all__ = [
    "SAFETY_POLL_INTERVAL",
    "PollingChannel",
    "Wakeup",
    "WakeupChannel",
    "channel_kind",
    "open_channel",
]

logger = logging.getLogger("djangotasks")


def channel_kind(vendor: str, name: str = "", mariadb: bool = False) -> str:
    """Which channel a database has: "postgresql", "sqlite", "mariadb" or "polling".

    ``name``: the database's NAME (an in-memory SQLite database has no file to watch, and
    no other process can share it anyway); ``mariadb``: a "mysql" vendor that is MariaDB.
    """
    if vendor == "postgresql":
        return "postgresql"
    if vendor == "sqlite" and not sqlite_in_memory(name):
        return "sqlite"
    if vendor == "mysql" and mariadb:
        return "mariadb"
    return "polling"


def open_channel(
    alias: str, selector: selectors.BaseSelector, poll_interval: float
) -> WakeupChannel:
    """The wake-up channel for the database ``alias``, registered in ``selector``."""
    connection = connections[alias]
    vendor = connection.vendor
    kind = channel_kind(
        vendor,
        name=str(connection.settings_dict["NAME"] or ""),
        mariadb=vendor == "mysql" and notify.is_mariadb(connection),
    )
    channel: WakeupChannel
    if kind == "postgresql":
        from djangotasks.daemon.channels.postgres import PostgresChannel

        channel = PostgresChannel(alias, selector, poll_interval)
    elif kind == "sqlite":
        from djangotasks.daemon.channels.sqlite import SQLiteChannel

        path = str(connection.settings_dict["NAME"])
        channel = SQLiteChannel(path, alias, selector, poll_interval)
    elif kind == "mariadb":
        from djangotasks.daemon.channels.mariadb import MariaDBChannel

        channel = MariaDBChannel(alias, selector, poll_interval)
    else:
        channel = PollingChannel(selector, poll_interval)
        logger.info("taskd: %s cannot wake the daemon: %s", connection.display_name, channel,
                    extra=fields("wakeup_channel", channel=str(channel)))  # fmt: skip
        return channel
    logger.info("taskd: woken by %s", channel,
                extra=fields("wakeup_channel", channel=str(channel)))  # fmt: skip
    return channel

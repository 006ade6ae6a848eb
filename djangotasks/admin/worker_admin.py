"""The admin of ``djangotasks.Worker``: the daemons, as their heartbeats recorded them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from djangotasks.models import Worker

if TYPE_CHECKING:
    from django.http import HttpRequest

    _WorkerModelAdmin = admin.ModelAdmin[Worker]  # generic in the stubs only
else:
    _WorkerModelAdmin = admin.ModelAdmin


class WorkerAdmin(_WorkerModelAdmin):
    """The daemons, as their heartbeats recorded them. Read-only."""

    list_display = [
        "__str__", "machine", "mode", "capacity", "started_at", "last_seen", "stopped_at"
    ]  # fmt: skip
    list_filter = ["mode", ("last_seen", admin.DateFieldListFilter)]
    search_fields = ["hostname", "=pid", "host_key"]

    @admin.display(description=_("machine / pid namespace"), ordering="host_key")
    def machine(self, obj: Worker) -> str:
        # "<boot id>/<dev>:<inode>" is 49 characters: the list shows the boot id's first
        # block and the namespace's inode, enough to tell machines and containers apart; the
        # whole key is in the title and on the worker's page.
        boot_id, _sep, namespace = obj.host_key.partition("/")
        if not boot_id:
            return "—"
        short = f"{boot_id.split('-')[0]}/{namespace.rpartition(':')[2]}"
        return format_html('<span title="{}">{}</span>', obj.host_key, short)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        # A live daemon's row is its identity: deleting it would orphan its running tasks.
        if obj is not None and obj.is_alive:
            return False
        return super().has_delete_permission(request, obj)

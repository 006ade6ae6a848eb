"""The "Dashboard" entry of the admin's app list and sidebar (the ``Dashboard`` proxy model).

It has no pages of its own: its change list leads to the Task admin's dashboard, so the
dashboard is one click away from the admin index and from every page's sidebar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, path

from djangotasks.admin import panels
from djangotasks.models import Dashboard

if TYPE_CHECKING:
    from django.urls import URLPattern

    _DashboardModelAdmin = admin.ModelAdmin[Dashboard]  # generic in the stubs only
else:
    _DashboardModelAdmin = admin.ModelAdmin


class DashboardEntryAdmin(_DashboardModelAdmin):
    # Whoever may view tasks may view the dashboard; nothing here can change anything.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("djangotasks.view_task")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name="djangotasks_dashboard_changelist")]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            return HttpResponseRedirect(panels.url(self.admin_site, "dashboard"))
        except NoReverseMatch:
            raise Http404(
                f"The tasks dashboard is part of the Task admin, which is not registered on "
                f"the admin site {self.admin_site.name!r}."
            ) from None

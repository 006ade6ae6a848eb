"""A task list that never counts the whole table.

With a million task rows, ``COUNT(*)`` on every page view is the slowest query of the admin.
The paginator here counts at most a few pages past the current one (a ``LIMIT`` subquery on
an index), and the list says "500+ tasks" instead of an exact total.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from djangotasks.admin import permissions
from djangotasks.models.targets import load_targets

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

    from djangotasks.models import Task

    # Django's Paginator is generic in the stubs only.
    _TaskPaginator = Paginator[Task]
else:
    _TaskPaginator = Paginator

LOOKAHEAD_PAGES = 5


class AtLeast(int):
    """A count that may be a lower bound: ``AtLeast(500, more=True)`` renders as "500+".

    Its int value is one more than that (501), so a paginator knows the next page exists.
    """

    more: bool

    def __new__(cls, value: int, more: bool = False) -> AtLeast:
        obj = super().__new__(cls, value + 1 if more else value)
        obj.more = more
        return obj

    def __str__(self) -> str:
        return f"{int(self) - 1}+" if self.more else str(int(self))

    # Django's number formatting passes ints through mark_safe(), which keeps objects that
    # have __html__ as they are, so templates print "500+" rather than 500.
    def __html__(self) -> str:
        return str(self)


class LookaheadPaginator(_TaskPaginator):
    """Knows the rows up to ``LOOKAHEAD_PAGES`` past ``page_number``, not the total."""

    def __init__(self, object_list: QuerySet[Task], per_page: int, *, page_number: int = 1) -> None:
        super().__init__(object_list, per_page)
        self.queryset = object_list
        self.page_number = max(1, page_number)

    @cached_property
    def count(self) -> int:
        start = (self.page_number - 1) * self.per_page
        window = self.per_page * LOOKAHEAD_PAGES
        # How many rows a window holds does not depend on their order; without ORDER BY the
        # database counts index entries instead of sorting every matching row.
        found = self.queryset.order_by()[start : start + window + 1].count()
        return AtLeast(start + min(found, window), more=found > window)


def page_number(request: HttpRequest) -> int:
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


class TaskChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        load_targets(self.result_list)
        # The query kept the tasks of objects in their ModelAdmins' querysets; an object's
        # own has_view_permission(request, obj) is asked of the rows shown.
        access = permissions.Access.of(request, self.model_admin.admin_site)
        self.result_list = access.shown(list(self.result_list))

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from djangotasks.models.task import Task


class Dashboard(Task):
    """No table and no permissions of its own: the "Dashboard" entry of the admin's app list
    and sidebar, which leads to the tasks dashboard.

    A model is the one thing the admin index lists whatever the order of INSTALLED_APPS; a
    template override of the index would only be found with djangotasks before the admin.
    """

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")

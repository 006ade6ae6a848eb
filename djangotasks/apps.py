from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoTasksConfig(AppConfig):
    name = "djangotasks"
    verbose_name = _("Tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_started
        from django.db.models.signals import pre_delete
        from django.utils.module_loading import autodiscover_modules

        from djangotasks import checks  # noqa: F401 - registers the system checks
        from djangotasks.daemon import thread
        from djangotasks.models import Task, objects, transitions
        from djangotasks.registry import registry

        # @task functions live in each app's tasks.py; import them so they are registered
        # in every process (web, daemon, task) alike.
        autodiscover_modules("tasks")
        request_started.connect(thread.start_on_first_request, dispatch_uid="djangotasks.thread")
        pre_delete.connect(
            transitions.fail_dependents_of_deleted,
            sender=Task,
            dispatch_uid="djangotasks.fail_dependents_of_deleted",
        )
        # Every model with @task methods is loaded by now (they register on class_prepared).
        objects.connect({d.model for d in registry if d.model is not None})

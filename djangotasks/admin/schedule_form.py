"""The form of the Schedule admin: a choice of the tasks a schedule can run, and a time
zone field that proposes the known zones. ``Schedule.clean()`` does the validating."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from djangotasks.models import Schedule
from djangotasks.registry import registry

if TYPE_CHECKING:
    _ScheduleForm = forms.ModelForm[Schedule]  # generic in the stubs only
else:
    _ScheduleForm = forms.ModelForm


def task_choices() -> list[tuple[Any, Any]]:
    """Function tasks and Django tasks, grouped: a model method has no object to run on."""
    functions: list[tuple[str, str]] = []
    django_tasks: list[tuple[str, str]] = []
    for definition in sorted(registry, key=lambda d: d.name):
        if not definition.is_method:
            choice = (definition.name, f"{definition.label} ({definition.name})")
            (django_tasks if definition.takes_arguments else functions).append(choice)
    groups = [(_("Function tasks"), functions), (_("Django tasks"), django_tasks)]
    return [("", "---------"), *((label, group) for label, group in groups if group)]


class TaskChoiceField(forms.ChoiceField):
    def valid_value(self, value: Any) -> bool:
        # Schedule.clean() says why a name is refused (a model method, no such task), which
        # helps more than "select a valid choice".
        return True


@cache
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


class TimeZoneInput(forms.TextInput):
    """A text input that proposes the known zones (a ``<datalist>``, no script)."""

    template_name = "djangotasks/widgets/time_zone.html"

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        attrs = {**(attrs or {}), "list": "djangotasks-time-zones", "autocomplete": "off"}
        context = super().get_context(name, value, attrs)
        context["widget"]["zones"] = time_zones()
        return context


class ScheduleForm(_ScheduleForm):
    task_name = TaskChoiceField(
        label=_("Task"),
        choices=task_choices,
        help_text=_("A @task function, or a Django task (give its arguments below)."),
    )

    class Meta:
        model = Schedule
        fields = [
            "name", "task_name", "arguments", "enabled", "cron", "interval", "time_zone",
            "missed", "missed_within", "overlap",
        ]  # fmt: skip
        widgets = {"time_zone": TimeZoneInput, "arguments": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name = self.instance.task_name
        if name and name not in registry:
            # Its code is gone since: keep it selected, and let clean() say so on saving.
            field = cast("forms.ChoiceField", self.fields["task_name"])
            field.choices = [*task_choices(), (name, _("%s (no such task)") % name)]

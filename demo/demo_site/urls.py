from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from djangotasks.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # Staff with view_task may read it; Prometheus sends DJANGOTASKS_METRICS_TOKEN.
    path("djangotasks/metrics", metrics_view, name="djangotasks-metrics"),
]

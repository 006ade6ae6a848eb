from __future__ import annotations

from django.contrib import admin
from django.urls import path

from djangotasks.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("djangotasks/metrics", metrics_view, name="djangotasks-metrics"),
]

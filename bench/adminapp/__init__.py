"""The bench model of ``bench/bench_admin.py``: objects hidden by their ModelAdmin's queryset.

Installed only by ``bench/admin_settings.py`` (the admin benchmark), not by ``bench.suite``.
"""

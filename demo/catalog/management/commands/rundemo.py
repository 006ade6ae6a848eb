"""``manage.py rundemo``: migrate, create the demo login, seed, start taskd and the web server.

One command for a newcomer. The daemon and the web server are child processes; Ctrl-C (or
SIGTERM) stops both, the daemon gracefully.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from catalog.seed import seed

MANAGE = Path(__file__).resolve().parents[3] / "manage.py"
USERNAME = "demo"
PASSWORD = os.environ.get("DEMO_PASSWORD", "demo")
STOP_WAIT = 15.0


class Command(BaseCommand):
    help = "Run the djangotasks demo: database, demo login, example data, daemon, web server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--addr", default="127.0.0.1")

    def handle(self, *args: Any, port: int, addr: str, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self._create_login()
        for line in seed():
            self.stdout.write(f"demo: {line}")
        children = [
            self._spawn("taskd", "run", "--pidfile", str(Path(settings.VAR) / "taskd.pid")),
            self._spawn("runserver", "--noreload", f"{addr}:{port}"),
        ]
        url = f"http://{addr}:{port}/admin/"
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  djangotasks demo at {url}\n  login: {USERNAME}   password: {PASSWORD}\n"
                f"  database: {settings.DATABASE_PATH}\n  Ctrl-C stops the server and the daemon.\n"
            )
        )
        self.stdout.flush()
        stop = _Stop()
        try:
            while not stop.requested and all(c.poll() is None for c in children):
                time.sleep(0.2)
        finally:
            for child in reversed(children):
                _terminate(child)
        self.stdout.write("demo stopped")

    def _create_login(self) -> None:
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        if user is None:
            User.objects.create_superuser(USERNAME, "demo@example.com", PASSWORD)
        elif not user.check_password(PASSWORD):
            user.set_password(PASSWORD)
            user.save(update_fields=["password"])

    def _spawn(self, *command: str) -> subprocess.Popen[bytes]:
        # A process group of their own: the terminal's Ctrl-C reaches this command only,
        # which then stops the daemon first-things-first rather than both racing.
        return subprocess.Popen([sys.executable, str(MANAGE), *command], process_group=0)


class _Stop:
    """Turns SIGINT and SIGTERM into a flag the main loop checks."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


def _terminate(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()

"""Run DynoScaler on a laptop: web + worker + beat in one terminal, on the laptop defaults."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from scaling import services
from scaling.legacy_env import legacy_pair_sync_at_start

PASSWORD_FILE = Path(settings.BASE_DIR) / ".local-admin-password"


class Command(BaseCommand):
    help = "Migrate, make an admin login, and run the web server, a Celery worker and Celery beat together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, port: int = 8000, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        user, password = self.ensure_admin()
        if not legacy_pair_sync_at_start() and services.sandbox_demo_ensure() is not None:
            self.stdout.write("A sandbox pair (simulated queue and formation, clearly labelled) shows DynoScaler at work; "
                              "it is not created when real credentials exist.")
        self.stdout.write(self.style.SUCCESS(
            f"\nDynoScaler admin: http://127.0.0.1:{port}/admin/  user {user!r}  password {password!r}\n"
            "Press Ctrl-C to stop web, worker and beat.\n"
        ))
        self.run_processes(port)

    def ensure_admin(self) -> tuple[str, str]:
        """The admin login: from DJANGO_SUPERUSER_USERNAME/PASSWORD, or made once and kept
        in .local-admin-password (git-ignored) so every run prints the same one."""
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            password = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else secrets.token_urlsafe(12)
            PASSWORD_FILE.write_text(password + "\n")
            PASSWORD_FILE.chmod(0o600)
        User = get_user_model()
        user = User.objects.filter(username=username).first() or User(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return username, password

    def run_processes(self, port: int) -> None:
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [python, "-m", "celery", "-A", "dynoscaler_site", "worker", "--pool=solo", "--loglevel=INFO"],
            "beat": [python, "-m", "celery", "-A", "dynoscaler_site", "beat", "--loglevel=INFO",
                     "--scheduler", "scaling.beat:DynoScalerScheduler", "--max-interval", "5"],
        }
        procs = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1)
            for name, cmd in commands.items()
        }
        for name, proc in procs.items():
            threading.Thread(target=self._relay, args=(name, proc.stdout), daemon=True).start()
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                dead = [name for name, p in procs.items() if p.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} stopped; stopping the others")
                    break
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _relay(self, name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            self.stdout.write(f"{name:>6} | {line.rstrip()}")

"""Run DynoScaler on a laptop: web + worker + beat in one terminal, on the laptop defaults."""

from __future__ import annotations

import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dynoscaler_site.env import EnvError, env_int
from scaling import services
from scaling.legacy_env import legacy_pair_sync_at_start, legacy_variables_set

PASSWORD_FILE = Path(settings.BASE_DIR) / ".local-admin-password"
WEB_START_SECONDS = 60


class Command(BaseCommand):
    help = "Migrate, make an admin login, and run the web server, a Celery worker and Celery beat together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=None,
                            help="port of the web server on 127.0.0.1 (default: $PORT, else 8000)")

    def handle(self, *args: Any, port: int | None = None, **options: Any) -> None:
        if port is None:
            try:
                port = env_int("PORT", 8000, minimum=1, maximum=65535)
            except EnvError as exc:
                raise CommandError(str(exc)) from None
        elif not 1 <= port <= 65535:
            raise CommandError(f"--port: expected a number from 1 to 65535, got {port}")
        port_is_free(port)
        if isinstance(sys.stdout, io.TextIOWrapper):
            # The three processes' lines, relayed as they come even into a pipe or a file, and
            # before the last line on stderr.
            sys.stdout.reconfigure(line_buffering=True)
        call_command("migrate", interactive=False, verbosity=0)
        user, password = self.ensure_admin()
        # Set but malformed, the original variables still say the user wants real work: the
        # sync logs one line naming each bad variable, and no demo pair gets in the way.
        real_wanted = legacy_variables_set()
        legacy_pair_sync_at_start()
        if real_wanted or services.real_setup_exists():
            if services.sandbox_demo_switch_off() is not None:
                self.stdout.write(f"The sandbox pair {services.SANDBOX_DEMO_NAME!r} is switched off: real work is "
                                  "configured (the original variables, or accounts in the admin); delete it in the admin when you no longer want it.")
        elif services.sandbox_demo_ensure() is not None:
            self.stdout.write("A sandbox pair (simulated queue and formation, clearly labelled) shows DynoScaler at work; "
                              "it is not created when real credentials exist.")
        self.run_processes(port, banner=(
            f"\nDynoScaler admin: http://127.0.0.1:{port}/admin/  user {user!r}  password {password!r}\n"
            "Press Ctrl-C to stop web, worker and beat.\n"
        ))

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

    def run_processes(self, port: int, banner: str) -> None:
        """Run the three until Ctrl-C (exit 0) or until one stops on its own (exit 1, after
        stopping the others). The login is printed once the web server answers."""
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
        relays = [threading.Thread(target=self._relay, args=(name, proc.stdout), daemon=True)
                  for name, proc in procs.items()]
        for relay in relays:
            relay.start()
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        failed = ""
        web_up = False
        started = time.monotonic()
        try:
            while not stopping:
                dead = [name for name, p in procs.items() if p.poll() is not None]
                if dead:
                    failed = ", ".join(f"{name} (exit code {procs[name].returncode})" for name in dead)
                    self.stderr.write(f"{failed} stopped; stopping the others")
                    break
                if not web_up:
                    web_up = answers(port)
                    if web_up:
                        self.stdout.write(self.style.SUCCESS(banner))
                    elif time.monotonic() - started > WEB_START_SECONDS:
                        failed = f"web (not answering on port {port} after {WEB_START_SECONDS} s)"
                        self.stderr.write(f"{failed}; stopping the others")
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
            for relay in relays:  # their last lines come before ours
                relay.join(timeout=5)
        if failed:
            raise CommandError(f"DynoScaler stopped because {failed} stopped; its lines above say why")

    def _relay(self, name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            self.stdout.write(f"{name:>6} | {line.rstrip()}")


def port_is_free(port: int) -> None:
    """Refuse to start when something already listens on the port (another `make run`?),
    before migrating or starting anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CommandError(f"port {port} on 127.0.0.1 is taken ({exc.strerror}); is DynoScaler already "
                               "running? Choose another with --port or PORT") from None


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False

"""What a newcomer sees running the README's commands before configuring anything: help
that works, and otherwise one line naming the variable, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
README_COMMANDS = ["scale_once", "export_decisions", "sync_env_pair", "rotate_encryption_key", "simulate",
                   "runlocal", "pairs"]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a fresh process whose environment has nothing of DynoScaler's."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=clean, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", README_COMMANDS)
def test_a_readme_commands_help_works_with_nothing_configured(command: str) -> None:
    done = manage(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: manage.py {command}")
    assert done.stderr == ""


def test_help_lists_dynoscalers_own_commands_with_nothing_configured() -> None:
    done = manage("help")
    assert done.returncode == 0
    assert "[scaling]" in done.stdout and "simulate" in done.stdout
    assert "settings are not properly configured" not in done.stdout + done.stderr


def test_a_command_without_secret_key_prints_one_line_naming_it() -> None:
    done = manage("scale_once")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "DynoScaler is not configured: SECRET_KEY: is required when DEBUG is off (set DEBUG=1 on a laptop)"
    ]


def test_a_malformed_variable_is_named_in_one_line_even_when_asking_for_help() -> None:
    done = manage("simulate", "--help", HEROKU_TIMEOUT_SECONDS="ten")
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "DynoScaler is not configured: HEROKU_TIMEOUT_SECONDS: expected a whole number, got 'ten'"
    ]



@pytest.mark.parametrize(("variable", "url", "problem"), [
    ("DATABASE_URL", "postgress://ops:s3cret-pw@db.example.com/dynoscaler", "its scheme is 'postgress'"),
    ("DATABASE_URL", "db.example.com/dynoscaler", "it has no scheme"),
    ("DATABASE_URL", "postgres://ops:s3cret-pw@db.example.com:fivefourthreetwo/dynoscaler",
     "it is not a URL that can be read"),
    # The original tool's variable: before, the worker logged the client's traceback, URL and
    # password included, every few seconds.
    ("ELK_ELASTIC_URL", "http://elastic:s3cret-pw@es invalid:9200", "it has a space in it"),
    ("ELK_ELASTIC_URL", "elastic:s3cret-pw@es.example.com:9200", "it has no http:// or https://"),
    ("ELK_ELASTIC_URL", "ftp://elastic:s3cret-pw@es.example.com:9200", "its scheme is 'ftp'"),
    ("ELK_ELASTIC_URL", "https://elastic:s3cret-pw@es.example.com:92OO", "its port is not a number"),
    ("ELK_ELASTIC_URL", "http://elastic:s3cret-pw@es.example.com", "an http:// URL needs its port"),
    # Before, a Redis URL without its scheme was taken for an AMQP host and retried a hundred
    # times, and a port that is not a number raised a traceback.
    ("REDIS_URL", "s3cret-pw@redis.example.com:6379", "it has no redis:// or rediss://"),
    ("REDIS_URL", "redis://:s3cret-pw@redis.example.com:abc/0", "its port is not a number"),
    ("REDIS_URL", "redis://:s3cret-pw@redis.example.com:6379/zero", "its database (after the last /) is not a number"),
    ("HEROKU_API_URL", "api.heroku.com", "it has no http:// or https://"),
])
def test_a_malformed_url_variable_stops_start_up_in_one_line_without_its_password(variable: str, url: str,
                                                                                  problem: str) -> None:
    done = manage("check", DEBUG="1", **{variable: url})
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    expected = {"DATABASE_URL": "expected postgres://", "ELK_ELASTIC_URL": "expected http(s)://HOST:PORT",
                "REDIS_URL": "expected redis://", "HEROKU_API_URL": "expected http(s)://HOST:PORT"}[variable]
    assert lines[0].startswith(f"DynoScaler is not configured: {variable}: {expected}")
    assert problem in lines[0]
    assert "s3cret-pw" not in done.stdout + done.stderr


def test_a_redis_url_with_tls_or_a_unix_socket_is_accepted() -> None:
    for url in ("rediss://:s3cret-pw@redis.example.com:6380/0", "redis+socket:///var/run/redis.sock"):
        done = manage("check", REDIS_URL=url, DEBUG="1")
        assert done.returncode == 0, done.stderr


def test_an_https_elasticsearch_url_may_leave_its_port_out() -> None:
    done = manage("check", ELK_ELASTIC_URL="https://elastic:s3cret-pw@es.example.com", DEBUG="1")
    assert done.returncode == 0, done.stderr


def test_a_log_level_that_is_not_one_is_named_in_one_line() -> None:
    done = manage("pairs", "export", LOG_LEVEL="LOUD", DEBUG="1")
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "DynoScaler is not configured: LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"
    ]
    assert manage("check", LOG_LEVEL="warning", DEBUG="1").returncode == 0


def test_export_decisions_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    laptop = {"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert manage("migrate", **laptop).returncode == 0
    made = manage("shell", "-c", (
        "from scaling.models import Decision\n"
        "Decision.objects.bulk_create([Decision(pair_name='orders', app_name='orders-app', process_type='worker', "
        "policy='classic', outcome='no_change', reason='quiet ' * 40, duration_ms=1) for _ in range(3000)])"), **laptop)
    assert made.returncode == 0, made.stderr
    # `export_decisions | head -c 600`: the reader closes the pipe after 600 bytes.
    command = subprocess.Popen([sys.executable, "manage.py", "export_decisions"], cwd=BASE_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={"PATH": os.environ.get("PATH", ""), **laptop})
    assert command.stdout is not None and command.stderr is not None
    first = command.stdout.read(600)
    command.stdout.close()
    errors = command.stderr.read().decode()
    assert command.wait(timeout=60) == 0, errors
    assert first.startswith(b'{"') and errors == ""


def test_the_laptop_broker_sends_without_a_warning(tmp_path: Path) -> None:
    # Every task sent on a laptop logged "No hostname was supplied" (Kombu, on a URL with no host).
    done = manage("shell", "-c", (
        "from django.conf import settings\n"
        "from celery import current_app\n"
        "with current_app.connection_for_write() as connection:\n"
        "    print(connection.info()['hostname'], connection.transport_cls)"),
        DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "localhost filesystem"
    assert "No hostname" not in done.stderr and "WARNING" not in done.stderr


def test_a_log_line_or_traceback_never_carries_a_urls_password(tmp_path: Path) -> None:
    # What a library raises quotes the URL it was given; the log format masks its password.
    done = manage("shell", "-c", (
        "import logging\n"
        "log = logging.getLogger('scaling.test')\n"
        "log.warning('connecting to %s', 'redis://:s3cret-one@cache.internal:6379/0')\n"
        "try:\n"
        "    raise ValueError(\"Could not parse URL 'http://elastic:s3cret-two@es invalid:9200'\")\n"
        "except ValueError:\n"
        "    log.exception('shipping failed (token=s3cret-three)')\n"),
        DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert done.returncode == 0, done.stderr
    assert "connecting to redis://:****@cache.internal:6379/0" in done.stderr
    assert "Could not parse URL 'http://elastic:****@es invalid:9200'" in done.stderr and "Traceback" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout

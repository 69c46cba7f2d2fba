"""Production settings, as the README's "Deploying to Heroku" steps make them.

Each check runs in its own process with only the environment a Heroku dyno would have:
the variables the README's `heroku config:set` sets (its `$(python -c ...)` values
evaluated as a shell would), DATABASE_URL and REDIS_URL as the add-ons set them (here,
local servers), and nothing else: no DEBUG, no test settings.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
HOST = "my-dynoscaler.herokuapp.com"

# Asks the app, through Django's test client, what plain and forwarded-HTTPS requests get.
PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client()
def probe(path, **headers):
    response = client.get(path, HTTP_HOST=%(host)r, **headers)
    return {"status": response.status_code, "location": response.get("Location", ""),
            "hsts": response.get("Strict-Transport-Security", "")}
print(json.dumps({
    "plain": probe("/"),
    "forwarded_https": probe("/", HTTP_X_FORWARDED_PROTO="https"),
    "healthz_plain": probe("/healthz"),
}))
""" % {"host": HOST}


def readme_deploy_variables() -> dict[str, str]:
    """The variables the README's deploy steps set with `heroku config:set`, with values."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("## Deploying to Heroku", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"heroku config:set (.*?)\n(?!\s)", section, re.S)
    assert command, "the README's deploy steps no longer run `heroku config:set`"
    variables = {}
    for name, substituted, literal in re.findall(r"""([A-Z_]+)=(?:"\$\(python -c '([^']*)'\)"|(\S+))""", command.group(1)):
        if substituted:
            literal = subprocess.run([sys.executable, "-c", substituted], capture_output=True, text=True,
                                     check=True).stdout.strip()
        variables[name] = literal
    return variables


def heroku_env(**overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        "PATH": os.environ["PATH"],
        **readme_deploy_variables(),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        **overrides,
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_deploy_steps_set_the_variables_production_needs() -> None:
    variables = readme_deploy_variables()
    assert {"SECRET_KEY", "DYNOSCALER_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"} <= set(variables)
    assert len(variables["SECRET_KEY"]) >= 50 and "DEBUG" not in variables


@pytest.mark.django_db
def test_check_deploy_is_clean_with_the_readme_deploy_steps() -> None:
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], heroku_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_and_the_router_forwarded_https_is_served() -> None:
    result = run(["-c", PROBE], {**heroku_env(), "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings"})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"]["status"] == 301 and seen["plain"]["location"] == f"https://{HOST}/"
    assert seen["forwarded_https"]["status"] == 302 and seen["forwarded_https"]["location"] == "/admin/"
    assert seen["forwarded_https"]["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["healthz_plain"]["status"] == 200, "monitors may poll /healthz over plain HTTP"


@pytest.mark.django_db
def test_the_redirect_and_hsts_are_set_by_variables() -> None:
    env = {**heroku_env(SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600", SECURE_HSTS_INCLUDE_SUBDOMAINS="0",
                        SECURE_HSTS_PRELOAD="1"),
           "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings"}
    result = run(["-c", PROBE], env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"]["status"] == 302 and seen["plain"]["location"] == "/admin/"
    assert seen["forwarded_https"]["hsts"] == "max-age=3600; preload"


def test_a_malformed_security_variable_stops_start_up_naming_it() -> None:
    env = {**os.environ, "SECURE_HSTS_SECONDS": "a year"}
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS: expected a whole number, got 'a year'" in result.stderr

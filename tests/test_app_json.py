"""app.json, the manifest behind the "Deploy to Heroku" button. It cannot be deployed from
here, so these check it against Heroku's documented app.json fields, against the Procfile,
and against what the settings need to start in production."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet
from jsonschema import Draft202012Validator

BASE_DIR = Path(__file__).resolve().parent.parent
APP_JSON = json.loads((BASE_DIR / "app.json").read_text())
PROCFILE = dict(
    line.split(":", 1) for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.strip() and not line.startswith("#")
)
# The config vars each add-on sets (Heroku Postgres and Heroku Key-Value Store's documentation).
ADDON_VARS = {"heroku-postgresql": "DATABASE_URL", "heroku-redis": "REDIS_URL"}
ADDON_SAMPLE_VALUES = {"DATABASE_URL": "postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d1",
                       "REDIS_URL": "rediss://:p@ec2-5-6-7-8.compute-1.amazonaws.com:12345"}

_URL = {"type": "string", "pattern": r"^(https?://|git@)\S+$"}
_DYNO_SIZES = ["eco", "basic", "standard-1x", "standard-2x", "performance-m", "performance-l", "performance-l-ram",
               "performance-xl", "performance-2xl", "private-s", "private-m", "private-l", "shield-s", "shield-m", "shield-l"]
# Written from Heroku Dev Center's "app.json Schema": every documented top-level key, each
# with its documented shape; anything else (a typo such as "formations") is refused.
APP_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 30},
        "description": {"type": "string", "maxLength": 140},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "website": _URL,
        "repository": _URL,
        "logo": _URL,
        "success_url": {"type": "string", "pattern": r"^(/|https?://)"},
        "scripts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"postdeploy": {"type": "string"}, "pr-predestroy": {"type": "string"}},
        },
        "env": {
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Z][A-Z0-9_]*$"},
            "additionalProperties": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "description": {"type": "string"},
                            "value": {"type": "string"},
                            "required": {"type": "boolean"},
                            "generator": {"enum": ["secret"]},
                        },
                    },
                ]
            },
        },
        "formation": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["quantity"],
                "properties": {"quantity": {"type": "integer", "minimum": 0}, "size": {"enum": _DYNO_SIZES}},
            },
        },
        "image": {"type": "string"},
        "addons": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["plan"],
                        "properties": {"plan": {"type": "string"}, "as": {"type": "string"}, "options": {"type": "object"}},
                    },
                ]
            },
        },
        "buildpacks": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False, "required": ["url"],
                      "properties": {"url": {"type": "string"}}},
        },
        "environments": {"type": "object"},
        "stack": {"type": "string"},
    },
}


def addon_services() -> list[str]:
    plans = [a if isinstance(a, str) else a["plan"] for a in APP_JSON["addons"]]
    return [plan.split(":")[0] for plan in plans]


def test_app_json_follows_herokus_documented_schema() -> None:
    Draft202012Validator.check_schema(APP_JSON_SCHEMA)
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in Draft202012Validator(APP_JSON_SCHEMA).iter_errors(APP_JSON)]
    assert problems == []


def test_the_schema_refuses_a_misspelt_key_or_a_wrong_shape() -> None:
    # The test above can only catch what this schema refuses.
    validator = Draft202012Validator(APP_JSON_SCHEMA)
    assert not validator.is_valid({**APP_JSON, "formations": {}})
    assert not validator.is_valid({**APP_JSON, "formation": {"web": {"quantity": "1"}}})
    assert not validator.is_valid({**APP_JSON, "env": {"SECRET_KEY": {"generator": "random"}}})


def test_the_formation_runs_every_procfile_process_once() -> None:
    assert set(APP_JSON["formation"]) == set(PROCFILE) - {"release"} == {"web", "worker", "beat"}
    assert {p["quantity"] for p in APP_JSON["formation"].values()} == {1}  # one beat: a second only wastes a dyno


def test_the_release_phase_migrates_before_new_code_runs() -> None:
    assert "manage.py migrate --noinput" in PROCFILE["release"]


def test_the_first_deploy_gets_a_postgres_database_and_a_redis_broker() -> None:
    assert set(addon_services()) == {"heroku-postgresql", "heroku-redis"}
    assert APP_JSON["buildpacks"] == [{"url": "heroku/python"}]
    assert (BASE_DIR / ".python-version").read_text().strip() == "3.11"


def settings_facts(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh process that has only ``env``; print what a deploy depends on."""
    script = (
        "import json, runpy; s = runpy.run_path('dynoscaler_site/settings.py'); "
        "print(json.dumps({'debug': s['DEBUG'], 'secret_key': s['SECRET_KEY'], 'engine': s['DATABASES']['default']['ENGINE'], "
        "'broker': s['CELERY_BROKER_URL'].split(':')[0], 'keys': s['ENCRYPTION_KEYS'], 'metrics': s['METRICS_TOKEN']}))"
    )
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=60)


def environment_from_app_json() -> dict[str, str]:
    """What Heroku sets when the button deploys: values, generated secrets, what the user types, add-on URLs."""
    env: dict[str, str] = {}
    for name, spec in APP_JSON["env"].items():
        spec = {"value": spec} if isinstance(spec, str) else spec
        if spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)
        elif "value" in spec:
            env[name] = spec["value"]
        elif spec.get("required", True):
            env[name] = f"typed-by-the-user-{name.lower()}"
    for service in addon_services():
        env[ADDON_VARS[service]] = ADDON_SAMPLE_VALUES[ADDON_VARS[service]]
    return env


def test_the_button_sets_every_variable_production_needs() -> None:
    env = environment_from_app_json()
    done = settings_facts(env)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["debug"] is False
    assert facts["secret_key"] == env["SECRET_KEY"]
    assert facts["engine"] == "django.db.backends.postgresql"
    assert facts["broker"] == "rediss"
    assert len(facts["keys"]) == 1  # derived from the generated DYNOSCALER_ENCRYPTION_SECRET, not from SECRET_KEY
    assert facts["metrics"] is None  # /metrics stays off until a token is set


def test_the_generated_encryption_secret_keeps_stored_secrets_readable_when_secret_key_changes() -> None:
    secret = secrets.token_hex(32)
    before = json.loads(settings_facts({"SECRET_KEY": "first-key", "DYNOSCALER_ENCRYPTION_SECRET": secret}).stdout)
    after = json.loads(settings_facts({"SECRET_KEY": "rotated-key", "DYNOSCALER_ENCRYPTION_SECRET": secret}).stdout)
    token = Fernet(before["keys"][0].encode()).encrypt(b"hk-token")
    assert Fernet(after["keys"][0].encode()).decrypt(token) == b"hk-token"


def test_a_listed_key_comes_first_so_rotate_encryption_key_can_move_off_the_derived_one() -> None:
    secret, new_key = secrets.token_hex(32), Fernet.generate_key().decode()
    derived = json.loads(settings_facts({"SECRET_KEY": "k", "DYNOSCALER_ENCRYPTION_SECRET": secret}).stdout)["keys"]
    both = json.loads(settings_facts({"SECRET_KEY": "k", "DYNOSCALER_ENCRYPTION_SECRET": secret,
                                      "DYNOSCALER_ENCRYPTION_KEYS": new_key}).stdout)["keys"]
    assert both == [new_key, *derived]
    old_token = Fernet(derived[0].encode()).encrypt(b"aws-secret")
    rotated = MultiFernet([Fernet(k.encode()) for k in both]).rotate(old_token)
    assert Fernet(new_key.encode()).decrypt(rotated) == b"aws-secret"


@pytest.mark.parametrize("name", ["DYNOSCALER_ENCRYPTION_SECRET", "DYNOSCALER_METRICS_TOKEN"])
def test_a_short_secret_is_refused_naming_its_variable(name: str) -> None:
    done = settings_facts({"SECRET_KEY": "k", name: "short"})
    assert done.returncode != 0
    assert re.search(rf"ImproperlyConfigured: {name}: must be at least 16 characters", done.stderr)
    assert "'short'" not in done.stderr  # a secret's value is never echoed


def test_the_readmes_button_deploys_the_repository_app_json_names() -> None:
    readme = (BASE_DIR / "README.md").read_text()
    button = re.search(r"\]\((https://heroku\.com/deploy\?template=([^)]+))\)", readme)
    assert button is not None
    assert button.group(2) == APP_JSON["repository"]
    assert readme.index(button.group(1)) > readme.index("## Deploying to Heroku")

"""DynoScaler settings, read from the environment.

Laptop defaults need nothing installed: a SQLite file and Kombu's filesystem broker.
Production (Heroku) sets DATABASE_URL (PostgreSQL), REDIS_URL and SECRET_KEY.
A malformed value stops start-up with an error naming the variable.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from dynoscaler_site.env import EnvError, env_bool, env_choice, env_database, env_http_url, env_int, env_optional, env_redis_url, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DEBUG = env_bool("DEBUG", False)
    _secret = env_optional("SECRET_KEY")
    if _secret is None and not DEBUG:
        raise EnvError("SECRET_KEY", "is required when DEBUG is off (set DEBUG=1 on a laptop)")
    SECRET_KEY = _secret or "insecure-laptop-key-never-use-in-production"

    ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "*").split(",") if h.strip()]

    DATABASES = {
        "default": env_database(
            "DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            # A kept connection is checked (SELECT 1) before its first use in each task or
            # request, so one the server dropped is replaced instead of failing the work.
            conn_health_checks=True,
        )
    }

    # Celery: Redis in production; on a laptop, a broker that needs no server.
    _redis_url = env_redis_url("REDIS_URL")
    CELERY_BROKER_URL = _redis_url or "filesystem://localhost/"  # (a host, or Kombu warns at every send)
    HEROKU_API_URL = env_http_url("HEROKU_API_URL", default_port=443, host="api.heroku.com") or "https://api.heroku.com"
    HEROKU_TIMEOUT_SECONDS = env_int("HEROKU_TIMEOUT_SECONDS", 10, minimum=1)
    AWS_TIMEOUT_SECONDS = env_int("AWS_TIMEOUT_SECONDS", 10, minimum=1)
    # A cycle's claim on its pair expires after this, so a worker killed mid-cycle does not
    # stall the pair for ever. It must outlast the task's hard time limit.
    CYCLE_TIME_LIMIT_SECONDS = env_int("DYNOSCALER_CYCLE_TIME_LIMIT", 120, minimum=10)
    # A cycle reads SQS only (a fraction of a cent per queue a day at 15 s): Heroku is called
    # to act and to reconcile, so the floor is about SQS's own lag, not Heroku's pool.
    MIN_INTERVAL_SECONDS = env_int("DYNOSCALER_MIN_INTERVAL", 5, minimum=1)
    # A reconciling read of each app's formation at most this often (and while new dynos
    # boot), so a missed webhook, or none at all, is caught.
    RECONCILE_SECONDS = env_int("DYNOSCALER_RECONCILE_SECONDS", 300, minimum=30, maximum=3600)
    # Reconciling reads leave this many calls above the reserve for the writes that matter.
    HEROKU_RECONCILE_HEADROOM = env_int("HEROKU_RECONCILE_HEADROOM", 50, minimum=0, maximum=4500)
    # How often a target_wait pair reads CloudWatch's per-minute deletes and age of the oldest
    # message (GetMetricData costs $0.01 per 1,000 metrics: two a queue a read, so about
    # $0.90 a queue a month at 60 s). 0: never; the policy then learns from the counts.
    CLOUDWATCH_SECONDS = env_int("DYNOSCALER_CLOUDWATCH_SECONDS", 60, minimum=0, maximum=86400)
    # Identical quiet cycles are stored as one decision row at most this long.
    DECISION_RUN_SECONDS = env_int("DYNOSCALER_DECISION_RUN_SECONDS", 900, minimum=0, maximum=86400)
    # Every cycle's counts (for the chart and simulate --from-history) are kept this long.
    SAMPLE_RETENTION_DAYS = env_int("DYNOSCALER_SAMPLE_RETENTION_DAYS", 8, minimum=1, maximum=90)
    HEROKU_RATE_LIMIT_BACKOFF_SECONDS = env_int("HEROKU_RATE_LIMIT_BACKOFF", 60, minimum=1)
    # API calls left in an account's pool below which its pairs wait for the pool to refill,
    # so DynoScaler never drains the tokens the team's own tools (deploys, CI) need.
    HEROKU_RATE_LIMIT_RESERVE = env_int("HEROKU_RATE_LIMIT_RESERVE", 100, minimum=0, maximum=4500)

    ELK_ELASTIC_URL = env_http_url("ELK_ELASTIC_URL", default_port=9200)
    ELK_ELASTIC_USER = env_optional("ELK_ELASTIC_USER")
    ELK_ELASTIC_PASS = env_optional("ELK_ELASTIC_PASS")
    ELK_INDEX_AS = env_str("ELK_INDEX_AS", "dynoscaler-decisions")
    ELK_INDEX_TYPE_AS = env_optional("ELK_INDEX_TYPE_AS")
    AUDIT_SHIP_BATCH = env_int("DYNOSCALER_AUDIT_BATCH", 500, minimum=1)
    AUDIT_SHIP_INTERVAL_SECONDS = env_int("DYNOSCALER_AUDIT_INTERVAL", 30, minimum=1)
    # One shipper at a time holds this lease, renewed before each batch (one Elasticsearch
    # request of at most its 10 s timeout): a killed shipper holds the trail up this long at most.
    AUDIT_LEASE_SECONDS = env_int("DYNOSCALER_AUDIT_LEASE", 30, minimum=15, maximum=600)
    # Beat holds pairs' cycles back while this many tasks wait in the broker's queue: the
    # workers are behind, and queueing more would only make every cycle wait (README: "Scale").
    BEAT_MAX_QUEUED = env_int("DYNOSCALER_BEAT_MAX_QUEUED", 100, minimum=1)
    # A file that gets one line per task beat sends (due, sent, held, name): for bench/scale.py.
    BEAT_DISPATCH_LOG = env_optional("DYNOSCALER_BEAT_DISPATCH_LOG")
    LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    # Celery's "received" and "succeeded" lines, two per task (8,000 a minute at 1,000 pairs
    # every 15 s), are off: each cycle that does something logs its own line, and a failing
    # task is still logged, at ERROR.
    LOG_TASKS = env_bool("DYNOSCALER_LOG_TASKS", False) or LOG_LEVEL == "DEBUG"
    ENCRYPTION_KEYS = [k.strip() for k in env_str("DYNOSCALER_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    # Heroku's app.json can generate a random secret but not a Fernet key, so a deploy from
    # the button gets this one and a key is derived from it (after any listed keys).
    _encryption_secret = env_optional("DYNOSCALER_ENCRYPTION_SECRET")
    # /metrics answers only with this bearer token; unset, it is off (404).
    METRICS_TOKEN = env_optional("DYNOSCALER_METRICS_TOKEN")
    for _name, _value in (("DYNOSCALER_ENCRYPTION_SECRET", _encryption_secret), ("DYNOSCALER_METRICS_TOKEN", METRICS_TOKEN)):
        if _value is not None and len(_value) < 16:
            raise EnvError(_name, "must be at least 16 characters (make one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    DECISION_RETENTION_DAYS = env_int("DYNOSCALER_RETENTION_DAYS", 90, minimum=1)
    # The sandbox (a simulated queue and formation) is for trying DynoScaler without an
    # account; it is off in production unless asked for.
    SANDBOX_ENABLED = env_bool("DYNOSCALER_SANDBOX", DEBUG)

    # HTTPS. Heroku's router ends TLS and tells the app how the client came in with
    # X-Forwarded-Proto (it sets the header itself, so a client cannot forge it). Off on a
    # laptop, where `make run` serves plain HTTP.
    SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 86400, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
except EnvError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# --- Alerts (README: "Alerts"). Email goes through Django's backend: SMTP when EMAIL_HOST
# is set, otherwise printed to the console (a laptop needs no mail server).
try:
    ALERT_EVALUATE_INTERVAL_SECONDS = env_int("DYNOSCALER_ALERT_INTERVAL", 30, minimum=1)
    ALERT_WAIT_OVER_TARGET_MINUTES = env_int("DYNOSCALER_ALERT_WAIT_MINUTES", 10, minimum=0)
    ALERT_FAILING_MINUTES = env_int("DYNOSCALER_ALERT_FAILING_MINUTES", 5, minimum=0)
    ALERT_AUDIT_BEHIND_MINUTES = env_int("DYNOSCALER_ALERT_AUDIT_MINUTES", 10, minimum=1)
    ALERT_WORKERS_SILENT_MINUTES = env_int("DYNOSCALER_ALERT_WORKERS_MINUTES", 3, minimum=1)
    ALERT_TIMEOUT_SECONDS = env_int("DYNOSCALER_ALERT_TIMEOUT", 10, minimum=1, maximum=30)
    ALERT_MAX_ATTEMPTS = env_int("DYNOSCALER_ALERT_ATTEMPTS", 5, minimum=1, maximum=20)
    DYNOSCALER_PUBLIC_URL = env_optional("DYNOSCALER_PUBLIC_URL")
    if DYNOSCALER_PUBLIC_URL and not DYNOSCALER_PUBLIC_URL.startswith(("https://", "http://")):
        raise EnvError("DYNOSCALER_PUBLIC_URL", "expected a URL starting with https:// (or http:// for a local one), e.g. https://my-dynoscaler.herokuapp.com")
    EMAIL_HOST = env_str("EMAIL_HOST", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise EnvError("EMAIL_USE_SSL", "set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL (port 465), not both")
    EMAIL_PORT = env_int("EMAIL_PORT", 465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_TIMEOUT = ALERT_TIMEOUT_SECONDS
    EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                     else "django.core.mail.backends.console.EmailBackend")
    ALERT_FROM_EMAIL = env_str("ALERT_FROM_EMAIL", "dynoscaler@localhost")
    DEFAULT_FROM_EMAIL = SERVER_EMAIL = ALERT_FROM_EMAIL
except EnvError as exc:
    raise ImproperlyConfigured(str(exc)) from None

for _key in ENCRYPTION_KEYS:
    try:
        from cryptography.fernet import Fernet

        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "DYNOSCALER_ENCRYPTION_KEYS: each key must be a Fernet key (32 url-safe base64-encoded bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None

if _encryption_secret:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    _derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dynoscaler stored secrets")
    ENCRYPTION_KEYS.append(base64.urlsafe_b64encode(_derived.derive(_encryption_secret.encode())).decode())

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file on a laptop: wait for locks instead of failing,
    # and take the write lock at BEGIN so the claim on a pair cannot deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

INSTALLED_APPS = [
    "scaling",  # first, so its admin templates (the kill-switch banner) override the admin's own
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dynoscaler_site.urls"
WSGI_APPLICATION = "dynoscaler_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "scaling.context_processors.kill_switch",
                "scaling.context_processors.unreadable_secrets",
            ]
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_COOKIES
# Monitors may poll the health check over plain HTTP and treat a redirect as a failure.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Asking browsers to preload HSTS is the domain owner's choice (it binds every subdomain and
# is slow to undo), so it stays off unless SECURE_HSTS_PRELOAD=1; check --deploy's
# reminder about it (W021) is the only one silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- Celery -------------------------------------------------------------------------
if CELERY_BROKER_URL.startswith("rediss://"):
    # Heroku Redis serves TLS with a self-signed certificate (its documentation says to
    # skip verification); REDIS_SSL_CERT_REQS=required turns verification back on.
    import ssl

    _reqs = os.environ.get("REDIS_SSL_CERT_REQS", "none").lower()
    if _reqs not in ("none", "optional", "required"):
        raise ImproperlyConfigured(f"REDIS_SSL_CERT_REQS: expected none, optional or required, got {_reqs!r}")
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": getattr(ssl, f"CERT_{_reqs.upper()}")}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis transport emulates acknowledgements: every delivery is copied into an
    # "unacked" hash and removed again at the ack, two pipelines per task, so that a message
    # a killed worker took can be put back an hour later. Tasks here are acknowledged as they
    # start (CELERY_TASK_ACKS_LATE is off) and none is worth re-running late: a cycle's next
    # one comes within its interval, shipping and alerts have their periodic sweeps. Without the
    # emulation an empty task costs the worker a third of the CPU (bench/task_overhead.py);
    # what a worker killed outright had taken but not started (at most WORKER_CONCURRENCY
    # tasks) is lost instead of returning late.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"ack_emulation": False}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Beside the SQLite file, when that is the database: queued tasks mean something only
    # to the database they were queued for, and a second copy (a test's, another checkout's
    # DATABASE_URL) must not take the first one's tasks.
    _db_name = str(DATABASES["default"].get("NAME") or "")
    _sqlite = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and _db_name not in ("", ":memory:")
    _broker_dir = Path(_db_name).resolve().parent / ".broker" if _sqlite else BASE_DIR / ".broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Its exchange tables: kombu would otherwise make "control/" wherever the process runs.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = CYCLE_TIME_LIMIT_SECONDS - 5
CELERY_TASK_TIME_LIMIT = CYCLE_TIME_LIMIT_SECONDS
CELERY_TASK_ACKS_LATE = False  # a cycle is not worth re-running after a crash: the next one comes
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep database connections across tasks: Celery's Django fix-up closes them before and after
# every task unless this is set (a new PostgreSQL session per cycle). dynoscaler_site/celery.py
# runs Django's close_old_connections around each task instead, which replaces a connection
# older than CONN_MAX_AGE or one whose health check failed.
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_BEAT_SCHEDULER = "scaling.beat:DynoScalerScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Django's LOGGING already owns the root logger; letting Celery add its own handler too
# printed every line twice.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "dynoscaler-ship-decisions": {
        "task": "scaling.tasks.ship_decisions",
        "schedule": float(AUDIT_SHIP_INTERVAL_SECONDS),
    },
    "dynoscaler-prune-decisions": {
        "task": "scaling.tasks.prune_decisions",
        "schedule": 3600.0,
    },
}
CELERY_BEAT_SCHEDULE["dynoscaler-evaluate-alerts"] = {
    "task": "scaling.tasks.evaluate_alerts",
    "schedule": float(ALERT_EVALUATE_INTERVAL_SECONDS),
    "options": {"expires": float(ALERT_EVALUATE_INTERVAL_SECONDS)},  # a late tick is replaced by the next
}
CELERY_BEAT_SCHEDULE["dynoscaler-prune-alerts"] = {"task": "scaling.tasks.prune_alerts", "schedule": 3600.0}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "dynoscaler_site.log_format.ScrubbingFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The decision lines the seed printed: JSON alone on a line, nothing prefixed.
        "dynoscaler.decisions": {"handlers": ["decisions"], "level": "INFO", "propagate": False},
        # Celery's per-task lines, unless DYNOSCALER_LOG_TASKS (see above).
        "celery.worker.strategy": {"level": LOG_LEVEL if LOG_TASKS else "WARNING"},
        "celery.app.trace": {"level": LOG_LEVEL if LOG_TASKS else "WARNING"},
        # botocore at DEBUG logs request headers that carry signatures.
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # The Elasticsearch client warns of every retry and every node put on a timeout; the
        # audit shipper says when shipping fails and when it ships again (scaling/services/audit.py).
        "elastic_transport": {"level": "ERROR"},
    },
}
LOGGING["handlers"]["decisions"] = {  # type: ignore[index]
    "class": "logging.StreamHandler",
    "stream": "ext://sys.stdout",
}

"""The original DynoScaler's environment variables, read as one pair.

A user of the old tool sets MY_HEROKU_*, AWS_* and DYNOSCALER_* as before and gets the
same behaviour with no admin step: ``services.pair_sync_from_env`` turns the
``SeedConfig`` read here into a pair (and its credential records) on every start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from dynoscaler_site.env import EnvError, env_float, env_int, env_optional, env_str
from scaling.models import (
    HEROKU_MAX_DYNOS_PER_APP,
    app_name_validator,
    process_type_validator,
    queue_validator,
    region_validator,
)

# Any of these set means the user is running the seed's single-pair configuration.
TRIGGERS = (
    "MY_HEROKU_AUTH_TOKEN",
    "MY_HEROKU_AS_APP",
    "AWS_SQS_NAME",
    "DYNOSCALER_MAX_DYNOS",
    "DYNOSCALER_MIN_DYNOS",
    "DYNOSCALER_UP_CYCLES",
    "DYNOSCALER_DOWN_CYCLES",
    "DYNOSCALER_BACKLOG_THRESHOLD",
)


@dataclass(frozen=True)
class SeedConfig:
    heroku_description: str
    heroku_token: str
    app_name: str
    process_type: str
    aws_key: str | None  # None with aws_secret None: boto3's default credential chain
    aws_secret: str | None
    queue: str
    region: str
    max_dynos: int
    min_dynos: int
    up_cycles: int
    down_cycles: int
    backlog_threshold: float
    interval_seconds: int

    def __repr__(self) -> str:  # the dataclass default would print the token and secret
        return f"SeedConfig(app_name={self.app_name!r}, process_type={self.process_type!r}, queue={self.queue!r})"

    @property
    def pair_name(self) -> str:
        return f"{self.app_name}/{self.process_type} (env)"


def seed_config_from_env(env: Mapping[str, str] = os.environ) -> SeedConfig | None:
    """The pair the seed's variables describe, or None when none of them is set.

    Raises EnvError naming the first missing or malformed variable.
    """
    if not any(env.get(name, "").strip() for name in TRIGGERS):
        return None

    token = env_str("MY_HEROKU_AUTH_TOKEN", env=env)
    app = _checked("MY_HEROKU_AS_APP", env_str("MY_HEROKU_AS_APP", env=env), app_name_validator)
    process = _checked("MY_HEROKU_AS_PROCESS", env_str("MY_HEROKU_AS_PROCESS", env=env), process_type_validator)
    key, secret = env_optional("AWS_KEY", env=env), env_optional("AWS_SECRET", env=env)
    if bool(key) != bool(secret):
        missing = "AWS_SECRET" if key else "AWS_KEY"
        raise EnvError(missing, "AWS_KEY and AWS_SECRET go together; set both, or neither to use the default AWS credential chain")
    queue = _checked("AWS_SQS_NAME", env_str("AWS_SQS_NAME", env=env), queue_validator)
    region = _checked("AWS_SQS_REGION", env_str("AWS_SQS_REGION", env=env), region_validator)
    max_dynos = env_int("DYNOSCALER_MAX_DYNOS", minimum=1, maximum=HEROKU_MAX_DYNOS_PER_APP, env=env)
    min_dynos = env_int("DYNOSCALER_MIN_DYNOS", minimum=0, maximum=HEROKU_MAX_DYNOS_PER_APP, env=env)
    if min_dynos > max_dynos:
        raise EnvError("DYNOSCALER_MIN_DYNOS", f"({min_dynos}) cannot be above DYNOSCALER_MAX_DYNOS ({max_dynos})")
    return SeedConfig(
        heroku_description=env_str("MY_HEROKU_AUTH_DES", "from MY_HEROKU_AUTH_TOKEN", env=env),
        heroku_token=token,
        app_name=app,
        process_type=process,
        aws_key=key,
        aws_secret=secret,
        queue=queue,
        region=region,
        max_dynos=max_dynos,
        min_dynos=min_dynos,
        up_cycles=env_int("DYNOSCALER_UP_CYCLES", minimum=1, maximum=1000, env=env),
        down_cycles=env_int("DYNOSCALER_DOWN_CYCLES", minimum=1, maximum=1000, env=env),
        backlog_threshold=env_float("DYNOSCALER_BACKLOG_THRESHOLD", greater_than=0, env=env),
        # Not one of the seed's variables (it ran on an outside scheduler); 60 s by default.
        interval_seconds=env_int("DYNOSCALER_INTERVAL_SECONDS", 60, minimum=10, maximum=86400, env=env),
    )


def _checked(name: str, value: str, validator: object) -> str:
    try:
        validator(value)  # type: ignore[operator]
    except ValidationError as exc:
        raise EnvError(name, " ".join(str(m) for m in exc.messages)) from None
    return value

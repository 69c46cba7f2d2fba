"""The original DynoScaler's environment variables, read as one pair.

A user of the original tool sets MY_HEROKU_*, AWS_* and DYNOSCALER_* as before and gets
the same behaviour with no admin step. Everything about those variables lives here, with
one entry point, ``legacy_pair_sync``, which Celery worker and beat call as they start,
the release phase calls (``manage.py sync_env_pair``) and ``scale_once`` calls first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from dynoscaler_site.env import EnvError, env_float, env_int, env_optional, env_str
from scaling.models import AwsAccount, HerokuAccount, PairQueue, ScalingPair, accounts_with_unreadable_secrets
from scaling.models.accounts import secret_problem
from scaling.services.controls import pair_first_cycle
from scaling.services.pairs import pair_apply_settings, pair_schedule_sync
from scaling.validators import (
    HEROKU_MAX_DYNOS_PER_APP,
    app_name_validator,
    process_type_validator,
    queue_region_problem,
    queue_validator,
    region_validator,
)

log = logging.getLogger("dynoscaler.startup")
T = TypeVar("T")

# Any of these set means the user runs the original tool's single-pair configuration.
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
class LegacyConfig:
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
        return f"LegacyConfig(app_name={self.app_name!r}, process_type={self.process_type!r}, queue={self.queue!r})"

    @property
    def pair_name(self) -> str:
        return f"{self.app_name}/{self.process_type} (env)"


def legacy_config_from_env(env: Mapping[str, str] = os.environ) -> LegacyConfig | None:
    """The pair the original variables describe, or None when none of them is set.

    Raises EnvError naming every missing or malformed variable, in one line, so a user of
    the old tool fixes them in one go.
    """
    if not legacy_variables_set(env):
        return None
    found: list[EnvError] = []

    def read(reader: Callable[[], T]) -> T | None:
        try:
            return reader()
        except EnvError as exc:
            found.append(exc)
            return None

    def problem(name: str, text: str) -> None:
        found.append(EnvError(name, text))

    token = read(lambda: env_str("MY_HEROKU_AUTH_TOKEN", env=env))
    if token is not None and secret_problem(token):
        problem("MY_HEROKU_AUTH_TOKEN", f"a Heroku API token {secret_problem(token)}")
    app = read(lambda: _checked("MY_HEROKU_AS_APP", env_str("MY_HEROKU_AS_APP", env=env), app_name_validator))
    process = read(lambda: _checked("MY_HEROKU_AS_PROCESS", env_str("MY_HEROKU_AS_PROCESS", env=env),
                                    process_type_validator))
    key, secret = env_optional("AWS_KEY", env=env), env_optional("AWS_SECRET", env=env)
    if bool(key) != bool(secret):
        problem("AWS_SECRET" if key else "AWS_KEY",
                "AWS_KEY and AWS_SECRET go together; set both, or neither to use the default AWS credential chain")
    if secret_problem(secret):
        problem("AWS_SECRET", f"a secret access key {secret_problem(secret)}")
    queue = read(lambda: _checked("AWS_SQS_NAME", env_str("AWS_SQS_NAME", env=env), queue_validator))
    region = read(lambda: _checked("AWS_SQS_REGION", env_str("AWS_SQS_REGION", env=env), region_validator))
    mismatch = queue_region_problem(queue, region) if queue and region else None
    if mismatch:
        problem("AWS_SQS_REGION", f"{mismatch} (AWS_SQS_NAME is the queue's URL)")
    max_dynos = read(lambda: env_int("DYNOSCALER_MAX_DYNOS", minimum=1, maximum=HEROKU_MAX_DYNOS_PER_APP, env=env))
    min_dynos = read(lambda: env_int("DYNOSCALER_MIN_DYNOS", minimum=0, maximum=HEROKU_MAX_DYNOS_PER_APP, env=env))
    if min_dynos is not None and max_dynos is not None and min_dynos > max_dynos:
        problem("DYNOSCALER_MIN_DYNOS", f"{min_dynos} cannot be above DYNOSCALER_MAX_DYNOS ({max_dynos})")
    up_cycles = read(lambda: env_int("DYNOSCALER_UP_CYCLES", minimum=1, maximum=1000, env=env))
    down_cycles = read(lambda: env_int("DYNOSCALER_DOWN_CYCLES", minimum=1, maximum=1000, env=env))
    threshold = read(lambda: env_float("DYNOSCALER_BACKLOG_THRESHOLD", greater_than=0, env=env))
    # Not one of the original variables (it ran on an outside scheduler); 60 s by default.
    interval = read(lambda: env_int("DYNOSCALER_INTERVAL_SECONDS", 60, minimum=1, maximum=86400, env=env))
    if interval is not None and interval < settings.MIN_INTERVAL_SECONDS:  # the floor every pair has
        problem("DYNOSCALER_INTERVAL_SECONDS", f"must be at least {settings.MIN_INTERVAL_SECONDS} "
                                               f"(DYNOSCALER_MIN_INTERVAL), got {interval}")
    if found:
        raise EnvErrors(found)
    assert None not in (token, app, process, queue, region, max_dynos, min_dynos, up_cycles, down_cycles,
                        threshold, interval)  # each None came with a problem found above
    return LegacyConfig(
        heroku_description=env_str("MY_HEROKU_AUTH_DES", "from MY_HEROKU_AUTH_TOKEN", env=env),
        heroku_token=cast(str, token),
        app_name=cast(str, app),
        process_type=cast(str, process),
        aws_key=key,
        aws_secret=secret,
        queue=cast(str, queue),
        region=cast(str, region),
        max_dynos=cast(int, max_dynos),
        min_dynos=cast(int, min_dynos),
        up_cycles=cast(int, up_cycles),
        down_cycles=cast(int, down_cycles),
        backlog_threshold=cast(float, threshold),
        interval_seconds=cast(int, interval),
    )


class EnvErrors(EnvError):
    """Several variables are missing or malformed: all of them, in one line."""

    def __init__(self, errors: list[EnvError]) -> None:
        self.errors = errors
        self.name = errors[0].name
        ValueError.__init__(self, "; ".join(str(e).rstrip(".") for e in errors))


def _checked(name: str, value: str, validator: object) -> str:
    try:
        validator(value)  # type: ignore[operator]
    except ValidationError as exc:
        raise EnvError(name, " ".join(str(m) for m in exc.messages)) from None
    return value

def legacy_pair_save(*, config: LegacyConfig) -> tuple[ScalingPair, str]:
    """Make the env-described pair and its credentials match the variables; and what that
    did, in a word: "created", "updated" or "unchanged".

    Idempotent and safe to race (worker and beat both call it at start-up): the loser of
    a simultaneous first creation retries and finds the winner's rows.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                pair, changed, created = _upsert_env_pair(config)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    legacy_problem_note("")  # applied
    if changed:
        pair_apply_settings(pair=pair)
    else:
        # Same variables as last start: nothing the operator changed, so a quantity Heroku
        # refused stays refused (every scale_once would otherwise send it again).
        pair_schedule_sync(pair=pair)
    if created:  # the first start with these variables scales at once, not an interval later
        pair_first_cycle(pair=pair)
    return pair, "created" if created else "updated" if changed else "unchanged"


def _own_description(model: type[HerokuAccount] | type[AwsAccount], wanted: str) -> str:
    """The env account's description: the one asked for, unless an account made in the admin
    already has it (descriptions are unique), then marked as the environment's."""
    candidate, number = wanted, 1
    while model.objects.filter(description=candidate, managed_by_env=False).exists():
        number += 1
        candidate = f"{wanted[:170]} (from the environment{'' if number == 2 else f', {number - 1}'})"
    return candidate


def _upsert_env_pair(config: LegacyConfig) -> tuple[ScalingPair, bool, bool]:
    """The env pair, created or brought in line with ``config``; whether anything changed,
    and whether it was created."""
    heroku, _ = HerokuAccount.objects.update_or_create(
        managed_by_env=True,
        defaults={"description": _own_description(HerokuAccount, config.heroku_description),
                  "api_token": config.heroku_token},
    )
    aws, _ = AwsAccount.objects.update_or_create(
        managed_by_env=True,
        defaults={
            "description": _own_description(
                AwsAccount, "from AWS_KEY / AWS_SECRET" if config.aws_key else "default AWS credential chain (env)"),
            "use_default_chain": config.aws_key is None,
            "access_key_id": config.aws_key or "",
            "secret_access_key": config.aws_secret or "",
        },
    )
    values = {
        "name": config.pair_name,
        "heroku_account": heroku,
        "aws_account": aws,
        "app_name": config.app_name,
        "process_type": config.process_type,
        "min_dynos": config.min_dynos,
        "max_dynos": config.max_dynos,
        "policy": "classic",
        "backlog_threshold": config.backlog_threshold,
        "up_cycles": config.up_cycles,
        "down_cycles": config.down_cycles,
        "interval_seconds": config.interval_seconds,
    }
    pair = ScalingPair.objects.filter(managed_by_env=True).first()
    if pair is None:
        # A pair made in the admin for the same app/process is adopted, not duplicated.
        pair = ScalingPair.objects.filter(app_name=config.app_name, process_type=config.process_type).first()
    if pair is None:
        pair = ScalingPair.objects.create(managed_by_env=True, enabled=True, **values)
        changed = created = True
    else:
        created = False
        changed = not pair.managed_by_env or any(getattr(pair, name) != value for name, value in values.items())
        if (pair.app_name, pair.process_type) != (config.app_name, config.process_type):
            pair.expected_quantity = None  # another app now: nothing is expected of its formation
        if changed:
            for name, value in values.items():
                setattr(pair, name, value)
            if not pair.managed_by_env:  # adopted (or set again after a release): the variables say scale it
                pair.enabled = True
            pair.managed_by_env = True
            pair.save()
    removed, _ = pair.queues.exclude(queue=config.queue, region=config.region).delete()
    _, added = PairQueue.objects.get_or_create(pair=pair, queue=config.queue, region=config.region)
    return pair, changed or bool(removed) or added, created


@dataclass(frozen=True)
class LegacySync:
    """What bringing the env pair up to date did, and what it found about stored secrets that
    no configured key decrypts (the key was lost or changed)."""

    pair: ScalingPair | None
    done: str = "unchanged"  # what happened to the pair: "created", "updated", "unchanged" or "released"
    restored: tuple[str, ...] = ()  # the env pair's accounts, whose secrets the environment supplied again
    unreadable: tuple[str, ...] = ()  # accounts whose secret still cannot be read

    def said(self) -> str | None:
        """What happened to the pair, in one line (None when the variables describe none)."""
        if self.pair is None:
            return None
        if self.done == "released":
            return (f"The original DynoScaler variables are no longer set: pair {self.pair.name!r}, made from them, "
                    "was disabled (its settings, credentials and history are kept). Enable it in the admin to go on "
                    "scaling with its stored settings, or set the variables again.")
        what = {"created": "was created from", "updated": "was updated from"}.get(self.done, "is up to date with")
        return f"Pair {self.pair.name!r} {what} the environment (every {self.pair.interval_seconds} s)."

    def problem(self) -> str | None:
        """One line for the release phase's output and the worker's log, or None."""
        said = []
        if self.restored:
            said.append(
                f"The stored secrets of {' and '.join(self.restored)} could not be read with DYNOSCALER_ENCRYPTION_KEYS "
                "(they were saved with another key); they were stored again from the environment "
                "(MY_HEROKU_AUTH_TOKEN, AWS_SECRET) with the current key."
            )
        if self.unreadable:
            said.append(
                f"{len(self.unreadable)} stored secret(s) cannot be read with DYNOSCALER_ENCRYPTION_KEYS: "
                f"{', '.join(self.unreadable)}. Put the key they were saved with back in the list, or enter them again "
                "in the admin; until then their pairs record an error each cycle and change nothing."
            )
        return " ".join(said) or None


def _label(account: HerokuAccount | AwsAccount) -> str:
    return f"{account._meta.verbose_name} “{account}” (#{account.pk})"


def legacy_pair_sync(env: Mapping[str, str] = os.environ, *, config: LegacyConfig | None = None) -> LegacySync:
    """Create or update the pair the original variables describe (if any), and report on the
    stored secrets that cannot be read. The environment holds the env pair's token and
    secret, so those are simply stored again with the current key.

    With none of the variables set, the pair made from them is released (``legacy_pair_release``).

    Raises EnvError naming the first missing or malformed variable. Idempotent and safe to
    race (worker and beat both call it as they start)."""
    try:
        config = config or legacy_config_from_env(env)
    except EnvError as exc:
        legacy_problem_note(str(exc))
        raise
    before = {(type(a), a.pk): a for a in accounts_with_unreadable_secrets()}
    pair: ScalingPair | None
    if config is not None:
        pair, done = legacy_pair_save(config=config)
    else:
        pair, done = legacy_pair_release(), "released"
    after = {(type(a), a.pk): a for a in accounts_with_unreadable_secrets()}
    restored = tuple(_label(a) for key, a in before.items() if a.managed_by_env and key not in after)
    return LegacySync(pair=pair, done=done, restored=restored, unreadable=tuple(_label(a) for a in after.values()))


def legacy_problem_note(problem: str) -> None:
    """The variables were not applied: the env pair (if any) goes on with its last good
    values, and says why on its page, the status page and as an alert ("" when they were)."""
    ScalingPair.objects.filter(managed_by_env=True).exclude(env_problem=problem).update(env_problem=problem)


def legacy_pair_release() -> ScalingPair | None:
    """No original variable is set any more: the pair made from them stops, as the original
    tool did without them, and is the environment's no longer (enabled again in the admin,
    the admin runs it, and a restart leaves it alone; set again, the variables adopt it).
    Its settings, credentials and history stay. Returns it, if there was one."""
    pair = ScalingPair.objects.filter(managed_by_env=True).first()
    if pair is None:
        return None
    pair.enabled, pair.managed_by_env, pair.env_problem = False, False, ""
    pair.save(update_fields=["enabled", "managed_by_env", "env_problem", "updated_at"])
    pair_apply_settings(pair=pair)
    return pair


def legacy_variables_set(env: Mapping[str, str] = os.environ) -> bool:
    """Whether any of the original tool's variables that describe a pair is set, whether or
    not the pair they describe is usable."""
    return any(env.get(name, "").strip() for name in TRIGGERS)


def legacy_pair_sync_at_start(env: Mapping[str, str] = os.environ) -> bool:
    """``legacy_pair_sync`` for a process that is starting: a bad variable is logged as one
    line naming it, and the process goes on scaling its other pairs; so is a secret that
    cannot be read. Returns whether the variables described a usable pair."""
    try:
        config = legacy_config_from_env(env)
    except EnvError as exc:
        log.error("The original DynoScaler variables describe no usable pair: %s", exc)
        legacy_problem_note(str(exc))
        config = None
        described = False
    else:
        described = config is not None
    released = not described and not legacy_variables_set(env)
    report = legacy_pair_sync(env, config=config) if described or released else _report_only()
    problem = report.problem()
    if problem:
        log.warning("%s", problem)
    said = report.said()
    if said:
        log.log(logging.WARNING if report.done == "released" else logging.INFO, "%s", said)
    return described


def _report_only() -> LegacySync:
    return LegacySync(pair=None, unreadable=tuple(_label(a) for a in accounts_with_unreadable_secrets()))

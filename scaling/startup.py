"""What the release phase, worker and beat do as they start: bring the seed's env pair up
to date, and say in one line what is wrong with the stored secrets, if anything."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dynoscaler_site.env import EnvError

if TYPE_CHECKING:
    from scaling.models import AwsAccount, HerokuAccount, ScalingPair
    from scaling.seed_env import SeedConfig

log = logging.getLogger("dynoscaler.startup")


@dataclass(frozen=True)
class EnvPairSync:
    """What bringing the env pair up to date did about secrets no configured key decrypts."""

    pair: ScalingPair | None
    restored: tuple[str, ...]  # the env pair's accounts, whose secrets the environment supplied again
    unreadable: tuple[str, ...]  # accounts whose secret still cannot be read

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


def env_pair_sync(config: SeedConfig | None) -> EnvPairSync:
    """Create or update the env pair (when the variables describe one) and report on the
    secrets that cannot be read. The environment holds the env pair's token and secret, so
    those are simply stored again with the current key."""
    from scaling import services
    from scaling.models import accounts_with_unreadable_secrets

    before = {(type(a), a.pk): a for a in accounts_with_unreadable_secrets()}
    pair = services.pair_sync_from_env(config=config) if config is not None else None
    after = {(type(a), a.pk): a for a in accounts_with_unreadable_secrets()}
    restored = tuple(_label(a) for key, a in before.items() if a.managed_by_env and key not in after)
    return EnvPairSync(pair=pair, restored=restored, unreadable=tuple(_label(a) for a in after.values()))


def sync_env_pair(env: Mapping[str, str] = os.environ) -> bool:
    """Create or update the pair the seed's variables describe.

    A bad variable is logged as one line naming it; other pairs keep scaling. Returns
    whether the environment described a valid pair.
    """
    from scaling.seed_env import seed_config_from_env

    try:
        config = seed_config_from_env(env)
    except EnvError as exc:
        log.error("The seed's environment variables describe no usable pair: %s", exc)
        config = None
        described = False
    else:
        described = config is not None
    report = env_pair_sync(config)
    problem = report.problem()
    if problem:
        log.warning("%s", problem)
    if report.pair is not None:
        log.info("Pair %r is up to date with the environment (every %d s)", report.pair.name, report.pair.interval_seconds)
    return described

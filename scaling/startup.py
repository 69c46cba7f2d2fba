"""What worker and beat do as they start: bring the seed's env pair up to date."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from dynoscaler_site.env import EnvError

log = logging.getLogger("dynoscaler.startup")


def sync_env_pair(env: Mapping[str, str] = os.environ) -> bool:
    """Create or update the pair the seed's variables describe.

    A bad variable is logged as one line naming it; other pairs keep scaling. Returns
    whether the environment described a valid pair.
    """
    from scaling import services
    from scaling.seed_env import seed_config_from_env

    try:
        config = seed_config_from_env(env)
    except EnvError as exc:
        log.error("The seed's environment variables describe no usable pair: %s", exc)
        return False
    if config is None:
        return False
    pair = services.pair_sync_from_env(config=config)
    log.info("Pair %r is up to date with the environment (every %d s)", pair.name, pair.interval_seconds)
    return True

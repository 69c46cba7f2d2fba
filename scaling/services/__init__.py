"""Writes: one module per concern. The names callers use are gathered here.

- ``cycle``: one cycle of one pair, top to bottom, and how it is recorded;
- ``backends``: what a cycle reads and changes (Heroku + SQS, or the sandbox);
- ``heroku_budget``: each Heroku account's API pool, shared by its pairs;
- ``controls``: pause, resume, scale now, a cycle now, the kill switch, check connection;
- ``pairs``: a pair's beat task and what else follows its settings; the sandbox demo;
- ``audit``: shipping decisions to Elasticsearch, leases, pruning.
"""

from scaling.services.audit import AUDIT_LEASE, audit_ship_pending, audit_sink, decisions_prune
from scaling.services.backends import forget_cached_clients
from scaling.services.controls import (
    Check,
    CycleAsked,
    kill_switch_set,
    pair_check_connection,
    pair_cycle_ask,
    pair_first_cycle,
    pair_pause,
    pair_resume,
    pair_scale_now,
)
from scaling.services.cycle import pair_run_cycle
from scaling.services.webhooks import (
    app_check,
    app_subscribe,
    app_unsubscribe,
    apps_of,
    apps_webhooks,
    webhook_receive,
)
from scaling.services.pairs import (
    SANDBOX_DEMO_NAME,
    pair_apply_settings,
    pair_delete,
    pair_schedule_sync,
    real_setup_exists,
    sandbox_demo_ensure,
    sandbox_demo_switch_off,
)

__all__ = [
    "AUDIT_LEASE", "audit_ship_pending", "audit_sink", "decisions_prune", "forget_cached_clients", "Check",
    "CycleAsked", "kill_switch_set", "pair_check_connection", "pair_cycle_ask", "pair_first_cycle", "pair_pause",
    "pair_resume", "pair_scale_now", "pair_run_cycle",
    "SANDBOX_DEMO_NAME", "pair_apply_settings", "pair_delete", "pair_schedule_sync", "real_setup_exists",
    "sandbox_demo_ensure", "sandbox_demo_switch_off",
    "app_check", "app_subscribe", "app_unsubscribe", "apps_of", "apps_webhooks", "webhook_receive",
]

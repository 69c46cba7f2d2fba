"""Celery entry points: load by id, call a service. Nothing else lives here."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from kombu.exceptions import OperationalError

from scaling import services
from scaling.alerts.delivery import channel_drain
from scaling.alerts.evaluation import alerts_evaluate, alerts_prune

# Decisions recorded within this many seconds of each other go to the audit trail in one
# shipment: the first asks for it, this much later, and it carries the ones after it too.
SHIP_GATHER_SECONDS = 1.0
_ship_asked_until = 0.0
_ship_lock = threading.Lock()
log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def run_pair_cycle(pair_id: int, force: bool = False, requested_by: str = "") -> None:
    decision = services.pair_run_cycle(pair_id=pair_id, force=force, requested_by=requested_by)
    if decision is not None:
        ship_soon()


def ship_soon() -> None:
    """Ask for a shipment of the committed decisions unless this process already asked for
    one that has not started yet: one shipping task a second, not one per decision. The
    periodic sweep (DYNOSCALER_AUDIT_INTERVAL) stays as the safety net."""
    global _ship_asked_until
    now = time.monotonic()
    with _ship_lock:
        if now < _ship_asked_until:
            return
        _ship_asked_until = now + SHIP_GATHER_SECONDS
    try:
        ship_decisions.apply_async(countdown=SHIP_GATHER_SECONDS)
    except OperationalError as exc:
        # The decision is committed; only the ask is lost. The next decision asks again and
        # the periodic sweep ships it anyway: the broker being away is no failure of the cycle.
        with _ship_lock:
            _ship_asked_until = 0.0
        log.warning("could not ask for a shipment to the audit trail (the broker: %s); it goes with the next", exc)


@shared_task(ignore_result=True)
def ship_decisions() -> int:
    return services.audit_ship_pending()


@shared_task(ignore_result=True)
def prune_decisions() -> int:
    return services.decisions_prune()


@shared_task(ignore_result=True)
def evaluate_alerts() -> None:
    for channel_id in alerts_evaluate().channels_due:
        try:
            deliver_alerts.delay(channel_id)
        except OperationalError as exc:
            # The messages stay queued in the database; the next evaluation asks again.
            log.warning("could not ask for alert channel %s to be sent (the broker: %s); asked again next time",
                        channel_id, exc)
            return


@shared_task(ignore_result=True)
def deliver_alerts(channel_id: int) -> None:
    channel_drain(channel_id=channel_id)


@shared_task(ignore_result=True)
def prune_alerts() -> int:
    return alerts_prune()

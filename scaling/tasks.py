"""Celery entry points: load by id, call a service. Nothing else lives here."""

from __future__ import annotations

from celery import shared_task

from scaling import services
from scaling.alerts.delivery import channel_drain
from scaling.alerts.evaluation import alerts_evaluate, alerts_prune


@shared_task(ignore_result=True)
def run_pair_cycle(pair_id: int, force: bool = False, requested_by: str = "") -> None:
    decision = services.pair_run_cycle(pair_id=pair_id, force=force, requested_by=requested_by)
    if decision is not None:
        # The decision is committed by now; ship it without waiting for the next sweep.
        ship_decisions.delay()


@shared_task(ignore_result=True)
def ship_decisions() -> int:
    return services.audit_ship_pending()


@shared_task(ignore_result=True)
def prune_decisions() -> int:
    return services.decisions_prune()


@shared_task(ignore_result=True)
def evaluate_alerts() -> None:
    for channel_id in alerts_evaluate().channels_due:
        deliver_alerts.delay(channel_id)


@shared_task(ignore_result=True)
def deliver_alerts(channel_id: int) -> None:
    channel_drain(channel_id=channel_id)


@shared_task(ignore_result=True)
def prune_alerts() -> int:
    return alerts_prune()

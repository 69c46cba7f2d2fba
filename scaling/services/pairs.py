"""Keeping what depends on a pair in step with it: its beat task, a refused quantity, the
formation it expects; deleting it; and the laptop's sandbox demo pair."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scaling.adapters.sandbox import DEMO_SETTINGS as SANDBOX_DEMO_SETTINGS
from scaling.models import AwsAccount, HerokuAccount, ScalingPair
from scaling.services.history import run_flush

CYCLE_TASK = "scaling.tasks.run_pair_cycle"
SANDBOX_DEMO_NAME = "Sandbox demo (simulated, no account)"


def pair_schedule_sync(*, pair: ScalingPair) -> PeriodicTask:
    """Create or update the pair's periodic task so it matches the pair.

    Called by every write path (admin, the original variables, pairs as code) after a pair
    is saved. A disabled pair's task stays, disabled; ``pair_delete`` removes it. A queued
    cycle older than one interval expires instead of running late behind a backlog of its own.
    """
    schedule, _ = IntervalSchedule.objects.get_or_create(every=pair.interval_seconds, period=IntervalSchedule.SECONDS)
    fields = {
        "task": CYCLE_TASK,
        "interval": schedule,
        "args": json.dumps([pair.pk]),
        "enabled": pair.enabled,
        "expire_seconds": pair.interval_seconds,
        "description": f"Scaling cycle of {pair.app_name}/{pair.process_type}. Managed by DynoScaler: edit the pair, not this task.",
    }
    task = pair.periodic_task
    if task is None:
        task, _ = PeriodicTask.objects.update_or_create(name=f"dynoscaler pair {pair.pk}", defaults=fields)
        ScalingPair.objects.filter(id=pair.pk).update(periodic_task=task)
        pair.periodic_task = task
    else:
        changed = [name for name, value in fields.items() if getattr(task, name) != value]
        if changed:
            for name in changed:
                setattr(task, name, fields[name])
            task.save()
    return task


def pair_apply_settings(*, pair: ScalingPair, repointed: bool = False) -> None:
    """After an edit of a pair's settings, make what depends on them follow: its schedule,
    and a refused quantity is forgotten (the operator may have raised a limit on Heroku or
    changed the bounds). A pair pointed at another app, process type, provider or queues
    also forgets the formation it expected (or its first cycle there would take the new
    app's formation for a person's change) and what its policy learned of the old one."""
    reset: dict[str, Any] = {"blocked_quantity": None, "blocked_reason": ""}
    if repointed:
        # What the policy learned (rate, boot and its timing, recurring bursts) was about other
        # dynos or queues.
        state = ScalingPair.objects.filter(id=pair.pk).values_list("policy_state", flat=True).first() or {}
        kept = {k: v for k, v in state.items() if k not in ("learn", "bursts", "boot_timing")}
        reset.update(expected_quantity=None, unconfirmed_quantity=None, learned={}, cloudwatch_read_at=None,
                     cloudwatch_problem="", policy_state=kept)
    # A new stamp: workers read the pair's queues and schedules again (services.pair_inputs).
    reset["updated_at"] = timezone.now()
    ScalingPair.objects.filter(id=pair.pk).update(**reset)
    pair_schedule_sync(pair=pair)
    if not pair.enabled:  # it stops cycling: its last quiet cycles go on the record now, not an hour later
        run_flush(pair=pair)


@transaction.atomic
def pair_delete(*, pair: ScalingPair) -> None:
    """The pair goes; its decisions stay (they keep its name), the cycles of its open run with them."""
    run_flush(pair=pair)
    task = pair.periodic_task
    pair.delete()
    if task is not None:
        task.delete()


def real_setup_exists() -> bool:
    """Whether anything real is configured: a Heroku or AWS account, or a pair that is not
    the sandbox's."""
    return (HerokuAccount.objects.exists() or AwsAccount.objects.exists()
            or ScalingPair.objects.exclude(provider=ScalingPair.Provider.SANDBOX).exists())


def sandbox_demo_ensure() -> ScalingPair | None:
    """On a laptop with nothing configured, a demo pair whose queue and formation are
    simulated, so a newcomer sees a pair scale. Never where real credentials exist."""
    if not settings.SANDBOX_ENABLED or real_setup_exists():
        return None
    pair, created = ScalingPair.objects.get_or_create(
        name=SANDBOX_DEMO_NAME,
        defaults={"provider": ScalingPair.Provider.SANDBOX, "app_name": "sandbox-app", "process_type": "worker",
                  **SANDBOX_DEMO_SETTINGS},
    )
    if created:
        pair_apply_settings(pair=pair)
    return pair


def is_sandbox_demo(pair: ScalingPair) -> bool:
    """The demo pair DynoScaler makes itself on a laptop (not a sandbox pair someone added)."""
    return pair.name == SANDBOX_DEMO_NAME and pair.provider == ScalingPair.Provider.SANDBOX


def sandbox_demo_switch_off() -> ScalingPair | None:
    """Once real work is configured, the demo an earlier run made stops cycling; it stays,
    with its history, until someone deletes it. Returns it if it was running until now."""
    pair = ScalingPair.objects.filter(name=SANDBOX_DEMO_NAME, provider=ScalingPair.Provider.SANDBOX,
                                      enabled=True).first()
    if pair is None:
        return None
    pair.enabled = False
    pair.save(update_fields=["enabled"])
    pair_apply_settings(pair=pair)
    return pair

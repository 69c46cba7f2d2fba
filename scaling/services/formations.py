"""What DynoScaler knows of each Heroku formation, and keeping it current.

Three sources, newest wins: DynoScaler's own writes (the PATCH answer is the new
formation), Heroku's webhooks (``api:formation`` and ``dyno`` events, applied in
``services.webhooks``), and reconciling reads (the formation every few minutes, the dynos
while new ones boot), which catch a missed webhook or stand in for webhooks altogether.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from scaling.adapters.heroku import DynoInfo, FormationInfo, ProcessState
from scaling.models import FormationState, HerokuAccount, HerokuApp
from scaling.models.formations import BOOTING, UP

DYNOSCALER = "DynoScaler"
SEEN_WHEN_RECONCILING = "unknown (seen when reconciling)"
# With webhooks, booting dynos are read once, if they are not all up this long after their
# boot time should have ended. (Without, they are read at every look until they are up, and
# once a minute when they are still not up twice that long after the change: a dyno stuck
# starting must not cost a call every look.)
BOOT_GRACE_SECONDS = 60
STUCK_READ_SECONDS = 60
# What a stored formation holds (FormationState's columns): a webhook event beyond them is
# not one Heroku would send, and is ignored rather than failing the delivery.
PROCESS_TYPE_MAX = FormationState._meta.get_field("process_type").max_length or 64
QUANTITY_MAX = 32767


@dataclass(frozen=True)
class ReadPlan:
    """Which reads a reconcile should make now, and why (None: none is due)."""

    why: str | None
    dynos: bool = False


def app_for(*, name: str, account: HerokuAccount) -> HerokuApp:
    """The app's row, made on first use; a pair pointed at another account moves it there."""
    app = HerokuApp.objects.filter(name=name).first()
    if app is None:
        try:
            with transaction.atomic():
                return HerokuApp.objects.create(name=name, account=account)
        except IntegrityError:  # another worker made it just now
            app = HerokuApp.objects.get(name=name)
    if app.account_id != account.pk:
        HerokuApp.objects.filter(pk=app.pk).update(account=account)
        app.account = account
    return app


def known(app: HerokuApp, process_type: str) -> FormationState | None:
    return FormationState.objects.filter(app=app, process_type=process_type).first()


def known_with_app(app_name: str, process_type: str, *, account: HerokuAccount) -> FormationState | None:
    """The formation with its app, when it is known and the app is the account's."""
    try:  # (app, process type) is unique: get() spares ordering the one row
        return (FormationState.objects.select_related("app")
                .get(app__name=app_name, process_type=process_type, app__account=account))
    except FormationState.DoesNotExist:
        return None


def process_state(state: FormationState) -> ProcessState:
    up, booting = state.dyno_counts()
    person = state.changed_by if state.changed_by not in (DYNOSCALER, SEEN_WHEN_RECONCILING) else ""
    return ProcessState(quantity=state.quantity, size=state.size, running=up, starting=booting, changed_by=person,
                        not_up_since=not_up_since(state, up=up))


def not_up_since(state: FormationState, *, up: int) -> datetime | None:
    """Since when the longest-waiting dyno that should be up is not: each dyno's last change
    of state (a daily restart is a fresh one; a dyno stuck starting, or crashed and waiting
    out Heroku's back-off, is not), or the formation's change for dynos not listed yet."""
    if state.quantity <= up:
        return None
    times = [parse_time(d.get("at")) or state.changed_at for d in state.dynos.values() if d.get("state") != UP]
    if len(state.dynos) < state.quantity:
        times.append(state.changed_at)
    return min(times, default=None)


def read_plan(app: HerokuApp, state: FormationState | None, *, now: datetime, boot_seconds: float,
              unsettled: bool = False) -> ReadPlan:
    """Whether to read the formation from Heroku this cycle. With webhooks Heroku tells us of
    every change, so only a reconcile every few minutes; without, the dynos are read too, and
    while new ones boot. ``unsettled``: a change was asked whose answer was lost."""
    webhooks = app.subscribed
    if state is None or app.reconciled_at is None:
        return ReadPlan("a first look at the formation", dynos=True)
    if unsettled:
        return ReadPlan("a change whose answer was lost", dynos=not webhooks)
    booting = state.dyno_counts()[1]
    if booting and not webhooks:
        # Only a read shows a dyno come up, and decisions divide by the dynos up: a count
        # kept from an earlier read would have the classic rule add a dyno at every look of
        # a ramp. So every look reads the dynos while any boots (one call; the original tool
        # read them at every cycle), and none while none does.
        stuck = now - state.changed_at > timedelta(seconds=2 * (boot_seconds + BOOT_GRACE_SECONDS))
        if not stuck or app.dynos_read_at is None or now - app.dynos_read_at >= timedelta(seconds=STUCK_READ_SECONDS):
            return ReadPlan("new dynos are booting" if not stuck else "a dyno is still not up", dynos=True)
    if booting and webhooks:
        since = app.dynos_read_at or state.changed_at
        if now - max(since, state.changed_at) >= timedelta(seconds=boot_seconds + BOOT_GRACE_SECONDS):
            return ReadPlan("dynos still booting (a missed webhook?)", dynos=True)
    if now - app.reconciled_at >= timedelta(seconds=settings.RECONCILE_SECONDS):
        return ReadPlan("the reconcile every few minutes", dynos=not webhooks)
    return ReadPlan(None)


def read_claim(app: HerokuApp, now: datetime) -> bool:
    """Take the app's read for this cycle: of its pairs, one reads and all share it."""
    free = Q(read_claimed_until__isnull=True) | Q(read_claimed_until__lt=now)
    until = now + timedelta(seconds=settings.HEROKU_TIMEOUT_SECONDS * 2 + 5)
    return HerokuApp.objects.filter(pk=app.pk).filter(free).update(read_claimed_until=until) == 1


def store_read(app: HerokuApp, *, formations: Iterable[FormationInfo], dynos: Iterable[DynoInfo] | None,
               now: datetime) -> None:
    """What a reconciling read saw. A quantity that moved since we last knew it was changed by
    someone Heroku did not name to us (a missed webhook, or no webhooks)."""
    by_type: dict[str, dict[str, dict[str, str | None]]] = {}
    for dyno in dynos or ():
        by_type.setdefault(dyno.process_type, {})[dyno.name] = {
            "state": dyno.state, "at": dyno.updated_at.isoformat() if dyno.updated_at else None,
            "created": dyno.created_at.isoformat() if dyno.created_at else None}
    with transaction.atomic():
        for info in formations:
            state = FormationState.objects.select_for_update().filter(app=app, process_type=info.process_type).first()
            if state is None:
                state = FormationState(app=app, process_type=info.process_type, quantity=info.quantity,
                                       changed_at=now, changed_by=SEEN_WHEN_RECONCILING)
            elif state.quantity != info.quantity:
                state.quantity, state.changed_at, state.changed_by = info.quantity, now, SEEN_WHEN_RECONCILING
                if dynos is None:  # no dyno list read: the dynos follow the quantity, as after a webhook's
                    state.dynos = _dynos_after_scaling(state.dynos, process_type=info.process_type,
                                                       quantity=info.quantity, now=now)
            state.size = info.size
            state.heroku_updated_at = _newest(state.heroku_updated_at, info.updated_at)
            if dynos is not None:
                fresh = by_type.get(info.process_type, {})
                for name, seen in fresh.items():
                    _note_boot(state, state.dynos.get(name), seen)
                state.dynos = fresh
            state.save()
        fields = {"reconciled_at": now, "read_claimed_until": None}
        if dynos is not None:
            fields["dynos_read_at"] = now
        HerokuApp.objects.filter(pk=app.pk).update(**fields)


def store_write(app: HerokuApp, info: FormationInfo, *, now: datetime) -> None:
    """Our own PATCH's answer is the new formation: new dynos are booting, the highest-numbered
    ones are gone (Heroku stops those first)."""
    with transaction.atomic():
        state = FormationState.objects.select_for_update().filter(app=app, process_type=info.process_type).first()
        if state is None:
            state = FormationState(app=app, process_type=info.process_type, quantity=info.quantity, changed_at=now)
        state.dynos = _dynos_after_scaling(state.dynos, process_type=info.process_type, quantity=info.quantity, now=now)
        if state.quantity != info.quantity or state.pk is None:
            state.changed_at = now
        state.quantity, state.size, state.changed_by = info.quantity, info.size or state.size, DYNOSCALER
        state.heroku_updated_at = _newest(state.heroku_updated_at, info.updated_at)
        state.save()


KEPT_BOOTS = 20


# A dyno found up that we never saw boot tells its boot by its own times (created_at, and
# updated_at: its last change of state); beyond this it has crashed and restarted, or been
# restarted in place, since it was created, and its times say nothing of a boot.
FOUND_UP_MAX_BOOT_SECONDS = 600


def _note_boot(state: FormationState, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """How long a dyno's boot took, when this sight of it tells (the policy learns from
    these): seen booting and now up; or found up, new to us (the dynos running at the first
    look, a person's scaling, a daily restart), by its own start and up times."""
    if after.get("state") != UP:
        return
    up = parse_time(after.get("at"))
    if before and before.get("state") in BOOTING:
        started = parse_time(before.get("at"))
    elif after.get("created") and (not before or before.get("created") != after.get("created")):
        started = parse_time(after.get("created"))
        if started is not None and up is not None and (up - started).total_seconds() > FOUND_UP_MAX_BOOT_SECONDS:
            return
    else:
        return
    if started is None or up is None or up <= started:
        return
    state.boots = [*state.boots, [up.isoformat(), round((up - started).total_seconds(), 1)]][-KEPT_BOOTS:]


def boots_since(state: FormationState, since: datetime | None) -> tuple[float, ...]:
    """starting → up seconds of the boots that ended after ``since``."""
    return tuple(float(seconds) for at, seconds in state.boots
                 if since is None or (parse_time(at) or since) > since)


def _dynos_after_scaling(dynos: dict[str, dict[str, str | None]], *, process_type: str, quantity: int,
                         now: datetime) -> dict[str, dict[str, str | None]]:
    kept = {name: d for name, d in dynos.items() if _number(name) <= quantity}
    for n in range(1, quantity + 1):
        kept.setdefault(f"{process_type}.{n}", {"state": "starting", "at": now.isoformat()})
    return kept


def _number(dyno_name: str) -> int:
    try:
        return int(dyno_name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


def _newest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)



def store_formation_event(app: HerokuApp, *, data: dict[str, Any], actor: str, now: datetime) -> bool:
    """An ``api:formation`` event: the formation as Heroku shows it, and who changed it.
    Events may arrive twice or out of order: one older than what we know changes nothing.
    Returns whether it changed the quantity."""
    process_type, quantity = str(data.get("type") or ""), data.get("quantity")
    if not 0 < len(process_type) <= PROCESS_TYPE_MAX or not isinstance(quantity, int) or not 0 <= quantity <= QUANTITY_MAX:
        return False  # not a formation Heroku would send
    updated_at = parse_time(data.get("updated_at"))
    with transaction.atomic():
        state = FormationState.objects.select_for_update().filter(app=app, process_type=process_type).first()
        if state is None:
            state = FormationState(app=app, process_type=process_type, quantity=quantity, changed_at=now,
                                   changed_by=actor)
            moved = True
        else:
            if state.heroku_updated_at and updated_at and updated_at <= state.heroku_updated_at:
                return False  # we already know this or something newer
            moved = state.quantity != quantity
            if moved:
                state.quantity, state.changed_at, state.changed_by = quantity, now, actor
                state.dynos = _dynos_after_scaling(state.dynos, process_type=process_type, quantity=quantity, now=now)
        state.size = str(data.get("size") or state.size)
        state.heroku_updated_at = _newest(state.heroku_updated_at, updated_at)
        state.save()
    return moved


def store_dyno_event(app: HerokuApp, *, data: dict[str, Any], action: str) -> None:
    """A ``dyno`` event: one dyno's state (starting, up, crashed, down...), newest wins."""
    name, process_type = str(data.get("name") or ""), str(data.get("type") or "")
    updated_at = parse_time(data.get("updated_at"))
    with transaction.atomic():
        state = FormationState.objects.select_for_update().filter(app=app, process_type=process_type).first()
        if state is None or not name:
            return  # a process type we do not scale, or not read yet: the next read has it
        known_at = parse_time((state.dynos.get(name) or {}).get("at"))
        if known_at and updated_at and updated_at < known_at:
            return
        dynos = dict(state.dynos)
        if action == "destroy" or _number(name) > state.quantity:
            dynos.pop(name, None)
        else:
            created = parse_time(data.get("created_at"))
            dynos[name] = {"state": str(data.get("state") or ""), "at": updated_at.isoformat() if updated_at else None,
                           "created": created.isoformat() if created else None}
            _note_boot(state, state.dynos.get(name), dynos[name])
        state.dynos = dynos
        state.save(update_fields=["dynos", "boots"])


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)

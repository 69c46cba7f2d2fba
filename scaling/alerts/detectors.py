"""Which problems are active now. Each detector reads the database only (never the network)
and returns the problems it sees; a problem that is no longer returned has cleared.

The pair conditions that only a cycle can see (a permanent error, cycles failing, the wait
over the target at max dynos, more dynos not helping, a person's change, dynos not coming up) come from ``ScalingPair.conditions``,
which the cycle keeps: ``{code: {"since": ISO-8601 UTC, "detail": "one line"}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db.models import Count, Q

from scaling.conditions import is_person_outside
from scaling.models.alerts import ProblemKind
from scaling.models import Decision, HerokuAccount, KillSwitch, ScalingPair
from scaling.selectors import STALL_INTERVALS, pair_is_stalled, pair_stall_clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveProblem:
    key: str
    kind: ProblemKind
    summary: str  # what is wrong, one line
    action: str  # what DynoScaler does about it
    since: datetime
    pair: ScalingPair | None = None
    # Keys (or key prefixes, ending in ":") of the problems this one causes while it lasts:
    # no worker running tasks stalls every pair. Those are not told apart (nor resolved)
    # while it is active, so the cause is not lost among its symptoms.
    covers: tuple[str, ...] = ()


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC"


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def stalled_pairs(now: datetime) -> list[ActiveProblem]:
    problems = []
    for pair in ScalingPair.objects.enabled().order_by("id"):
        if not pair_is_stalled(pair, now):
            continue
        last = pair.last_cycle_at
        since = pair_stall_clock(pair) + timedelta(seconds=STALL_INTERVALS * pair.interval_seconds)
        seen = f"last cycle {_at(last)}" if last else "no cycle has run since it was created"
        silent = now - (last or pair.created_at)
        missed = int(silent.total_seconds() // pair.interval_seconds)
        problems.append(ActiveProblem(
            key=f"stalled:pair:{pair.pk}", kind=ProblemKind.STALLED, pair=pair, since=since,
            summary=f"no cycle for {_minutes(silent)} ({missed} intervals of {pair.interval_seconds} s; told after "
            f"{STALL_INTERVALS}); {seen}",
            action="nothing scales this pair until its cycles run again: check that the worker and beat processes "
            "are up and that the broker answers",
        ))
    return problems


# What DynoScaler does while each of the cycle's conditions holds.
CONDITION_ACTIONS = {
    ProblemKind.PERMANENT_ERROR: "the formation is held and the cycle keeps trying; it will not succeed until the "
    "cause is fixed (token, access, queue, app or process type, or the refused quantity)",
    ProblemKind.WAIT_OVER_TARGET: "the pair is at its max dynos, so DynoScaler cannot add more: raise the max or "
    "speed up the workers",
    ProblemKind.NOT_HELPING: "dynos were added but the backlog does not shrink: the workers may be failing, or "
    "limited by something downstream",
    ProblemKind.PERSON_CHANGE: "holds off instead of undoing it, and takes over again when the hold ends",
    ProblemKind.FAILING: "the formation is held and every cycle tries again, but nothing is scaled until one succeeds: "
    "the message says what fails (SQS or Heroku unreachable or timing out: their status pages; an error in "
    "DynoScaler: the worker's log)",
    ProblemKind.DYNOS_NOT_UP: "keeps asking for the dynos it needs, but dynos that do not come up serve nothing: look "
    "at the app's logs (heroku logs --ps worker) for a crash or a boot that hangs",
}


def _since(value: object, default: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return default
    return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)


def pair_conditions(now: datetime) -> list[ActiveProblem]:
    # Told only once they have lasted: a wait over the target for a few minutes, or a
    # passing error that the next cycles may not meet again.
    grace = {ProblemKind.WAIT_OVER_TARGET: timedelta(minutes=settings.ALERT_WAIT_OVER_TARGET_MINUTES),
             ProblemKind.FAILING: timedelta(minutes=settings.ALERT_FAILING_MINUTES)}
    problems = []
    for pair in ScalingPair.objects.enabled().exclude(conditions={}).order_by("id"):
        for code, entry in sorted((pair.conditions or {}).items()):
            if code not in CONDITION_ACTIONS:
                continue  # a condition this version does not alert on
            kind = ProblemKind(code)
            entry = entry if isinstance(entry, dict) else {}
            since = _since(entry.get("since"), now)
            if kind in grace and now - since < grace[kind]:
                continue
            text = str(entry.get("detail") or "").strip()
            detail = text.splitlines()[0] if text else kind.label
            # The hand change's own hold is in the detail already; a pause from the admin is not.
            if kind == ProblemKind.PERSON_CHANGE and pair.paused_by and not is_person_outside(pair.paused_by):
                detail = f"{detail} (paused by {pair.paused_by})"
            problems.append(ActiveProblem(key=f"{code}:pair:{pair.pk}", kind=kind, pair=pair, since=since,
                                          summary=detail, action=CONDITION_ACTIONS[kind]))
    return problems


def kill_switch(now: datetime) -> list[ActiveProblem]:
    switch = KillSwitch.objects.filter(pk=1, engaged=True).first()
    if switch is None:
        return []
    note = f": {switch.note}" if switch.note else ""
    return [ActiveProblem(
        key="kill_switch", kind=ProblemKind.KILL_SWITCH, since=switch.changed_at or now,
        summary=f"the kill switch was engaged by {switch.changed_by or 'someone'}{note}",
        action="no formation is changed anywhere; cycles keep observing and recording. Release it on the status page",
    )]


def heroku_rate_limited(now: datetime) -> list[ActiveProblem]:
    accounts = (HerokuAccount.objects.filter(rate_limited_until__gt=now)
                .annotate(enabled_pairs=Count("pairs", filter=Q(pairs__enabled=True))).order_by("id"))
    problems = []
    for account in accounts:
        if not account.enabled_pairs:
            continue
        until = account.rate_limited_until
        assert until is not None
        problems.append(ActiveProblem(
            key=f"rate_limited:account:{account.pk}", kind=ProblemKind.RATE_LIMITED, since=now,
            summary=f"Heroku account “{account.description}”: its API pool is empty (429) or below the reserve of "
            f"{settings.HEROKU_RATE_LIMIT_RESERVE} calls",
            action=f"its {account.enabled_pairs} pair(s) make no Heroku call and hold their formations until "
            f"{until.astimezone(dt_timezone.utc):%H:%M:%S} UTC, then resume by themselves",
        ))
    return problems


def audit_behind(now: datetime) -> list[ActiveProblem]:
    if not settings.ELK_ELASTIC_URL:
        return []
    oldest = Decision.objects.filter(shipped_at__isnull=True).order_by("id").values_list("created_at", flat=True).first()
    if oldest is None or now - oldest < timedelta(minutes=settings.ALERT_AUDIT_BEHIND_MINUTES):
        return []
    return [ActiveProblem(
        key="audit_behind", kind=ProblemKind.AUDIT_BEHIND, since=oldest,
        summary=f"decisions have not reached Elasticsearch since {_at(oldest)} (is it reachable?)",
        action="decisions wait in the database and are sent, oldest first, as soon as Elasticsearch answers; "
        "scaling is not affected",
    )]


def env_not_applied(now: datetime) -> list[ActiveProblem]:
    return [ActiveProblem(
        key=f"env_invalid:pair:{pair.pk}", kind=ProblemKind.ENV_INVALID, pair=pair, since=now,
        summary=f"the original DynoScaler variables were not applied at the last start: {pair.env_problem}",
        action="the pair goes on scaling with the values of its last good start: fix the variable and restart",
    ) for pair in ScalingPair.objects.filter(managed_by_env=True).exclude(env_problem="").order_by("id")]


Detector = Callable[[datetime], list[ActiveProblem]]
DETECTORS: tuple[Detector, ...] = (stalled_pairs, pair_conditions, kill_switch, heroku_rate_limited, audit_behind,
                                   env_not_applied)


@dataclass(frozen=True)
class Detected:
    problems: dict[str, ActiveProblem]
    complete: bool  # False when a detector failed: what it would have seen is unknown


def active_problems(now: datetime, detectors: tuple[Detector, ...] = DETECTORS) -> Detected:
    problems: dict[str, ActiveProblem] = {}
    complete = True
    for detector in detectors:
        try:
            problems.update((p.key, p) for p in detector(now))
        except Exception:
            # A bug in one detector must not silence the others, nor pass for "all clear".
            log.exception("alert detector %s failed", detector.__name__)
            complete = False
    return Detected(problems, complete)

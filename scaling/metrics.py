"""/metrics for Prometheus: read from the database at each scrape.

Nothing is counted in the process: the web dyno runs several gunicorn workers and the
cycles run in Celery, so only the database knows the whole truth. One scrape costs a
handful of indexed queries, whatever the size of the decision table:

- each pair's latest decision (by the pair/created_at index, one row per pair);
- decisions of the last hour, grouped by pair, outcome and error kind (the created_at
  index; about 60 rows an hour per pair at a 60 s interval). A counter over the whole
  table would read millions of rows per scrape, and pruning (DYNOSCALER_RETENTION_DAYS)
  would make it go down, which Prometheus reads as a restart; a one-hour gauge does neither;
- each Heroku account's latest recorded pool, within the hour the pool takes to refill;
- the unshipped decisions (a partial index holds only those).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from scaling.models import Decision, HerokuAccount, KillSwitch, ScalingPair
from scaling.selectors import open_run_last, pair_is_stalled

WINDOW = timedelta(hours=1)
OUTCOMES = [choice.value for choice in Decision.Outcome]
ERROR_KINDS = ("permanent", "transient")


def _error_kind(permanent: bool | None) -> str:
    return "permanent" if permanent else "transient"


class DynoScalerCollector:
    """A prometheus_client collector: every call to ``collect`` reads the database afresh."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        pairs = self._pairs()
        yield from self._pair_state(pairs, now)
        yield from self._latest_observations(pairs)
        yield from self._recent_decisions(pairs, now)
        yield from self._heroku_accounts(now)
        yield from self._audit_trail(now)
        engaged = KillSwitch.is_engaged()
        yield GaugeMetricFamily("dynoscaler_kill_switch_engaged", "1 while the kill switch stops every formation change.",
                                value=int(engaged))

    def _pairs(self) -> list[ScalingPair]:
        latest = Decision.objects.filter(pair=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
        return list(
            ScalingPair.objects.order_by("name")
            .only("name", "provider", "app_name", "process_type", "policy", "enabled", "dry_run", "paused_until",
                  "last_cycle_at", "created_at", "updated_at", "interval_seconds", "quiet_run")
            .annotate(latest_decision_id=Subquery(latest))
        )

    def _pair_state(self, pairs: list[ScalingPair], now: datetime) -> Iterator[Metric]:
        info = GaugeMetricFamily("dynoscaler_pair_info", "Always 1; labels say what the pair scales.",
                                 labels=["pair", "app", "process_type", "policy", "provider"])
        enabled = GaugeMetricFamily("dynoscaler_pair_enabled", "1 if the pair's cycles run.", labels=["pair"])
        dry_run = GaugeMetricFamily("dynoscaler_pair_dry_run", "1 if the pair decides but never changes the formation.",
                                    labels=["pair"])
        paused = GaugeMetricFamily("dynoscaler_pair_paused", "1 while the pair is paused or holding off after a person's change.",
                                   labels=["pair"])
        stalled = GaugeMetricFamily("dynoscaler_pair_stalled", "1 if the pair is enabled but had no cycle for three intervals.",
                                    labels=["pair"])
        age = GaugeMetricFamily("dynoscaler_pair_last_cycle_age_seconds", "Seconds since the pair's last cycle.",
                                labels=["pair"])
        for pair in pairs:
            info.add_metric([pair.name, pair.app_name, pair.process_type, pair.policy, pair.provider], 1)
            enabled.add_metric([pair.name], int(pair.enabled))
            dry_run.add_metric([pair.name], int(pair.dry_run))
            paused.add_metric([pair.name], int(bool(pair.paused_until and pair.paused_until > now)))
            stalled.add_metric([pair.name], int(pair_is_stalled(pair, now)))
            if pair.last_cycle_at is not None:
                age.add_metric([pair.name], max(0.0, (now - pair.last_cycle_at).total_seconds()))
        stalled_total = GaugeMetricFamily("dynoscaler_stalled_pairs", "Enabled pairs with no cycle for three intervals.",
                                          value=sum(int(s.value) for s in stalled.samples))
        yield from (info, enabled, dry_run, paused, stalled, stalled_total, age)

    def _latest_observations(self, pairs: list[ScalingPair]) -> Iterator[Metric]:
        """What each pair's latest cycle saw and wanted. A value its cycle could not read is absent, not 0."""
        ids = [p.latest_decision_id for p in pairs if p.latest_decision_id is not None]  # type: ignore[attr-defined]
        rows: dict[int, dict[str, Any]] = {
            row["pair_id"]: dict(row)
            for row in Decision.objects.filter(id__in=ids).values(
                "pair_id", "visible_messages", "in_flight_messages", "delayed_messages", "dynos_running",
                "quantity_before", "applied_quantity", "desired_quantity", "outcome", "error_permanent", "created_at",
            )
        }
        # A quiet run's row shows its first cycle until the run ends: its latest cycle is newer.
        for pair in pairs:
            row = rows.get(pair.pk)
            newer = open_run_last(pair, after=row["created_at"]) if row else None
            if row is not None and newer is not None:
                row.update({key: newer.get(key) for key in
                            ("visible_messages", "in_flight_messages", "delayed_messages", "dynos_running")})
        gauges: list[tuple[GaugeMetricFamily, Any]] = [
            (GaugeMetricFamily("dynoscaler_queue_visible_messages", "Visible messages in the pair's queues (the backlog).",
                               labels=["pair"]), lambda r: r["visible_messages"]),
            (GaugeMetricFamily("dynoscaler_queue_in_flight_messages", "Messages received but not yet deleted, summed.",
                               labels=["pair"]), lambda r: r["in_flight_messages"]),
            (GaugeMetricFamily("dynoscaler_queue_delayed_messages", "Delayed messages in the pair's queues.",
                               labels=["pair"]), lambda r: r["delayed_messages"]),
            (GaugeMetricFamily("dynoscaler_dynos_running", "Dynos of the process type that are up.", labels=["pair"]),
             lambda r: r["dynos_running"]),
            (GaugeMetricFamily("dynoscaler_formation_quantity", "The process type's formation quantity after the last cycle.",
                               labels=["pair"]),
             lambda r: r["applied_quantity"] if r["applied_quantity"] is not None else r["quantity_before"]),
            (GaugeMetricFamily("dynoscaler_desired_dynos", "Dynos the policy wanted in the last cycle that decided.",
                               labels=["pair"]), lambda r: r["desired_quantity"]),
        ]
        failing = GaugeMetricFamily("dynoscaler_pair_error", "1 if the pair's latest cycle recorded an error of this kind.",
                                    labels=["pair", "kind"])
        for pair in pairs:
            row = rows.get(pair.pk)
            if row is None:
                continue
            for gauge, read in gauges:
                value = read(row)
                if value is not None:
                    gauge.add_metric([pair.name], value)
            kind = _error_kind(row["error_permanent"]) if row["outcome"] == Decision.Outcome.ERROR else None
            for each in ERROR_KINDS:
                failing.add_metric([pair.name, each], int(each == kind))
        yield from (gauge for gauge, _ in gauges)
        yield failing

    def _recent_decisions(self, pairs: list[ScalingPair], now: datetime) -> Iterator[Metric]:
        counts = (
            Decision.objects.filter(created_at__gte=now - WINDOW, pair__isnull=False)
            .order_by()
            .values("pair_id", "outcome", "error_permanent")
            .annotate(n=Count("id"))
        )
        by_outcome: Counter[tuple[int, str]] = Counter()
        errors: Counter[tuple[int, str]] = Counter()
        for row in counts:
            by_outcome[row["pair_id"], row["outcome"]] += row["n"]
            if row["outcome"] == Decision.Outcome.ERROR:
                errors[row["pair_id"], _error_kind(row["error_permanent"])] += row["n"]
        decisions = GaugeMetricFamily("dynoscaler_decisions_last_hour", "The pair's decisions of the last hour, by outcome.",
                                      labels=["pair", "outcome"])
        failed = GaugeMetricFamily("dynoscaler_errors_last_hour", "The pair's error decisions of the last hour, by kind.",
                                   labels=["pair", "kind"])
        for pair in pairs:  # every outcome of every pair, 0 included, so no series comes and goes
            for outcome in OUTCOMES:
                decisions.add_metric([pair.name, outcome], by_outcome[pair.pk, outcome])
            for kind in ERROR_KINDS:
                failed.add_metric([pair.name, kind], errors[pair.pk, kind])
        yield from (decisions, failed)

    def _heroku_accounts(self, now: datetime) -> Iterator[Metric]:
        recorded = (
            Decision.objects.filter(pair__heroku_account=OuterRef("pk"), created_at__gte=now - WINDOW,
                                    heroku_rate_limit_remaining__isnull=False)
            .order_by("-created_at", "-id")
            .values("heroku_rate_limit_remaining")[:1]
        )
        accounts = list(HerokuAccount.objects.order_by("description", "id")
                        .annotate(remaining=Subquery(recorded)).values("id", "description", "rate_limited_until", "remaining"))
        shared = {d for d, n in Counter(a["description"] for a in accounts).items() if n > 1}
        remaining = GaugeMetricFamily(
            "dynoscaler_heroku_api_calls_remaining",
            "Calls left in the account's Heroku API pool (of about 4,500), as last recorded in the past hour.",
            labels=["account"],
        )
        backing_off = GaugeMetricFamily(
            "dynoscaler_heroku_backing_off", "1 while the account's pairs make no Heroku call (a 429, or the pool below its reserve).",
            labels=["account"],
        )
        for account in accounts:
            # Two accounts may share a description; a label must not repeat.
            label = f"{account['description']} (#{account['id']})" if account["description"] in shared else account["description"]
            if account["remaining"] is not None:
                remaining.add_metric([label], account["remaining"])
            until = account["rate_limited_until"]
            backing_off.add_metric([label], int(bool(until and until > now)))
        yield from (remaining, backing_off)

    def _audit_trail(self, now: datetime) -> Iterator[Metric]:
        unshipped = Decision.objects.filter(shipped_at__isnull=True)
        oldest = unshipped.order_by("id").values_list("created_at", flat=True).first()
        yield GaugeMetricFamily("dynoscaler_audit_unshipped_decisions",
                                "Decisions not yet confirmed by the audit trail (Elasticsearch or the log).",
                                value=unshipped.count())
        yield GaugeMetricFamily("dynoscaler_audit_oldest_unshipped_age_seconds",
                                "Age of the oldest decision waiting for the audit trail; 0 when none waits.",
                                value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def bearer_token_matches(authorization: str, token: str) -> bool:
    """Constant time, and the lengths are hidden too: both sides are hashed first."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off (DYNOSCALER_METRICS_TOKEN is not set)")
    if not bearer_token_matches(request.headers.get("Authorization", ""), token):
        return HttpResponse("a valid bearer token is required (Authorization: Bearer <DYNOSCALER_METRICS_TOKEN>)\n",
                            status=401, content_type="text/plain; charset=utf-8",
                            headers={"WWW-Authenticate": 'Bearer realm="dynoscaler metrics"'})
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(DynoScalerCollector()), content_type=content_type)

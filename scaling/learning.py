"""What DynoScaler learns about a pair's dynos, from what it can see.

* **Throughput per dyno**: CloudWatch's ``NumberOfMessagesDeleted`` for a minute, over the
  dyno-seconds that were running that minute while the queue was never empty (every dyno
  had work). Minutes with an empty queue only say the rate is *at least* that much. Where
  CloudWatch is not readable, from the counts alone: while a backlog waits, the visible
  count changes at (arrivals − dynos × rate); when the formation changes between two
  stretches of constant dynos, the change of that slope over the change of dynos is the
  rate (a figure that moves the estimate but never proves it: see ``proven``). The
  operator's figure is a prior of weight ``PRIOR`` dyno-minutes.
* **Boot time**: the ``starting → up`` durations the cycle saw (webhooks or the dyno list);
  the 90th percentile, so plans are made for a slow boot, not an average one; and, for a
  deadline that even slow boots miss, how long the quick ones serve before it.
* **Concurrency** (messages a dyno works on at once): in-flight ÷ running is never above it
  (from the first look after dynos come up: a count older than a rise only shows fewer
  dynos' work; not within a lag of dynos stopping, whose messages a count may still hold);
  with CloudWatch, Little's law gives the service time (in flight ÷ deletes per second) and,
  once the rate is proven, concurrency = rate × service time (an unproven rate twice too
  high would double it, and halve the dynos the policy counts as busy).
* **When more dynos do not help**: minutes with more dynos that delete no more.
* **The real wait**: CloudWatch's ``ApproximateAgeOfOldestMessage`` over the target in a
  minute when the model said the dynos sufficed means the rate is lower than believed.

Robust to noise (weighted medians), to idle minutes (only saturated minutes teach the
rate; a backlog must be one the dynos cannot have cleared within the count lag), and to
deploys (minutes whose dynos changed weigh half, never serve as floors, and the median
outvotes the few slow minutes after a restart). Everything is kept in a small
JSON-serialisable dict, a few kilobytes. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PRIOR = 2.0  # the operator's figure weighs as much as this many dyno-minutes of evidence
KEEP_SAMPLES = 40
KEEP_BOOTS = 20
KEEP_RATIOS = 30
LEDGER_SECONDS = 900  # minutes kept waiting for their CloudWatch points (which come 1–2 min late)
NOT_HELPING_GAIN = 0.3  # more dynos must add at least this share of their expected deletes
NOT_HELPING_HOLD = 900.0  # seconds a not-helping finding stands without new evidence
WAIT_CORRECTION = 0.8  # the rate is multiplied by this when the measured wait proves it too high
RATE_FLOOR_SHARE = 0.01  # the learned rate never goes below this share of the operator's figure


@dataclass(frozen=True)
class Estimate:
    """One learned figure, as the pair page and the reasons show it."""

    name: str
    value: float
    operator: float  # what the operator said
    source: str  # "operator" (no evidence yet), "learned" or "pinned"
    spread: float | None  # relative uncertainty (0.12 = ±12 %), None when not known
    samples: int
    basis: str  # how much data, in words: "38 dyno-min", "9 boots"

    def as_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "operator": self.operator, "source": self.source,
                "spread": None if self.spread is None else round(self.spread, 3), "samples": self.samples,
                "basis": self.basis}

    def describe(self, text: str) -> str:
        """``text`` is the value in words, e.g. "rate 4.1/s per dyno"."""
        if self.source != "learned":
            return f"{text} ({self.source})"
        sure = f"±{self.spread * 100:.0f} %, " if self.spread is not None else ""
        return f"{text} (learned, {sure}{self.basis}; operator said {self.operator:g})"


def weighted_median(pairs: Sequence[tuple[float, float]]) -> float:
    ordered = sorted(pairs)
    half = sum(w for _, w in ordered) / 2
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]


def spread_of(pairs: Sequence[tuple[float, float]], centre: float) -> float | None:
    """Relative uncertainty of a weighted median: scaled MAD over the root of the evidence."""
    if len(pairs) < 3 or centre <= 0:
        return None
    mad = weighted_median([(abs(v - centre), w) for v, w in pairs])
    evidence = sum(w for _, w in pairs)
    return 1.4826 * mad / centre / math.sqrt(max(1.0, evidence))


def _slope(pts: Sequence[Sequence[float]]) -> float | None:
    """Least-squares slope of (time, visible) points: None for fewer than four or 45 s."""
    if len(pts) < 4 or pts[-1][0] - pts[0][0] < 45:
        return None
    mt = sum(p[0] for p in pts) / len(pts)
    mv = sum(p[1] for p in pts) / len(pts)
    return sum((p[0] - mt) * (p[1] - mv) for p in pts) / sum((p[0] - mt) ** 2 for p in pts)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


@dataclass(frozen=True)
class Look:
    """One cycle's view, as the learner needs it (the counts lag by up to ``lag`` seconds)."""

    at: float
    visible: int
    in_flight: int
    running: int
    starting: int
    lag: float
    expected_late: bool  # the policy already knew it was short (booting, or held at max)


class Learner:
    """Holds the evidence in ``state`` (a dict it owns) and turns it into estimates."""

    def __init__(self, state: Mapping[str, Any] | None, *, operator_rate: float) -> None:
        s = dict(state or {})
        self.operator_rate = operator_rate
        self.rate_samples: list[list[Any]] = [list(x) for x in s.get("rate", [])]  # [value, weight, kind, minute?]
        self.boots: list[float] = [float(x) for x in s.get("boots", [])]
        self.ratios: list[float] = [float(x) for x in s.get("ratios", [])]
        self.service: list[list[float]] = [list(map(float, x)) for x in s.get("service", [])]  # [seconds, weight]
        self.ledger: dict[str, list[float]] = {k: list(map(float, v)) for k, v in s.get("ledger", {}).items()}
        self.cw_done = float(s.get("cw_done", 0.0))
        self.age_guard = float(s.get("age_guard", 0.0))
        self.saturated: list[list[float]] = [list(map(float, x)) for x in s.get("saturated", [])]  # [minute, n, deleted]
        self.not_helping: dict[str, Any] | None = s.get("not_helping")
        self.segment: dict[str, Any] | None = s.get("segment")
        self.last_slope: list[float] | None = s.get("last_slope")  # [dynos, slope, end, span]
        self.stable_since = float(s.get("stable_since", 0.0))
        self.last_running = int(s.get("last_running", -1))
        self.fell_at: float | None = s.get("fell_at")  # when the dynos up last fell
        self.corrections = int(s.get("corrections", 0))
        self.events: list[str] = []  # what changed this cycle, for the reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": [[round(x[0], 4), round(x[1], 3), *x[2:]] for x in self.rate_samples[-KEEP_SAMPLES:]],
            "boots": self.boots[-KEEP_BOOTS:], "ratios": [round(r, 3) for r in self.ratios[-KEEP_RATIOS:]],
            "service": [[round(s, 4), round(w, 3)] for s, w in self.service[-KEEP_SAMPLES:]],
            "ledger": {k: [round(x, 2) for x in v] for k, v in self.ledger.items()},
            "cw_done": self.cw_done, "age_guard": self.age_guard, "saturated": self.saturated[-12:],
            "not_helping": self.not_helping, "segment": self.segment, "last_slope": self.last_slope,
            "stable_since": self.stable_since, "last_running": self.last_running, "fell_at": self.fell_at,
            "corrections": self.corrections,
        }

    # --- evidence --------------------------------------------------------------------

    def observe(self, look: Look, previous: Look | None, boot_durations: Iterable[float]) -> None:
        self.boots += [float(b) for b in boot_durations if b > 0]
        if look.running < self.last_running:
            self.fell_at = look.at
        if look.running != self.last_running or look.starting:
            self.stable_since = look.at
            self.last_running = look.running
        # Counts taken while the formation was changing describe another formation.
        stable = look.at - self.stable_since > look.lag + 5
        # In flight per dyno up is never above the concurrency while the count cannot hold
        # messages of dynos gone since (a count older than a rise shows fewer dynos' work).
        if look.running > 0 and (self.fell_at is None or look.at - self.fell_at > look.lag + 5):
            self.ratios.append(look.in_flight / look.running)
        if previous is not None and 0 < look.at - previous.at <= 600:
            # Dyno-seconds are known well enough when the dynos up changed little over the
            # interval (the mean of both ends is used); dynos still booting do not delete.
            n_prev, n_now = previous.running, look.running
            settled = abs(n_now - n_prev) <= max(1.0, 0.1 * n_now) and look.at - self.stable_since >= look.lag or (
                n_now == n_prev and n_now > 0 and min(look.visible, previous.visible) >= n_now)
            # Saturated even while dynos come up: bursts are when dynos are busiest, and
            # the mean of both ends is near enough when a backlog keeps every one at work.
            # The counts are up to a lag old: the backlog must be one the dynos cannot have
            # cleared since (half a lag of work at the believed rate), or idle seconds count.
            margin = max(n_now, n_prev) * max(1.0, self.rate(pinned=False).value * look.lag / 2)
            saturated = n_now > 0 and min(look.visible, previous.visible) >= margin
            self._account(previous.at, look.at, (n_prev + n_now) / 2, settled, saturated,
                          (look.in_flight + previous.in_flight) / 2, look.expected_late)
        self._segment(look, stable)

    def _account(self, start: float, end: float, running: float, settled: bool, saturated: bool, in_flight: float,
                 late_known: bool) -> None:
        """Spread (start, end] over the minutes it covers: dyno-seconds, saturated and
        covered seconds, in-flight-seconds, whether the policy knew it was short, and
        settled seconds (one formation, no dyno starting)."""
        t = start
        while t < end:
            minute = math.floor(t / 60) * 60
            step = min(end, minute + 60) - t
            row = self.ledger.setdefault(str(int(minute)), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
            row[0] += running * step
            row[1] += step if saturated else 0.0
            row[2] += step
            row[3] += in_flight * step
            row[4] = max(row[4], 1.0 if late_known else 0.0)
            row[5] += step if settled else 0.0
            t += step
        for key in [k for k in self.ledger if float(k) < end - LEDGER_SECONDS]:
            del self.ledger[key]

    def _segment(self, look: Look, stable: bool) -> None:
        """Counts-only rate: slopes of the visible count over stretches of constant dynos
        while a backlog waits, compared across a formation change."""
        seg = self.segment
        saturated = stable and look.running > 0 and look.visible >= look.running
        if seg is not None and (not saturated or int(seg["n"]) != look.running):
            self._close_segment(seg)
            seg = None
        if saturated:
            if seg is None:
                seg = {"n": look.running, "pts": [], "paired": False}
            seg["pts"] = [*seg["pts"], [look.at, float(look.visible)]][-12:]
            slope = _slope(seg["pts"])
            last = self.last_slope
            if slope is not None and not seg["paired"] and last is not None and int(last[0]) != look.running \
                    and seg["pts"][0][0] - last[2] < 120:
                rate = (last[1] - slope) / (look.running - last[0])
                # Arrivals that changed between the two stretches (a spike) fake a slope
                # change: figures beyond 5× either way of the operator's are not believed.
                if self.operator_rate / 5 <= rate <= self.operator_rate * 5:
                    # Longer stretches and a bigger change in dynos measure it better.
                    span = min(last[3], seg["pts"][-1][0] - seg["pts"][0][0]) / 60
                    self.rate_samples.append([rate, min(4.0, abs(look.running - last[0]) * max(0.5, span)), "counts"])
                seg["paired"] = True
        self.segment = seg

    def _close_segment(self, seg: Mapping[str, Any]) -> None:
        pts = seg["pts"]
        slope = _slope(pts)
        if slope is None:
            return
        n = int(seg["n"])
        self.last_slope = [float(n), slope, pts[-1][0], pts[-1][0] - pts[0][0]]

    def _lower_bound(self, value: float, *, weight: float) -> None:
        if value > self.rate(pinned=False).value * 1.05:
            self.rate_samples.append([value, weight, "floor"])

    def absorb_cloudwatch(self, deleted: Sequence[tuple[float, float]], ages: Sequence[tuple[float, float]],
                          *, at: float, target: float, rate_now: float) -> None:
        """Per-minute points (minute start, value), each read once however often it comes."""
        for minute, count in sorted(deleted):
            if minute <= self.cw_done:
                continue
            row = self.ledger.get(str(int(minute)))
            self.cw_done = max(self.cw_done, minute)
            if row is None or len(row) < 6 or row[2] < 50 or row[0] < 30:
                continue  # not watched whole, or no dyno ran
            dyno_seconds, saturated_seconds, covered, in_flight_seconds = row[0], row[1], row[2], row[3]
            settled = row[5] >= covered - 5
            if count >= 10 and settled:
                self.service.append([in_flight_seconds / count, count])
            if saturated_seconds >= covered - 5:
                self.saturated.append([minute, dyno_seconds / covered, count])
                self._check_not_helping(at, rate_now)
                if count <= 0:
                    # Every dyno had work and none was deleted: the workers are stuck (or not
                    # deleting what they finish), which says nothing of how fast they work.
                    self.events.append(f"CloudWatch: no message deleted in the minute from {_hhmm(minute)} while "
                                       "every dyno had work (stuck workers?): not taken as their rate")
                elif self.not_helping is None:
                    weight = dyno_seconds / 60 * (1.0 if settled else 0.5)
                    self.rate_samples.append([count / dyno_seconds, weight, "cloudwatch", minute])
            elif dyno_seconds >= 60 and settled:
                self._lower_bound(count / dyno_seconds, weight=dyno_seconds / 120)
        for minute, age in sorted(ages):
            row = self.ledger.get(str(int(minute)))
            if minute < self.age_guard or row is None or row[4] or age <= target or self.not_helping is not None:
                continue
            # Late although the model said the dynos sufficed: the model is wrong.
            self.rate_samples = [[x[0] * WAIT_CORRECTION, *x[1:]] for x in self.rate_samples]
            self.corrections += 1
            self.age_guard = at  # points older than this correction are not counted again
            self.events.append(
                f"CloudWatch measured a wait of {age:.0f} s (over the {target:g} s target) at a minute the model said "
                f"was covered: rate lowered {100 - WAIT_CORRECTION * 100:.0f} %")
        if self.not_helping is not None and at - float(self.not_helping["since"]) > NOT_HELPING_HOLD:
            self.not_helping = None

    def _check_not_helping(self, at: float, rate_now: float) -> None:
        """Compare the fewest dynos that reached the highest deletes with minutes of more
        dynos: if those deleted hardly more, the limit is elsewhere."""
        recent = [x for x in self.saturated if x[0] >= self.saturated[-1][0] - 1200]
        top = max(x[2] for x in recent)
        low = min((x for x in recent if x[2] >= 0.9 * top), key=lambda x: x[1])
        more = [x for x in recent if x[1] >= max(low[1] + 1, low[1] * 1.25)]
        n_more = sum(x[1] for x in more) / len(more) if more else 0.0
        enough = len(more) >= 2 or (len(more) == 1 and n_more >= 1.5 * low[1])
        if not enough:
            latest = self.saturated[-1]
            if self.not_helping is not None:
                if latest[2] / 60 >= 0.8 * rate_now * latest[1]:
                    self.not_helping = None  # the dynos held deliver their rate again: the limit is gone
                else:
                    self.not_helping["since"] = at  # still held below their rate: the finding stands
            return
        deleted_more = sum(x[2] for x in more) / len(more)
        expected = low[2] * (1 + NOT_HELPING_GAIN * (n_more / low[1] - 1))
        if deleted_more < expected:
            # Those minutes measured the limit, not the dynos: they must not lower the rate.
            limited = {x[0] for x in more}
            self.rate_samples = [x for x in self.rate_samples if len(x) < 4 or x[3] not in limited]
            self.not_helping = {
                "since": at, "dynos": round(low[1], 1), "per_minute": round(low[2]),
                "why": (f"{n_more:.0f} dynos deleted {deleted_more:,.0f} messages a minute, {low[1]:.0f} deleted "
                        f"{low[2]:,.0f}: more dynos do not raise the deletes (a database or downstream limit?)"),
            }

    # --- estimates -------------------------------------------------------------------

    def rate(self, *, pinned: bool) -> Estimate:
        operator = self.operator_rate
        if pinned:
            return Estimate("rate", operator, operator, "pinned", None, 0, "")
        evidence = [(float(x[0]), float(x[1])) for x in self.rate_samples]
        weight = sum(w for _, w in evidence)
        if not evidence and not self.corrections:
            return Estimate("rate", operator, operator, "operator", None, 0, "no evidence yet")
        # The prior is scaled by the corrections, so a proven-too-high figure does not pull back.
        prior = operator * WAIT_CORRECTION ** self.corrections
        pairs = [*evidence, (prior, PRIOR)]
        # However much evidence points lower, a rate below this is a stall, not a speed (and
        # the policy divides by it).
        value = max(weighted_median(pairs), operator * RATE_FLOOR_SHARE)
        kinds = {x[2] for x in self.rate_samples}
        unit = "dyno-min" if "cloudwatch" in kinds else "dyno-min from counts"
        return Estimate("rate", value, operator, "learned", spread_of(pairs, value), len(evidence), f"{weight:.0f} {unit}")

    def reads_cloudwatch(self) -> bool:
        """Has CloudWatch delivered a point for this pair, so a saturated minute can prove
        the rate?"""
        return self.cw_done > 0

    def proven(self) -> bool:
        """Has the rate been measured (CloudWatch's deletes while every dyno had work), so
        the policy may count on it? Counts alone move the figure but never prove it: with
        no measured wait to catch it, a wrong figure must cost dynos, not late messages."""
        return sum(float(x[1]) for x in self.rate_samples if x[2] == "cloudwatch") >= 3

    def boot(self, operator: float, *, pinned: bool) -> Estimate:
        if pinned or len(self.boots) < 2:
            return Estimate("boot", operator, operator, "pinned" if pinned else "operator", None, len(self.boots),
                            f"{len(self.boots)} boot(s) seen")
        recent = self.boots[-KEEP_BOOTS:]
        value = percentile(recent, 0.9)
        return Estimate("boot", value, operator, "learned", None, len(recent), f"p90 of {len(recent)} boots")

    def serving_before(self, deadline: float) -> float | None:
        """How long a dyno started now serves before ``deadline`` seconds from now, on
        average over the boots seen (None before two): where the slow boots miss the
        deadline the fast ones may not, and a p90 cannot say by how much."""
        if len(self.boots) < 2:
            return None
        recent = self.boots[-KEEP_BOOTS:]
        return sum(max(0.0, deadline - b) for b in recent) / len(recent)

    def concurrency(self, operator: int, rate: float, *, pinned: bool) -> Estimate:
        if pinned:
            return Estimate("concurrency", operator, operator, "pinned", None, 0, "")
        candidates: list[tuple[float, str]] = [(float(operator), "")]
        if len(self.ratios) >= 3:
            candidates.append((percentile(self.ratios[-KEEP_RATIOS:], 0.9), f"in flight per dyno, {len(self.ratios)} looks"))
        if len(self.service) >= 2 and self.proven():
            seconds = weighted_median([(s, w) for s, w in self.service])
            candidates.append((rate * seconds, f"rate × {seconds:.2f} s service time, {len(self.service)} min"))
        value, basis = max(candidates)
        if not basis:
            return Estimate("concurrency", operator, operator, "operator", None, 0, "no evidence yet")
        return Estimate("concurrency", value, operator, "learned", None, len(self.ratios) + len(self.service), basis)


def _hhmm(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M UTC")

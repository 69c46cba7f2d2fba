"""Recurring bursts: find them in a pair's own history and plan dynos ahead of them.

The history kept is the bursts themselves, not a series of counts: one small record per
burst (when it was first seen, how much work it brought how fast), at most ``KEEP`` of
them over ``HORIZON`` (8 days, enough for weekly patterns). A policy's state is rewritten
every cycle (every 15 s), so it must stay small; a week of per-minute arrivals would be
10,080 numbers, the bursts of a week a few hundred. Steady change (a daily wave, a ramp)
needs no forecast: it is slow enough to follow.

A burst opens when the arrivals of one look exceed the usual ones by more than a dyno
could serve in half a target, and closes when arrivals are back to usual and the backlog
is gone. Its *work rate* is the capacity, beyond the usual, that keeps every one of its
messages within the target if the dynos are up when it starts: the largest of
(messages arrived since the start) ÷ (seconds since the start + the target's slack).

A pattern is a period (every N minutes, hourly at :MM, daily at HH:MM, weekdays at HH:MM)
that the bursts kept: it is trusted once it has **recurred twice** (three bursts at the
same spacing, weekends skipped for weekday patterns). A pattern seen once is never used.
When the next burst of a trusted pattern is due, the policy asks for its dynos a boot
(plus a look and the count lag) ahead, and releases them if the burst does not come.
Pure: no clock, no Django.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KEEP = 300
HORIZON = 8 * 86400.0
MIN_BURST_MESSAGES = 100.0
MIN_PERIOD = 300.0
TRUSTED = 3  # bursts at one spacing: the pattern has recurred twice
MAX_EPISODE = 900.0  # arrivals high for longer are a new usual level, not a burst
DAY = 86400.0


@dataclass(frozen=True)
class Pattern:
    period: float  # seconds
    kind: str  # how a person says it: "every 30 min", "hourly at :15", "daily at 02:00", "weekdays at 09:00"
    last: float  # the latest burst that fits it
    next: float  # when the next one is due
    seen: int  # bursts that fit it
    tolerance: float  # how far from the spacing a burst may come and still fit
    work_rate: float  # messages per second beyond the usual that its bursts needed (the largest of the last three)
    dynos: int = 0  # the fewest dynos any of its last three bursts ended up running at their peak

    def describe(self) -> str:
        return f"{self.kind}, seen {self.seen}×"


class Bursts:
    """The bursts seen so far and the one under way, in a small dict."""

    def __init__(self, state: Mapping[str, Any] | None) -> None:
        s = dict(state or {})
        # [at, work rate, the most dynos that burst ran]
        self.onsets: list[list[float]] = [[*map(float, x), 0.0][:3] for x in s.get("onsets", [])]
        self.open: dict[str, float] | None = s.get("open")
        self.usual = float(s.get("usual", 0.0))  # usual arrivals per second (outside bursts)
        self.found: list[Pattern] = [pattern_from_dict(p) for p in s.get("patterns", [])]

    def as_dict(self) -> dict[str, Any]:
        return {"onsets": [[round(a, 1), round(w, 2), int(d)] for a, w, d in self.onsets[-KEEP:]], "open": self.open,
                "usual": round(self.usual, 3), "patterns": [pattern_as_dict(p) for p in self.found]}

    def observe(self, at: float, dt: float, arrivals: float, *, level: float, visible: int, threshold: float,
                slack: float, dynos: int = 0) -> bool:
        """One look: ``arrivals`` per second over the last ``dt`` seconds, ``level`` a
        steadier figure for the same (a median of looks). True when a burst opened."""
        excess = max(0.0, arrivals - self.usual) * dt
        if self.open is None:
            if excess >= max(MIN_BURST_MESSAGES, threshold):
                self.open = {"at": at, "work": excess, "rate": excess / max(1.0, slack), "calm": 0.0}
                self.onsets.append([at, self.open["rate"], float(dynos)])
                self.onsets = [o for o in self.onsets if o[0] > at - HORIZON][-KEEP:]
                self.found = self.find()
                return True
            if dt > 0:  # the usual level follows slowly (ten minutes), and never during a burst
                self.usual += (level - self.usual) * min(1.0, dt / 600)
            return False
        episode = self.open
        episode["work"] += excess
        since = at - episode["at"]
        episode["rate"] = max(episode["rate"], episode["work"] / (since + max(1.0, slack)))
        self.onsets[-1][1] = episode["rate"]
        self.onsets[-1][2] = max(self.onsets[-1][2], float(dynos))
        calm = excess < MIN_BURST_MESSAGES / 4 and visible < threshold
        episode["calm"] = episode["calm"] + 1 if calm else 0.0
        if episode["calm"] >= 2:
            self.open = None
            self.found = self.find()
        elif since > MAX_EPISODE:
            # Not a burst but a step: forget it, and start from the new level.
            self.open = None
            self.onsets.pop()
            self.usual = level
            self.found = self.find()
        return False

    def find(self) -> list[Pattern]:
        """Trusted patterns in the bursts so far (run when a burst opens; the result is kept).

        Each of the last few bursts is tried as the latest of a pattern, so one stray burst
        between two of a cron's does not hide the cron."""
        if len(self.onsets) < TRUSTED:
            return []
        times = [o[0] for o in self.onsets]
        found: dict[int, Pattern] = {}
        for anchor in range(len(times) - 1, max(-1, len(times) - 5), -1):
            latest = times[anchor]
            periods = {round((latest - t) / 60) * 60.0 for t in times[max(0, anchor - 40):anchor] if latest - t >= MIN_PERIOD}
            for period in sorted(periods | {3600.0, DAY}):
                pattern = self._fit(period, anchor, times)
                if pattern is None or pattern.seen < TRUSTED or pattern.next <= times[-1] + pattern.tolerance:
                    continue  # untrusted, or it foretells a burst that is already past
                key = round(pattern.next / 60)
                if key not in found or found[key].seen < pattern.seen:
                    found[key] = pattern
        # A multiple of a trusted period predicts nothing the period does not.
        kept = [p for p in found.values()
                if not any(q.period < p.period and _is_multiple(p.period, q.period, q.tolerance) for q in found.values())]
        return sorted(kept, key=lambda p: p.next)

    def _fit(self, period: float, anchor: int, times: Sequence[float]) -> Pattern | None:
        tolerance = min(900.0, max(90.0, 0.03 * period))
        latest = times[anchor]
        matched = [anchor]
        skipped_weekend = False
        for k in range(1, 64):
            due = latest - k * period
            if due < times[0] - tolerance:
                break
            i = bisect_left(times, due)
            near = [j for j in (i - 1, i) if 0 <= j < len(times) and abs(times[j] - due) <= tolerance]
            if near:
                matched.append(min(near, key=lambda j: abs(times[j] - due)))
            elif period == DAY and _weekday(due) >= 5:
                skipped_weekend = True
            else:
                break
        if len(matched) < 2:
            return None
        span = latest - times[matched[-1]]
        mean_period = span / round(span / period)
        weekdays = skipped_weekend and all(_weekday(times[j]) < 5 for j in matched)
        due = latest + mean_period
        while weekdays and _weekday(due) >= 5:
            due += DAY
        # Bursts after the anchor that the pattern did not predict are other bursts; a
        # pattern whose due burst was followed by nothing is dropped when it is late (below).
        work_rate = max(self.onsets[j][1] for j in matched[:3])
        dynos = int(min(self.onsets[j][2] for j in matched[:3]))
        return Pattern(period=mean_period, kind=_kind(mean_period, latest, weekdays), last=latest, next=due,
                       seen=len(matched), tolerance=tolerance, work_rate=work_rate, dynos=dynos)


def plan(patterns: Sequence[Pattern], now: float, *, lead: float, latest_burst: float | None) -> Pattern | None:
    """The pattern whose burst the dynos should be ready for now: due within ``lead``
    seconds, or due a little while ago and not come yet. A burst seen since the warm-up
    began means it came: the reactive rule takes over from there. Past its due time and
    tolerance, a burst that did not come releases the dynos."""
    for pattern in patterns:
        start = pattern.next - lead
        if start <= now <= pattern.next + pattern.tolerance and (latest_burst is None or latest_burst < start):
            return pattern
    return None


def pattern_from_dict(data: Mapping[str, Any]) -> Pattern:
    return Pattern(**{k: data[k] for k in Pattern.__dataclass_fields__ if k in data})


def pattern_as_dict(pattern: Pattern) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in pattern.__dict__.items()}


def _is_multiple(period: float, base: float, tolerance: float) -> bool:
    k = round(period / base)
    return k >= 2 and abs(period - k * base) <= tolerance


def _weekday(at: float) -> int:
    return datetime.fromtimestamp(at, tz=UTC).weekday()


def _kind(period: float, at: float, weekdays: bool) -> str:
    moment = datetime.fromtimestamp(at, tz=UTC)
    if abs(period - DAY) <= 300:
        return f"{'weekdays' if weekdays else 'daily'} at {moment:%H:%M} UTC"
    if abs(period - 3600) <= 90:
        return f"hourly at :{moment:%M}"
    return f"every {period / 60:.0f} min"

"""The peers' documented scaling rules, as pure policies, for the simulator and bench.

Each follows its vendor's public documentation (see the REFERENCE notes quoted in each
docstring), with its documented defaults; the bench sweeps each one's main threshold so
it is compared at its best setting, not its worst. They run on the same simulated
observations as DynoScaler's own policies. ``interval`` is each product's own cadence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scaling.policies import Bounds, ClassicPolicy, Observation, Policy, Verdict


class HireFireJobQueue:
    """HireFire, Job Queue (size): target = ceil(jobs / ratio) within min/max, checked
    every 60 s; a direction is taken only on the Nth consecutive checkup that wants it
    (upscale sensitivity, recommended 2–5; downscale 10–30). Jobs = visible messages."""

    name = "hirefire"
    interval = 60.0
    main_setting = "ratio"
    defaults = {"ratio": 100.0, "upscale_sensitivity": 2, "downscale_sensitivity": 10}

    def decide(self, obs: Observation, bounds: Bounds, settings: Mapping[str, Any], state: Mapping[str, Any]) -> Verdict:
        cfg = {**self.defaults, **settings}
        target = bounds.clamp(math.ceil(obs.visible / float(cfg["ratio"])))
        up = int(state.get("up", 0)) + 1 if target > obs.quantity else 0
        down = int(state.get("down", 0)) + 1 if target < obs.quantity else 0
        desired = obs.quantity
        if up >= int(cfg["upscale_sensitivity"]):
            desired, up = target, 0
        elif down >= int(cfg["downscale_sensitivity"]):
            desired, down = target, 0
        return Verdict(desired=bounds.clamp(desired), state={"up": up, "down": down},
                       reason=f"jobs {obs.visible} / ratio {cfg['ratio']:g} → target {target}")


class JudoscaleLatency:
    """Judoscale, queue latency, checks every 10 s: latency (age of the oldest job) above
    the upscale threshold adds a jump of dynos (default 1); below the downscale threshold
    for the whole downscale delay (default 10 min) removes one. The simulator gives it the
    true oldest-message age (lagged like the counts), which SQS alone would not."""

    name = "judoscale"
    interval = 10.0
    main_setting = "upscale_threshold"
    defaults = {"upscale_threshold": 20.0, "downscale_threshold": None, "jump": 1, "downscale_delay": 600.0}

    def decide(self, obs: Observation, bounds: Bounds, settings: Mapping[str, Any], state: Mapping[str, Any]) -> Verdict:
        cfg = {**self.defaults, **settings}
        upper = float(cfg["upscale_threshold"])
        lower = float(cfg["downscale_threshold"]) if cfg["downscale_threshold"] is not None else upper / 4
        latency = obs.oldest_age or 0.0
        low_since = state.get("low_since")
        desired = obs.quantity
        if latency > upper or (obs.quantity == 0 and obs.visible > 0):
            desired, low_since = obs.quantity + int(cfg["jump"]), None
        elif latency < lower:
            low_since = obs.at if low_since is None else float(low_since)
            if obs.at - low_since >= float(cfg["downscale_delay"]):
                desired, low_since = obs.quantity - 1, obs.at
        else:
            low_since = None
        return Verdict(desired=bounds.clamp(desired), state={"low_since": low_since},
                       reason=f"latency {latency:.0f} s (up > {upper:g}, down < {lower:g})")


class KedaSqsHpa:
    """KEDA aws-sqs-queue with Kubernetes HPA v2 defaults: metric = visible + in flight;
    no change within 10 % of the target; desired = ceil(metric / queueLength); scale-up
    at most max(+4, ×2) per 15 s sync; scale-down to the highest recommendation of the
    last 300 s; to zero after a 300 s cooldown with nothing queued, when min is 0."""

    name = "keda"
    interval = 15.0
    main_setting = "queue_length"
    defaults = {"queue_length": 5.0, "tolerance": 0.1, "stabilization": 300.0, "cooldown": 300.0}

    def decide(self, obs: Observation, bounds: Bounds, settings: Mapping[str, Any], state: Mapping[str, Any]) -> Verdict:
        cfg = {**self.defaults, **settings}
        metric = obs.visible + obs.in_flight
        target = float(cfg["queue_length"])
        last_active = obs.at if metric > 0 else state.get("last_active")
        q = obs.quantity
        if q == 0:
            want = 1 if metric > 0 else 0  # KEDA's activation: 0 → 1, then the HPA takes over
        elif abs(metric / (target * q) - 1) <= float(cfg["tolerance"]):
            want = q
        else:
            want = math.ceil(metric / target)
        recs = [(t, n) for t, n in state.get("recs", []) if obs.at - float(t) < float(cfg["stabilization"])]
        recs.append((obs.at, want))
        if want > q:
            desired = min(want, max(q + 4, 2 * q))
        else:
            desired = min(q, max(n for _, n in recs))
        if bounds.min_dynos == 0 and metric == 0 and last_active is not None and obs.at - float(last_active) >= float(cfg["cooldown"]):
            desired = 0
        elif desired == 0 and q > 0:
            desired = 1  # the HPA never goes below 1; only KEDA's cooldown takes it to zero
        return Verdict(desired=bounds.clamp(desired), state={"recs": [[t, n] for t, n in recs], "last_active": last_active},
                       reason=f"metric {metric} / queueLength {target:g} → {want}")


class AwsTargetTracking:
    """AWS target tracking on backlog per instance (visible / instances): scale out after 3
    consecutive one-minute points above the target (new = ceil(current × metric / target));
    scale in after 15 points below it, conservatively (by at most 10 %, at least one);
    300 s cooldown after each change."""

    name = "aws_target_tracking"
    interval = 60.0
    main_setting = "target"
    defaults = {"target": 100.0, "out_points": 3, "in_points": 15, "cooldown": 300.0}

    def decide(self, obs: Observation, bounds: Bounds, settings: Mapping[str, Any], state: Mapping[str, Any]) -> Verdict:
        cfg = {**self.defaults, **settings}
        target = float(cfg["target"])
        instances = max(obs.running, 1)  # no metric at zero instances: treat as one
        metric = obs.visible / instances
        high = int(state.get("high", 0)) + 1 if metric > target else 0
        low = int(state.get("low", 0)) + 1 if metric < target else 0
        changed_at = state.get("changed_at")
        cooling = changed_at is not None and obs.at - float(changed_at) < float(cfg["cooldown"])
        q = obs.quantity
        desired = q
        if high >= int(cfg["out_points"]) and not cooling:
            desired = max(q + 1, math.ceil(max(q, 1) * metric / target))
            high, changed_at = 0, obs.at
        elif low >= int(cfg["in_points"]) and not cooling and q > bounds.min_dynos:
            desired = max(math.ceil(q * metric / target), q - max(1, q // 10))
            low, changed_at = 0, obs.at
        return Verdict(desired=bounds.clamp(desired), state={"high": high, "low": low, "changed_at": changed_at},
                       reason=f"backlog per instance {metric:.1f} (target {target:g})")


class ClassicBaseline(ClassicPolicy):
    """The seed's rule at its own cadence (one cycle a minute), for the bench."""

    interval = 60.0
    main_setting = "backlog_threshold"
    defaults = {"backlog_threshold": 100.0, "up_cycles": 2, "down_cycles": 5}

    def decide(self, obs: Observation, bounds: Bounds, settings: Mapping[str, Any], state: Mapping[str, Any]) -> Verdict:
        return super().decide(obs, bounds, {**self.defaults, **settings}, state)


BASELINES: dict[str, Policy] = {
    p.name: p for p in (ClassicBaseline(), HireFireJobQueue(), JudoscaleLatency(), KedaSqsHpa(), AwsTargetTracking())
}

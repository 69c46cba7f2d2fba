"""The default policy, ``target_wait``: enough dynos that a message starts within the
target wait, and no more, with the dynos' figures learned as it runs. Pure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scaling.learning import Estimate, Learner, Look
from scaling.patterns import Bursts, plan
from scaling.policy_types import Bounds, Observation, Verdict, backlog_per_instance, bounded, ceil_count, outcome

PREWARM_MODES = ("off", "shadow", "on")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class TargetWaitSettings:
    """Operator units. Only the target is needed; the rest are starting points that the
    policy corrects from what it measures, unless pinned."""

    dyno_rate: float  # messages per second one dyno completes (the operator's figure)
    target_wait_seconds: float = 120.0  # a message should start within this long of arriving
    dyno_concurrency: int = 1  # messages one dyno works on at once (its worker concurrency)
    boot_seconds: float = 45.0  # from formation change to the new dyno consuming
    scale_down_window_seconds: float = 90.0  # a lower need must hold this long
    interval_seconds: float = 15.0  # how often the policy is consulted
    lag_seconds: float = 30.0  # how stale SQS's approximate counts may be
    pin_dyno_rate: bool = False  # use the operator's figure as it is, learn nothing
    pin_boot_seconds: bool = False
    pin_dyno_concurrency: bool = False
    prewarm: str = "on"  # recurring bursts: "off", "shadow" (say what it would do) or "on"

    def __post_init__(self) -> None:
        if not self.dyno_rate > 0:
            raise ValueError("dyno_rate must be greater than 0 messages per second")
        if self.dyno_concurrency < 1:
            raise ValueError("dyno_concurrency must be at least 1")
        if self.boot_seconds < 0:
            raise ValueError("boot_seconds cannot be negative")
        if not self.target_wait_seconds > self.boot_seconds:
            raise ValueError(
                f"target_wait_seconds ({self.target_wait_seconds:g}) must exceed boot_seconds "
                f"({self.boot_seconds:g}): a new dyno cannot help a message that must start before it boots"
            )
        if self.scale_down_window_seconds < 0:
            raise ValueError("scale_down_window_seconds cannot be negative")
        if not self.interval_seconds > 0:
            raise ValueError("interval_seconds must be greater than 0")
        if self.lag_seconds < 0:
            raise ValueError("lag_seconds cannot be negative")
        if self.prewarm not in PREWARM_MODES:
            raise ValueError(f"prewarm must be one of {', '.join(PREWARM_MODES)}, not {self.prewarm!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TargetWaitSettings:
        if data.get("dyno_rate") is None:
            raise ValueError("dyno_rate is required: how many messages one dyno completes per second")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in cls.__dataclass_fields__ or value is None:
                continue
            if key.startswith("pin_"):
                values[key] = _flag(value)
            elif key == "prewarm":
                values[key] = str(value)
            elif key == "dyno_concurrency":
                values[key] = int(value)
            else:
                values[key] = float(value)
        return cls(**values)


class TargetWaitPolicy:
    """Enough dynos that a message starts within the target wait, and no more.

    In a FIFO queue the newest visible message waits for everything ahead of it, so with
    N dynos it starts after about visible / (N × rate) seconds. The need is the largest of
      * backlog: the fewest dynos that start the newest visible message within what is
        left of the target (the target less how old the backlog may already be: see
        ``drain_seconds``), the dynos up serving from now and added ones only after a
        boot (``backlog_need``);
      * growth: while the backlog grows faster than the formation (up and starting)
        completes, the dynos the backlog a dyno added now meets after its boot needs;
        from zero (no dyno up), every arrival until the boot ends counts, asked for at
        once when a later look would be too late or the boot was never measured; when
        even that look's dynos boot past the oldest message's deadline, each counts only
        for what the quick boots among those seen serve before it;
      * busy: dynos still working (in flight ÷ concurrency, never above the formation);
      * one dyno whenever anything is visible (wake from zero on the first message);
      * a pre-warm: dynos for a recurring burst that is due (``scaling.patterns``).
    Up: at once, to the need. Down: only to the highest need over the stabilization
    window, computed with 70 % of the time left (hysteresis), and never on counts that
    cannot show what the dynos did yet: while no dyno is up and messages wait, or within a
    lag of dynos coming up. To zero only when min is 0 and nothing was visible or in flight
    for the window.

    Rate, boot time and concurrency are learned (``scaling.learning``); the operator's
    figures are where learning starts. A pair that never had a dyno up times its boot once
    while nothing waits (``_time_boot``): a burst from zero is planned on the boot. Until
    the rate has been seen at saturation, every dyno is counted as if it had to boot (a figure twice too high then costs dynos, not
    late messages), and a queue empty for a whole window lets the busy floor on the way
    down fall (a probe), so a too-low concurrency cannot keep the dynos from ever being
    busy enough to measure: to 75 %, or, where CloudWatch is readable (a saturated minute
    will prove the rate and end the probing), to the share of the time left that a
    boot takes, at least 50 %: a probe that went too far costs a boot to undo. A cold
    start's ask, and the needs of looks whose counts predate its dynos, are held only
    until the counts show its dynos serving. On the way down,
    busy dynos are judged on the median of recent looks, and part of a busy dyno is left
    to the backlog to ask for again when boots are short (time-sharing between two
    counts); while a backlog falls, only the dynos its arrivals keep busy count as busy
    (the rest only drain it). When CloudWatch shows that more dynos do not raise the
    deletes, the policy stops adding and holds. The constants were chosen with
    bench/policies.py (see bench/RESULTS.md).
    """

    name = "target_wait"
    DOWN_BUDGET = 0.7
    UNPROVEN_BUSY = 0.75
    DEEPEST_PROBE = 0.5
    # Up to this share of a busy dyno is left to the backlog to ask for again (time-sharing
    # between two counts), in proportion to how little of the target a boot takes.
    BUSY_SLACK = 1.2
    SAMPLES = 5
    MAX_GAP_FACTOR = 10  # a gap longer than this many intervals restarts the rate estimate

    def decide(
        self,
        observation: Observation,
        bounds: Bounds,
        settings: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> Verdict:
        cfg = TargetWaitSettings.from_mapping(settings)
        obs = observation
        learner = Learner(state.get("learn"), operator_rate=cfg.dyno_rate)
        bursts = Bursts(state.get("bursts"))
        look = Look(at=obs.at, visible=obs.visible, in_flight=obs.in_flight, running=obs.running,
                    starting=obs.starting, lag=cfg.lag_seconds, expected_late=bool(state.get("short", False)))
        previous = _previous_look(state, cfg.lag_seconds)
        learner.observe(look, previous, obs.boot_durations)
        learner.absorb_cloudwatch(obs.deleted_per_minute, obs.oldest_age_per_minute, at=obs.at,
                                  target=cfg.target_wait_seconds, rate_now=learner.rate(pinned=cfg.pin_dyno_rate).value)
        rate_est = learner.rate(pinned=cfg.pin_dyno_rate)
        boot_est = learner.boot(cfg.boot_seconds, pinned=cfg.pin_boot_seconds)
        conc_est = learner.concurrency(cfg.dyno_concurrency, rate_est.value, pinned=cfg.pin_dyno_concurrency)
        rate, boot, concurrency = rate_est.value, min(boot_est.value, cfg.target_wait_seconds * 0.9), conc_est.value

        looks = self._arrival_looks(obs, cfg, state)
        samples = [self._arrivals(look, rate, concurrency) for look in looks]
        arrivals = statistics.median(samples)
        dt = obs.at - float(state["at"]) if "at" in state else 0.0
        # The last look is recent enough to go on from. After a longer gap (a pause, whose
        # cycles decide nothing; workers that stopped) the past looks say nothing of the
        # load now, and the window starts again as on a first cycle.
        recent = 0 < dt <= cfg.interval_seconds * self.MAX_GAP_FACTOR
        slack = max(cfg.target_wait_seconds - cfg.lag_seconds - cfg.interval_seconds, cfg.target_wait_seconds / 4)
        if recent:
            bursts.observe(obs.at, dt, samples[-1], level=arrivals, visible=obs.visible, slack=slack, dynos=obs.quantity,
                           threshold=max(0.5 * rate * cfg.target_wait_seconds, 2 * bursts.usual * dt))

        drain = self.drain_seconds(cfg, cold=obs.running == 0)
        budget = max(drain - boot, cfg.target_wait_seconds / 8)  # what a dyno added now has
        quantity = obs.quantity
        busy = min(ceil_count(obs.in_flight / concurrency), max(quantity, obs.running))
        # Until the rate has been seen at saturation, count on no dyno for longer than a
        # new one would have: a wrong figure then costs dynos, not late messages.
        proven = learner.proven() or cfg.pin_dyno_rate
        up_drain = drain if proven else budget
        up_need = max(self.backlog_need(obs.visible, obs.running, rate, up_drain, budget), busy, 1 if obs.visible else 0)
        # A growing backlog: a dyno added now serves only after its boot, so ask for what
        # the backlog it will meet then needs. It grows by the arrivals beyond what the
        # formation (up and starting) completes. With no dyno up, the backlog rule already
        # counts every dyno as booting.
        growth = max(0.0, arrivals - quantity * rate) if obs.visible and obs.running else 0.0
        ahead = obs.visible + growth * (boot + cfg.interval_seconds)
        # A cold start: with no dyno up nothing is served until the first boot ends, and
        # every arrival until then adds to the backlog the new dynos meet. Ask now for that
        # backlog (at the newest arrival figure: the median lags a burst's onset) when a
        # later look would come too late for the oldest message (a boot takes what is left
        # of the target) or the boot time is only the operator's word.
        cold = obs.visible > 0 and obs.running == 0
        last_chance = cold and (drain - boot < cfg.interval_seconds or boot_est.source == "operator")
        ahead_budget = up_drain
        if last_chance:
            growth = max(samples[-1], arrivals)
            ahead = obs.visible + growth * boot
            # When the slow boots end after the oldest message is due, what a dyno added
            # now gives before then is what the quick ones give: measured over the boots
            # seen, at the oldest message's usual deadline (its count half a lag and half a
            # look old), and at least half a look (beyond that more dynos only buy luck).
            if drain - boot < cfg.interval_seconds and boot_est.source == "learned":
                served = learner.serving_before(
                    cfg.target_wait_seconds - (cfg.lag_seconds + cfg.interval_seconds) / 2)
                if served is not None:
                    ahead_budget = min(up_drain, max(served, cfg.interval_seconds / 2))
        ahead_need = ceil_count(ahead / (rate * ahead_budget)) if growth else 0
        growing = ahead_need > up_need
        up_need = max(up_need, ahead_need)
        # Probe: with the rate never seen at saturation and the queue empty for a whole
        # window, the busy figure may rest on too low a concurrency; offer a little less.
        last_backlog = obs.at if obs.visible else float(state.get("last_backlog", obs.at))
        probing = not (proven or cfg.pin_dyno_concurrency) and obs.at - last_backlog >= cfg.scale_down_window_seconds
        # On the way down the busy dynos are judged on the median of recent looks: one
        # noisy in-flight count must not keep a dyno for a whole window.
        # Looks with no dyno up, or within a lag of dynos coming up, say nothing about how
        # busy the dynos are: the median starts again after them.
        came_up = obs.at if obs.running > int(state.get("running", obs.running)) else state.get("came_up")
        fresh = _fresh(obs.at, obs.running, came_up, cfg.lag_seconds)
        was_fresh = recent and _fresh(float(state["at"]), int(state.get("running", 0)), state.get("came_up"),
                                             cfg.lag_seconds)
        seen_before = [float(x) for x in state.get("in_flight_seen", [])] if was_fresh else []
        in_flight_seen = [*seen_before[-(self.SAMPLES - 1):], float(obs.in_flight)]
        slack_busy = min(0.9, self.BUSY_SLACK * max(0.0, 1 - boot / drain))
        steady_busy = min(ceil_count(statistics.median(in_flight_seen) / concurrency - slack_busy), busy)
        # How far a probe goes: where CloudWatch is readable, a saturated minute will prove
        # the rate and end the probing, so it may go as deep as the boot allows (one boot
        # undoes a probe that went too far); without it, probing never ends: 75 %.
        deep = learner.reads_cloudwatch()
        probe = min(self.UNPROVEN_BUSY, max(self.DEEPEST_PROBE, boot / drain)) if deep else self.UNPROVEN_BUSY
        busy_down = ceil_count(steady_busy * probe) if probing else steady_busy
        # While a backlog waits every dyno is busy, so in flight cannot tell how many the
        # load needs; the arrivals can. Below what the dynos up complete, the backlog is
        # falling and the dynos beyond the arrivals' share only drain it: the backlog rule
        # (70 % of the time left) keeps what clears it in time, and no more is held.
        keep_up = ceil_count(arrivals / rate)
        draining = obs.visible > 0 and obs.running > 0 and arrivals < obs.running * rate and keep_up < busy_down
        if draining:
            busy_down = keep_up
        down_need = max(self.backlog_need(obs.visible, obs.running, rate, up_drain * self.DOWN_BUDGET, budget), busy_down,
                        1 if obs.visible or obs.in_flight else 0)
        if last_chance:  # what a cold start asked for is held over the window like any need
            down_need = max(down_need, ahead_need)

        prewarm = self._prewarm(cfg, bursts, obs.at, lead=boot + cfg.interval_seconds + cfg.lag_seconds + 15, rate=rate,
                                proven=proven)
        warm_need = prewarm["dynos"] if prewarm and cfg.prewarm == "on" else 0
        # The counts cannot yet show what the dynos have done while none is up (nothing was
        # served: a lower count is the counts' lag, not a smaller backlog) or within a lag
        # of dynos coming up (the counts may predate them): no dyno is given up on them.
        unseen = obs.visible > 0 and not fresh
        window = self._window(state.get("needs", []) if recent else [], obs.at, cfg.scale_down_window_seconds, quantity)
        cold_ask = float(state["cold_ask"]) if state.get("cold_ask") is not None else None
        if cold_ask is not None and fresh:
            # A cold start's ask was for the backlog its dynos would meet on coming up, on
            # figures not yet measured, and so were the needs of the looks whose counts could
            # not show them serving yet: once the counts can, those have done their work.
            # They still count as looks that saw messages: a dyno stays a window after them.
            window = [(t, n if t > cold_ask else min(n, 1)) for t, n in window]
            cold_ask = None
        if last_chance or (cold_ask is not None and not fresh):
            cold_ask = obs.at
        window.append((obs.at, max(down_need, warm_need)))
        held_need = max(n for _, n in window)
        holding = unseen and held_need < quantity
        if holding:
            held_need = quantity
        # While dynos boot for a backlog, no look cuts below what it needs itself (the
        # window counts busy dynos at their median over recent looks, which lags a start),
        # nor below what a growing backlog asked for while those dynos still boot: one
        # look's lower arrival figure must not cancel a dyno before it has served.
        grown = int(state.get("grown", 0)) if obs.starting and obs.visible else 0
        booting_for_growth = min(grown, quantity) > max(held_need, up_need)
        if obs.starting and obs.visible:
            held_need = max(held_need, up_need, min(grown, quantity))
        grown = max(grown, ahead_need) if growing and not last_chance else grown  # a cold start's ask has its own hold
        not_helping = learner.not_helping

        seen = _describe_seen(obs, busy, arrivals, rate)
        figures = "; ".join(e.describe(text) for e, text in (
            (rate_est, f"rate {rate:,.3g}/s per dyno"), (boot_est, f"boot {boot_est.value:.0f} s"),
            (conc_est, f"concurrency {concurrency:.3g}")))
        rule = (f"of the {cfg.target_wait_seconds:g} s target {drain:.0f} s are left, {budget:.0f} s for a dyno added now "
                f"[{figures}]")
        if growing and last_chance:
            rule += (f"; no dyno is up, so until the first boot ends every arrival (≈ {growth:,.1f}/s) adds to the "
                     f"backlog: dynos added now come up to ≈ {ahead:,.0f} visible")
            if ahead_budget < up_drain:
                rule += (f", and only the quickest boots seen end before the oldest message is due: a dyno added "
                         f"now serves ≈ {ahead_budget:.0f} s before then")
        elif growing:
            rule += (f"; the backlog grows ≈ {growth:,.1f}/s beyond what {quantity} dyno(s) complete: a dyno added now "
                     f"comes up to ≈ {ahead:,.0f} visible")
        if probing and busy_down < steady_busy:
            rule += (f"; the rate has never been seen at saturation and nothing has waited for "
                     f"{cfg.scale_down_window_seconds:g} s: only {busy_down} of the {steady_busy} busy dyno(s) count, to see "
                     "whether fewer keep up (a probe)")
        if draining:
            rule += (f"; the backlog is falling: arrivals ≈ {arrivals:,.1f}/s keep {keep_up} of the {obs.running} busy, "
                     "the rest only drain it")
        events = list(learner.events)
        need = max(up_need, warm_need)
        verb = ""
        if need > quantity and not_helping is not None and quantity > 0:
            wanted, action = quantity, f"needs {need}, but {not_helping['why']}: hold, add none"
        elif need > quantity:
            wanted, action, verb = need, f"needs {need}", "scale up"
            if prewarm is not None and warm_need > up_need:
                action = (f"needs {up_need} now and {warm_need} for the burst due at {_clock(prewarm['due'])} "
                          f"({prewarm['pattern']})")
                verb = "pre-warm"
        elif held_need < quantity:
            over = f"needed at most {held_need} over the last {cfg.scale_down_window_seconds:g} s (with 30 % headroom)"
            if up_need <= held_need:
                action = f"needs {up_need}; {over}"
            elif draining:  # this look counts every busy dyno; the way down, only those the arrivals keep busy
                action = f"needs {up_need} on this look, counting every busy dyno; {over}, counting those the arrivals keep busy"
            else:  # this look's in-flight count is above the recent looks' median
                action = (f"needs {up_need} on this look's {busy} busy; {over}, counting busy dynos at their median "
                          f"over the last {len(in_flight_seen)} looks")
            wanted, verb = held_need, "scale down"
        elif up_need < quantity and booting_for_growth:
            wanted, action = quantity, (f"needs {up_need}, but keeps {quantity}: the dyno(s) asked for as the backlog "
                                        "grew still boot, and one look's lower arrivals do not cancel them")
        elif up_need < quantity and holding and cold:
            wanted, action = quantity, (f"needs {up_need}, but keeps {quantity}: no dyno is up yet, so nothing has been "
                                        "served and a lower count is the counts' lag")
        elif up_need < quantity and holding:
            wanted, action = quantity, (f"needs {up_need}, but keeps {quantity}: dynos came up within the counts' "
                                        f"{cfg.lag_seconds:g} s lag, so the counts may not show them serving yet")
        elif up_need < quantity:
            wanted, action = quantity, (f"needs {up_need}, but keeps {quantity} until a lower need has held for "
                                        f"{cfg.scale_down_window_seconds:g} s (with 30 % headroom)")
        else:
            wanted, action = quantity, f"needs {quantity}"
        # A pair that has had a dyno up (the learner kept its in-flight counts) or seen a boot
        # has something better than a timing.
        never_up = not (learner.boots or learner.ratios)
        timing = self._time_boot(cfg, obs, bounds, boot_est, state.get("boot_timing"), never_up=never_up)
        if timing is not None and not timing.get("done") and wanted <= timing["dynos"]:
            wanted, action = timing["dynos"], f"needs {need}, but {timing['why']}"
            verb = "scale up" if timing["dynos"] > quantity else ""
        elif timing is not None and timing.get("ended"):  # the timing ended on this look: say how
            action += f" ({timing['ended']})"
        desired, note = bounded(wanted, quantity, bounds)
        if verb and desired != quantity and not note.startswith("the formation"):  # out of bounds, the bounds decide the direction
            action += f": {verb}"
        from_zero = boot + cfg.interval_seconds + cfg.lag_seconds
        if obs.running == 0 and obs.visible and from_zero > cfg.target_wait_seconds:
            # Worth saying: scaling can shorten this, only a min that keeps a dyno up removes it.
            action += (f" (from zero the first messages of a burst may be late: a boot of {boot:.0f} s, a look and the "
                       f"counts' {cfg.lag_seconds:g} s can take {from_zero:.0f} s of the {cfg.target_wait_seconds:g} s "
                       "target; a min of 1 would keep a dyno up)")
        if prewarm and cfg.prewarm == "shadow":
            action += (f" (shadow: would pre-warm {prewarm['dynos']} for the burst due at {_clock(prewarm['due'])}, "
                       f"{prewarm['pattern']})")
        why = f"{seen} → {rule} → {action}" + (f"; {note}" if note else "") + f" → {outcome(quantity, desired)}"
        if events:
            why = f"{'; '.join(events)}. {why}"

        new_state = {
            "at": obs.at, "visible": obs.visible, "in_flight": obs.in_flight, "running": obs.running,
            "arrival_looks": looks, "needs": [[t, n] for t, n in window], "last_backlog": last_backlog,
            "in_flight_seen": in_flight_seen, "came_up": came_up, "cold_ask": cold_ask, "grown": grown,
            "short": need > obs.running or desired < need, "learn": learner.as_dict(), "bursts": bursts.as_dict(),
            "boot_timing": {k: v for k, v in timing.items() if k not in ("why", "ended")} if timing else None,
        }
        learned = {"rate": rate_est.as_dict(), "boot": boot_est.as_dict(), "concurrency": conc_est.as_dict()}
        return Verdict(
            desired=desired,
            state=new_state,
            state_kept_if_not_applied=True,  # what it saw and measured holds whether or not the write is made
            reason=why,
            backlog_per_instance=backlog_per_instance(obs.visible, obs.running),
            details={"arrivals_per_second": arrivals, "need_now": up_need, "need_window": held_need,
                     "budget_seconds": budget, "drain_seconds": drain, "learned": learned, "prewarm": prewarm,
                     "patterns": [p.describe() for p in bursts.found],
                     "not_helping": not_helping["why"] if not_helping else None, "corrections": events,
                     "boot_timing": self._timing_said(timing),
                     # How long the newest visible message waits at the formation now running.
                     "wait_seconds": obs.visible / (obs.running * rate) if obs.running else (math.inf if obs.visible else 0.0)},
        )

    @staticmethod
    def _prewarm(cfg: TargetWaitSettings, bursts: Bursts, at: float, *, lead: float, rate: float,
                 proven: bool) -> dict[str, Any] | None:
        if cfg.prewarm == "off":
            return None
        latest = bursts.onsets[-1][0] if bursts.onsets else None
        pattern = plan(bursts.found, at, lead=lead, latest_burst=latest)
        if pattern is None:
            return None
        dynos = max(1, ceil_count((pattern.work_rate + bursts.usual) / rate))
        if not proven:  # an unproven rate may be too high: have at least what the last bursts ended up running
            dynos = max(dynos, pattern.dynos)
        return {"mode": cfg.prewarm, "pattern": pattern.describe(), "due": pattern.next, "dynos": dynos,
                "lead_seconds": round(lead)}

    # Timing the boot once, while nothing waits (see ``_time_boot``).
    TIMING_DYNOS = 2  # a boot figure is learned from two boots
    TIMING_GIVE_UP = 600.0  # seconds (or four of the operator's boots, if longer)

    def _time_boot(self, cfg: TargetWaitSettings, obs: Observation, bounds: Bounds, boot: Estimate,
                   past: Mapping[str, Any] | None, *, never_up: bool) -> dict[str, Any] | None:
        """A burst from zero is planned on the boot time, and the operator's figure may be
        half the truth: the first burst of a pair that never had a dyno up would be late.
        So, once per pair, when it never had a dyno up and no boot was ever seen (nor the
        boot pinned), min is 0 and nothing waits or runs, start two dynos and keep them
        until they are up; the boot is then learned and the window takes them away. If
        they are not up after ten minutes, give up (a dyno that does not boot is not this
        policy's to fix). The state it returns is kept; ``why`` is said on the looks it
        acts, ``ended`` on the look it ends."""
        if past is not None and past.get("done"):
            return {k: v for k, v in past.items() if k not in ("why", "ended")}
        if past is None:
            idle = not (obs.quantity or obs.running or obs.visible or obs.in_flight)
            if (cfg.pin_boot_seconds or boot.source != "operator" or not never_up or not idle or bounds.min_dynos
                    or bounds.max_dynos < 1):
                return None
            dynos = min(self.TIMING_DYNOS, bounds.max_dynos)
            return {"at": obs.at, "dynos": dynos,
                    "why": (f"no dyno was ever up and no boot measured, and a burst from zero is planned on the boot: "
                            f"starts {dynos} dyno(s) while nothing waits, to time their boot (once; pinning the boot "
                            "turns this off)")}
        dynos, started = int(past["dynos"]), float(past["at"])
        asked = f"the {dynos} dyno(s) started at {_clock(started)} to time the boot"
        if cfg.pin_boot_seconds:
            return {"at": started, "dynos": dynos, "done": True, "ended": "the boot was pinned: timing it ended"}
        if boot.source != "operator":
            return {"at": started, "dynos": dynos, "done": True,
                    "ended": f"{asked} are up: the boot is {boot.value:.0f} s ({boot.basis}; the operator said "
                             f"{boot.operator:g})"}
        if obs.running >= dynos:  # up, but no start and up times reached DynoScaler
            return {"at": started, "dynos": dynos, "done": True, "failed": True, "unmeasured": True,
                    "ended": f"{asked} are up, but their boot could not be measured: the boot stays the operator's figure"}
        if obs.quantity < dynos:  # the formation never took them: a dry run, or a write refused
            return {"at": started, "dynos": dynos, "done": True, "failed": True, "not_taken": True,
                    "ended": (f"the formation did not take the {dynos} dyno(s) asked at {_clock(started)} to time the "
                              "boot (a dry run, or a refused write): not timed, the boot stays the operator's figure")}
        waited = obs.at - started
        if waited > max(self.TIMING_GIVE_UP, 4 * cfg.boot_seconds):
            return {"at": started, "dynos": dynos, "done": True, "failed": True, "waited": round(waited),
                    "ended": f"{asked} are not up after {waited:.0f} s: timing given up, the boot stays the operator's figure"}
        return {"at": started, "dynos": dynos, "why": f"keeps {asked} until they are up"}

    @staticmethod
    def _timing_said(timing: Mapping[str, Any] | None) -> str | None:
        """The timing of the boot, as the pair page says it."""
        if not timing:
            return None
        when = datetime.fromtimestamp(float(timing["at"]), tz=UTC)
        started = f"{timing['dynos']} dyno(s) started {when:%Y-%m-%d %H:%M} UTC"
        if not timing.get("done"):
            return f"under way: {started}, kept until they are up"
        if timing.get("unmeasured"):
            return f"not measured: {started} came up, but no start and up times reached DynoScaler; the boot stays your figure"
        if timing.get("not_taken"):
            return (f"not done: the formation did not take the {timing['dynos']} dyno(s) asked {when:%Y-%m-%d %H:%M} "
                    "UTC (a dry run, or a refused write); the boot stays your figure")
        if timing.get("failed"):
            waited = f"{timing['waited']} s" if timing.get("waited") else "the time allowed"
            return f"given up: {started} were not up after {waited}; the boot stays your figure"
        return f"timed once, with {started}"

    @staticmethod
    def _window(needs: Sequence[Sequence[float]], at: float, seconds: float, quantity: int) -> list[tuple[float, int]]:
        """Past needs that still count: those within the window, and always the newest
        one (a pair cycling less often than its window still has a past). With no past at
        all (a first cycle, a reset state, the first look after a long gap) the current
        formation counts as needed, so a restart never cuts dynos on one look."""
        past = [(float(t), int(n)) for t, n in needs]
        if not past:
            return [(at, quantity)]
        kept = [(t, n) for t, n in past if at - t < seconds]
        return kept or [past[-1]]

    @staticmethod
    def drain_seconds(cfg: TargetWaitSettings, *, cold: bool) -> float:
        """How soon a backlog seen now must be cleared: the backlog is older than it
        looks, as counts lag and it may have built since the last cycle. With no dyno
        running (a cold start) every waiting message has aged by up to a lag and a cycle;
        with dynos consuming, the backlog is a moving window whose messages are on average
        half that old."""
        stale = cfg.interval_seconds + cfg.lag_seconds
        return max(cfg.target_wait_seconds - (stale if cold else stale / 2), cfg.target_wait_seconds / 4)

    @staticmethod
    def backlog_need(visible: int, running: int, rate: float, drain: float, budget: float) -> int:
        """The fewest dynos that clear ``visible`` within ``drain`` seconds when the
        ``running`` ones serve from now and any added serve only for ``budget`` seconds
        (what is left after their boot)."""
        if visible <= running * rate * drain:
            return ceil_count(visible / (rate * drain))
        return running + ceil_count((visible - running * rate * drain) / (rate * budget))

    def _arrival_looks(self, obs: Observation, cfg: TargetWaitSettings,
                       state: Mapping[str, Any]) -> list[list[float]]:
        """The recent looks' evidence of arrivals, kept as seen: [change in visible per second,
        in flight (the mean of both ends), dynos up]. Arrivals are what the backlog gained
        plus what the busy dynos completed, and that depends on the rate and concurrency,
        which learning may change between two looks: they are applied when the looks are
        read (``_arrivals``), so that a new rate is never set against arrivals reckoned on
        the old one (a backlog holding steady would seem to grow)."""
        first = [0.0, float(obs.in_flight), float(obs.running)]
        previous = state.get("at")
        if previous is None:
            return [first]
        dt = obs.at - float(previous)
        if not 0 < dt <= cfg.interval_seconds * self.MAX_GAP_FACTOR:
            return [first]
        prev_in_flight = float(state.get("in_flight", obs.in_flight))
        change = (obs.visible - float(state.get("visible", obs.visible))) / dt
        kept = [[float(x) for x in look] for look in state.get("arrival_looks", [])]
        return [*kept[-(self.SAMPLES - 1):], [change, (obs.in_flight + prev_in_flight) / 2, float(obs.running)]]

    @staticmethod
    def _arrivals(look: Sequence[float], rate: float, concurrency: float) -> float:
        change, in_flight, running = look
        return max(0.0, change + min(in_flight / concurrency, max(running, 0.0)) * rate)


def _fresh(at: float, running: int, came_up: Any, lag: float) -> bool:
    """Can a look's counts show the dynos up serving? Not with none up, nor within a lag
    of dynos coming up (the counts may predate them)."""
    return running > 0 and (came_up is None or at - float(came_up) >= lag)


def _previous_look(state: Mapping[str, Any], lag: float) -> Look | None:
    if "at" not in state:
        return None
    return Look(at=float(state["at"]), visible=int(state.get("visible", 0)), in_flight=int(state.get("in_flight", 0)),
                running=int(state.get("running", 0)), starting=0, lag=lag, expected_late=False)


def _describe_seen(obs: Observation, busy: int, arrivals: float, rate: float) -> str:
    up = f"{obs.running} up" + (f", {obs.starting} starting" if obs.starting else "")
    if obs.running:
        waits = f"with {obs.running} up the newest message waits ≈ {obs.visible / (obs.running * rate):,.0f} s"
    else:
        waits = "no dyno is up" + (", so nothing is served" if obs.visible else "")
    return (f"{obs.visible:,} visible, {obs.in_flight:,} in flight (≈ {busy} dyno(s) busy), {up}, "
            f"arrivals ≈ {arrivals:,.1f}/s; {waits}")


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M UTC")

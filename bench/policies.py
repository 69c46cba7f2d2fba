"""Compare DynoScaler's default policy with the seed's rule and the peers' documented rules,
in worlds where the operator's figures are wrong.

    python bench/policies.py                 # everything; writes bench/RESULTS.md and bench/results.png
    python bench/policies.py --quick         # one world, two short traces, no files written
    python bench/policies.py --interval 15   # our cadence, when the model's default is not yet it

DynoScaler's `target_wait` is given only the target wait and the operator's per-dyno
figure (off by 2× either way in two of the worlds); every other setting is the product's
own default for a new pair, read from the model. Every peer is swept over its main
threshold in every world and shown at its cheapest setting that keeps at most 1 % of
messages late: tuned with hindsight, per world and trace.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from dataclasses import dataclass, fields
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import plot, write_results  # noqa: E402
from bench.traces import LEARNING, TRACES  # noqa: E402
from scaling.baselines import BASELINES  # noqa: E402
from scaling.policies import Bounds, Observation, TargetWaitPolicy, TargetWaitSettings, Verdict  # noqa: E402
from scaling.simulator import Result, World, simulate  # noqa: E402

TARGET = 120.0
STATED_RATE = 10.0  # what the operator types as messages per second per dyno
BOUNDS = Bounds(0, 100)
LATE_LIMIT = 0.01
STEADY_WRITES_PER_HOUR = 12.0  # at most one formation write per 5 minutes on steady load
OURS = "target_wait"
FLOOR = "first_sight"  # a reference, not a product: how late bursts from zero must be for any policy
# Bursts from zero are where luck matters most (how stale the count is that first shows a
# burst): they are run again on these seeds of every world, ours and the reference alone.
OTHER_SEEDS = range(101, 111)
# The whole comparison, peers' sweeps included, is run again on these seeds of every world
# (``--seeds``), so that a verdict on a thin margin can be told from the dice.
FULL_SEEDS = (201, 202)
# What is true in every world and never told to DynoScaler: dynos work on 4 messages at
# once (the operator leaves concurrency at its default), counts are 0–30 s stale, each
# dyno boots within ±10 % of the world's boot time, service times vary ±30 % per message
# and drift ±10 % over five-minute spells, CloudWatch points come 1–2 minutes late.
COMMON: dict[str, Any] = {"dyno_concurrency": 4, "lag_seconds": 30.0, "lag_min_seconds": 0.0, "boot_jitter": 0.1,
                          "service_noise": 0.3, "drift": 0.1, "target_wait_seconds": TARGET,
                          "cloudwatch_delay": (60.0, 120.0)}
WORLDS: dict[str, World] = {
    "as stated": World(dyno_rate=10.0, boot_seconds=45.0, cloudwatch=True, seed=11, **COMMON),
    "half as fast": World(dyno_rate=5.0, boot_seconds=90.0, cloudwatch=True, seed=12, **COMMON),
    "twice as fast": World(dyno_rate=20.0, boot_seconds=20.0, cloudwatch=True, seed=13, **COMMON),
    "half as fast, no CloudWatch": World(dyno_rate=5.0, boot_seconds=60.0, cloudwatch=False, seed=14, **COMMON),
}
SWEEPS: dict[str, list[float]] = {
    "classic": [25, 50, 100, 200, 400, 800, 1600, 3200],
    "hirefire": [2, 5, 10, 25, 50, 100, 200, 400, 800, 1600],
    "judoscale": [5, 10, 20, 30, 45, 60, 90, 120],
    "keda": [5, 25, 100, 200, 400, 800, 1600, 3200],
    "aws_target_tracking": [25, 50, 100, 200, 400, 800, 1600, 3200],
}


class FirstSight:
    """Max dynos at the first count that shows a message; zero after a quiet two minutes.
    No policy that scales on the counts can start a burst from zero sooner, so what this
    leaves late is out of every such policy's reach (at any cost)."""

    name = FLOOR

    def decide(self, observation: Observation, bounds: Bounds, settings: dict[str, Any],
               state: dict[str, Any]) -> Verdict:
        busy_at = state.get("busy_at")
        if observation.visible or observation.in_flight:
            return Verdict(bounds.max_dynos, {"busy_at": observation.at}, "something is queued: max")
        quiet = busy_at is None or observation.at - float(busy_at) >= 120
        return Verdict(0 if quiet else observation.quantity, dict(state), "quiet")


def product_defaults(interval: float | None) -> tuple[dict[str, Any], dict[str, str]]:
    """target_wait's settings for a new pair: the model's field defaults where the model
    has the field, the policy's own defaults otherwise; and where each came from."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynoscaler_site.settings")
    os.environ.setdefault("DEBUG", "1")
    import django
    from django.core.exceptions import FieldDoesNotExist

    django.setup()
    from scaling.models import ScalingPair

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for f in fields(TargetWaitSettings):
        try:
            values[f.name] = ScalingPair._meta.get_field(f.name).default
            origin[f.name] = "model"
        except FieldDoesNotExist:
            values[f.name] = f.default
            origin[f.name] = "policy"
    values.update(target_wait_seconds=TARGET, dyno_rate=STATED_RATE)
    origin.update(target_wait_seconds="given", dyno_rate="the operator's figure")
    if interval is not None:
        values["interval_seconds"], origin["interval_seconds"] = interval, "--interval"
    return values, origin


@dataclass
class Run:
    world: str
    trace: str
    policy: str
    setting: str
    result: Result
    seed: int | None = None  # None: the world's own seed

    @property
    def late(self) -> float:
        """Late share after the trace's learning time (all of it where it has none)."""
        return self.result.late_share_after_warmup

    @property
    def meets(self) -> bool:
        return self.late <= LATE_LIMIT


Job = tuple[str, str, str, float | None, int | None, dict[str, Any]]
_TRACES: dict[str, list[int]] = {}


def _run(job: Job) -> Run:
    world_name, trace_name, name, value, seed, ours = job
    trace = _TRACES.get(trace_name) or _TRACES.setdefault(trace_name, TRACES[trace_name]())
    if name == OURS:
        policy: Any = TargetWaitPolicy()
        settings, interval, label = ours, float(ours["interval_seconds"]), "defaults"
    elif name == FLOOR:
        policy, settings, interval, label = FirstSight(), {}, float(ours["interval_seconds"]), "max at first sight"
    else:
        policy = BASELINES[name]
        settings, interval = {policy.main_setting: value}, policy.interval
        label = f"{policy.main_setting}={value:g}"
    world = WORLDS[world_name] if seed is None else dataclasses.replace(WORLDS[world_name], seed=seed)
    result = simulate(trace, policy=policy, settings=settings, bounds=BOUNDS, interval=interval,
                      world=world, warmup_seconds=LEARNING.get(trace_name, 0))
    result.samples = []  # the plot needs only the totals; keep the pipe between processes light
    return Run(world_name, trace_name, name, label, result, seed)


def comparison(worlds: list[str], traces: list[str], ours: dict[str, Any], seed: int | None) -> list[Job]:
    """Ours, the reference for bursts from zero and every peer's sweep, in one draw of the worlds."""
    jobs: list[Job] = [(w, t, OURS, None, seed, ours) for w in worlds for t in traces]
    jobs += [(w, t, FLOOR, None, seed, ours) for w in worlds for t in traces if t == "idle_bursts"]
    jobs += [(w, t, name, value, seed, ours) for w in worlds for t in traces
             for name, values in SWEEPS.items() for value in values]
    return jobs


def run_all(worlds: list[str], traces: list[str], ours: dict[str, Any], processes: int, *, seeds: int = 0,
            bursts_seeds: bool = True) -> list[Run]:
    jobs = comparison(worlds, traces, ours, None)
    for seed in FULL_SEEDS[:seeds]:
        jobs += comparison(worlds, traces, ours, seed)
    if bursts_seeds and "idle_bursts" in traces:
        jobs += [(w, "idle_bursts", name, None, seed, ours) for w in worlds for seed in OTHER_SEEDS
                 for name in (OURS, FLOOR)]
    runs: list[Run] = []
    started = time.monotonic()
    with Pool(processes) as pool:
        for i, run in enumerate(pool.imap_unordered(_run, jobs, chunksize=2), 1):
            runs.append(run)
            where = "" if run.seed is None else f" (seed {run.seed})"
            progress(i, len(jobs), f"{run.world}, {run.trace}{where}: {run.policy} {run.setting}", started)
    return runs


def progress(done: int, total: int, what: str, started: float) -> None:
    elapsed = time.monotonic() - started
    eta = elapsed / done * (total - done)
    line = f"[{'#' * (30 * done // total):<30}] {done}/{total}, {elapsed:.0f} s, ~{eta:.0f} s left — {what}"
    if sys.stderr.isatty():
        print(f"\r{line[:118]:<118}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 20) == 0:
        print(line, file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one world, two traces cut to two hours, no files written")
    parser.add_argument("--interval", type=float, help="our cycle interval in seconds (default: the model's default)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="parallel simulations (default: cores)")
    parser.add_argument("--seeds", type=int, default=len(FULL_SEEDS), choices=range(len(FULL_SEEDS) + 1),
                        help=f"run the whole comparison again on this many other seeds (default: {len(FULL_SEEDS)})")
    args = parser.parse_args()
    ours, origin = product_defaults(args.interval)
    worlds, traces = list(WORLDS), list(TRACES)
    if args.quick:
        worlds, traces = ["half as fast"], ["steady", "idle_bursts"]
        for name in traces:
            _TRACES[name] = TRACES[name]()[: 2 * 3600]
    print(f"target_wait settings: {ours}", file=sys.stderr)
    wall = time.monotonic()
    every = run_all(worlds, traces, ours, 1 if args.quick else args.processes, seeds=0 if args.quick else args.seeds,
                    bursts_seeds=not args.quick)
    runs = [r for r in every if r.seed is None]
    cpu, elapsed = cpu_seconds(), time.monotonic() - wall
    cost = f"{len(every)} simulations: {cpu:,.0f} CPU seconds over {elapsed:,.0f} s of wall time ({args.processes} processes)"
    here = Path(__file__).resolve().parent
    text = write_results(runs, worlds, traces, ours=ours, origin=origin, cost=cost, bench=sys.modules[__name__],
                         path=None if args.quick else here / "RESULTS.md",
                         seed_runs=[r for r in every if r.seed in OTHER_SEEDS and r.trace == "idle_bursts"
                                    and r.policy in (OURS, FLOOR)],
                         other_draws=[r for r in every if r.seed in FULL_SEEDS])
    print(text)
    print(cost, file=sys.stderr)
    if not args.quick:
        plot(runs, worlds, traces, here / "results.png", bench=sys.modules[__name__])
        print(f"wrote {here / 'RESULTS.md'} and {here / 'results.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Compare DynoScaler's default policy with the seed's rule and the peers' documented rules.

    python bench/policies.py            # all traces; writes bench/RESULTS.md and bench/results.png
    python bench/policies.py --quick    # two short traces, for a smoke run

Every baseline is swept over its main threshold and shown at its cheapest setting that
keeps at most 1 % of messages late (or, if none does, its least-late setting).
DynoScaler's `target_wait` runs at its default settings only: no tuning per trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.traces import TRACES  # noqa: E402
from scaling.baselines import BASELINES  # noqa: E402
from scaling.policies import Bounds, TargetWaitPolicy  # noqa: E402
from scaling.simulator import Result, World, simulate  # noqa: E402

WORLD = World(dyno_rate=10.0, dyno_concurrency=4, boot_seconds=45.0, lag_seconds=30.0, target_wait_seconds=120.0)
BOUNDS = Bounds(0, 100)
LATE_LIMIT = 0.01
STEADY_WRITES_PER_HOUR = 12.0  # at most one formation write per 5 minutes
OURS = "target_wait"
# What an operator would enter: the target, the measured rate and concurrency, defaults otherwise.
OUR_SETTINGS: dict[str, Any] = {"target_wait_seconds": WORLD.target_wait_seconds,
                                "dyno_rate": WORLD.dyno_rate, "dyno_concurrency": WORLD.dyno_concurrency}
OUR_INTERVAL = 30.0
SWEEPS: dict[str, list[float]] = {
    "classic": [25, 50, 100, 200, 400, 800, 1600, 3200],
    "hirefire": [2, 5, 10, 25, 50, 100, 200, 400, 800, 1600],
    "judoscale": [5, 10, 20, 30, 45, 60, 90, 120],
    "keda": [5, 25, 100, 200, 400, 800, 1600, 3200],
    "aws_target_tracking": [25, 50, 100, 200, 400, 800, 1600, 3200],
}


@dataclass
class Run:
    trace: str
    policy: str
    setting: str
    result: Result

    @property
    def meets(self) -> bool:
        return self.result.late_share <= LATE_LIMIT


def run_all(traces: dict[str, list[int]]) -> list[Run]:
    jobs = [(t, name, value) for t in traces for name, values in SWEEPS.items() for value in values]
    jobs += [(t, OURS, None) for t in traces]
    runs: list[Run] = []
    started = time.monotonic()
    for i, (trace_name, name, value) in enumerate(jobs, 1):
        if name == OURS:
            policy: Any = TargetWaitPolicy()
            settings, interval, label = {**OUR_SETTINGS, "interval_seconds": OUR_INTERVAL}, OUR_INTERVAL, "defaults"
        else:
            policy = BASELINES[name]
            settings, interval = {policy.main_setting: value}, policy.interval
            label = f"{policy.main_setting}={value:g}"
        result = simulate(traces[trace_name], policy=policy, settings=settings, bounds=BOUNDS, interval=interval, world=WORLD)
        runs.append(Run(trace_name, name, label, result))
        progress(i, len(jobs), f"{trace_name}: {name} {label}")
    print(f"{len(jobs)} simulations in {time.monotonic() - started:.0f} s".ljust(100), file=sys.stderr)
    return runs


def progress(done: int, total: int, what: str) -> None:
    if sys.stderr.isatty():
        bar = "#" * (30 * done // total)
        print(f"\r[{bar:<30}] {done}/{total} {what}".ljust(100), end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 10) == 0:
        print(f"{done}/{total} simulations done", file=sys.stderr, flush=True)


def best(runs: list[Run]) -> Run:
    passing = [r for r in runs if r.meets]
    if passing:
        return min(passing, key=lambda r: r.result.dyno_seconds)
    return min(runs, key=lambda r: (r.result.late_share, r.result.dyno_seconds))


def table(runs: list[Run], traces: dict[str, list[int]]) -> tuple[list[str], list[str]]:
    lines = [
        "| trace | policy | setting | cost ×floor | dyno-hours | late | p99 wait | max wait | writes | writes/h |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for trace in traces:
        ours = next(r for r in runs if r.trace == trace and r.policy == OURS)
        chosen = [best([r for r in runs if r.trace == trace and r.policy == name]) for name in SWEEPS]
        for r in [ours, *sorted(chosen, key=lambda r: r.result.dyno_seconds)]:
            res = r.result
            mark = "" if r.meets else " ✗"
            lines.append(
                f"| {trace} | {'**' + r.policy + '**' if r.policy == OURS else r.policy} | {r.setting} | "
                f"{res.cost_vs_floor:.2f} | {res.dyno_hours:.1f} | {res.late_share * 100:.2f} %{mark} | "
                f"{res.p99_wait:.0f} s | {res.max_wait:.0f} s | {res.writes} | {res.writes_per_hour:.1f} |"
            )
        passing = [r for r in chosen if r.meets]
        cheapest = min(passing, key=lambda r: r.result.dyno_seconds) if passing else None
        checks = [f"late {ours.result.late_share * 100:.2f} % {'≤' if ours.meets else '>'} 1 %"]
        if cheapest is None:
            checks.append("no baseline setting meets 1 %")
            cost_ok = True
        else:
            cost_ok = ours.result.dyno_seconds <= cheapest.result.dyno_seconds
            diff = ours.result.dyno_seconds / cheapest.result.dyno_seconds - 1
            checks.append(f"dyno-hours {diff * 100:+.0f} % vs cheapest passing baseline ({cheapest.policy} {cheapest.setting})")
        writes_ok = True
        if trace == "steady":
            writes_ok = ours.result.writes_per_hour <= STEADY_WRITES_PER_HOUR
            checks.append(f"{ours.result.writes_per_hour:.1f} writes/h on steady load (target ≤ {STEADY_WRITES_PER_HOUR:g})")
        ok = ours.meets and cost_ok and writes_ok
        verdicts.append(f"- **{trace}**: {'meets' if ok else 'FALLS SHORT'} — " + "; ".join(checks))
    return lines, verdicts


def plot(runs: list[Run], traces: dict[str, list[int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(traces)
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax, trace in zip(axes.flat, names):
        for name in SWEEPS:
            pts = sorted((r.result.dyno_hours, max(r.result.late_share * 100, 0.001))
                         for r in runs if r.trace == trace and r.policy == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1, label=name)
        ours = next(r for r in runs if r.trace == trace and r.policy == OURS)
        ax.plot([ours.result.dyno_hours], [max(ours.result.late_share * 100, 0.001)], marker="*", ms=16,
                color="black", ls="none", label="DynoScaler target_wait")
        ax.axhline(LATE_LIMIT * 100, color="red", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_title(trace)
        ax.set_xlabel("dyno-hours, log scale (lower is cheaper)")
        ax.set_ylabel("% late (> 120 s); 0 % drawn at 0.001 %")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Cost against lateness: each baseline swept over its main threshold; ★ = DynoScaler at defaults")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two traces cut to two hours, no files written")
    args = parser.parse_args()
    traces = {name: make() for name, make in TRACES.items()}
    if args.quick:
        traces = {name: traces[name][: 2 * 3600] for name in ("steady", "idle_bursts")}
    runs = run_all(traces)
    lines, verdicts = table(runs, traces)
    print("\n".join(lines))
    print()
    print("\n".join(verdicts))
    if args.quick:
        return
    here = Path(__file__).resolve().parent
    plot(runs, traces, here / "results.png")
    params = (
        f"World: {WORLD.dyno_rate:g} messages/s per dyno, concurrency {WORLD.dyno_concurrency}, boot {WORLD.boot_seconds:g} s, "
        f"SQS counts {WORLD.lag_seconds:g} s stale, target wait {WORLD.target_wait_seconds:g} s; bounds "
        f"{BOUNDS.min_dynos}–{BOUNDS.max_dynos} dynos. DynoScaler: `target_wait` with {OUR_SETTINGS}, every {OUR_INTERVAL:g} s, "
        "other settings at their defaults. Baselines at their documented defaults and cadences, swept over: "
        + "; ".join(f"{n} {BASELINES[n].main_setting} ∈ {v}" for n, v in SWEEPS.items())  # type: ignore[attr-defined]
        + ". Each baseline row is its cheapest setting with ≤ 1 % late (✗: none meets it; its least-late setting shown)."
    )
    text = ["# Policy bench results", "", "Made by `python bench/policies.py`; the traces are in `bench/traces.py`.", "",
            params, "", "![cost against lateness](results.png)", "", "## Verdicts", "", *verdicts, "", "## Table", "", *lines, ""]
    (here / "RESULTS.md").write_text("\n".join(text))
    print(f"\nwrote {here / 'RESULTS.md'} and {here / 'results.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()

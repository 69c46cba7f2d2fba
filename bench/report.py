"""Tables, verdicts and the plot for bench/policies.py. Verdicts are computed, never typed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from scaling.simulator import FLAP_SECONDS


def percent(diff: float) -> str:
    """A relative difference as a signed percentage, with the digit that keeps a real
    difference from printing as +0.0 %."""
    return f"{diff * 100:+.2f} %" if 0 < abs(diff) < 0.001 else f"{diff * 100:+.1f} %"


def best(runs: list[Any], limit: float) -> Any:
    passing = [r for r in runs if r.late <= limit]
    if passing:
        return min(passing, key=lambda r: r.result.dyno_seconds)
    return min(runs, key=lambda r: (r.late, r.result.dyno_seconds))


def cell(here: list[Any], bench: ModuleType) -> tuple[Any, list[Any], Any | None, bool]:
    """One world × trace in one draw: ours, each peer at its best setting, the cheapest
    peer setting that keeps 1 %, and whether ours is on time and no dearer than it (the
    writes check aside)."""
    ours = next(r for r in here if r.policy == bench.OURS)
    chosen = [best([r for r in here if r.policy == name], bench.LATE_LIMIT) for name in bench.SWEEPS]
    passing = [r for r in chosen if r.meets]
    cheapest = min(passing, key=lambda r: r.result.dyno_seconds) if passing else None
    ok = ours.meets and (cheapest is None or ours.result.dyno_seconds <= cheapest.result.dyno_seconds)
    return ours, chosen, cheapest, ok


def learned(run: Any) -> str:
    found = run.result.details.get("learned") or {}
    parts = []
    for key, label, unit in (("rate", "rate", "/s"), ("boot", "boot", " s"), ("concurrency", "concurrency", "")):
        item = found.get(key)
        if item:
            parts.append(f"{label} {item['value']:.3g}{unit}" + (f" ({item['source']})" if item["source"] != "learned" else ""))
    return ", ".join(parts)


def floor_run(runs: list[Any], bench: ModuleType, world: str, trace: str) -> Any | None:
    return next((r for r in runs if r.world == world and r.trace == trace and r.policy == bench.FLOOR), None)


def reach(runs: list[Any], bench: ModuleType, world_name: str, trace: str, interval: float) -> str:
    """What no policy scaling on the counts can avoid in a world, or '' when nothing."""
    floor = floor_run(runs, bench, world_name, trace)
    world = bench.WORLDS[world_name]
    slowest_boot = world.boot_seconds * (1 + world.boot_jitter)
    first_help = slowest_boot + interval + world.lag_seconds
    if floor is None or first_help <= world.target_wait_seconds:
        return ""
    return (f"from zero the first messages of a burst wait for the counts (up to {world.lag_seconds:g} s), a look "
            f"(up to {interval:g} s) and a boot (up to {slowest_boot:.0f} s), up to {first_help:.0f} s against the "
            f"{world.target_wait_seconds:g} s target; max dynos at the first count that shows a burst: "
            f"{floor.result.late_share * 100:.2f} % late")


def verdicts(runs: list[Any], worlds: list[str], traces: list[str], bench: ModuleType, interval: float) -> tuple[list[str], list[str], list[str]]:
    summary = [
        "| world | trace | DynoScaler dyno-h | late after learning (all) | writes/h | what it learned | cheapest peer ≤ 1 % late | its dyno-h | writes/h | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |",
    ]
    detail = [
        "| world | trace | policy | setting | dyno-hours | cost ×floor | late after learning | late (all) | p99 wait | writes/h "
        "| flaps |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes: list[str] = []
    for world in worlds:
        for trace in traces:
            ours, chosen, cheapest, _ = cell([r for r in runs if r.world == world and r.trace == trace], bench)
            checks, ok = [], True
            if ours.meets:
                checks.append(f"late {ours.late * 100:.2f} % ≤ 1 %")
            else:
                ok = False
                why = reach(runs, bench, world, trace, interval)
                checks.append(f"late {ours.late * 100:.2f} % > 1 %" + (f" ({why})" if why else ""))
            if cheapest is None:
                checks.append("no peer setting keeps 1 %")
            else:
                diff = ours.result.dyno_seconds / cheapest.result.dyno_seconds - 1
                ok = ok and diff <= 0
                checks.append(f"dyno-hours {percent(diff)} vs {cheapest.policy} {cheapest.setting} (median wait "
                              f"{ours.result.p50_wait:.0f} s against its {cheapest.result.p50_wait:.0f} s)")
            if trace == "steady":
                ok = ok and ours.result.writes_per_hour <= bench.STEADY_WRITES_PER_HOUR
                checks.append(f"{ours.result.writes_per_hour:.1f} writes/h (≤ {bench.STEADY_WRITES_PER_HOUR:g})")
            verdict = "meets" if ok else "FALLS SHORT"
            notes.append(f"- **{world} / {trace}**: {verdict} — " + "; ".join(checks))
            peer = (f"{cheapest.policy} {cheapest.setting}", f"{cheapest.result.dyno_hours:.1f}",
                    f"{cheapest.result.writes_per_hour:.1f}") if cheapest else ("none", "–", "–")
            summary.append(
                f"| {world} | {trace} | {ours.result.dyno_hours:.1f} | {ours.late * 100:.2f} % ({ours.result.late_share * 100:.2f} %) | "
                f"{ours.result.writes_per_hour:.1f} | {learned(ours)} | {peer[0]} | {peer[1]} | {peer[2]} | {verdict} |")
            for r in [ours, *sorted(chosen, key=lambda r: r.result.dyno_seconds)]:
                res = r.result
                name = f"**{r.policy}**" if r.policy == bench.OURS else r.policy
                detail.append(
                    f"| {world} | {trace} | {name} | {r.setting} | {res.dyno_hours:.1f} | {res.cost_vs_floor:.2f} | "
                    f"{r.late * 100:.2f} %{'' if r.meets else ' ✗'} | {res.late_share * 100:.2f} % | {res.p99_wait:.0f} s | "
                    f"{res.writes_per_hour:.1f} | {res.flaps} |")
    return summary, notes, detail


def flaps(runs: list[Any], worlds: list[str], traces: list[str], bench: ModuleType) -> str:
    """Writes that reverse the one before within a minute: DynoScaler's in every cell, and
    the cheapest peer settings' where one keeps 1 %."""
    ours_total = peers_total = cells = 0
    where: list[str] = []
    for world in worlds:
        for trace in traces:
            ours, _, cheapest, _ = cell([r for r in runs if r.world == world and r.trace == trace], bench)
            ours_total += ours.result.flaps
            if ours.result.flaps:
                where.append(f"{world} / {trace} {ours.result.flaps}")
            if cheapest is not None:
                peers_total += cheapest.result.flaps
                cells += 1
    return (f"Flaps (a formation write reversing the one before within {FLAP_SECONDS} s: up then down, or down "
            f"then up): DynoScaler {ours_total} over all {len(worlds) * len(traces)} cells"
            + (f" ({', '.join(where)})" if where else "")
            + f"; the cheapest peer settings {peers_total} over the {cells} cells where one keeps 1 %.")


def checklist(runs: list[Any], worlds: list[str], traces: list[str], bench: ModuleType, interval: float) -> list[str]:
    """The issue's "done when", each line computed from the runs."""
    ours = {(r.world, r.trace): r for r in runs if r.policy == bench.OURS}
    late = [f"{w} / {t} {ours[w, t].late * 100:.2f} %" for w in worlds for t in traces if not ours[w, t].meets]
    dearer = []
    for w in worlds:
        for t in traces:
            peers = [r for r in runs if r.world == w and r.trace == t and r.policy in bench.SWEEPS and r.meets]
            if peers:
                cheapest = min(peers, key=lambda r: r.result.dyno_seconds)
                diff = ours[w, t].result.dyno_seconds / cheapest.result.dyno_seconds - 1
                if diff > 0:
                    dearer.append(f"{w} / {t} {percent(diff)} ({cheapest.policy} {cheapest.setting})")
    total = len(worlds) * len(traces)
    lines = [
        f"- At most 1 % late (after learning) on every trace of every world: {total - len(late)} of {total}"
        + (f"; not on {', '.join(late)}." if late else "."),
        f"- Dyno-hours no more than the cheapest peer setting that keeps 1 %: {total - len(dearer)} of {total}"
        + (f"; dearer on {', '.join(dearer)}." if dearer else "."),
    ]
    if "batch_dumps" in traces:
        dumps = ", ".join(f"{w} {ours[w, 'batch_dumps'].late * 100:.2f} % (with the first three dumps: "
                          f"{ours[w, 'batch_dumps'].result.late_share * 100:.2f} %)" for w in worlds)
        lines.append(f"- Periodic batch dumps after the pattern recurred twice, late: {dumps}.")
    if "idle_bursts" in traces:
        parts = []
        for w in worlds:
            floor = floor_run(runs, bench, w, "idle_bursts")
            parts.append(f"{w} {ours[w, 'idle_bursts'].late * 100:.2f} % late"
                         + (f" (max dynos at first sight: {floor.result.late_share * 100:.2f} %)" if floor else ""))
        lines.append(f"- Bursts from zero (min 0, not recurring): {', '.join(parts)}. A burst is out of every "
                     "policy's reach when the counts show it too late for a boot to end within the target; "
                     "asking for max dynos at the first count that shows it (at any cost) is the measure of what "
                     "is within reach.")
    return lines


def seeds_section(seed_runs: list[Any], worlds: list[str], bench: ModuleType) -> list[str]:
    """Bursts from zero on other seeds: ours against max dynos at first sight, per world."""
    if not seed_runs:
        return []

    def spread(values: list[float]) -> str:
        ordered = sorted(values)
        return f"{ordered[0]:.2f} / {ordered[len(ordered) // 2]:.2f} / {ordered[-1]:.2f} %"

    lines = [
        f"## Bursts from zero on {len(bench.OTHER_SEEDS)} more seeds", "",
        "The idle_bursts trace again in every world with other draws of count lags, boots and service times "
        f"(seeds {bench.OTHER_SEEDS[0]}–{bench.OTHER_SEEDS[-1]}). *Max at first sight* asks for max dynos at the "
        "first count that shows a message: what it leaves late no policy that scales on the counts can avoid.", "",
        "| world | DynoScaler late (min / median / max) | max at first sight late | seeds within 1 point of it | "
        "DynoScaler dyno-h (median) | max at first sight dyno-h (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for world in worlds:
        by_seed: dict[str, dict[str, Any]] = {}
        for r in seed_runs:
            if r.world == world:
                by_seed.setdefault(str(r.seed), {})[r.policy] = r.result
        ours = [v[bench.OURS] for v in by_seed.values()]
        floor = [v[bench.FLOOR] for v in by_seed.values()]
        close = sum(1 for v in by_seed.values() if v[bench.OURS].late_share <= v[bench.FLOOR].late_share + 0.01)
        hours = sorted(r.dyno_hours for r in ours)
        floor_hours = sorted(r.dyno_hours for r in floor)
        lines.append(f"| {world} | {spread([r.late_share * 100 for r in ours])} | "
                     f"{spread([r.late_share * 100 for r in floor])} | {close} of {len(by_seed)} | "
                     f"{hours[len(hours) // 2]:.1f} | {floor_hours[len(floor_hours) // 2]:.1f} |")
    return [*lines, ""]


def other_draws_section(main: list[Any], other: list[Any], worlds: list[str], traces: list[str],
                        bench: ModuleType) -> list[str]:
    """The same comparison on other seeds of every world: does each verdict survive the dice?"""
    if not other:
        return []
    seeds = sorted({r.seed for r in other})
    lines = [
        f"## The whole comparison on {len(seeds)} more seeds", "",
        "Every world again with other draws of count lags, boots, service times and CloudWatch delays "
        f"(seeds {', '.join(str(s) for s in seeds)}), every peer swept again in each. A cell shows ✓ when "
        "DynoScaler is at most 1 % late and no dearer than the cheapest peer setting that keeps 1 % in that draw, "
        "else what failed (the writes check on steady load is made on the bench's seed only).", "",
        f"| world | trace | bench's seed | {' | '.join(f'seed {s}' for s in seeds)} |",
        f"| --- | --- | --- | {' | '.join('---' for _ in seeds)} |",
    ]
    held = total = 0

    def mark(here: list[Any]) -> str:
        ours, _, cheapest, ok = cell(here, bench)
        if ok:
            return "✓"
        if not ours.meets:
            return f"late {ours.late * 100:.2f} %"
        return f"{percent(ours.result.dyno_seconds / cheapest.result.dyno_seconds - 1)} dyno-h"

    for world in worlds:
        for trace in traces:
            marks = [mark([r for r in main if r.world == world and r.trace == trace])]
            for seed in seeds:
                marks.append(mark([r for r in other if r.world == world and r.trace == trace and r.seed == seed]))
            held += sum(m == "✓" for m in marks)
            total += len(marks)
            lines.append(f"| {world} | {trace} | {' | '.join(marks)} |")
    return [f"{lines[0]}", "", f"{held} of {total} cell-draws meet both checks.", *lines[1:], ""]


def write_results(runs: list[Any], worlds: list[str], traces: list[str], *, ours: dict[str, Any], origin: dict[str, str],
                  cost: str, bench: ModuleType, path: Path | None, seed_runs: list[Any] | None = None,
                  other_draws: list[Any] | None = None) -> str:
    interval = float(ours["interval_seconds"])
    summary, notes, detail = verdicts(runs, worlds, traces, bench, interval)
    met = sum(1 for n in notes if ": meets —" in n)
    settings = ", ".join(f"`{k}={v}` ({origin[k]})" for k, v in ours.items())
    world_lines = [f"- **{name}**: dynos really complete {w.dyno_rate:g} messages/s (the operator says "
                   f"{bench.STATED_RATE:g}), boot {w.boot_seconds:g} s ± {w.boot_jitter * 100:.0f} %, CloudWatch "
                   f"{'readable, points 1–2 min late' if w.cloudwatch else 'not readable (no permission)'}"
                   for name, w in bench.WORLDS.items() if name in worlds]
    learning = ", ".join(f"{t}: the first {s / 60:.0f} min" for t, s in bench.LEARNING.items() if t in traces)
    text = [
        "# Policy bench results", "",
        "Made by `python bench/policies.py`; traces in `bench/traces.py`, worlds in `bench/policies.py`.", "",
        f"**Cadence: DynoScaler consulted every {interval:g} s ({origin['interval_seconds']}).** "
        f"Its settings: {settings}. Bounds {bench.BOUNDS.min_dynos}–{bench.BOUNDS.max_dynos} dynos, target wait "
        f"{bench.TARGET:g} s.", "",
        "The worlds (true in each, never told to DynoScaler): concurrency 4 per dyno, SQS counts 0–30 s stale, "
        "service time ±30 % per message drifting ±10 % over five-minute spells, in-flight = deletes × service time.",
        *world_lines, "",
        "Peers: the seed's rule and the documented rules of HireFire, Judoscale, KEDA + HPA and AWS target "
        "tracking at their own cadences, each swept over its main threshold in every world ("
        + "; ".join(f"{n} {bench.BASELINES[n].main_setting} ∈ {v}" for n, v in bench.SWEEPS.items())
        + "); the cheapest setting with ≤ 1 % late is their best with hindsight.", "",
        f"*Late after learning* leaves out the messages of the time a policy needs to see a recurring burst recur "
        f"twice ({learning}); for the other traces it is every message. Both are shown; the verdicts use it for "
        "every policy alike.", "",
        "Without CloudWatch the rate can be moved by the counts but never proven, so DynoScaler keeps counting "
        "every dyno as if it had to boot: a wrong per-dyno figure then costs dyno-hours, not late messages.", "",
        "These are simulations of our model of Heroku, SQS and CloudWatch, not measurements of the products; "
        "the peers are their vendors' documented rules as we model them, and their best setting is picked with "
        "hindsight per world and trace, which no operator can do. DynoScaler gets one setting for everything.", "",
        f"{cost}.", "",
        "![cost against lateness per world and trace](results.png)", "",
        "## Done when?", "", *checklist(runs, worlds, traces, bench, interval), "",
        f"## Verdicts: {met} of {len(notes)} meet every check", "", *notes, "",
        *other_draws_section(runs, other_draws or [], worlds, traces, bench),
        *seeds_section(seed_runs or [], worlds, bench),
        "## Summary", "", flaps(runs, worlds, traces, bench), "", *summary, "",
        "## Every policy at its best setting", "", *detail, "",
    ]
    out = "\n".join(text)
    if path is not None:
        path.write_text(out)
    return "\n".join([*summary, "", *notes])


def plot(runs: list[Any], worlds: list[str], traces: list[str], path: Path, *, bench: ModuleType) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(len(worlds), len(traces), figsize=(3.6 * len(traces), 3.1 * len(worlds)), squeeze=False)
    for row, world in enumerate(worlds):
        for col, trace in enumerate(traces):
            ax = axes[row][col]
            here = [r for r in runs if r.world == world and r.trace == trace]
            for name in bench.SWEEPS:
                pts = sorted((r.result.dyno_hours, max(r.late * 100, 0.001)) for r in here if r.policy == name)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2, lw=0.8, label=name)
            ours = next(r for r in here if r.policy == bench.OURS)
            ax.plot([ours.result.dyno_hours], [max(ours.late * 100, 0.001)], marker="*", ms=13, color="black", ls="none",
                    label="DynoScaler (defaults)")
            ax.axhline(bench.LATE_LIMIT * 100, color="red", lw=0.7, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap at this size
            ax.set_title(f"{world}: {trace}", fontsize=8)
            ax.tick_params(labelsize=6)
            if row == len(worlds) - 1:
                ax.set_xlabel("dyno-hours (log)", fontsize=7)
            if col == 0:
                ax.set_ylabel("% late after learning (0 at 0.001)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("Cost against lateness; each peer swept over its main threshold; ★ = DynoScaler given only the target "
                 "wait and a per-dyno figure", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)

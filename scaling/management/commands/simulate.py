"""Replay an arrival trace (or a pair's own history) through a policy and report cost and wait."""

from __future__ import annotations

import csv
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scaling.baselines import BASELINES
from scaling.models import Decision, PairSample, ScalingPair
from scaling.policies import POLICIES, Bounds, Policy
from scaling.schedules import ScheduleWindow
from scaling.simulator import FLAP_SECONDS, Result, World, simulate, trace_from_history

BOUND_KEYS = ("min_dynos", "max_dynos", "interval_seconds")


class Command(BaseCommand):
    help = (
        "Replay arrivals through a policy: --trace FILE.csv (columns second,arrivals) or --from-history PAIR; "
        "with a pair's settings (--pair NAME) or a policy's (--policy NAME --set key=value ...)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--trace", metavar="FILE.csv", help="CSV of second,arrivals (a header row is allowed)")
        source.add_argument("--from-history", metavar="PAIR", help="rebuild arrivals from this pair's recorded decisions")
        parser.add_argument("--days", type=float, default=7.0, help="with --from-history: how far back (default 7)")
        parser.add_argument("--pair", metavar="NAME", help="use this pair's policy, settings, bounds and schedules")
        parser.add_argument("--policy", metavar="NAME", help=f"a policy: {', '.join(sorted({*POLICIES, *BASELINES}))}")
        parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                            help="a setting (repeatable); also min_dynos, max_dynos, interval_seconds")
        parser.add_argument("--rate", type=float, help="true messages per second per dyno (default: the settings' dyno_rate)")
        parser.add_argument("--concurrency", type=int, help="true messages one dyno works on at once")
        parser.add_argument("--boot", type=float, help="true boot seconds (default 45)")
        parser.add_argument("--lag", type=float, help="seconds SQS counts lag (default 30)")
        parser.add_argument("--target", type=float, help="wait in seconds counted as late (default: the target wait, or 120)")
        parser.add_argument("--cloudwatch", action="store_true",
                            help="the policy reads CloudWatch's per-minute deletes and oldest age (1–2 min late)")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        parser.add_argument("--plot", metavar="OUT.png", help="draw queue, dynos and wait over time")

    def handle(self, *args: Any, **opts: Any) -> None:
        pair = self.find_pair(opts["pair"] or opts["from_history"]) if (opts["pair"] or opts["from_history"]) else None
        name, policy, settings, bounds, interval, windows = self.configure(pair, opts)
        trace = self.load_trace(Path(opts["trace"])) if opts["trace"] else self.history_trace(pair, opts["days"], settings)
        world = World(
            dyno_rate=opts["rate"] or float(settings.get("dyno_rate") or (pair.dyno_rate if pair else 1.0)),
            dyno_concurrency=opts["concurrency"] or int(settings.get("dyno_concurrency") or 1),
            boot_seconds=opts["boot"] if opts["boot"] is not None else float(settings.get("boot_seconds", 45)),
            lag_seconds=opts["lag"] if opts["lag"] is not None else 30.0,
            target_wait_seconds=opts["target"] or float(settings.get("target_wait_seconds", 120)),
            cloudwatch=bool(opts["cloudwatch"]),
        )
        show_progress = not opts["json"] and len(trace) >= 6 * 3600
        result = simulate(trace, policy=policy, settings=settings, bounds=bounds, interval=interval, world=world,
                          windows=windows, progress=self.progress if show_progress else None)
        summary = {"policy": name, "settings": settings, "bounds": [bounds.min_dynos, bounds.max_dynos],
                   "interval_seconds": interval, **result.as_dict(), "learned": result.details.get("learned")}
        if opts["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))
        else:
            self.stdout.write(self.table(name, result, world))
        if opts["plot"]:
            plot(result, world, Path(opts["plot"]), title=f"{name} on {opts['trace'] or opts['from_history']}")
            if not opts["json"]:
                self.stdout.write(f"plot written to {opts['plot']}")

    def find_pair(self, name: str) -> ScalingPair:
        pair = ScalingPair.objects.prefetch_related("schedules").filter(name=name).first()
        if pair is None:
            known = ", ".join(ScalingPair.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"no pair named {name!r} (known: {known})")
        return pair

    def configure(self, pair: ScalingPair | None, opts: dict[str, Any]) -> tuple[str, Policy, dict[str, Any], Bounds, float, list[ScheduleWindow]]:
        name = opts["policy"] or (pair.policy if pair else None)
        if name is None:
            raise CommandError("say which policy: --pair NAME or --policy NAME")
        policy: Policy | None = POLICIES.get(name) or BASELINES.get(name)
        if policy is None:
            raise CommandError(f"--policy: unknown policy {name!r}; known: {', '.join(sorted({*POLICIES, *BASELINES}))}")
        settings: dict[str, Any] = dict(pair.policy_settings()) if pair and pair.policy == name else {}
        limits: dict[str, float] = {"min_dynos": pair.min_dynos if pair else 0, "max_dynos": pair.max_dynos if pair else 100,
                                    "interval_seconds": pair.interval_seconds if pair else float(getattr(policy, "interval", 30))}
        for item in opts["overrides"]:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--set: expected KEY=VALUE, got {item!r}")
            value = _number(raw, key)
            if key in BOUND_KEYS:
                limits[key] = value
            else:
                settings[key] = value
        if name in POLICIES and name != "classic":
            settings.setdefault("interval_seconds", limits["interval_seconds"])
        try:
            bounds = Bounds(int(limits["min_dynos"]), int(limits["max_dynos"]))
            policy.decide(_probe(), bounds, settings, {})  # reject bad settings before a long run
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"--set: {exc}") from None
        windows = pair.schedule_windows() if pair and pair.policy == name else []
        return name, policy, settings, bounds, float(limits["interval_seconds"]), windows

    def load_trace(self, path: Path) -> list[float]:
        try:
            rows = list(csv.reader(path.open(newline="")))
        except OSError as exc:
            raise CommandError(f"--trace: cannot read {path}: {exc.strerror}") from None
        seconds: dict[int, float] = {}
        for line, row in enumerate(rows, 1):
            if not row or (line == 1 and not row[0].strip().lstrip("-").isdigit()):
                continue  # blank line or header
            if len(row) < 2:
                raise CommandError(f"--trace: line {line}: expected second,arrivals, got {','.join(row)!r}")
            try:
                second, arrivals = int(row[0]), float(row[1])
            except ValueError:
                raise CommandError(f"--trace: line {line}: expected a whole second and a number, got {','.join(row)!r}") from None
            if second < 0 or arrivals < 0:
                raise CommandError(f"--trace: line {line}: second and arrivals cannot be negative")
            seconds[second] = seconds.get(second, 0.0) + arrivals
        if not seconds:
            raise CommandError(f"--trace: {path} has no rows of second,arrivals")
        trace = [0.0] * (max(seconds) + 1)
        for second, arrivals in seconds.items():
            trace[second] = arrivals
        return trace

    def history_trace(self, pair: ScalingPair | None, days: float, settings: dict[str, Any]) -> list[float]:
        assert pair is not None
        since = timezone.now() - timedelta(days=days)
        # Every cycle's sample while they are kept; the decisions (one per change or quiet run) before.
        samples = list(PairSample.objects.filter(pair=pair, at__gte=since).order_by("at")
                       .values_list("at", "visible", "in_flight", "running"))
        oldest = samples[0][0] if samples else None
        earlier = Decision.objects.filter(pair=pair, created_at__gte=since, visible_messages__isnull=False)
        if oldest is not None:
            earlier = earlier.filter(created_at__lt=oldest)
        rows = [*earlier.order_by("created_at").values_list("created_at", "visible_messages", "in_flight_messages",
                                                           "dynos_running"), *samples]
        points = [(c.timestamp(), v or 0, f or 0, r or 0) for c, v, f, r in rows]
        trace = trace_from_history(points, dyno_rate=float(settings.get("dyno_rate") or pair.dyno_rate),
                                   dyno_concurrency=int(settings.get("dyno_concurrency") or pair.dyno_concurrency))
        if not trace:
            raise CommandError(f"--from-history: {pair.name!r} has fewer than two recorded cycles in the last {days:g} days")
        return trace

    def progress(self, done: float) -> None:
        bar = "#" * int(done * 40)
        sys.stderr.write(f"\rsimulating [{bar:<40}] {done * 100:3.0f}%")
        if done >= 1:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def table(self, name: str, r: Result, world: World) -> str:
        rows = [
            ("policy", name),
            ("simulated", f"{r.seconds / 3600:,.1f} h, {r.messages:,.0f} messages"),
            ("dyno-hours", f"{r.dyno_hours:,.2f}"),
            ("work floor", f"{r.floor_hours:,.2f} dyno-hours (cost {r.cost_vs_floor:.2f} × floor)"),
            (f"late (> {world.target_wait_seconds:g} s)", f"{r.late_share * 100:.2f} %"),
            ("wait p50 / p95 / p99 / max", f"{r.p50_wait:.0f} / {r.p95_wait:.0f} / {r.p99_wait:.0f} / {r.max_wait:.0f} s"),
            ("formation writes", f"{r.writes} ({r.writes_per_hour:.1f} per hour)"),
            ("boots cancelled", f"{r.boots_cancelled} (dynos removed while still booting)"),
            ("flaps", f"{r.flaps} (writes reversing the one before within {FLAP_SECONDS} s)"),
        ]
        if r.unfinished:
            rows.append(("never served", f"{r.unfinished:,.0f} messages"))
        for name, item in (r.details.get("learned") or {}).items():
            rows.append((f"{name} at the end", f"{item['value']:.3g} ({item['source']}; operator said {item['operator']:g})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _number(raw: str, key: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise CommandError(f"--set {key}: expected a number, got {raw!r}") from None


def _probe() -> Any:
    from scaling.policies import Observation

    return Observation(visible=0, in_flight=0, delayed=0, quantity=1, running=1)


def plot(result: Result, world: World, path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [s.second / 3600 for s in result.samples]
    fig, (queue, dynos, wait) = plt.subplots(3, 1, sharex=True, figsize=(10, 7))
    queue.plot(hours, [s.visible for s in result.samples], lw=1, color="tab:blue")
    queue.set_ylabel("visible messages\n(as the policy saw them)")
    dynos.step(hours, [s.formation for s in result.samples], where="post", lw=1, label="formation (billed)")
    dynos.step(hours, [s.running for s in result.samples], where="post", lw=1, label="running")
    dynos.set_ylabel("dynos")
    dynos.legend(fontsize=8)
    wait.plot(hours, [s.oldest_wait for s in result.samples], lw=1, color="tab:red")
    wait.axhline(world.target_wait_seconds, color="black", lw=0.8, ls="--", label="target")
    wait.set_ylabel("oldest message\nwaiting (s)")
    wait.set_xlabel("hours")
    wait.legend(fontsize=8)
    fig.suptitle(f"{title}: {result.dyno_hours:.1f} dyno-hours, {result.late_share * 100:.2f} % late, {result.writes} writes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

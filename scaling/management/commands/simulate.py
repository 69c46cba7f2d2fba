"""Replay an arrival trace (or a pair's own history) through a policy and report cost and wait."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scaling.baselines import BASELINES
from scaling.models import Decision, PairSample, ScalingPair
from scaling.policies import POLICIES, Bounds, Policy, setting_names
from scaling.schedules import ScheduleWindow
from scaling.simulator import FLAP_SECONDS, Result, World, simulate, trace_from_history

BOUND_KEYS = ("min_dynos", "max_dynos", "interval_seconds")
# Settings this command reads for the simulated world whatever the policy (see ``world``).
WORLD_KEYS = ("dyno_rate", "dyno_concurrency", "boot_seconds", "target_wait_seconds")
UNIX_TIMES = 1_000_000_000  # a first second this large is a Unix time (2001 onwards), not an offset
MAX_TRACE_SECONDS = 31 * 86400


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
        if opts["plot"]:
            check_plot_path(Path(opts["plot"]))  # before the run, not after it
        pair = self.find_pair(opts["pair"] or opts["from_history"]) if (opts["pair"] or opts["from_history"]) else None
        name, policy, settings, bounds, interval, windows = self.configure(pair, opts)
        if opts["trace"]:
            trace, history_rate = self.load_trace(Path(opts["trace"])), None
        else:
            trace, history_rate = self.history_trace(pair, opts["days"])
        world, rate_from = self.world(opts, settings, pair, history_rate=history_rate, policy=name)
        show_progress = not opts["json"] and len(trace) >= 6 * 3600
        result = simulate(trace, policy=policy, settings=settings, bounds=bounds, interval=interval, world=world,
                          windows=windows, progress=self.progress if show_progress else None)
        summary = {"policy": name, "settings": settings, "bounds": [bounds.min_dynos, bounds.max_dynos],
                   "interval_seconds": interval, **result.as_dict(), "learned": result.details.get("learned"),
                   "world": {"dyno_rate": world.dyno_rate, "dyno_rate_from": rate_from,
                             "dyno_concurrency": world.dyno_concurrency, "boot_seconds": world.boot_seconds,
                             "lag_seconds": world.lag_seconds}}
        if opts["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))
        else:
            self.stdout.write(self.table(name, result, world, rate_from))
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
        known = setting_names(policy)[0]
        for item in opts["overrides"]:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--set: expected KEY=VALUE, got {item!r}")
            if key not in {*known, *BOUND_KEYS, *WORLD_KEYS}:
                raise CommandError(_unknown_setting(name, key, known))
            value = _number(raw, key)
            if key in BOUND_KEYS:
                limits[key] = value
            else:
                settings[key] = value
        if name in POLICIES and name != "classic":
            settings.setdefault("interval_seconds", limits["interval_seconds"])
        try:
            bounds = Bounds(int(limits["min_dynos"]), int(limits["max_dynos"]))
            if not limits["interval_seconds"] > 0:
                raise ValueError("interval_seconds must be greater than 0")
            policy.decide(_probe(), bounds, settings, {})  # reject bad settings before a long run
        except KeyError as exc:
            raise CommandError(_missing_settings(name, policy, settings) or f"--set: {name} needs {exc}") from None
        except (ValueError, TypeError) as exc:
            raise CommandError(f"--set: {exc}") from None
        windows = pair.schedule_windows() if pair and pair.policy == name else []
        return name, policy, settings, bounds, float(limits["interval_seconds"]), windows

    def world(self, opts: dict[str, Any], settings: Mapping[str, Any], pair: ScalingPair | None, *,
              history_rate: float | None, policy: str) -> tuple[World, str]:
        """The simulated world: each figure from its option, else the settings, else a default;
        and where its rate came from (a replayed history's own rate: the arrivals were rebuilt on it)."""
        if opts["rate"] is not None or history_rate is None:
            if opts["rate"] is None and settings.get("dyno_rate") is None and pair is None:
                default, rate_from = 1.0, f"assumed: give --rate, the {policy} policy has no per-dyno figure"
            else:
                default, rate_from = (pair.dyno_rate if pair else 1.0), "the pair's messages per second per dyno"
            rate = _figure(opts, "rate", settings, "dyno_rate", default, low=0, strict=True)
            if opts["rate"] is not None:
                rate_from = "--rate"
            elif settings.get("dyno_rate") is not None:
                rate_from = "the settings' dyno_rate"
        else:
            rate, rate_from = history_rate, "the rate the history was rebuilt on"
        world = World(
            dyno_rate=rate,
            dyno_concurrency=int(_figure(opts, "concurrency", settings, "dyno_concurrency", 1, low=1)),
            boot_seconds=_figure(opts, "boot", settings, "boot_seconds", 45.0, low=0),
            lag_seconds=_figure(opts, "lag", {}, "lag_seconds", 30.0, low=0),  # the settings' lag is the policy's belief
            target_wait_seconds=_figure(opts, "target", settings, "target_wait_seconds", 120.0, low=0, strict=True),
            cloudwatch=bool(opts["cloudwatch"]),
        )
        return world, rate_from

    def load_trace(self, path: Path) -> list[float]:
        try:
            # utf-8-sig: a spreadsheet's byte-order mark must not turn the first row into a "header".
            with path.open(newline="", encoding="utf-8-sig") as file:
                rows = list(csv.reader(file))
        except OSError as exc:
            raise CommandError(f"--trace: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"--trace: {path} is not a UTF-8 text file") from None
        except csv.Error as exc:
            raise CommandError(f"--trace: {path} is not a CSV of second,arrivals: {exc}") from None
        seconds: dict[int, float] = {}
        for line, row in enumerate(rows, 1):
            if not row or (line == 1 and not any(c.isdigit() for c in ",".join(row))):
                continue  # blank line or header (a header has no digit: a first row of data is never skipped)
            if len(row) < 2:
                tabs = " (separated by tabs? use commas)" if "\t" in row[0] else ""
                raise CommandError(f"--trace: line {line}: expected second,arrivals{tabs}, got {','.join(row)!r}")
            try:
                second, arrivals = float(row[0]), float(row[1])
            except ValueError:
                second = arrivals = math.nan
            if not (math.isfinite(second) and second == int(second) and math.isfinite(arrivals)):
                raise CommandError(f"--trace: line {line}: expected a whole second and a finite number, got "
                                   f"{','.join(row)!r}")
            if second < 0 or arrivals < 0:
                raise CommandError(f"--trace: line {line}: second and arrivals cannot be negative")
            seconds[int(second)] = seconds.get(int(second), 0.0) + arrivals
        if not seconds:
            raise CommandError(f"--trace: {path} has no rows of second,arrivals")
        first, last = min(seconds), max(seconds)
        if first >= UNIX_TIMES:  # seconds since 1970: the trace starts at its first row
            seconds = {second - first: arrivals for second, arrivals in seconds.items()}
            last -= first
            sys.stderr.write(f"--trace: seconds read as Unix times; the simulation starts at the first row ({first})\n")
        if last >= MAX_TRACE_SECONDS:
            raise CommandError(f"--trace: the trace runs {last / 86400:,.1f} days; at most "
                               f"{MAX_TRACE_SECONDS // 86400} are simulated (cut it, or count seconds from its start)")
        trace = [0.0] * (last + 1)
        for second, arrivals in seconds.items():
            trace[second] = arrivals
        return trace

    def history_trace(self, pair: ScalingPair | None, days: float) -> tuple[list[float], float]:
        """The arrivals rebuilt from the pair's recorded cycles, and the per-dyno rate they were
        rebuilt on: the pair's own (learned, else its figure), whatever --set says, so that runs
        with other settings replay the same arrivals."""
        assert pair is not None
        if not (math.isfinite(days) and days > 0):
            raise CommandError(f"--days: must be greater than 0 (fractions allowed: 0.5 is 12 hours), got {days:g}")
        try:
            since = timezone.now() - timedelta(days=days)
        except OverflowError:
            raise CommandError(f"--days: {days:g} days back is before the calendar starts") from None
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
        rate = _learned(pair, "rate") or float(pair.dyno_rate)
        concurrency = round(_learned(pair, "concurrency") or pair.dyno_concurrency)
        trace = trace_from_history(points, dyno_rate=rate, dyno_concurrency=max(1, concurrency))
        if not trace:
            raise CommandError(f"--from-history: {pair.name!r} has fewer than two recorded cycles in the last {days:g} days")
        return trace, rate

    def progress(self, done: float) -> None:
        bar = "#" * int(done * 40)
        sys.stderr.write(f"\rsimulating [{bar:<40}] {done * 100:3.0f}%")
        if done >= 1:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def table(self, name: str, r: Result, world: World, rate_from: str) -> str:
        rows = [
            ("policy", name),
            ("world", f"dynos complete {world.dyno_rate:g} messages/s each ({rate_from}), {world.dyno_concurrency} at "
                      f"once, boot {world.boot_seconds:g} s; counts up to {world.lag_seconds:g} s stale"),
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


def _learned(pair: ScalingPair, name: str) -> float | None:
    """A figure the pair's policy learned (as its last cycle said, ``learned["learned"]``), if
    it is a usable one."""
    item = ((pair.learned or {}).get("learned") or {}).get(name)
    if not isinstance(item, dict) or item.get("source") == "operator":
        return None
    value = item.get("value")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) and value > 0 else None


def _number(raw: str, key: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise CommandError(f"--set {key}: expected a number, got {raw!r}")
    return value


def _unknown_setting(name: str, key: str, known: list[str]) -> str:
    also = [k for k in (*BOUND_KEYS, *WORLD_KEYS) if k not in known]
    guess = get_close_matches(key, [*known, *also], n=1)
    return (f"--set: the {name} policy has no setting {key!r}" + (f" (did you mean {guess[0]}?)" if guess else "")
            + f"; its settings: {', '.join(sorted(known)) or 'none'}; also {', '.join(also)}")


def _missing_settings(name: str, policy: Policy, settings: Mapping[str, Any]) -> str | None:
    """A sentence naming the settings the policy has no default for and were not given."""
    needed = [key for key in setting_names(policy)[1] if key not in settings]
    if not needed:
        return None
    # Example values: the same rule's documented defaults, where the bench has them.
    examples: Mapping[str, Any] = getattr(BASELINES.get(name), "defaults", {})
    given = " ".join(f"--set {k}={examples[k]:g}" if k in examples else f"--set {k}=VALUE" for k in needed)
    listed = needed[0] if len(needed) == 1 else f"{', '.join(needed[:-1])} and {needed[-1]}"
    return f"--set: the {name} policy needs {listed} (e.g. {given})"


def _figure(opts: Mapping[str, Any], option: str, settings: Mapping[str, Any], key: str, default: float,
            *, low: float, strict: bool = False) -> float:
    """One figure of the simulated world: ``--option``, else the setting ``key``, else ``default``;
    refused, naming where it came from, below ``low`` (or at it, when ``strict``)."""
    if opts[option] is not None:
        value, source = float(opts[option]), f"--{option}"
    elif settings.get(key) is not None:
        value, source = float(settings[key]), f"--set {key}"
    else:
        return float(default)
    if not math.isfinite(value):
        raise CommandError(f"{source}: expected a finite number, got {value:g}")
    if strict and not value > low:
        raise CommandError(f"{source}: must be greater than {low:g}, got {value:g}")
    if value < low:
        raise CommandError(f"{source}: " + (f"must be at least {low:g}" if low else "cannot be negative") + f", got {value:g}")
    return value


def _probe() -> Any:
    from scaling.policies import Observation

    return Observation(visible=0, in_flight=0, delayed=0, quantity=1, running=1)


def check_plot_path(path: Path) -> None:
    """Refuse a plot file matplotlib cannot write, or a place it cannot write to, before a long run."""
    from matplotlib.backend_bases import FigureCanvasBase

    # pgf runs xelatex, rarely installed where this runs: it would fail only after the run.
    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    if path.suffix.lower().lstrip(".") not in formats:
        raise CommandError(f"--plot: {path} must end in one of .{', .'.join(formats)}")
    folder = path.parent
    if path.is_dir():
        raise CommandError(f"--plot: {path} is a directory")
    if not folder.is_dir():
        raise CommandError(f"--plot: no directory {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"--plot: cannot write to {path}")


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

"""`manage.py simulate`: a user feature, run as a user would."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from scaling.baselines import KedaSqsHpa
from scaling.models import Decision, ScalingPair
from scaling.services.cycle import learned_summary
from tests.test_commands_without_config import manage

pytestmark = pytest.mark.django_db


@pytest.fixture
def burst_csv(tmp_path: Path) -> Path:
    path = tmp_path / "burst.csv"
    rows = ["second,arrivals"] + [f"{s},{3000 if s == 60 else 2}" for s in range(3600)]
    path.write_text("\n".join(rows) + "\n")
    return path


def simulate_json(*args: str) -> Any:
    out = io.StringIO()
    call_command("simulate", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def refusal(*args: str) -> str:
    """The error a run with these arguments stops on; it must have printed nothing first."""
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("simulate", *args, stdout=out)
    assert out.getvalue() == ""
    return str(refused.value)


def test_simulate_a_policy_on_a_trace_prints_cost_and_wait(burst_csv: Path) -> None:
    out = io.StringIO()
    call_command("simulate", "--trace", str(burst_csv), "--policy", "target_wait",
                 "--set", "dyno_rate=10", "--set", "dyno_concurrency=4", stdout=out)
    text = out.getvalue()
    for label in ("dyno-hours", "work floor", "late (> 120 s)", "wait p50 / p95 / p99 / max", "formation writes"):
        assert label in text


def test_the_default_policy_beats_the_seeds_rule_on_a_burst(burst_csv: Path) -> None:
    ours = simulate_json("--trace", str(burst_csv), "--policy", "target_wait", "--set", "dyno_rate=10",
                         "--set", "dyno_concurrency=4")
    seed = simulate_json("--trace", str(burst_csv), "--policy", "classic", "--rate", "10",
                         "--set", "backlog_threshold=100", "--set", "up_cycles=2", "--set", "down_cycles=5")
    assert ours["messages"] == seed["messages"] == 3000 + 2 * 3599
    assert ours["late_share"] <= 0.01 < seed["late_share"]


def test_a_pairs_own_settings_and_bounds_are_used(burst_csv: Path, make_pair: Any) -> None:
    make_pair(policy="target_wait", dyno_rate=10, dyno_concurrency=4, min_dynos=1, max_dynos=3)
    result = simulate_json("--trace", str(burst_csv), "--pair", "orders")
    assert result["policy"] == "target_wait" and result["bounds"] == [1, 3]
    assert result["settings"]["dyno_rate"] == 10


def test_plot_writes_a_png(burst_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    call_command("simulate", "--trace", str(burst_csv), "--policy", "keda", "--rate", "10", "--plot", str(out),
                 stdout=io.StringIO())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, says", [
    ("second,arrivals\n0,5\n1,lots\n", "line 3: expected a whole second and a finite number"),
    ("0,5\n1\n", "line 2: expected second,arrivals"),
    ("0,-5\n", "line 1: second and arrivals cannot be negative"),
    ("second,arrivals\n", "has no rows"),
])
def test_a_bad_trace_names_the_line(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=says):
        call_command("simulate", "--trace", str(path), "--policy", "target_wait", "--set", "dyno_rate=1")


def test_bad_settings_are_refused_before_a_long_run(burst_csv: Path) -> None:
    with pytest.raises(CommandError, match="--set: target_wait_seconds .* must exceed boot_seconds"):
        call_command("simulate", "--trace", str(burst_csv), "--policy", "target_wait",
                     "--set", "dyno_rate=1", "--set", "target_wait_seconds=30")
    with pytest.raises(CommandError, match="--set dyno_rate: expected a number"):
        call_command("simulate", "--trace", str(burst_csv), "--policy", "target_wait", "--set", "dyno_rate=fast")
    with pytest.raises(CommandError, match="--set: dyno_rate is required"):
        call_command("simulate", "--trace", str(burst_csv), "--policy", "target_wait")
    with pytest.raises(CommandError, match="--policy: unknown policy 'magic'"):
        call_command("simulate", "--trace", str(burst_csv), "--policy", "magic")


def test_backtest_rebuilds_arrivals_from_a_pairs_history(make_pair: Any) -> None:
    pair: ScalingPair = make_pair(policy="target_wait", dyno_rate=10, dyno_concurrency=1)
    start = timezone.now() - timedelta(hours=2)
    # Two dynos busy the whole time (2 in flight, concurrency 1) and the queue steady:
    # arrivals must come out near 2 dynos × 10/s = 20/s.
    for i in range(120):
        Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                created_at=start + timedelta(seconds=60 * i), policy="target_wait", outcome="no_change",
                                reason="r", duration_ms=1, visible_messages=50, in_flight_messages=2, dynos_running=2)
    result = simulate_json("--from-history", "orders", "--days", "1")
    assert result["messages"] == pytest.approx(20 * 119 * 60, rel=0.01)
    other = simulate_json("--from-history", "orders", "--policy", "classic", "--set", "backlog_threshold=100",
                          "--set", "up_cycles=1", "--set", "down_cycles=1")
    assert other["policy"] == "classic" and other["messages"] == result["messages"]


def test_a_backtest_replays_the_same_arrivals_whatever_the_policy_is_told(make_pair: Any) -> None:
    # The pair learned 8/s; the arrivals are rebuilt on that, and the simulated dynos are
    # that fast, whatever --set tells the policy (the belief whose cost is being tried).
    pair: ScalingPair = make_pair(policy="target_wait", dyno_rate=10, dyno_concurrency=1,
                                  # as a cycle stores what its policy learned
                                  learned=learned_summary({"learned": {"rate": {"value": 8.0, "source": "learned"}}}))
    start = timezone.now() - timedelta(hours=1)
    for i in range(60):
        Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                created_at=start + timedelta(seconds=60 * i), policy="target_wait", outcome="no_change",
                                reason="r", duration_ms=1, visible_messages=50, in_flight_messages=2, dynos_running=2)
    runs = [simulate_json("--from-history", "orders", "--days", "1", "--set", f"dyno_rate={rate}") for rate in (5, 20)]
    assert runs[0]["messages"] == runs[1]["messages"] == pytest.approx(2 * 8 * 59 * 60, rel=0.01)
    assert [r["world"]["dyno_rate"] for r in runs] == [8.0, 8.0]
    assert runs[0]["world"]["dyno_rate_from"] == "the rate the history was rebuilt on"


def test_the_report_says_how_fast_the_simulated_dynos_are_and_why(burst_csv: Path) -> None:
    out = io.StringIO()
    call_command("simulate", "--trace", str(burst_csv), "--policy", "keda", stdout=out)
    assert "dynos complete 1 messages/s each (assumed: give --rate, the keda policy has no per-dyno figure)" \
        in out.getvalue()
    out = io.StringIO()
    call_command("simulate", "--trace", str(burst_csv), "--policy", "keda", "--rate", "12", "--boot", "20", stdout=out)
    assert "dynos complete 12 messages/s each (--rate), 1 at once, boot 20 s; counts up to 30 s stale" in out.getvalue()


@pytest.mark.parametrize("rows, says", [
    ("0,5\n1,nan\n", "--trace: line 2: expected a whole second and a finite number, got '1,nan'"),
    ("0,inf\n", "--trace: line 1: expected a whole second and a finite number, got '0,inf'"),
    ("0\t5\n1\t3\n", "--trace: line 1: expected second,arrivals (separated by tabs? use commas), got '0\\t5'"),
    ("0,5\n3000000,1\n", "--trace: the trace runs 34.7 days; at most 31 are simulated"),
])
def test_a_trace_with_rows_it_cannot_replay_is_refused_naming_the_line(tmp_path: Path, rows: str, says: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(rows)
    assert refusal("--trace", str(path), "--policy", "keda").startswith(says)


def test_a_first_row_of_data_is_replayed_and_unix_times_start_at_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("0.0,1000\n1,5\n2,5\n")
    assert simulate_json("--trace", str(path), "--policy", "keda")["messages"] == 1010
    path.write_text("timestamp,arrivals\n1764980000,5\n1764980060,7\n")
    result = simulate_json("--trace", str(path), "--policy", "keda")
    assert result["messages"] == 12 and result["seconds"] < 3600


def test_backtest_needs_some_history(make_pair: Any) -> None:
    make_pair()
    with pytest.raises(CommandError, match="fewer than two recorded cycles"):
        call_command("simulate", "--from-history", "orders")


def test_with_cloudwatch_the_simulation_says_what_the_policy_learned(burst_csv: Path) -> None:
    out = io.StringIO()
    call_command("simulate", "--trace", str(burst_csv), "--policy", "target_wait", "--set", "dyno_rate=10",
                 "--rate", "5", "--cloudwatch", stdout=out)
    assert "rate at the end" in out.getvalue() and "operator said 10" in out.getvalue()
    result = simulate_json("--trace", str(burst_csv), "--policy", "target_wait", "--set", "dyno_rate=10", "--rate", "5",
                           "--cloudwatch")
    assert result["learned"]["rate"]["operator"] == 10 and result["learned"]["rate"]["value"] < 10


@pytest.mark.parametrize("option, value, says", [
    ("--rate", "-3", "--rate: must be greater than 0, got -3"),
    ("--rate", "0", "--rate: must be greater than 0, got 0"),
    ("--rate", "nan", "--rate: expected a finite number, got nan"),
    ("--concurrency", "0", "--concurrency: must be at least 1, got 0"),
    ("--boot", "-5", "--boot: cannot be negative, got -5"),
    ("--lag", "-1", "--lag: cannot be negative, got -1"),
    ("--target", "-5", "--target: must be greater than 0, got -5"),
    ("--set", "dyno_rate=0", "--set dyno_rate: must be greater than 0, got 0"),
    ("--set", "interval_seconds=0", "--set: interval_seconds must be greater than 0"),
])
def test_a_world_figure_out_of_range_is_refused_naming_its_option(burst_csv: Path, option: str, value: str,
                                                                 says: str) -> None:
    assert refusal("--trace", str(burst_csv), "--policy", "keda", option, value) == says


@pytest.mark.parametrize("days, says", [
    ("-1", "--days: must be greater than 0 (fractions allowed: 0.5 is 12 hours), got -1"),
    ("0", "--days: must be greater than 0 (fractions allowed: 0.5 is 12 hours), got 0"),
    ("1e9", "--days: 1e+09 days back is before the calendar starts"),
])
def test_days_back_must_be_a_span_of_time(make_pair: Any, days: str, says: str) -> None:
    make_pair()
    assert refusal("--from-history", "orders", "--days", days) == says


def test_an_unknown_setting_is_refused_with_the_policys_own_settings(burst_csv: Path) -> None:
    said = refusal("--trace", str(burst_csv), "--policy", "target_wait", "--set", "dyno_rate=1",
                   "--set", "target_wait=30")
    assert said.startswith("--set: the target_wait policy has no setting 'target_wait' "
                           "(did you mean target_wait_seconds?); its settings: boot_seconds, ")
    said = refusal("--trace", str(burst_csv), "--policy", "keda", "--set", "nosuch=1")
    assert said.startswith("--set: the keda policy has no setting 'nosuch'; its settings: ")
    assert all(key in said for key in KedaSqsHpa.defaults)
    # The settings the command reads for the simulated world stay accepted with any policy.
    assert simulate_json("--trace", str(burst_csv), "--policy", "keda", "--set", "dyno_rate=10",
                         "--set", "queue_length=5")["settings"] == {"dyno_rate": 10, "queue_length": 5}


def test_the_classic_policy_says_which_settings_it_needs(burst_csv: Path) -> None:
    assert refusal("--trace", str(burst_csv), "--policy", "classic") == (
        "--set: the classic policy needs backlog_threshold, up_cycles and down_cycles "
        "(e.g. --set backlog_threshold=100 --set up_cycles=2 --set down_cycles=5)")
    assert refusal("--trace", str(burst_csv), "--policy", "classic", "--set", "up_cycles=1",
                   "--set", "down_cycles=1") == (
        "--set: the classic policy needs backlog_threshold (e.g. --set backlog_threshold=100)")


def test_a_trace_that_is_not_utf8_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\xff\xfe\x00")
    assert refusal("--trace", str(path), "--policy", "keda") == f"--trace: {path} is not a UTF-8 text file"


def test_a_spreadsheets_byte_order_mark_does_not_hide_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf0,5\n1,3\n")
    assert simulate_json("--trace", str(path), "--policy", "keda")["messages"] == 8


@pytest.mark.parametrize("name, says", [
    ("missing/run.png", "--plot: no directory {tmp}/missing"),
    ("run.txt", "--plot: {tmp}/run.txt must end in one of .avif, .eps, "),
    ("run", "--plot: {tmp}/run must end in one of "),
])
def test_a_plot_that_cannot_be_written_is_refused_before_the_run(burst_csv: Path, tmp_path: Path, name: str,
                                                                 says: str) -> None:
    said = refusal("--trace", str(burst_csv), "--policy", "keda", "--plot", str(tmp_path / name))
    assert said.startswith(says.format(tmp=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burst.csv"]


@pytest.mark.parametrize("args, says", [
    (["--rate", "-3"], "--rate: must be greater than 0, got -3"),
    (["--set", "target_wait=30"], "--set: the keda policy has no setting 'target_wait'"),
    (["--plot", "/nonexistent/dir/x.png"], "--plot: no directory /nonexistent/dir"),
])
def test_on_the_command_line_a_refusal_is_one_line(burst_csv: Path, args: list[str], says: str) -> None:
    done = manage("simulate", "--trace", str(burst_csv), "--policy", "keda", *args, SECRET_KEY="test-only-key")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"CommandError: {says}") and done.stderr.count("\n") == 1

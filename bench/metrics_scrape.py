"""What one Prometheus scrape of /metrics costs with ten million decisions in PostgreSQL.

    python bench/metrics_scrape.py                        # 10,000,000 decisions, 100 pairs
    python bench/metrics_scrape.py --rows 1000000 --pairs 50

Fills a scratch database (BENCH_METRICS_DATABASE_URL, default postgres://postgres@127.0.0.1:
5432/dynoscaler_bench_metrics, created if missing; about 4 GB at ten million rows) with
decisions spread over 90 days, a few hundred of them not yet shipped, then scrapes /metrics
through Django's test client. Prints, for the scrape and for the counter it does not use
(a count of every decision by pair and outcome), the CPU seconds spent by this process and
by its PostgreSQL backend (from /proc), and the wall time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/dynoscaler_bench_metrics"
TOKEN = "bench-metrics-token-0123456789"
DAYS = 90


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(rows: int, pairs: int) -> None:
    from django.db import connection

    from scaling.models import Decision, HerokuAccount, ScalingPair

    print(f"filling {rows:,} decisions over {pairs} pairs and {DAYS} days…", file=sys.stderr, flush=True)
    started = time.monotonic()
    Decision.objects.all().delete()
    ScalingPair.objects.all().delete()
    HerokuAccount.objects.all().delete()
    accounts = [HerokuAccount.objects.create(description=f"team {i}", api_token=f"hk-bench-{i}") for i in range(3)]
    for i in range(pairs):
        ScalingPair.objects.create(name=f"pair-{i:03d}", app_name=f"app-{i:03d}", heroku_account=accounts[i % 3])
    ids = list(ScalingPair.objects.order_by("id").values_list("id", flat=True))
    step = DAYS * 86400 / rows
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO scaling_decision (pair_id, pair_name, app_name, process_type, created_at, policy, queues,
                visible_messages, in_flight_messages, delayed_messages, dynos_running, quantity_before,
                state_before, state_after, desired_quantity, outcome, reason, error, error_permanent, dry_run,
                duration_ms, heroku_rate_limit_remaining, shipped_at)
            SELECT (%(ids)s::bigint[])[1 + g %% %(pairs)s], 'pair', 'app', 'worker',
                now() - (g * %(step)s * interval '1 second'), 'target_wait', '[]', g %% 5000, g %% 40, 0, 1 + g %% 9,
                1 + g %% 9, '{}', '{}', 1 + g %% 9,
                (ARRAY['no_change','no_change','no_change','applied','error','dry_run','paused'])[1 + g %% 7],
                'backlog ' || g || ' visible', CASE WHEN g %% 7 = 4 THEN 'Heroku: 503' ELSE '' END,
                CASE WHEN g %% 7 = 4 THEN g %% 2 = 0 END, g %% 7 = 5, 40, 4500 - g %% 400,
                CASE WHEN g > 300 THEN now() END
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"ids": ids, "pairs": pairs, "step": step, "rows": rows},
        )
        cursor.execute("ANALYZE scaling_decision")
    print(f"filled in {time.monotonic() - started:.0f} s", file=sys.stderr)


def measure(label: str, action: object, backend_pid: int, repeat: int) -> None:
    """CPU per call, averaged over ``repeat`` calls (/proc counts in 10 ms ticks); median wall time."""
    walls = []
    me, pg = cpu_seconds(), cpu_seconds(backend_pid)
    for _ in range(repeat):
        t = time.monotonic()
        action()  # type: ignore[operator]
        walls.append(time.monotonic() - t)
    own, db = (cpu_seconds() - me) / repeat, (cpu_seconds(backend_pid) - pg) / repeat
    print(f"| {label} | {own * 1000:,.1f} ms | {db * 1000:,.1f} ms | {statistics.median(walls) * 1000:,.0f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    url = os.environ.get("BENCH_METRICS_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    os.environ.update({"DATABASE_URL": url, "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
                       "DYNOSCALER_METRICS_TOKEN": TOKEN, "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings"})
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # static files are not collected here
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from scaling.models import Decision, ScalingPair

    call_command("migrate", verbosity=0)
    if Decision.objects.count() != args.rows or ScalingPair.objects.count() != args.pairs:
        fill(args.rows, args.pairs)
    client = Client()

    def scrape() -> None:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.status_code

    def count_everything() -> None:
        list(Decision.objects.order_by().values("pair_id", "outcome").annotate(n=Count("id")))

    scrape()  # connect, warm the caches
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    print(f"\n{Decision.objects.count():,} decisions, {args.pairs} pairs, "
          f"{Decision.objects.filter(shipped_at__isnull=True).count()} unshipped\n")
    print("| | CPU, this process | CPU, PostgreSQL | wall |\n| --- | ---: | ---: | ---: |")
    measure(f"one scrape of /metrics ({args.repeat} scrapes)", scrape, backend_pid, args.repeat)
    measure("the counter it does not use: every decision counted by pair and outcome (3 runs)",
            count_everything, backend_pid, 3)


if __name__ == "__main__":
    main()

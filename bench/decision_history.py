"""How the decision history behaves at production size: millions of rows in PostgreSQL.

    python bench/decision_history.py                   # 10,000,000 decisions (minutes to fill)
    python bench/decision_history.py --rows 1000000

Fills a scratch database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/
dynoscaler_bench, created if missing) and times the admin pages an operator uses, through
Django's test client with a logged-in superuser, and the memory the CSV export takes while
streaming. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/dynoscaler_bench"
FILL = """
INSERT INTO scaling_decision (pair_id, pair_name, app_name, process_type, created_at, policy, queues,
    visible_messages, in_flight_messages, delayed_messages, dynos_running, quantity_before,
    state_before, state_after, desired_quantity, outcome, reason, error, dry_run, duration_ms,
    heroku_calls, cycles, shipped_at)
SELECT (%s::bigint[])[1 + g %% 20], 'pair-' || lpad((g %% 20)::text, 2, '0'),
    'app-' || lpad((g %% 20)::text, 2, '0'), 'worker',
    now() - (g * interval '90 days' / %s), 'target_wait', '[]', g %% 5000, g %% 40, 0, 1 + g %% 9,
    1 + g %% 9, '{}', '{}', 1 + g %% 9,
    (ARRAY['no_change','no_change','no_change','applied','error','dry_run','paused'])[1 + g %% 7],
    CASE WHEN g %% 997 = 0 THEN 'paused by alice until 2026-11-26 14:05 UTC; observed only, formation left at 3'
         WHEN g %% 5 = 0 THEN (g %% 300) || ' more cycles like the one at 12:00:00, 12:00:15–12:14:45 UTC, saw '
              || (g %% 120) || '–' || (g %% 460) || ' visible; the last: ' || (g %% 460)
              || ' visible, 0 in flight → needs 3 → stay at 3'
         ELSE (g %% 9000) || ' visible, ' || (g %% 40) || ' in flight (≈ ' || (g %% 10)
              || ' busy), arrivals ≈ ' || (g %% 50) || '.2/s → of the 120 s target 105 s are left, 60 s '
              || 'for a dyno added now [rate 4.1/s per dyno (learned, ±12 %%, 38 dyno-min; operator '
              || 'said 10); boot 52 s (learned, p90 of 12 boots); concurrency 4] → needs '
              || (1 + g %% 9) || ': scale up → ' || (g %% 9) || ' to ' || (1 + g %% 9) || ' dynos'
    END,
    CASE WHEN g %% 7 = 4 AND g %% 2 = 0 THEN 'Heroku: 503 service_unavailable while reading the formation'
         WHEN g %% 7 = 4 THEN 'SQS: AWS.SimpleQueueService.NonExistentQueue: queue ''orders-'
              || (g %% 13) || ''' does not exist in this account and region'
         ELSE '' END,
    g %% 7 = 5, 40, 0, 1, now()
FROM generate_series(%s, %s) AS g
"""


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    os.environ.update({"DATABASE_URL": url, "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
                       "SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
                       "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings"})
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from scaling.models import Decision, PairSample, ScalingPair

    call_command("migrate", verbosity=0)
    pairs = list(ScalingPair.objects.all()[:20])
    if Decision.objects.count() != args.rows or len(pairs) < 20:
        print(f"filling {args.rows:,} decisions over 20 pairs…", file=sys.stderr, flush=True)
        started = time.monotonic()
        search = importlib.import_module("scaling.migrations.0007_decision_search")
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE scaling_decision, scaling_pairsample, scaling_scalingpair CASCADE")
            # Ten million rows go in faster without the text indexes; they are built after.
            for column in search.COLUMNS:
                cursor.execute(f"DROP INDEX IF EXISTS decision_{column}_trgm")
        for i in range(20):
            ScalingPair.objects.create(name=f"pair-{i:02d}", app_name=f"app-{i:02d}", provider="sandbox")
        ids = list(ScalingPair.objects.order_by("id").values_list("id", flat=True))
        with connection.cursor() as cursor:
            # INSERT … SELECT in batches of a million, spread over 90 days, with reasons and
            # errors worded as the cycle words them (so a text search has real text to find).
            for first in range(1, args.rows + 1, 1_000_000):
                last = min(args.rows, first + 999_999)
                cursor.execute(FILL, [ids, args.rows, first, last])
                print(f"  {last:,} rows ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
            # Every cycle's sample of one pair for the last 7 days at 15 s: what its chart reads.
            cursor.execute(
                """
                INSERT INTO scaling_pairsample (pair_id, at, visible, in_flight, running, quantity, desired)
                SELECT %s, now() - g * interval '15 seconds', g %% 700, g %% 20, 1 + g %% 5, 1 + g %% 5, 1 + g %% 6
                FROM generate_series(1, 40320) AS g
                """,
                [ids[0]],
            )
            print("  building the search indexes…", file=sys.stderr, flush=True)
            with connection.schema_editor() as editor:
                search.create(None, editor)
            cursor.execute("ANALYZE scaling_decision")
            cursor.execute("ANALYZE scaling_pairsample")
        print(f"filled in {time.monotonic() - started:.0f} s", file=sys.stderr)

    User = get_user_model()
    admin = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", "", "bench")
    client = Client()
    client.force_login(admin)
    pair_id = ScalingPair.objects.order_by("id").values_list("id", flat=True).first()
    pages = [
        ("history, newest first", "/admin/scaling/decision/"),
        ("one pair", f"/admin/scaling/decision/?pair__id__exact={pair_id}"),
        ("errors only", "/admin/scaling/decision/?has_error=yes"),
        ("outcome = applied", "/admin/scaling/decision/?outcome__exact=applied"),
        ("dry runs", "/admin/scaling/decision/?dry_run__exact=1"),
        ("page 50", "/admin/scaling/decision/?p=50"),
        ("search 'service_unavailable' (7 % of rows)", "/admin/scaling/decision/?q=service_unavailable"),
        ("search 'alice' (0.1 % of rows)", "/admin/scaling/decision/?q=alice"),
        ("search 'orders-7' (0.5 % of rows)", "/admin/scaling/decision/?q=orders-7"),
        ("search 'scale up' (most rows)", "/admin/scaling/decision/?q=scale+up"),
        ("search 'nothing-like-this' (no row)", "/admin/scaling/decision/?q=nothing-like-this"),
        ("a pair's page (chart, 7 days)", f"/admin/scaling/scalingpair/{pair_id}/change/?hours=168"),
        ("status page", "/admin/status/"),
    ]
    print(f"\n{Decision.objects.count():,} decisions and {PairSample.objects.count():,} samples in PostgreSQL\n")
    print("| page | median of 5 | slowest |\n| --- | ---: | ---: |")
    for label, path in pages:
        times = []
        for _ in range(5):
            t = time.monotonic()
            response = client.get(path)
            times.append(time.monotonic() - t)
            assert response.status_code == 200, (path, response.status_code)
        times.sort()
        print(f"| {label} | {times[2] * 1000:,.0f} ms | {times[-1] * 1000:,.0f} ms |")

    tracemalloc.start()
    t = time.monotonic()
    response = client.get(f"/admin/scaling/decision/export.csv?pair__id__exact={pair_id}")
    size = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.monotonic() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\nCSV export of one pair: {size / 1e6:,.1f} MB in {elapsed:.1f} s, peak Python memory {peak / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()

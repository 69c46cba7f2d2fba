"""The status page tells when pairs cycle less often than their interval because the
workers are behind (beat then holds cycles back instead of queueing them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from scaling.models import Decision, Heartbeat, PairSample, ScalingPair


def cycles_every(pair: ScalingPair, seconds: float, count: int = 8) -> None:
    """Record ``count`` cycles ``seconds`` apart, the last one now: a sample each, as every
    cycle stores, and one decision (quiet cycles fold into one row)."""
    now = timezone.now()
    for i in range(count):
        PairSample.objects.create(pair=pair, at=now - timedelta(seconds=seconds * i), visible=0, in_flight=0)
    Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                            created_at=now, policy="classic", outcome="no_change", reason="r", duration_ms=1)
    ScalingPair.objects.filter(pk=pair.pk).update(last_cycle_at=now)


def row_of(page: str, name: str) -> str:
    start = page.index(f">{name}</a>")
    return page[start:page.index("</tr>", start)]


def test_the_status_page_says_which_pairs_cycle_late_and_why(admin_client: Any, make_pair: Any) -> None:
    late = make_pair(name="late", app="late-app", interval_seconds=15)
    on_time = make_pair(name="on-time", app="on-time-app", interval_seconds=15)
    cycles_every(late, 40)
    cycles_every(on_time, 15.2)

    page = admin_client.get("/admin/status/").content.decode()
    assert "cycling every ~40 s instead of 15 s: the workers are behind" in row_of(page, "late")
    assert "ok" in row_of(page, "on-time") and "cycling every" not in row_of(page, "on-time")
    assert "1 pair cycling late: the workers are behind." in page


def test_the_status_page_says_when_no_worker_runs_tasks(admin_client: Any) -> None:
    assert "No worker has finished a task yet" in admin_client.get("/admin/status/").content.decode()
    seen = Heartbeat.objects.create(key="workers", at=timezone.now() - timedelta(seconds=20))
    page = admin_client.get("/admin/status/").content.decode()
    assert 'id="workers-silent"' not in page and "Workers: the last task finished" in page
    Heartbeat.objects.filter(pk=seen.pk).update(at=timezone.now() - timedelta(minutes=10))
    page = admin_client.get("/admin/status/").content.decode()
    silent = page[page.index('id="workers-silent"'):]
    assert "No worker has finished a task since" in silent and "minutes ago)" in silent[:300]


def test_a_pair_back_on_time_or_just_enabled_again_is_not_called_late(admin_client: Any, make_pair: Any) -> None:
    pair = make_pair(name="orders", interval_seconds=15)
    cycles_every(pair, 600, count=3)  # it was disabled for a while: old cycles, far apart
    cycles_every(pair, 15, count=2)
    page = admin_client.get("/admin/status/").content.decode()
    assert "cycling every" not in page and 'id="cycling-late"' not in page

    cycles_every(pair, 15, count=8)
    assert "cycling every" not in admin_client.get("/admin/status/").content.decode()


def test_quiet_cycles_folded_into_one_row_are_not_taken_for_late_ones(admin_client: Any, make_pair: Any) -> None:
    # Decision rows every ~40 s (runs of quiet cycles, broken by reconciles), cycles every 15 s:
    # the page said the workers were behind.
    pair = make_pair(name="orders", interval_seconds=15)
    now = timezone.now()
    for i in range(8):
        Decision.objects.create(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker",
                                created_at=now - timedelta(seconds=40 * i), policy="classic", outcome="no_change",
                                reason="r", duration_ms=1, cycles=3)
    for i in range(24):
        PairSample.objects.create(pair=pair, at=now - timedelta(seconds=15 * i), visible=0, in_flight=0)
    ScalingPair.objects.filter(pk=pair.pk).update(last_cycle_at=now)
    page = admin_client.get("/admin/status/").content.decode()
    assert "cycling every" not in page and "ok" in row_of(page, "orders")

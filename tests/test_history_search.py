"""Searching the decision history: what an operator finds and how the pages run, on
PostgreSQL with its trigram search indexes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from scaling.models import Decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_pair: Any) -> None:
    pair = make_pair()
    now = timezone.now()
    Decision.objects.bulk_create([
        Decision(pair=pair, pair_name=pair.name, app_name=pair.app_name, process_type="worker", policy="classic",
                 created_at=now - timedelta(minutes=i), outcome="no_change", duration_ms=3,
                 reason=f"{i} visible → needs 2: scale up" + (" — paused by Alice" if i % 50 == 7 else ""))
        for i in range(230)
    ])


def rows(page: str) -> int:
    """Rows of the history list on the page."""
    table = page.split('id="result_list"', 1)[1].split("</table>", 1)[0] if 'id="result_list"' in page else ""
    return table.split("<tbody>", 1)[-1].count("<tr")


def test_a_rare_word_finds_its_decisions_whatever_its_case(history: None, admin_client: Any) -> None:
    page = admin_client.get("/admin/scaling/decision/?q=alice").content.decode()
    assert rows(page) == 5


def test_a_common_word_pages_through_without_counting_the_history(history: None, admin_client: Any) -> None:
    first = admin_client.get("/admin/scaling/decision/?q=scale+up").content.decode()
    assert rows(first) == 100 and "?q=scale%20up&amp;p=2" in first and "newer" not in first
    last = admin_client.get("/admin/scaling/decision/?q=scale+up&p=3").content.decode()
    assert rows(last) == 30 and "older" not in last and "?q=scale%20up&amp;p=2" in last


def test_a_word_nothing_has_says_so(history: None, admin_client: Any) -> None:
    page = admin_client.get("/admin/scaling/decision/?q=nothing-like-this").content.decode()
    assert rows(page) == 0 and "older" not in page

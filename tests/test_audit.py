"""Shipping decisions to Elasticsearch (the real client, a loopback stand-in) or the terminal."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from scaling import services
from scaling.adapters import audit
from scaling.adapters.audit import TerminalSink
from scaling.models import Decision
from scaling.services import audit as audit_service
from tests.conftest import AWS_SECRET, HEROKU_TOKEN, send_messages

pytestmark = pytest.mark.django_db
INDEX = "dynoscaler-decisions"


@pytest.fixture(autouse=True)
def shipping_fresh(monkeypatch: Any) -> None:
    """Each test starts in a process that has not yet seen shipping fail."""
    monkeypatch.setattr(audit_service, "_outage", audit_service._Outage())


@pytest.fixture
def decisions(sqs: Any, heroku: Any, make_pair: Any) -> list[Decision]:
    sqs.create_queue(QueueName="orders")
    heroku.add_app("orders-app", token=HEROKU_TOKEN, quantity=1)
    send_messages(sqs, "orders", 25)
    pair = make_pair()
    made = [services.pair_run_cycle(pair_id=pair.pk, force=True) for _ in range(3)]
    assert all(d is not None for d in made)
    return [d for d in made if d is not None]


def test_each_decision_becomes_one_document_under_its_own_id(elastic: Any, decisions: list[Decision]) -> None:
    assert services.audit_ship_pending() == 3
    docs = elastic.docs_in(INDEX)
    assert sorted(docs) == sorted(str(d.pk) for d in decisions)
    first = docs[str(decisions[0].pk)]
    assert first["pair"] == "orders" and first["visible_messages"] == 25
    assert first["outcome"] == "applied" and first["reason"] == decisions[0].reason
    assert Decision.objects.filter(shipped_at__isnull=True).count() == 0


def test_nothing_is_sent_twice(elastic: Any, decisions: list[Decision]) -> None:
    services.audit_ship_pending()
    services.audit_ship_pending()
    assert elastic.index_requests == 3


def test_decisions_wait_while_elasticsearch_is_down_and_none_is_lost(elastic: Any, decisions: list[Decision], caplog: Any) -> None:
    elastic.stop()
    for _ in range(5):  # a worker tries every few seconds: one line says so, not one per try
        assert services.audit_ship_pending() == 0
    assert Decision.objects.filter(shipped_at__isnull=True).count() == 3
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    assert said[0].startswith("audit: elasticsearch did not take the decisions: ")
    assert "decisions wait in the database and are sent when it answers" in said[0]

    elastic.start()  # same port: Elasticsearch is back
    assert services.audit_ship_pending() == 3
    assert len(elastic.docs_in(INDEX)) == 3 and elastic.index_requests == 3
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 2 and "shipping again after" in said[1] and "3 decision(s) sent" in said[1]


def test_a_document_elasticsearch_rejects_is_sent_again_later(elastic: Any, decisions: list[Decision]) -> None:
    rejected = str(decisions[1].pk)
    elastic.reject_ids = {rejected}
    assert services.audit_ship_pending() == 2
    assert list(Decision.objects.filter(shipped_at__isnull=True).values_list("pk", flat=True)) == [decisions[1].pk]

    elastic.reject_ids = set()
    assert services.audit_ship_pending() == 1
    assert len(elastic.docs_in(INDEX)) == 3


def test_no_secret_reaches_elasticsearch(elastic: Any, decisions: list[Decision]) -> None:
    services.audit_ship_pending()
    wire = b"".join(elastic.raw_bodies).decode()
    assert wire  # something was sent
    for secret in (HEROKU_TOKEN, AWS_SECRET, "es-pass-s3cret-XYZ"):
        assert secret not in wire


def test_wrong_elasticsearch_password_keeps_decisions_and_hides_the_password(
    elastic: Any, decisions: list[Decision], settings: Any, caplog: Any
) -> None:
    settings.ELK_ELASTIC_PASS = "wrong-password-123"
    caplog.set_level(logging.DEBUG)
    assert services.audit_ship_pending() == 0
    assert Decision.objects.filter(shipped_at__isnull=True).count() == 3
    assert "wrong-password-123" not in caplog.text and "es-pass-s3cret-XYZ" not in caplog.text


def test_an_elasticsearch_url_the_client_cannot_use_keeps_decisions_and_hides_its_password(
    decisions: list[Decision], settings: Any, caplog: Any
) -> None:
    # Start-up refuses such a URL (see test_commands_without_config); this is the shipper's
    # own guard, for a URL that reaches it anyway: the client's error quoted it whole.
    settings.ELK_ELASTIC_URL = "http://elastic:Pw-s3cret-URL@es invalid:9200"
    caplog.set_level(logging.DEBUG)
    assert services.audit_ship_pending() == 0
    assert Decision.objects.filter(shipped_at__isnull=True).count() == 3
    assert "audit: Elasticsearch cannot be used: Elasticsearch: ELK_ELASTIC_URL cannot be used" in caplog.text
    assert "Pw-s3cret-URL" not in caplog.text


def test_without_elasticsearch_each_decision_is_one_json_line_on_the_terminal(decisions: list[Decision], settings: Any) -> None:
    settings.ELK_ELASTIC_URL = None
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("dynoscaler.decisions")
    logger.addHandler(handler)
    try:
        assert services.audit_ship_pending() == 3
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(d.pk) for d in decisions]
    assert isinstance(services.audit_sink(), TerminalSink)


def test_index_type_is_accepted_and_ignored_with_one_warning(elastic: Any, decisions: list[Decision], settings: Any, caplog: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(audit, "_warned_about_type", False)
    settings.ELK_INDEX_TYPE_AS = "doc"
    services.audit_ship_pending()
    services.audit_sink()
    assert caplog.text.count("ELK_INDEX_TYPE_AS is set but ignored") == 1
    assert len(elastic.docs_in(INDEX)) == 3


def test_decisions_cannot_be_rewritten(decisions: list[Decision]) -> None:
    decision = decisions[0]
    decision.reason = "something else"
    with pytest.raises(ValueError, match="append-only"):
        decision.save()

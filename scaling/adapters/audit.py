"""Where decision documents go after they are committed: Elasticsearch, or the terminal.

Each document is indexed under the decision's own id, so sending one again (after a
timeout whose request did land, say) overwrites it instead of adding a duplicate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch, helpers
from elasticsearch import exceptions as es_exceptions
from elastic_transport import TransportError

from scaling.adapters.errors import AdapterError, redact

SYSTEM = "Elasticsearch"
decision_log = logging.getLogger("dynoscaler.decisions")
log = logging.getLogger(__name__)

_warned_about_type = False


class AuditSink(Protocol):
    name: str

    def send(self, documents: Sequence[Mapping[str, Any]]) -> set[str]:
        """Deliver documents (each with an "id"); return the ids that were stored."""
        ...


class TerminalSink:
    """The original tool's fallback: one JSON line per decision on standard output."""

    name = "terminal"

    def send(self, documents: Sequence[Mapping[str, Any]]) -> set[str]:
        for doc in documents:
            decision_log.info(json.dumps(doc, sort_keys=True, default=str))
        return {str(doc["id"]) for doc in documents}


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(
        self,
        *,
        url: str,
        index: str,
        user: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 10.0,
        index_type: str | None = None,
    ) -> None:
        global _warned_about_type
        if index_type and not _warned_about_type:
            _warned_about_type = True
            log.warning(
                "ELK_INDEX_TYPE_AS is set but ignored: Elasticsearch 7+ has no mapping types; "
                "documents go to index %r",
                index,
            )
        self.index = index
        in_url = urlsplit(url).password if "://" in url else None
        self._secrets = [s for s in (password, user and password and f"{user}:{password}", in_url) if s]
        try:
            self._client = Elasticsearch(
                url,
                basic_auth=(user, password) if user and password else None,
                request_timeout=timeout_seconds,
                max_retries=0,  # the shipper retries on its own schedule
                retry_on_timeout=False,
            )
        except ValueError as exc:  # the client's words quote the URL, password and all
            raise AdapterError(SYSTEM, f"ELK_ELASTIC_URL cannot be used: {redact(str(exc), [url, *self._secrets])}",
                               permanent=True) from None

    def send(self, documents: Sequence[Mapping[str, Any]]) -> set[str]:
        actions = [
            {"_op_type": "index", "_index": self.index, "_id": str(doc["id"]), "_source": dict(doc)}
            for doc in documents
        ]
        try:
            _, errors = helpers.bulk(self._client, actions, raise_on_error=False, raise_on_exception=True)
        except (TransportError, es_exceptions.ApiError, helpers.BulkIndexError) as exc:
            raise AdapterError(SYSTEM, f"{type(exc).__name__}: {exc}", permanent=False, secrets=self._secrets) from None
        failed = {str(item.get("index", {}).get("_id")) for item in errors}  # type: ignore[union-attr]
        if errors:
            log.warning("Elasticsearch refused %d of %d decision documents; they will be sent again", len(failed), len(actions))
        return {str(doc["id"]) for doc in documents} - failed

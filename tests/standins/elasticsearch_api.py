"""A loopback stand-in for the Elasticsearch HTTP API that the official client speaks.

It serves ``GET /`` (cluster info), ``PUT/POST /{index}/_doc/{id}`` and ``POST /_bulk``
(NDJSON, per-item results), sends the ``X-Elastic-Product: Elasticsearch`` header the
client checks for, and enforces basic auth when a user is set. ``stop()`` closes the
port, so "down" means connection refused as it would in life; ``start()`` reopens it.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from typing import Any

from tests.standins.base import LoopbackServer


class ElasticsearchStandIn(LoopbackServer):
    content_type = "application/vnd.elasticsearch+json;compatible-with=8"

    def __init__(self, *, version: str = "8.15.3", user: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.version = version
        self.user, self.password = user, password
        self.documents: dict[tuple[str, str], dict[str, Any]] = {}
        self.index_requests = 0  # document writes received, retries included
        self.raw_bodies: list[bytes] = []
        self.reject_ids: set[str] = set()  # bulk items answered 429 (es_rejected_execution_exception)
        self.delay_seconds = 0.0  # every answer waits this long (a slow or hung cluster)
        self._lock = threading.Lock()

    def docs_in(self, index: str) -> dict[str, dict[str, Any]]:
        return {doc_id: doc for (idx, doc_id), doc in self.documents.items() if idx == index}

    def _authorized(self, header: str | None) -> bool:
        if self.user is None:
            return True
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        status, payload = self._answer(method, path, headers, raw)
        # The official client refuses a server that does not say it is Elasticsearch.
        return status, payload, {"X-Elastic-Product": "Elasticsearch"}

    def _answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any]:
        with self._lock:
            self.raw_bodies.append(raw)
        if not self._authorized(headers.get("Authorization")):
            return 401, {"error": {"type": "security_exception", "reason": "unable to authenticate user"}, "status": 401}
        if path == "/" and method in ("GET", "HEAD"):
            return 200, {
                "name": "standin", "cluster_name": "dynoscaler-tests",
                "version": {"number": self.version, "build_flavor": "default"},
                "tagline": "You Know, for Search",
            }
        m = re.fullmatch(r"/([^/_][^/]*)/_doc/([^/]+)", path)
        if m and method in ("PUT", "POST"):
            created = self._store(m.group(1), m.group(2), json.loads(raw))
            return (201 if created else 200), {"_index": m.group(1), "_id": m.group(2), "result": "created" if created else "updated"}
        m = re.fullmatch(r"(?:/([^/_][^/]*))?/_bulk", path)
        if m and method in ("POST", "PUT"):
            return 200, self._bulk(m.group(1), raw)
        return 404, {"error": {"type": "not_found", "reason": f"no handler for {method} {path}"}, "status": 404}

    def _store(self, index: str, doc_id: str, source: dict[str, Any]) -> bool:
        with self._lock:
            self.index_requests += 1
            created = (index, doc_id) not in self.documents
            self.documents[(index, doc_id)] = source
            return created

    def _bulk(self, default_index: str | None, raw: bytes) -> dict[str, Any]:
        lines = [line for line in raw.decode().split("\n") if line.strip()]
        items, errors = [], False
        for action_line, source_line in zip(lines[::2], lines[1::2]):
            action = json.loads(action_line)
            op, meta = next(iter(action.items()))
            index, doc_id = meta.get("_index", default_index), str(meta.get("_id"))
            if doc_id in self.reject_ids:
                errors = True
                items.append({op: {"_index": index, "_id": doc_id, "status": 429,
                                   "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}})
                continue
            created = self._store(index, doc_id, json.loads(source_line))
            items.append({op: {"_index": index, "_id": doc_id, "status": 201 if created else 200,
                               "result": "created" if created else "updated"}})
        return {"took": 1, "errors": errors, "items": items}

"""A minimal schema registry for unit tests: real HTTP on 127.0.0.1, in a thread.

It serves the few calls of Confluent's REST API that scorer.registry makes
(and, like Apicurio by default, finds a schema under a subject only by its
very text), keeps every request it got, and can be told to fail: `unavailable` answers
503 to that many requests, `refuse_with` answers every request with one
status. The integration tests run a real registry (Apicurio); this one lets
unit tests count requests and provoke failures without a JVM.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeRegistry:
    url: str = ""
    schemas: dict[int, dict[str, Any]] = field(default_factory=dict)
    subjects: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    unavailable: int = 0
    refuse_with: int | None = None

    def add(self, schema: str | dict[str, Any], **extra: Any) -> int:
        """Store a schema (any JSON text) and return its new id."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = {"schema": text, **extra}
        return schema_id

    def paths(self, method: str = "GET") -> list[str]:
        return [seen.path for seen in self.requests if seen.method == method]

    def answer(self, seen: Seen) -> tuple[int, Any]:
        self.requests.append(seen)
        if self.refuse_with is not None:
            return self.refuse_with, {"error_code": self.refuse_with, "message": "no"}
        if self.unavailable > 0:
            self.unavailable -= 1
            return 503, {"error_code": 50003, "message": "busy"}
        return self._route(seen)

    def _route(self, seen: Seen) -> tuple[int, Any]:
        parts = [unquote(part) for part in seen.path.strip("/").split("/")]
        if parts == ["schemas", "types"]:
            return 200, ["AVRO"]
        if parts[:2] == ["schemas", "ids"] and len(parts) == 3:
            found = self.schemas.get(int(parts[2]))
            if found is None:
                return 404, {"error_code": 40403, "message": "Schema not found"}
            return 200, found
        if parts[0] == "subjects" and seen.method == "POST" and seen.body:
            return self._subject(parts, str(seen.body["schema"]))
        if parts[0] == "subjects" and parts[2:] == ["versions", "latest"]:
            return self._latest(parts[1])
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _subject(self, parts: list[str], text: str) -> tuple[int, Any]:
        subject = parts[1]
        if parts[2:] == ["versions"]:
            ids = {v["schema"]: k for k, v in self.schemas.items()}
            schema_id = ids.get(text) or self.add(text)
            self.subjects.setdefault(subject, {})[text] = schema_id
            return 200, {"id": schema_id}
        under = self.subjects.get(subject)
        if under is None:
            return 404, {"error_code": 40401, "message": "Subject not found"}
        if text not in under:
            return 404, {"error_code": 40403, "message": "Schema not found"}
        return 200, {"subject": subject, "id": under[text], "version": 1}

    def _latest(self, subject: str) -> tuple[int, Any]:
        under = self.subjects.get(subject)
        if not under:
            return 404, {"error_code": 40401, "message": "Subject not found"}
        text, schema_id = list(under.items())[-1]
        return 200, {"subject": subject, "id": schema_id, "schema": text}


@contextmanager
def running_registry() -> Iterator[FakeRegistry]:
    """A `FakeRegistry` answering on a free loopback port until the block ends."""
    registry = FakeRegistry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(
                self.command,
                self.path,
                dict(self.headers.items()),
                json.loads(raw) if raw else None,
            )
            status, answer = registry.answer(seen)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

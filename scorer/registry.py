"""A client of the Confluent Schema Registry's REST API, for what the scorer needs.

The scorer asks the registry three things, each once per schema or subject and
never per message (Confluent's "Schema Registry API Reference"; Apicurio
Registry serves the same API under ``/apis/ccompat/v7``):

- ``GET /schemas/ids/{id}``: the writer schema a message's id names;
- ``POST /subjects/{subject}/versions``: register the output schema, or get the
  id of the identical schema registered before;
- ``POST /subjects/{subject}``: look the output schema up without registering,
  and ``GET /subjects/{subject}/versions/latest`` where that finds nothing.

``GET /schemas/types`` serves as a cheap probe that the URL is a registry.

Plain urllib is enough: a handful of requests at start-up and one per new
schema id do not need a connection pool. A registry that cannot be reached,
or answers 5xx or 429, is asked again after a doubling delay, a bounded
number of times; then `RegistryUnavailable` is raised and the caller stops.
"""

import base64
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from scorer import backoff
from scorer.config import (
    REGISTRY_FIRST_RETRY_DELAY_S,
    REGISTRY_MAX_RETRY_DELAY_S,
    SchemaRegistry,
)
from scorer.errors import ScorerError

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPT = "application/vnd.schemaregistry.v1+json, application/json"
ERROR_BODY_CHARS = 300  # of a refusal's body, quoted in the error

# Worth asking again: the registry is busy or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RegistryError(ScorerError):
    """The schema registry refused a request or answered nonsense.

    `status` is the HTTP status of a refusal, None when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnavailable(RegistryError):
    """The schema registry could not be reached, even after the retries."""


class SchemaNotFound(RegistryError):
    """The registry has no such schema id, subject or schema under a subject."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A schema as the registry holds it."""

    schema_id: int
    schema: str
    """The schema's text: JSON for Avro."""
    schema_type: str = "AVRO"
    """AVRO, PROTOBUF or JSON; the API leaves it out for Avro."""
    references: tuple[dict[str, Any], ...] = field(default=())


class RegistryClient:
    """Talks to one registry; holds how the scorer names and registers subjects.

    Not thread-safe; the scorer's consume loop is its only user. `sleep` is
    what waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        subject_strategy: str = "topic",
        auto_register: bool = True,
        timeout_s: float = 5.0,
        retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.subject_strategy = subject_strategy
        self.auto_register = auto_register
        self.timeout_s = timeout_s
        self.retries = retries
        self._sleep = sleep
        self._authorization = _basic_auth(username, password)
        self._probed = False

    @classmethod
    def from_config(cls, settings: SchemaRegistry) -> "RegistryClient":
        password = settings.password
        return cls(
            settings.url,
            username=settings.username,
            password=None if password is None else password.get_secret_value(),
            subject_strategy=settings.subject_strategy,
            auto_register=settings.auto_register,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
        )

    def schema_by_id(self, schema_id: int) -> RegisteredSchema:
        """The schema with this id; raises `SchemaNotFound` if there is none."""
        path = f"/schemas/ids/{schema_id}"
        answer = _object(self._request("GET", path), path)
        text = answer.get("schema")
        if not isinstance(text, str):
            raise RegistryError(f"schema id {schema_id}: the answer has no schema")

        references = answer.get("references") or []
        return RegisteredSchema(
            schema_id=schema_id,
            schema=text,
            schema_type=str(answer.get("schemaType") or "AVRO").upper(),
            references=tuple(references) if isinstance(references, list) else (),
        )

    def register(self, subject: str, schema: str) -> int:
        """Register `schema` under `subject` (a no-op if it is there); its id."""
        path = f"/subjects/{quote(subject, safe='')}/versions"
        answer = _object(self._request("POST", path, {"schema": schema}), path)
        return _schema_id(answer, subject)

    def lookup(self, subject: str, schema: str) -> int:
        """The id of `schema` under `subject`; raises `SchemaNotFound` if absent."""
        path = f"/subjects/{quote(subject, safe='')}"
        answer = _object(self._request("POST", path, {"schema": schema}), path)
        return _schema_id(answer, subject)

    def latest(self, subject: str) -> RegisteredSchema:
        """The newest schema under `subject`; raises `SchemaNotFound` if none."""
        path = f"/subjects/{quote(subject, safe='')}/versions/latest"
        answer = _object(self._request("GET", path), path)
        schema_id, text = answer.get("id"), answer.get("schema")
        if not isinstance(schema_id, int) or not isinstance(text, str):
            raise RegistryError(f"subject {subject}: the answer has no id and schema")
        return RegisteredSchema(
            schema_id, text, str(answer.get("schemaType") or "AVRO")
        )

    def ensure_reachable(self) -> None:
        """Check once that the URL answers as a registry; later calls do nothing.

        Raises `SchemaNotFound` when something else answers there.
        """
        if self._probed:
            return
        self._request("GET", "/schemas/types")
        self._probed = True
        logger.info("schema registry reachable url=%s", self.url)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Any:
        """Send one request, retrying while the registry is unavailable."""
        waits = backoff.delays(REGISTRY_FIRST_RETRY_DELAY_S, REGISTRY_MAX_RETRY_DELAY_S)
        for attempt, delay_s in enumerate(waits, start=1):
            try:
                return self._send(method, path, body)
            except RegistryUnavailable as exc:
                if attempt > self.retries:
                    raise
                logger.warning(
                    "schema registry unavailable; retrying in %.2fs attempt=%d "
                    "path=%s: %s",
                    delay_s,
                    attempt,
                    path,
                    exc,
                )
            self._sleep(delay_s)
        raise AssertionError("unreachable: the waits never end")

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        request = self._http_request(method, path, body)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise _refusal(method, path, exc) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # URLError wraps refused connections and DNS failures; a timeout
            # while reading arrives as a bare TimeoutError (an OSError), a
            # connection cut mid-answer as an HTTPException.
            reason = getattr(exc, "reason", exc)
            message = f"{method} {self.url}{path}: {reason}"
            raise RegistryUnavailable(message) from exc

        try:
            return json.loads(payload)
        except ValueError as exc:
            raise RegistryError(f"{method} {path}: the answer is not JSON") from exc

    def _http_request(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> urllib.request.Request:
        headers = {"Accept": ACCEPT}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = CONTENT_TYPE
        return urllib.request.Request(
            self.url + path, data=data, headers=headers, method=method
        )


def _basic_auth(username: str | None, password: str | None) -> str | None:
    if username is None:
        return None
    token = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def _refusal(method: str, path: str, exc: urllib.error.HTTPError) -> RegistryError:
    text = exc.read(ERROR_BODY_CHARS * 4).decode("utf-8", errors="replace")
    code, message = _error_fields(text)
    detail = f"{method} {path}: HTTP {exc.code}"
    if code is not None:
        detail += f" error_code={code}"
    # One line: a server that is no registry may answer a whole HTML page.
    detail += f": {' '.join(message.split())[:ERROR_BODY_CHARS]}"

    if exc.code in RETRY_STATUSES:
        return RegistryUnavailable(detail, exc.code)
    # Confluent's codes 40401-40403 (subject, version, schema) all come as 404.
    if exc.code == 404:
        return SchemaNotFound(detail, exc.code)
    return RegistryError(detail, exc.code)


def _error_fields(text: str) -> tuple[int | None, str]:
    try:
        answer = json.loads(text)
    except ValueError:
        return None, text.strip()
    if not isinstance(answer, dict):
        return None, text.strip()
    code = answer.get("error_code")
    message = str(answer.get("message") or text.strip())
    return (code if isinstance(code, int) else None), message


def _object(answer: Any, path: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise RegistryError(f"{path}: the answer is not a JSON object")
    return answer


def _schema_id(answer: dict[str, Any], subject: str) -> int:
    schema_id = answer.get("id")
    if not isinstance(schema_id, int) or isinstance(schema_id, bool):
        raise RegistryError(f"subject {subject}: the answer has no schema id")
    return schema_id

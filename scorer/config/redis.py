"""The connection to Redis, which holds every lead's state: url, credentials,
TLS, Cluster nodes and the size of each script call.
"""

from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from scorer.config.fields import MAX_TIMEOUT_S, DurationMs, Frozen, Integer, Number

REDIS_SCHEMES = ("redis", "rediss", "unix")


class RedisTls(Frozen):
    """TLS to Redis: with a rediss:// url, certificates other than the system's."""

    ca_file: FilePath | None = Field(
        default=None, description="CA certificates (PEM) to check the server by"
    )
    cert_file: FilePath | None = Field(
        default=None, description="client certificate (PEM), if the server asks"
    )
    key_file: FilePath | None = Field(
        default=None, description="private key (PEM) of cert_file"
    )
    check_hostname: bool = Field(
        default=True, description="the server's certificate must name the url's host"
    )

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together")
        return self


class Redis(Frozen):
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS) or unix://; a user name and "
        "password in it move to `username` and `password`",
    )
    username: str | None = Field(default=None, description="ACL user")
    password: SecretStr | None = None
    tls: RedisTls | None = Field(default=None, description="needs a rediss:// url")
    cluster: bool = False
    cluster_nodes: tuple[str, ...] = Field(
        default=(),
        description="with cluster: more nodes, as host:port, that tell the "
        "cluster's layout when the url's node does not answer",
    )
    key_prefix: str = Field(default="scorer", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    timeout_s: Number = Field(
        default=5.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="socket timeout of each Redis call, seconds; at most "
        f"{MAX_TIMEOUT_S}",
    )
    ops_per_call: Integer = Field(
        default=64,
        ge=1,
        le=1000,
        description="score updates per Lua script call (a lead's updates of "
        "a batch are never split, so a call may carry more)",
    )
    expire_after: DurationMs | None = Field(
        default=None,
        gt=0,
        description="a lead no event or firmographic record has changed for "
        "this long (wall clock) is dropped from Redis, fit and MQL flag "
        "included; at least scoring.dedupe_horizon; none keeps every lead",
    )

    @model_validator(mode="before")
    @classmethod
    def _credentials_apart(cls, data: Any) -> Any:
        """Take the user name and password out of the url, so it can be shown."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        parts = urlsplit(data["url"])
        if parts.username is None and parts.password is None:
            return data

        moved = {"username": parts.username or None, "password": parts.password}
        given = sorted(k for k, v in moved.items() if v and data.get(k) is not None)
        if given:
            raise ValueError(f"url and {' and '.join(given)} both give the {given[0]}")
        host = parts.netloc.rpartition("@")[2]
        plain = {k: unquote(v) for k, v in moved.items() if v}
        return {**data, **plain, "url": parts._replace(netloc=host).geturl()}

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        # The message leaves the url out: it may hold a password.
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError("use a redis://, rediss:// or unix:// url")
        try:
            parts.port  # noqa: B018 - urllib checks the port when it is read
        except ValueError:
            raise ValueError("the url's port is not a number from 0 to 65535") from None
        return value

    @field_validator("cluster_nodes")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The message leaves the address out: a mistaken one may hold a
        # password (user:pw@host:port).
        for number, address in enumerate(value, 1):
            try:
                node_address(address)
            except ValueError as exc:
                raise ValueError(f"item {number}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_scheme(self) -> Self:
        if self.tls is not None and urlsplit(self.url).scheme != "rediss":
            raise ValueError("tls needs a rediss:// url")
        return self

    @model_validator(mode="after")
    def _nodes_of_a_cluster(self) -> Self:
        if self.cluster_nodes and not self.cluster:
            raise ValueError("cluster_nodes needs cluster: true")
        return self


def node_address(address: str) -> tuple[str, int]:
    """`host:port` (an IPv6 host in brackets) as its host and port."""
    parts = urlsplit(f"//{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port or not parts.hostname or parts.netloc != address or "@" in address:
        raise ValueError("give host:port, with a port from 1 to 65535")
    return parts.hostname, port

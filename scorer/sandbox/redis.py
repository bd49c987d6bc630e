"""A Redis server from Debian's `redis-server` package, on a loopback port.

Data persists through the append-only file in the work dir, so `restart()`
(and a restart after `kill()`, less up to a second of writes) keeps the keys:
fault tests restart Redis mid-run and expect the scorer's state to survive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scorer.errors import ScorerError
from scorer.sandbox import LOOPBACK_HOST, LocalServer, free_ports, require_tool
from scorer.sandbox.tls import IssuedCertificate

logger = logging.getLogger(__name__)

REDIS_HINT = "install Debian's redis-server package (apt-get install -y redis-server)"
REDIS_READY_TIMEOUT_S = 15.0  # ready in ~0.1 s; a big AOF loads for longer
PROBE_TIMEOUT_S = 0.5  # one PING while waiting for the server


class RedisServer(LocalServer):
    """`redis-server` bound to 127.0.0.1 with its data in the work dir.

    Writes are appended to an AOF and fsynced every second. `password` turns
    on `requirepass`; with `username` too, it belongs to an ACL user of that
    name with every right instead, and the default user is turned off. `tls`
    makes the port TLS only, with the certificate's CA required of clients
    too (the probe presents the same certificate). `extra_args` are passed
    last, so they override the defaults (for example
    ``["--appendfsync", "always"]``).
    """

    kind = "redis"

    def __init__(
        self,
        *,
        password: str | None = None,
        username: str | None = None,
        tls: IssuedCertificate | None = None,
        extra_args: Sequence[str] = (),
        work_dir: Path | None = None,
        ready_timeout_s: float = REDIS_READY_TIMEOUT_S,
    ) -> None:
        super().__init__(work_dir, ready_timeout_s)
        if username is not None and password is None:
            raise ScorerError("a redis ACL user needs a password")
        self.password = password
        self.username = username
        self.tls = tls
        self.extra_args = list(extra_args)
        self._port: int | None = None

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        if self._port is None:
            raise ScorerError("redis has not been started")
        return self._port

    @property
    def url(self) -> str:
        """URL of logical database 0, with the credentials if any are set.

        The scheme is rediss:// with `tls`; the files a client needs are in
        `tls_options`.
        """
        scheme = "redis" if self.tls is None else "rediss"
        credentials = ""
        if self.password is not None:
            credentials = f"{quote(self.username or '')}:{quote(self.password)}@"
        return f"{scheme}://{credentials}{LOOPBACK_HOST}:{self.port}/0"

    @property
    def tls_options(self) -> dict[str, Any]:
        """redis-py's TLS arguments for a client of this server."""
        if self.tls is None:
            return {}
        return {
            "ssl_ca_certs": str(self.tls.ca_file),
            "ssl_certfile": str(self.tls.cert_file),
            "ssl_keyfile": str(self.tls.key_file),
        }

    def client(self) -> redis.Redis:
        """A new client of this server (the caller closes it)."""
        return redis.Redis.from_url(self.url, **self.tls_options)

    def _configure(self) -> None:
        require_tool("redis-server", REDIS_HINT)
        (self._port,) = free_ports(1)

    def _command(self) -> list[str]:
        command = [
            require_tool("redis-server", REDIS_HINT),
            *self._port_args(),
            "--bind",
            LOOPBACK_HOST,
            "--dir",
            str(self.work_dir),
            "--logfile",
            str(self._log_path),
            "--daemonize",
            "no",
            # The AOF alone carries the data; RDB snapshots would only add
            # fork pauses to a test.
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ]
        return command + self._auth_args() + self.extra_args

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        # Port 0 turns the plain listener off.
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.cert_file),
            "--tls-key-file",
            str(self.tls.key_file),
            "--tls-ca-cert-file",
            str(self.tls.ca_file),
        ]

    def _auth_args(self) -> list[str]:
        if self.password is None:
            return []
        if self.username is None:
            return ["--requirepass", self.password]
        # ACL rules: '>' adds a password, '~*' and '&*' open every key and
        # channel, '+@all' every command.
        user = [self.username, "on", f">{self.password}", "~*", "&*", "+@all"]
        return ["--user", "default", "off", "--user", *user]

    def _is_ready(self) -> bool:
        client = redis.Redis(
            host=LOOPBACK_HOST,
            port=self.port,
            username=self.username,
            password=self.password,
            ssl=self.tls is not None,
            **self.tls_options,
            socket_connect_timeout=PROBE_TIMEOUT_S,
            socket_timeout=PROBE_TIMEOUT_S,
            # One try per probe: redis-py's default backoff would stall the
            # loop that notices an exited server.
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            # While Redis loads its AOF, PING fails with BusyLoadingError.
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _address(self) -> str:
        return f"{LOOPBACK_HOST}:{self.port}"

    def _log_files(self) -> list[Path]:
        return [*super()._log_files(), self._log_path]

    @property
    def _log_path(self) -> Path:
        return self.work_dir / "redis.log"

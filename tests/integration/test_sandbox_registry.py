"""The local Apicurio Registry of the sandbox (scorer/sandbox/registry.py)."""

import socket

import pytest

from scorer.registry import RegistryClient
from scorer.sandbox.registry import SchemaRegistryServer

pytestmark = pytest.mark.integration

SCHEMA = '{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}'


class FirstPortTaken(SchemaRegistryServer):
    """Starts once on a port another socket holds, then as usual."""

    def __init__(self, taken: int) -> None:
        super().__init__()
        self.taken = taken
        self.attempts = 0

    def _configure(self) -> None:
        super()._configure()
        self.attempts += 1
        if self.attempts == 1:
            self._port = self.taken


def test_a_taken_port_is_retried() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = FirstPortTaken(blocker.getsockname()[1])
        with server:
            assert server.attempts == 2
            assert server.port != server.taken
            client = RegistryClient(server.url)
            schema_id = client.register("t-value", SCHEMA)
            assert client.schema_by_id(schema_id).schema == SCHEMA
        assert not server.is_running

"""A batch of commands on Redis Cluster that fails as soon as one node does.

redis-py's cluster pipeline (``ClusterPipeline.execute``) sends a batch in
one round trip per node, then sends every command that failed with a
timeout, a connection error or a redirect again, one command at a time, each
through the client's own retry loop (``_send_cluster_commands``, the part
its comments call "RETRY MAGIC"; redis-py 8.2 here). With one master frozen
(SIGSTOP), each of its commands waited out the socket timeout in turn: a
batch of a few hundred leads blocked for the whole freeze, so the pipeline
could neither log nor poll Kafka, and a command that had run was sent again
and came back as a duplicate.

So the batch goes out with ``allow_redirections=False``, which leaves each
command's error in its place: a node that failed fails the whole batch at
once, after one socket timeout, and the pipeline retries it as it does on a
single server (scorer.pipeline). Only redirects (MOVED, ASK, TRYAGAIN: the
command did not run) are sent again here, through the client, which
follows them. After a node failed, the next batch first reads the cluster's
slot map again, so a replica that took over is found.
"""

import logging
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import PipelineCommand
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

log = logging.getLogger(__name__)

# The node did not answer: the command may or may not have run.
NODE_FAILURES = (redis.ConnectionError, redis.TimeoutError)
# The node answered that another one holds the slot: the command did not run.
REDIRECTS = (MovedError, AskError, TryAgainError)


class ClusterCalls:
    """Sends batches of commands to a Redis Cluster, one round trip per node."""

    def __init__(self, client: redis.RedisCluster) -> None:
        self.client = client
        self._slot_map_stale = False

    def send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies to `commands`, in order; an error is a reply.

        Raises the first connection error or timeout of any node: what its
        commands did is unknown, and they are not sent again here.
        """
        if self._slot_map_stale:
            self.client.nodes_manager.initialize()
            self._slot_map_stale = False

        try:
            replies = self._send_once(commands)
        except NODE_FAILURES:
            self._slot_map_stale = True
            raise
        if any(isinstance(reply, ClusterDownError) for reply in replies):
            self._slot_map_stale = True  # a failover is under way
        return replies

    def _send_once(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        # redis-py leaves its cluster pipeline untyped (no-untyped-call).
        stack = [
            PipelineCommand(args, {}, position)  # type: ignore[no-untyped-call]
            for position, args in enumerate(commands)
        ]
        pipe = self.client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        replies: list[Any] = pipe.send_cluster_commands(
            stack, raise_on_error=False, allow_redirections=False
        )
        for reply in replies:
            if isinstance(reply, NODE_FAILURES):
                raise reply

        redirected = [
            i for i, reply in enumerate(replies) if isinstance(reply, REDIRECTS)
        ]
        if redirected:
            log.debug("redis cluster redirected commands=%d", len(redirected))
        for position in redirected:
            replies[position] = self._follow(commands[position])
        return replies

    def _follow(self, command: tuple[Any, ...]) -> Any:
        """Send one command through the client, which follows its redirect."""
        try:
            # Untyped in redis-py's cluster client, as above.
            execute: Any = self.client.execute_command
            return execute(*command)
        except NODE_FAILURES:
            raise
        except redis.RedisError as exc:
            return exc  # as the pipeline gives it: a reply

"""Prometheus metrics of the scorer.

Names follow Prometheus conventions: a ``scorer_`` prefix, ``_total`` on
counters, base units (seconds) in the name. No label carries a lead id: that
would be one time series per person.

Labels whose values are known up front are created at zero, so a rate or an
alert sees the series before its first increment (Prometheus' advice on
missing series).
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from scorer import __version__

# Event-to-output latency spans a few milliseconds (a quiet topic) to seconds
# (a backlog); the buckets resolve the one-second promise to sales. Those past
# 10 s are for the backlog after an outage: without them a quantile there
# reads 10 s however long sales waited.
LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip
BATCH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
BATCH_RECORDS_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)

MQL_DIRECTIONS = ("up", "down")
LATENESS = ("late", "too_late")
REBALANCE_KINDS = ("assign", "revoke", "lost")
# Where a Kafka error surfaced: a consumed record, a delivery report, an
# offset commit, or the client's own error callback (brokers down, auth).
KAFKA_ERROR_KINDS = ("consume", "produce", "commit", "client")
DEPENDENCIES = ("redis", "kafka")
# Where another rule set can be noticed (scorer.presence).
PRESENCE_PLACES = ("key_prefix", "output", "group")


class Metrics:
    """Every metric of one scorer process, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "scorer_events_consumed_total",
            "Records consumed from input topics",
            ["topic"],
            registry=r,
        )
        self.records = Counter(
            "scorer_records_total",
            "Consumed records by what became of them",
            ["topic", "outcome"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "scorer_dead_lettered_total",
            "Records sent to the dead-letter topic",
            ["topic", "reason"],
            registry=r,
        )
        self.score_changes = Counter(
            "scorer_score_changes_total",
            "score_changed events published (re-published copies left out)",
            registry=r,
        )
        self.mql_crossings = Counter(
            "scorer_mql_crossings_total",
            "mql_crossed events published (re-published copies left out)",
            ["direction"],
            registry=r,
        )
        self.late_events = Counter(
            "scorer_late_events_total",
            "Events older than their lead's newest event",
            ["lateness"],
            registry=r,
        )
        self.latency = Histogram(
            "scorer_event_to_output_seconds",
            "From an input record's Kafka timestamp to its outputs' acknowledgement",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_duration = Histogram(
            "scorer_batch_duration_seconds",
            "Time from consuming a batch to committing it (batches overlap)",
            buckets=BATCH_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "scorer_batch_records",
            "Records per consumed batch",
            buckets=BATCH_RECORDS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "scorer_consumer_lag_records",
            "Records of the partition not yet published: high watermark less "
            "the offset after the last batch published, or the position",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_silence = Gauge(
            "scorer_kafka_silence_seconds",
            "Seconds since the quietest broker leading a partition this "
            "instance fetches last answered, as of librdkafka's latest "
            "statistics (scorer.silence); a healthy broker answers a fetch "
            "within fetch.wait.max.ms",
            registry=r,
        )
        self.assigned = Gauge(
            "scorer_assigned_partitions",
            "Partitions assigned to this instance",
            registry=r,
        )
        self.redis_errors = Counter(
            "scorer_redis_errors_total", "Failed Redis round trips", registry=r
        )
        self.redis_retries = Counter(
            "scorer_redis_retries_total", "Redis round trips retried", registry=r
        )
        self.kafka_errors = Counter(
            "scorer_kafka_errors_total",
            "Errors reported by the Kafka client",
            ["kind"],
            registry=r,
        )
        self.produce_retries = Counter(
            "scorer_produce_retries_total",
            "Output or dead-letter messages produced again after a failed delivery",
            registry=r,
        )
        self.rebalances = Counter(
            "scorer_rebalances_total",
            "Partition assignments and revocations",
            ["kind"],
            registry=r,
        )
        self.consumer_replacements = Counter(
            "scorer_consumer_replacements_total",
            "Kafka consumers replaced for getting no assignment after a loss "
            "(pipeline.rejoin_after)",
            registry=r,
        )
        self.last_batch = Gauge(
            "scorer_last_batch_timestamp_seconds",
            "Unix time the last batch was committed",
            registry=r,
        )
        self.last_poll = Gauge(
            "scorer_last_poll_timestamp_seconds",
            "Unix time the consume loop last asked Kafka for records",
            registry=r,
        )
        self.other_rules = Gauge(
            "scorer_other_rules_versions",
            "Rules versions other than this instance's in use in the last "
            "minute on its key prefix, output topic or consumer group "
            "(scorer.presence)",
            ["where"],
            registry=r,
        )
        for where in PRESENCE_PLACES:
            self.other_rules.labels(where)
        self.waiting = Gauge(
            "scorer_waiting_for_dependency",
            "1 while the scorer waits for Redis or Kafka to come back",
            ["dependency"],
            registry=r,
        )
        self.info = Info(
            "scorer_build", "Version of the scorer and its rules", registry=r
        )
        self.info.info({"version": __version__, "rules_version": ""})
        self._create_known_series()

    def set_rules_version(self, rules_version: str) -> None:
        self.info.info({"version": __version__, "rules_version": rules_version})

    def forget_lag(self, topic: str, partition: int) -> None:
        """Drop a partition's lag once it is no longer ours to report."""
        try:
            self.lag.remove(topic, str(partition))
        except KeyError:
            return

    def _create_known_series(self) -> None:
        for direction in MQL_DIRECTIONS:
            self.mql_crossings.labels(direction)
        for lateness in LATENESS:
            self.late_events.labels(lateness)
        for kind in REBALANCE_KINDS:
            self.rebalances.labels(kind)
        for kind in KAFKA_ERROR_KINDS:
            self.kafka_errors.labels(kind)
        for dependency in DEPENDENCIES:
            self.waiting.labels(dependency).set(0)

"""The scorer's configuration: scoring rules and service settings.

One YAML file holds both. It is validated by frozen pydantic models; any
invalid value stops start-up with an error naming the field by its dotted
path (``scoring.mql.threshold``). Environment variables override the file
(see `load_config`).

The modules, one concept each: `rules` and `scoring` (the scoring
model), `topics`, `kafka`, `redis`, `runtime` (pipeline, metrics server,
logging) and `schema_registry` hold the sections, which `root` joins into
`Config`; `fields` holds the types and limits they share. `loading` reads
the file, `environment` the variables, and `messages` says what is wrong.
Import every name from here, `scorer.config`.
"""

from scorer.config.environment import (
    ENV_PREFIX,
    RDKAFKA_ENV_PREFIX,
    unread_variables,
)
from scorer.config.fields import (
    MAX_DURATION_MS,
    MAX_POINTS,
    MAX_TIMEOUT_S,
    DurationMs,
    EventType,
    Frozen,
    Integer,
    Number,
    Points,
    duration_text,
)
from scorer.config.kafka import (
    CONSUMER_FIXED,
    FREE_FORM_MAPS,
    PRODUCER_FIXED,
    PRODUCER_RESERVED,
    Kafka,
    is_secret_setting,
)
from scorer.config.loading import (
    default_config_path,
    load_config,
    parse_config,
    split_dotted,
)
from scorer.config.messages import (
    describe_errors,
)
from scorer.config.redis import (
    REDIS_SCHEMES,
    Redis,
    RedisTls,
    node_address,
)
from scorer.config.root import (
    STATISTICS_INTERVAL_MS,
    Config,
    consumer_setting_ms,
)
from scorer.config.rules import (
    Cap,
    EngagementRule,
    FitRule,
    Match,
    Range,
)
from scorer.config.runtime import (
    Logging,
    MetricsServer,
    Pipeline,
)
from scorer.config.schema_registry import (
    MAX_REGISTRY_WAIT_S,
    REGISTRY_FIRST_RETRY_DELAY_S,
    REGISTRY_MAX_RETRY_DELAY_S,
    SchemaRegistry,
)
from scorer.config.scoring import (
    MAX_OPEN_WINDOWS,
    MAX_WEIGHT,
    Mql,
    Scoring,
    Total,
)
from scorer.config.topics import (
    TOPIC_NAME_EXPECTED,
    EventTopic,
    Topic,
    TopicName,
    Topics,
    WireFormat,
    topic_name_problem,
)

__all__ = [
    "CONSUMER_FIXED",
    "ENV_PREFIX",
    "FREE_FORM_MAPS",
    "MAX_DURATION_MS",
    "MAX_OPEN_WINDOWS",
    "MAX_POINTS",
    "MAX_REGISTRY_WAIT_S",
    "MAX_TIMEOUT_S",
    "MAX_WEIGHT",
    "PRODUCER_FIXED",
    "PRODUCER_RESERVED",
    "RDKAFKA_ENV_PREFIX",
    "REDIS_SCHEMES",
    "REGISTRY_FIRST_RETRY_DELAY_S",
    "REGISTRY_MAX_RETRY_DELAY_S",
    "STATISTICS_INTERVAL_MS",
    "TOPIC_NAME_EXPECTED",
    "Cap",
    "Config",
    "DurationMs",
    "EngagementRule",
    "EventTopic",
    "EventType",
    "FitRule",
    "Frozen",
    "Integer",
    "Kafka",
    "Logging",
    "Match",
    "MetricsServer",
    "Mql",
    "Number",
    "Pipeline",
    "Points",
    "Range",
    "Redis",
    "RedisTls",
    "SchemaRegistry",
    "Scoring",
    "Topic",
    "TopicName",
    "Topics",
    "Total",
    "WireFormat",
    "consumer_setting_ms",
    "default_config_path",
    "describe_errors",
    "duration_text",
    "is_secret_setting",
    "load_config",
    "node_address",
    "parse_config",
    "split_dotted",
    "topic_name_problem",
    "unread_variables",
]

"""``scorer produce``: its options, and JSON-lines records sent to Kafka.

Routing, encoding and sending are `scorer.produce`'s; this module reads the
options and the config into them.
"""

import argparse
import sys

from scorer.cli import options
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK
from scorer.events import TimeBounds


def add_produce(commands: options.Subcommands) -> None:
    produce = commands.add_parser(
        "produce", help="produce JSON-lines records to Kafka, keyed by lead id"
    )
    options.config_option(produce)
    options.shorthand(produce, "--bootstrap-servers")
    produce.add_argument("--topic", help="the topic of records with no --route")
    produce.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="TYPE=TOPIC",
        help="records of this type go to this topic (repeatable)",
    )
    produce.add_argument(
        "--format",
        choices=("avro", "json"),
        help="wire format for every topic (default: the topic's in the config)",
    )
    produce.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="file, or - for stdin"
    )
    produce.set_defaults(handler=_produce)


def _produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from scorer import clients, produce
    from scorer.replay import read_lines

    config = options.load(args)
    routes = produce.parse_routes(args.route)
    if args.topic is not None:
        produce.checked_topic("--topic", args.topic)
    routing = produce.Routing.of(config, routes, args.topic, args.format)
    with clients.settings_checked_by_librdkafka(config.kafka):
        producer = Producer(
            clients.producer_settings(config), logger=clients.client_logger("producer")
        )
    bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
    codecs = produce.codecs_for(config)
    sender = produce.Sender(producer, routing, codec_of=codecs, bounds=bounds)
    stats = sender.send(read_lines(args.inputs))
    print(stats.summary(), file=sys.stderr)
    return EXIT_OK if stats.succeeded else EXIT_FAILED

"""librdkafka's repeated warnings are counted, not logged line by line."""

import logging

from scorer.clients import Repeats


def client_record(level: int, facility: str, text: str) -> logging.LogRecord:
    # confluent-kafka logs librdkafka's lines in this shape.
    return logging.LogRecord(
        "scorer.kafka.consumer",
        level,
        __file__,
        1,
        "%s [%s] %s",
        (facility, "rdkafka#consumer-1", text),
        None,
    )


def test_one_warning_of_a_kind_passes_per_window_and_says_what_it_held() -> None:
    now = [0.0]
    repeats = Repeats(window_s=30.0, clock=lambda: now[0])
    fail = [client_record(logging.ERROR, "FAIL", f"try {n}") for n in range(25)]

    passed = []
    for second, record in enumerate(fail):
        now[0] = float(second)
        if repeats.filter(record):
            passed.append(record.getMessage())
    now[0] = 31.0
    late = client_record(logging.ERROR, "FAIL", "try 31")
    assert repeats.filter(late)

    assert passed == ["FAIL [rdkafka#consumer-1] try 0"]
    assert late.getMessage() == (
        "FAIL [rdkafka#consumer-1] try 31 (24 more like it held back)"
    )


def test_kinds_are_limited_apart_and_debug_lines_all_pass() -> None:
    repeats = Repeats(window_s=30.0, clock=lambda: 0.0)

    assert repeats.filter(client_record(logging.ERROR, "FAIL", "a"))
    assert repeats.filter(client_record(logging.WARNING, "SESSTMOUT", "b"))
    assert not repeats.filter(client_record(logging.ERROR, "FAIL", "c"))
    assert all(
        repeats.filter(client_record(logging.DEBUG, "FAIL", str(n))) for n in range(5)
    )


def test_info_lines_of_a_refusing_broker_are_limited_apart_from_errors() -> None:
    repeats = Repeats(window_s=30.0, clock=lambda: 0.0)
    text = (
        "Disconnected: connection reset by peer (after 0ms in state APIVERSION_QUERY)"
    )

    infos = [
        repeats.filter(client_record(logging.INFO, "FAIL", text)) for _ in range(50)
    ]
    error = repeats.filter(client_record(logging.ERROR, "FAIL", "Connect failed"))

    assert infos.count(True) == 1
    assert error


def test_a_fresh_brokers_coordinator_load_is_info_not_a_warning() -> None:
    repeats = Repeats(window_s=30.0, clock=lambda: 0.0)
    text = (
        "Failed to acquire idempotence PID from broker 127.0.0.1:9092/1: "
        "Broker: Coordinator load in progress: retrying"
    )
    quiet = logging.getLogger("scorer.kafka.consumer")
    quiet.setLevel(logging.WARNING)
    try:
        at_warning = client_record(logging.WARNING, "GETPID", text)
        passed_at_warning = repeats.filter(at_warning)
        quiet.setLevel(logging.INFO)
        at_info = client_record(logging.WARNING, "GETPID", text)
        passed_at_info = repeats.filter(at_info)
    finally:
        quiet.setLevel(logging.NOTSET)

    assert not passed_at_warning
    assert passed_at_info and at_info.levelname == "INFO"
    # Other warnings of the same facility still pass as warnings.
    other = client_record(logging.WARNING, "GETPID", "Failed to acquire PID: boom")
    assert repeats.filter(other) and other.levelname == "WARNING"

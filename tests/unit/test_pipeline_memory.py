"""What bounds the memory records take: batch sizes in bytes, no cycles.

1,000 malformed records of 900 kB once took the scorer past 1 GB (the
deployment's limit is 512 MiB): batches of 1,000 such records, kept alive
by the tracebacks of their rejections (bench/memory.py measures it).
"""

import gc
import weakref
from collections.abc import Iterator

import pytest
from test_pipeline_unencodable import Broker, Consumed, pipeline_on

from scorer.pipeline import BatchBytes, ScorerPipeline

MIB = 1024 * 1024


class Sized:
    """A consumed message as BatchBytes sees it: its length."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


class Unreadable(Consumed):
    def value(self) -> bytes:
        return b"{not json" + b" " * 1000


@pytest.fixture
def pipeline() -> Iterator[ScorerPipeline]:
    made = pipeline_on(Broker())
    yield made
    made.lane.close()


def test_small_records_make_whole_batches() -> None:
    sizes = BatchBytes(limit=16 * MIB, most=1000)
    assert sizes.count() == 1000

    sizes.observe([Sized(300)] * 1000)

    assert sizes.count() == 1000


def test_a_burst_of_large_records_shrinks_the_next_batch_at_once() -> None:
    sizes = BatchBytes(limit=16 * MIB, most=1000)
    sizes.observe([Sized(1024)] * 500 + [Sized(63 * 1024)] * 500)  # 32 kB each

    assert sizes.count() == 512

    sizes.observe([Sized(MIB)] * 60)
    assert sizes.count() == 16


def test_after_a_burst_the_batches_grow_back_by_halves() -> None:
    sizes = BatchBytes(limit=16 * MIB, most=1000)
    sizes.observe([Sized(MIB)] * 16)

    sizes.observe([Sized(0)] * 16)
    assert sizes.count() == 32
    sizes.observe([Sized(0)] * 32)
    assert sizes.count() == 64
    sizes.observe([])  # nothing consumed says nothing of sizes
    assert sizes.count() == 64


def test_a_batch_with_a_rejected_record_is_freed_without_the_collector(
    pipeline: ScorerPipeline,
) -> None:
    message = Unreadable(0, "L1", "/pricing")
    gc.disable()
    try:
        batch = pipeline._decode([message])
        assert [r.error.reason for r in batch.rejected] == ["bad_json"]
        freed = weakref.ref(message)

        del batch, message

        assert freed() is None
    finally:
        gc.enable()

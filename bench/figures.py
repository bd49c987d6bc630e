"""What one measurement found, and the tables printed from it."""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The targets: the scorer at least half the bare loop's rate and ten
# times the naive loop's.
BARE_TARGET = 0.5
NAIVE_TARGET = 10.0


@dataclass(frozen=True, slots=True)
class Result:
    """One loop, one run."""

    kind: str
    events: int
    drain_s: float
    outputs: int
    drain_p50_ms: float
    drain_p99_ms: float
    steady_events: int
    steady_p50_ms: float
    steady_p99_ms: float
    cpu_loop_s: float
    cpu_redis_s: float
    cpu_kafka_s: float
    lua_calls: int
    lua_us_per_call: float

    @property
    def rate(self) -> float:
        return self.events / self.drain_s if self.drain_s > 0 else math.nan

    @property
    def cpu_us(self) -> float:
        """CPU of the loop, Redis and Kafka per backlog record, in microseconds."""
        total_s = self.cpu_loop_s + self.cpu_redis_s + self.cpu_kafka_s
        return total_s / self.events * 1e6


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of all at or below."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


HEADER = (
    f"{'loop':<10}{'events/s':>10}{'drain s':>9}{'outputs':>9}"
    f"{'drain p50':>11}{'p99 ms':>8}{'steady p50':>12}{'p99 ms':>8}"
    f"{'cpu loop':>10}{'redis':>7}{'kafka':>7}{'cpu us/ev':>11}{'lua us/call':>13}"
)


def row(result: Result) -> str:
    r = result
    return (
        f"{r.kind:<10}{r.rate:>10,.0f}{r.drain_s:>9.2f}{r.outputs:>9,}"
        f"{r.drain_p50_ms:>11,.0f}{r.drain_p99_ms:>8,.0f}"
        f"{r.steady_p50_ms:>12,.1f}{r.steady_p99_ms:>8,.1f}"
        f"{r.cpu_loop_s:>10.1f}{r.cpu_redis_s:>7.1f}{r.cpu_kafka_s:>7.1f}"
        f"{r.cpu_us:>11.1f}{r.lua_us_per_call:>13,.0f}"
    )


def ratios(run: dict[str, Result]) -> tuple[float, float]:
    """Rate of the scorer over the bare loop's and over the naive loop's."""
    scorer = run["scorer"].rate
    return scorer / run["bare"].rate, scorer / run["naive"].rate


def cpu_ratios(run: dict[str, Result]) -> tuple[float, float]:
    """The same ratios from CPU per record, which a busy machine skews less."""
    scorer = run["scorer"].cpu_us
    return run["bare"].cpu_us / scorer, run["naive"].cpu_us / scorer


def median_result(results: Sequence[Result]) -> Result:
    def mid(values: Sequence[float]) -> float:
        return statistics.median(values)

    first = results[0]
    return Result(
        kind=first.kind,
        events=first.events,
        drain_s=mid([r.drain_s for r in results]),
        outputs=int(mid([r.outputs for r in results])),
        drain_p50_ms=mid([r.drain_p50_ms for r in results]),
        drain_p99_ms=mid([r.drain_p99_ms for r in results]),
        steady_events=first.steady_events,
        steady_p50_ms=mid([r.steady_p50_ms for r in results]),
        steady_p99_ms=mid([r.steady_p99_ms for r in results]),
        cpu_loop_s=mid([r.cpu_loop_s for r in results]),
        cpu_redis_s=mid([r.cpu_redis_s for r in results]),
        cpu_kafka_s=mid([r.cpu_kafka_s for r in results]),
        lua_calls=int(mid([r.lua_calls for r in results])),
        lua_us_per_call=mid([r.lua_us_per_call for r in results]),
    )


def verdict(bare_ratio: float, naive_ratio: float) -> str:
    bare_ok = "met" if bare_ratio >= BARE_TARGET else "NOT met"
    naive_ok = "met" if naive_ratio >= NAIVE_TARGET else "NOT met"
    return (
        f"scorer/bare {bare_ratio:.2f} (target >= {BARE_TARGET}: {bare_ok}), "
        f"scorer/naive {naive_ratio:.1f} (target >= {NAIVE_TARGET:g}: {naive_ok})"
    )

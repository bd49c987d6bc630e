"""Exponential time decay of engagement, in event time.

A contribution of `p` points made at time `t` is worth ``p * 2 ** (-(T - t) / h)``
at a later time `T`, for the rule's half-life `h`. Accumulators are kept as of
the lead's newest event time and multiplied forward when it advances, which
makes the sum independent of the order the events arrive in.

The Lua twin of these formulas lives in `scorer.state`; both compute with the
same IEEE operations in the same order so that the in-process replay and the
Redis path agree to the last bit.
"""


def factor(elapsed_ms: int, half_life_ms: int) -> float:
    """The share of a contribution left after `elapsed_ms`."""
    share: float = 2.0 ** (-elapsed_ms / half_life_ms)
    return share


def capped_share(cap_points: float, raw_points: float) -> float:
    """The share of a window's raw points that its cap lets through.

    Scaling every event of the window by the same share keeps the window's
    worth below the cap whatever order its events came in.
    """
    if raw_points == 0:
        return 1.0
    return min(1.0, cap_points / abs(raw_points))

"""How the models' numbers become one: the consensus value, the spread and the stability rule."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def consensus_value(values: Sequence[float], statistic: str) -> float | None:
    """The ``statistic`` (median, mean or max) of ``values``; None for none."""
    if not values:
        return None
    if statistic == "median":
        return float(statistics.median(values))
    if statistic == "mean":
        return float(statistics.fmean(values))
    if statistic == "max":
        return float(max(values))
    raise ValueError(f"unknown consensus statistic {statistic!r}: use median, mean or max")


def spread(values: Sequence[float]) -> float | None:
    """Largest minus smallest of the models' values (None with fewer than two): how much they disagree."""
    return float(max(values) - min(values)) if len(values) > 1 else None


def stable_by_rule(values: Sequence[float], consensus: float | None, rule: str, threshold: float) -> bool | None:
    """``is_stable_consensus``: the consensus at most ``threshold`` ('consensus'), or every model's value ('all')."""
    if consensus is None or not values:
        return None
    if rule == "consensus":
        return consensus <= threshold
    if rule == "all":
        return all(v <= threshold for v in values)
    raise ValueError(f"unknown stable_rule {rule!r}: use consensus or all")

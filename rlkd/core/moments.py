"""Moments of a union of batches: the one formula that running statistics and ranks both merge with.

A leaf module (numpy and torch values alike, no rlkd imports), so :mod:`rlkd.nn.stats` and
:mod:`rlkd.core.distributed` both use it without importing each other.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def chan_merge(count_a: T, mean_a: T, var_a: T, count_b: T, mean_b: T, var_b: T) -> tuple[T, T, T]:
    """Count, mean and (biased) variance of the union of two batches from each batch's (Chan, Golub
    and LeVeque's parallel algorithm). Operators only: floats, numpy arrays and tensors alike."""
    total = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * count_b / total
    var = (var_a * count_a + var_b * count_b + delta * delta * count_a * count_b / total) / total
    return total, mean, var

"""The exact multinomial goodness-of-fit test: how surprising are these counts if the shares are right?

Its p-value is the total probability, under the stated shares, of every outcome of the same number of
trials that is no more likely than the one observed (probability ordering). It makes no large-sample
approximation, so rejecting at p < alpha fails a client that follows the shares exactly with
probability at most alpha, whatever the number of runs: the false-failure rate is alpha or less.
"""

from __future__ import annotations

import math
from typing import Iterator

RELATIVE_TIE = 1e-9  # outcomes this close in probability count as equally likely (floating point)


def _outcomes(total: int, categories: int) -> Iterator[tuple[int, ...]]:
    if categories == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _outcomes(total - first, categories - 1):
            yield (first, *rest)


def _log_probability(counts: tuple[int, ...], shares: tuple[float, ...]) -> float:
    log_p = math.lgamma(sum(counts) + 1)
    for count, share in zip(counts, shares):
        if count:
            if share <= 0:
                return -math.inf
            log_p += count * math.log(share) - math.lgamma(count + 1)
    return log_p


def p_value(counts: dict[str, int], shares: dict[str, float]) -> float:
    """The exact test's p-value of `counts` (name -> observed) under `shares` (name -> probability, summing to 1)."""
    names = sorted(shares)
    probabilities = tuple(shares[n] / sum(shares.values()) for n in names)
    observed = tuple(counts.get(n, 0) for n in names)
    threshold = _log_probability(observed, probabilities)
    if threshold == -math.inf:
        return 0.0
    total = 0.0
    for outcome in _outcomes(sum(observed), len(names)):
        log_p = _log_probability(outcome, probabilities)
        if log_p <= threshold + RELATIVE_TIE:
            total += math.exp(log_p)
    return min(1.0, total)


def size(trials: int, shares: dict[str, float], alpha: float) -> float:
    """The exact false-failure rate of the test at `alpha` for `trials` runs of a client that follows `shares`."""
    names = sorted(shares)
    probabilities = tuple(shares[n] / sum(shares.values()) for n in names)
    rejected = 0.0
    for outcome in _outcomes(trials, len(names)):
        if p_value(dict(zip(names, outcome)), shares) < alpha:
            rejected += math.exp(_log_probability(outcome, probabilities))
    return rejected

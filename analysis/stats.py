"""How sure a difference is: seed noise, 95% intervals and verdicts for the findings.

Seeds are blocks: every run with seed s starts from the same student weights and sees the same
batches, whatever its temperature, optimizer or teacher. So a panel of conditions (cells) measured
on the same seeds is a randomized-block design, y[c, s] = mu_c + b_s + e[c, s], and the seed noise
sigma is estimated from its residuals with (C - 1)(S - 1) degrees of freedom. Every finding is a
statistic of the cell means that a common shift of all cells leaves unchanged (a difference, a
contrast, a range); its 95% interval comes from a parametric bootstrap of that noise: cell means +
N(0, sigma*^2 / S), with sigma*^2 = sigma^2 df / chi2_df, so the uncertainty of sigma itself counts.
For a difference of two cells this is the t-interval.

A claim "the effect is > 0" is then
    reproduced    when the whole interval is above 0,
    contradicted  when it is below 0, or when it excludes every effect of MIN_EFFECT points or more
                  in the claimed direction (a null the lab has the power to see),
    undecided     otherwise: the interval holds both 0 and an effect of MIN_EFFECT.
"""

import math

import numpy as np

REPRODUCED, CONTRADICTED, UNDECIDED, UNTESTED = "reproduced", "contradicted", "undecided", "not tested"
MIN_EFFECT = 1.0  # points of top-1: the smallest effect the lab counts as the paper's claimed trend
DRAWS = 20000


def block_noise(values):
    """(sigma, df, seeds) of a panel: values {cell: {seed: top1}}, seeds kept where every cell has one.
    sigma is None with fewer than 2 seeds or 2 cells."""
    seeds = sorted(set.intersection(*(set(v) for v in values.values()))) if values else []
    if len(seeds) < 2 or len(values) < 2:
        return None, 0, seeds
    y = np.array([[v[s] for s in seeds] for v in values.values()], dtype=float)
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (y.shape[0] - 1) * (y.shape[1] - 1)
    return math.sqrt((resid**2).sum() / df), df, seeds


def cell_means(values, seeds):
    """{cell: mean over `seeds`}."""
    return {c: float(np.mean([v[s] for s in seeds])) for c, v in values.items()}


def interval(values, statistic, seed=0):
    """(estimate, low, high, sigma, seeds) of statistic(means), where `means` maps each cell of `values`
    {cell: {seed: top1}} to its mean over the common seeds. low/high: the 95% interval. The statistic is
    called once with floats and once with arrays of bootstrap draws, so it uses numpy functions that
    work elementwise on both (np.mean(np.stack(...), 0), np.maximum.reduce, ...)."""
    sigma, df, seeds = block_noise(values)
    means = cell_means(values, seeds) if seeds else {}
    if not means:
        return None, None, None, None, seeds
    estimate = float(statistic(means))
    if sigma is None:
        return estimate, None, None, None, seeds
    rng = np.random.default_rng(seed)
    cells = list(means)
    scale = sigma * np.sqrt(df / rng.chisquare(df, DRAWS)) / math.sqrt(len(seeds))
    noise = rng.standard_normal((DRAWS, len(cells))) * scale[:, None]
    draws = np.asarray(statistic({c: means[c] + noise[:, j] for j, c in enumerate(cells)}))
    low, high = np.percentile(draws - estimate, [2.5, 97.5])
    # the interval of the estimate: estimate - (upper error), estimate - (lower error) (basic bootstrap)
    return estimate, float(estimate - high), float(estimate - low), sigma, seeds


def verdict(low, high, min_effect=MIN_EFFECT):
    """The verdict on a claim 'effect > 0' from its 95% interval (None: no interval, too few seeds)."""
    if low is None:
        return UNDECIDED
    if low > 0:
        return REPRODUCED
    if high < 0 or high < min_effect:
        return CONTRADICTED
    return UNDECIDED


def describe(estimate, low, high, unit=" points"):
    if estimate is None:
        return "no value"
    if low is None:
        return f"{estimate:+.2f}{unit} (one seed: no interval)"
    return f"{estimate:+.2f}{unit} (95% interval {low:+.2f} to {high:+.2f})"

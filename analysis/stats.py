"""How sure an effect is: seed noise, bootstrap intervals, Holm's family-wise levels and one table of labels.

Seeds are blocks: every run with seed s starts from the same student weights and sees the same batches,
whatever its temperature, optimizer or teacher. So cells (configurations) measured on the same seeds are a
randomized-block design, y[c, s] = mu_c + b_s + e[c, s], and the seed noise sigma of a noise group of cells
is estimated from its residuals with (C - 1)(S - 1) degrees of freedom. A finding passes only the cells its
statistic uses, split into noise groups where it compares cells of visibly different noise (one optimizer,
one setting): each group has its own sigma. Every statistic is a function of cell means oriented so that
> 0 is the paper's claim, in points of top-1. Its interval comes from a parametric bootstrap: each group's
cell means + N(0, sigma*^2 / S), sigma*^2 = sigma^2 df / chi2_df (the uncertainty of sigma counts), the
basic bootstrap interval of the errors d = draw - estimate, and the two-sided p-value of "effect = 0" from
the same draws, p = 2 min(P(d >= estimate), P(d <= estimate)), so the interval at level a excludes 0
exactly when p <= a. For a difference of two cells this is the paired t-interval.

The smallest effect of interest is MARGIN = m = 1 point of top-1, for every statistic (a trend, a
difference of trends, a range are all points of top-1). Why 1 point: (a) it is the noise floor, about one
seed std of a single student's final top-1 in the lab (0.9 on average at 128 epochs; one run's binomial
standard error on 7,200 test images is about 0.5), the smallest difference a practitioner choosing T would
notice above run-to-run variation; (b) it is about 1/6 of what distillation adds over labels alone in the
lab (+6.4). m is the value the project used before: it was fixed before any v3 number existed, and the
numbers that justify it are the lab's v2 results.

Labels from an interval (lo, hi), one table, symmetric around 0:
    present     lo > 0; size "at least m" when lo >= m, "below m" when hi < m
    opposite    hi < 0; size "at least m" when hi <= -m, "below m" when lo > -m
    absent      -m < lo and hi < m (0 inside): no effect of m or more either way
    undecided   otherwise (or no interval: fewer than 2 seeds)
    not tested  runs missing
A report's findings that have an interval form one family: Holm's procedure at ALPHA gives each its level,
and a finding's label comes from its interval at that level (the raw 95% interval is printed beside).
"""

import math
from dataclasses import dataclass, field

import numpy as np

PRESENT, OPPOSITE, ABSENT, UNDECIDED, UNTESTED = "present", "opposite", "absent", "undecided", "not tested"
AT_LEAST, BELOW = "at least m", "below m"
MARGIN = 1.0  # m, points of top-1: the smallest effect of interest (the module docstring says why)
ALPHA = 0.05
DRAWS = 100_000  # the tails at 0.05 / 17 need many draws


def block_noise(values):
    """(sigma, df, seeds) of one noise group: values {cell: {seed: top1}}, seeds kept where every cell has one.
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


def as_groups(values):
    """Noise groups {group: {cell: {seed: top1}}}; a plain {cell: {seed: top1}} is one group, 'all'."""
    first = next(iter(values.values()), {})
    one_group = not first or not isinstance(next(iter(first.values())), dict)
    return {"all": values} if one_group else values


@dataclass
class Bootstrap:
    """A statistic's estimate and its sorted bootstrap errors (None: some group has no sigma)."""

    estimate: float | None
    errors: np.ndarray | None = None
    sigma: dict = field(default_factory=dict)  # {group: sigma or None}
    seeds: dict = field(default_factory=dict)  # {group: the seeds its cell means average}


def bootstrap(values, statistic, draws=DRAWS, seed=0):
    """The Bootstrap of statistic(means): `values` {cell: {seed: top1}} or noise groups {group: {cell: ...}};
    each cell's mean is over its group's common seeds. The statistic is called once with floats and once
    with arrays of draws, so it uses numpy functions that work elementwise on both (np.max(np.stack(...), 0))."""
    groups = as_groups(values)
    cells = [c for v in groups.values() for c in v]
    if len(cells) != len(set(cells)):
        raise ValueError("a cell is in two noise groups")
    noise = {g: block_noise(v) for g, v in groups.items()}
    sigma = {g: n[0] for g, n in noise.items()}
    seeds = {g: n[2] for g, n in noise.items()}
    if not groups or not all(seeds.values()):
        return Bootstrap(None, None, sigma, seeds)
    means = {c: m for g, v in groups.items() for c, m in cell_means(v, seeds[g]).items()}
    estimate = float(statistic(means))
    if any(s is None for s in sigma.values()):
        return Bootstrap(estimate, None, sigma, seeds)
    rng = np.random.default_rng(seed)
    drawn = {}
    for g, v in groups.items():
        s, df, used = noise[g]
        scale = s * np.sqrt(df / rng.chisquare(df, draws)) / math.sqrt(len(used))
        z = rng.standard_normal((len(v), draws))
        drawn.update({c: means[c] + z[j] * scale for j, c in enumerate(v)})
    errors = np.sort(np.asarray(statistic(drawn), dtype=float) - estimate)
    return Bootstrap(estimate, errors, sigma, seeds)


def interval_at(boot, level=ALPHA):
    """(low, high): the basic bootstrap interval of confidence 1 - level, (None, None) without draws.
    With n sorted errors and k = floor(n level / 2) it is (estimate - d[n-1-k], estimate - d[k]): it
    excludes 0 exactly when p_value(boot) <= level."""
    if boot.errors is None:
        return None, None
    n = len(boot.errors)
    k = min(n - 1, math.floor(n * level / 2 + 1e-9))
    return boot.estimate - float(boot.errors[n - 1 - k]), boot.estimate - float(boot.errors[k])


def p_value(boot):
    """Two-sided p-value of 'effect = 0' from the same draws (None without draws)."""
    if boot.errors is None:
        return None
    n = len(boot.errors)
    upper = n - np.searchsorted(boot.errors, boot.estimate, "left")  # errors >= estimate
    lower = np.searchsorted(boot.errors, boot.estimate, "right")  # errors <= estimate
    return min(1.0, 2 * min(int(upper), int(lower)) / n)


def interval(values, statistic, seed=0, level=ALPHA):
    """(estimate, low, high, sigma, seeds): the statistic, its interval of confidence 1 - level, the
    seed noise of its (first) group and the seeds of that group."""
    boot = bootstrap(values, statistic, seed=seed)
    low, high = interval_at(boot, level)
    first = next(iter(boot.sigma), None)
    return boot.estimate, low, high, boot.sigma.get(first), boot.seeds.get(first, [])


def holm(p_values, alpha=ALPHA):
    """([level], [adjusted p]) of each p-value in the order given (Holm's step-down procedure): sorted by p,
    the k-th (1-based) of n is tested at alpha / (n - k + 1) while every earlier one was rejected; the first
    one not rejected and every later one are tested at alpha / (n - r), r = the number rejected."""
    n = len(p_values)
    levels, adjusted = [None] * n, [None] * n
    rejecting, level, running = True, alpha, 0.0
    for rank, i in enumerate(sorted(range(n), key=lambda i: p_values[i])):
        if rejecting:
            level = alpha / (n - rank)
            rejecting = p_values[i] <= level * (1 + 1e-12)
        levels[i] = level
        running = max(running, min(1.0, (n - rank) * p_values[i]))
        adjusted[i] = running
    return levels, adjusted


def label(low, high, margin=MARGIN):
    """(label, size) of an interval for a statistic whose > 0 is the claim (the table in the docstring)."""
    if low is None or high is None:
        return UNDECIDED, ""
    if low > 0:
        return PRESENT, AT_LEAST if low >= margin else BELOW if high < margin else ""
    if high < 0:
        return OPPOSITE, AT_LEAST if high <= -margin else BELOW if low > -margin else ""
    if -margin < low and high < margin:
        return ABSENT, ""
    return UNDECIDED, ""


def describe(estimate, low, high, unit=" points"):
    """'+0.65 points (95% interval +0.41 to +0.90)'."""
    if estimate is None:
        return "no value"
    if low is None:
        return f"{estimate:+.2f}{unit} (one seed: no interval)"
    return f"{estimate:+.2f}{unit} (95% interval {low:+.2f} to {high:+.2f})"

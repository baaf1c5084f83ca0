"""How sure a finding is: its statistic per replicate unit, a t-interval over units, Bonferroni, one table of labels.

The noise model. A replicate unit is a seed: in the lab each seed has its own teachers (fine-tuned or trained
with that seed) and its own students, and nothing else is shared between seeds but the one pretraining. A
finding's statistic is a linear contrast of cells (a difference of means over T, a difference of trends), so
it can be computed inside each unit: d_u = sum_c w_c y[c, u]. Whatever the lines share or do not share inside a
unit (one seed effect for every line, a seed effect per line or per teacher, noise 3x larger in one line),
the d_u are independent and identically distributed over units, and the t-interval
    mean(d) +- t_{1 - a/2, n - 1} sd(d) / sqrt(n)
covers the contrast of the true cell means with probability 1 - a (exact for normal d_u; the calibration test
simulates the lab's design under all three noise models). A finding that is the smallest (or largest) of
several contrasts takes each at level a/k (Bonferroni) and combines the interval ends, which is valid for any
function that rises with each contrast. tests/test_calibration.py checks the coverage by simulation.

The family. A report's findings that have an interval form one family of K; each interval is at level
1 - ALPHA/K (Bonferroni), so with probability at least 1 - ALPHA every interval covers its truth at once, and
every label read off them is right at once: that is the guarantee. The raw 95% interval is printed beside.

The smallest effect of interest is MARGIN = m = 1 point of top-1: about one seed std of a single student's
final top-1 in the lab, and about 1/6 of what distillation adds over labels alone. Labels from (lo, hi):
    present     lo > 0; "at least m" when lo >= m
    opposite    hi < 0; "at least m" when hi <= -m
    absent      -m < lo and hi < m: no effect of m or more either way
    undecided   otherwise; "undecided: no noise estimate" when every unit gave the same value
    not tested  runs missing, or fewer than 2 units
Standard library only.
"""

import math
from functools import cache

PRESENT, OPPOSITE, ABSENT, UNDECIDED, UNTESTED = "present", "opposite", "absent", "undecided", "not tested"
NO_NOISE = "undecided: no noise estimate"
AT_LEAST = "at least m"
MARGIN = 1.0  # m, points of top-1
ALPHA = 0.05  # the family-wise error of the labels


# ---------------------------------------------------------------------------------------------
# Student's t quantile (no scipy at run time): the regularized incomplete beta by its continued fraction


def incomplete_beta(a, b, x):
    """I_x(a, b), by the continued fraction of Numerical Recipes (Press et al., 6.4), with Lentz's method."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - incomplete_beta(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    c, d, f = 1.0, 1.0 - (a + b) * x / (a + 1), 0.0
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for i in range(2, 300):
        m = i // 2
        num = (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            if i % 2 == 0
            else -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        )
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + num / c
        c = c if abs(c) > 1e-300 else 1e-300
        f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0."""
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@cache
def t_quantile(p, df):
    """The t with P(T <= t) = p (bisection; p in (0.5, 1))."""
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


# ---------------------------------------------------------------------------------------------
# Intervals over units


def summary(values):
    """(mean, sample sd, n) of per-unit values."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0, n


def t_interval(values, alpha):
    """(low, high) of the two-sided 1 - alpha t-interval of the mean of per-unit values; None for n < 2."""
    mean, sd, n = summary(values)
    if n < 2:
        return None
    half = t_quantile(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def interval(components, combine, alpha):
    """(estimate, low, high) of combine(contrasts) from their per-unit values {name: [d_u]}: each contrast at
    level alpha / k, the ends combined (combine rises with each contrast). low/high None with fewer than 2 units."""
    names = list(components)
    estimate = combine({k: summary(components[k])[0] for k in names})
    ends = [t_interval(components[k], alpha / len(names)) for k in names]
    if any(e is None for e in ends):
        return estimate, None, None
    low = combine({k: e[0] for k, e in zip(names, ends)})
    high = combine({k: e[1] for k, e in zip(names, ends)})
    return estimate, low, high


def label(low, high, margin=MARGIN):
    """(label, size) of an interval: the table in the module docstring."""
    if low is None or high is None:
        return UNDECIDED, ""
    if low > 0:
        return PRESENT, AT_LEAST if low >= margin else ""
    if high < 0:
        return OPPOSITE, AT_LEAST if high <= -margin else ""
    if -margin < low and high < margin:
        return ABSENT, ""
    return UNDECIDED, ""


def units_needed(estimate, sd, k, alpha, margin=MARGIN, most=1000):
    """How many units a decision would take if the estimate and the per-unit sd stayed as observed: the smallest
    n whose half-width at level alpha/k is below max(|estimate|, margin - |estimate|); None beyond `most`."""
    target = max(abs(estimate), margin - abs(estimate))
    for n in range(2, most + 1):
        if t_quantile(1 - alpha / (2 * k), n - 1) * sd / math.sqrt(n) < target:
            return n
    return None

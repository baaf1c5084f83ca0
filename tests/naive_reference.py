"""A deliberately naive second implementation of some kd.py losses, for cross-checking.

Plain Python loops over examples and classes, float64 via the `math` module, no torch, no
vectorisation, no numerical tricks beyond max-subtraction in the softmax. Inputs are lists of
rows (lists of floats); labels are lists of ints. Every function returns Python floats.
"""

import math


def softmax(row, T=1.0):
    m = max(row)
    e = [math.exp((z - m) / T) for z in row]
    total = sum(e)
    return [x / total for x in e]


def kl(p, q):
    """KL(p||q) with 0 log 0 = 0."""
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def entropy(p):
    return -sum(pi * math.log(pi) for pi in p if pi > 0)


def kd(student, teacher, T):
    """mean_n T^2 KL(softmax(t_n/T) || softmax(s_n/T))."""
    total = 0.0
    for s, t in zip(student, teacher):
        total += T * T * kl(softmax(t, T), softmax(s, T))
    return total / len(student)


def dkd(student, teacher, labels, T):
    """(mean TCKD, mean NCKD), both with T^2; the non-target distribution is renormalised by hand."""
    tckd = nckd = 0.0
    for s, t, y in zip(student, teacher, labels):
        p, q = softmax(t, T), softmax(s, T)
        tckd += T * T * kl([p[y], 1 - p[y]], [q[y], 1 - q[y]])
        p_rest = [p[j] / (1 - p[y]) for j in range(len(p)) if j != y]
        q_rest = [q[j] / (1 - q[y]) for j in range(len(q)) if j != y]
        nckd += T * T * kl(p_rest, q_rest)
    return tckd / len(student), nckd / len(student)


def pearson(u, v, eps=1e-8):
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    num = sum((a - mu) * (b - mv) for a, b in zip(u, v))
    nu = math.sqrt(sum((a - mu) ** 2 for a in u))
    nv = math.sqrt(sum((b - mv) ** 2 for b in v))
    return num / (nu * nv + eps)


def dist(student, teacher, T, beta=1.0, gamma=1.0):
    """T^2 (beta (1 - mean_rows rho) + gamma (1 - mean_cols rho)) on softmax(./T)."""
    ps = [softmax(s, T) for s in student]
    pt = [softmax(t, T) for t in teacher]
    B, K = len(ps), len(ps[0])
    inter = 1 - sum(pearson(ps[n], pt[n]) for n in range(B)) / B
    columns_s = [[ps[n][j] for n in range(B)] for j in range(K)]
    columns_t = [[pt[n][j] for n in range(B)] for j in range(K)]
    intra = 1 - sum(pearson(columns_s[j], columns_t[j]) for j in range(K)) / K
    return T * T * (beta * inter + gamma * intra)


def zscore(row, eps=1e-7):
    """(z - mean) / (unbiased std + eps)."""
    K = len(row)
    mean = sum(row) / K
    std = math.sqrt(sum((z - mean) ** 2 for z in row) / (K - 1))
    return [(z - mean) / (std + eps) for z in row]


def lskd(student, teacher, T):
    """KD at temperature T on z-scored logits (no extra weight)."""
    return kd([zscore(s) for s in student], [zscore(t) for t in teacher], T)


def smoothing_entropy(a, K):
    h = a * math.log(K - 1) if K > 2 else 0.0
    for x in (a, 1 - a):
        if x > 0:
            h -= x * math.log(x)
    return h


def inverse_smoothing_entropy(H, K):
    """Scalar bisection for a in [0, (K-1)/K] with smoothing_entropy(a, K) = H."""
    lo, hi = 0.0, (K - 1) / K
    H = min(max(H, 0.0), math.log(K))
    for _ in range(100):
        mid = (lo + hi) / 2
        if smoothing_entropy(mid, K) < H:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def smoothed_targets(teacher, T, per_instance):
    """Label-smoothed one-hot at each teacher argmax, entropy-matched per row or to the batch mean."""
    probs = [softmax(t, T) for t in teacher]
    entropies = [entropy(p) for p in probs]
    mean_entropy = sum(entropies) / len(entropies)
    targets = []
    for p, h in zip(probs, entropies):
        K = len(p)
        a = inverse_smoothing_entropy(h if per_instance else mean_entropy, K)
        top = max(range(K), key=lambda j: p[j])
        targets.append([1 - a if j == top else a / (K - 1) for j in range(K)])
    return targets

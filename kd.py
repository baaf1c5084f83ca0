"""Knowledge distillation on logits: the study's eight losses, its control signals, teacher statistics
and per-layer gradient clipping. Imports torch and the standard library only: copy it.

    loss = kd.build_loss("dkd", T=4.0)          # any name in kd.METHODS, its paper's defaults otherwise
    value = loss(student_logits, teacher_logits, labels=y, epoch=e)

Conventions: B = batch size, K = classes. Logits are cast to (at least) float32 on entry, so every
loss is safe under bf16 autocast; no loss syncs with the host; every loss is finite (values and
gradients) for T in [0.5, 100], the range build_loss accepts, and logits up to +-1e3. Reductions
are "batchmean": sum over classes, mean over the batch. The equations, defaults and every deviation
from the official code, with measured differences, are in docs/METHODS.md.

Copying one method into another project: take the section "Shared pieces" and the method's own
section (for DKD, "DKD -- Decoupled KD"); nothing else is needed (tests/test_kd.py runs each
method from exactly those two sections).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ==============================================================================================
# Shared pieces


def _f32(x):
    """Cast to at least float32 (bf16/fp16 -> fp32; fp64 stays fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_pair(s, t):
    if s.dim() != 2 or s.shape != t.shape:
        raise ValueError(
            f"expected student and teacher logits of the same shape (B, K), got {tuple(s.shape)} and {tuple(t.shape)}"
        )


def entropy_from_log_probs(log_p):
    """H(p) = -sum_i p_i log p_i in nats, from finite log-probabilities (..., K) -> (...)."""
    return -(log_p.exp() * log_p).sum(-1)


def kl_from_log_probs(log_p, log_q):
    """KL(p||q) = sum_i p_i (log p_i - log q_i), per row (B, K) -> (B,).

    With finite log_p an underflowing p_i = exp(log_p_i) = 0 contributes exactly 0
    (the log_target=True form of F.kl_div)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def masked_log_softmax(z, mask):
    """log_softmax over the classes where mask is False; masked entries are returned as 0.

    masked_fill with the dtype's lowest finite value (not -inf) keeps a fully masked row finite,
    values and gradients; the 0 placeholder in both arguments of kl_from_log_probs then adds
    exp(0) * (0 - 0) = 0 (no -inf - -inf NaN)."""
    z = z.masked_fill(mask, torch.finfo(z.dtype).min)
    return F.log_softmax(z, dim=-1).masked_fill(mask, 0.0)


def binary_log_probs(z, index):
    """Stable log p_c and log(1 - p_c) of softmax(z) for class c = index[n]; (B, K), (B,) -> 2x(B,).

    log p_c = z_c - LSE(z), log(1 - p_c) = LSE_{j != c}(z_j) - LSE(z): no 1 - p cancellation."""
    lse = torch.logsumexp(z, dim=1)
    is_c = F.one_hot(index, z.shape[1]).bool()
    log_p = z.gather(1, index[:, None]).squeeze(1) - lse
    log_rest = torch.logsumexp(z.masked_fill(is_c, float("-inf")), dim=1) - lse
    return log_p, log_rest


def class_indices(labels):
    """Hard labels (B,) as int64; soft labels (B, K) (MixUp/CutMix) -> their argmax."""
    return labels.argmax(1) if labels.is_floating_point() else labels.long()


def cross_entropy(logits, labels):
    """CE on raw (T=1) logits (B, K); hard labels (B,) or soft targets (B, K) (MixUp/CutMix) -> ()."""
    logits = _f32(logits)
    if labels.is_floating_point():
        return -(_f32(labels) * F.log_softmax(logits, dim=1)).sum(1).mean()
    return F.cross_entropy(logits, labels.long())


def warmup_factor(epoch, warmup):
    """DKD/RLD ramp rho(e) = min(e / W, 1), epochs 1-indexed (first epoch: 1/W)."""
    return min(epoch / warmup, 1.0)


def kd_per_sample(student_logits, teacher_logits, T, t2=True):
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per sample, (B, K) -> (B,). T: float or 0-dim tensor."""
    s, t = _f32(student_logits), _f32(teacher_logits)
    _check_pair(s, t)
    kl = kl_from_log_probs(F.log_softmax(t / T, dim=1), F.log_softmax(s / T, dim=1))
    return kl * (T * T) if t2 else kl  # T^2 keeps the soft-target gradient scale independent of T


def kd_loss(student_logits, teacher_logits, T, t2=True):
    """L_KD = mean_n T^2 KL(p^T(t_n) || p^T(s_n)) ("batchmean"); (B, K) x2 -> ().

    Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531.
    Gradient w.r.t. s: T (softmax(s/T) - softmax(t/T)) / B."""
    return kd_per_sample(student_logits, teacher_logits, T, t2).mean()


def check_hparam(method, key, value, spec):
    """`value` of hyperparameter `key` if it has the type and range of spec = (default, low, high), else
    ValueError. The type is the default's: bool, int, float (ints accepted), a tuple of floats, or a
    float that may be None (default None). low/high bound every number (None: unbounded)."""
    default, low, high = spec
    where = f"{method} hyperparameter {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if value is None and default is None:
        return None
    numbers = value if isinstance(default, tuple) else (value,)
    if isinstance(default, tuple) and not (isinstance(value, tuple) and value):
        raise ValueError(f"{where}: expected a non-empty tuple of numbers, got {value!r}")
    for v in numbers:
        integer = isinstance(default, int)
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: expected {'an integer' if integer else 'a finite number'}, got {v!r}")
        if (low is not None and v < low) or (high is not None and v > high):
            bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ValueError(f"{where}: {v!r} is outside its valid range {bounds}")
    if isinstance(default, tuple):
        return tuple(float(v) for v in value)
    return value if isinstance(default, int) else float(value)


# The temperatures every loss accepts: finite losses and gradients at +-1e3 logits (tests/test_kd.py).
T_RANGE = (0.5, 100.0)
WEIGHT = (0.0, None)  # a loss weight: any number >= 0


class Distiller(nn.Module):
    """A method as a module: total = ce_weight * CE(s, labels) [when ce_weight > 0] + kd_term(...).

    Subclasses declare HPARAMS {name: (default, low, high)}; the constructor checks every value and
    keeps them in `self.hparams` (and as attributes). Flags tell a training loop what the method
    needs. `parts` keeps detached components for logging (no host sync)."""

    name = "base"
    HPARAMS = {}
    kd_needs_labels = False  # the KD term itself uses labels (DKD, RLD)
    needs_epoch = False  # warmup (DKD, RLD) or lambda schedule (CTKD)
    needs_two_views = False  # MLKD: logits are (weak, strong) tuples
    batch_coupled = False  # the loss depends on the batch composition: needs B >= 2

    def __init__(self, **hparams):
        super().__init__()
        unknown = sorted(set(hparams) - set(self.HPARAMS))
        if unknown:
            raise TypeError(f"{self.name} got unknown hyperparameter(s) {unknown}; valid: {sorted(self.HPARAMS)}")
        self.hparams = {
            key: check_hparam(self.name, key, hparams.get(key, spec[0]), spec) for key, spec in self.HPARAMS.items()
        }
        for key, value in self.hparams.items():
            setattr(self, key, value)
        self.parts = {}

    @property
    def needs_labels(self):
        return self.kd_needs_labels or self.ce_weight > 0

    def forward(self, student_logits, teacher_logits, labels=None, epoch=None):
        is_pair = [isinstance(x, (tuple, list)) and len(x) == 2 for x in (student_logits, teacher_logits)]
        if self.needs_two_views and not all(is_pair):
            raise ValueError(f"{self.name} needs two views: pass (weak, strong) tuples of logits")
        views = student_logits if self.needs_two_views else (student_logits,)
        if self.needs_labels and labels is None:
            raise ValueError(f"{self.name} needs labels (ce_weight={self.ce_weight})")
        if self.needs_epoch and (epoch is None or epoch < 1):
            raise ValueError(f"{self.name} needs epoch (1-indexed) for its schedule, got {epoch}")
        if self.batch_coupled and views[0].shape[0] < 2:
            raise ValueError(f"{self.name} is batch-coupled and needs a batch of at least 2 examples")
        kd = self.kd_term(student_logits, teacher_logits, labels, epoch)
        self.parts["kd"] = kd.detach()
        if self.ce_weight > 0:
            ce = sum(cross_entropy(v, labels) for v in views)
            self.parts["ce"] = ce.detach()
            return self.ce_weight * ce + kd
        return kd


# ==============================================================================================
# KD -- the study's baseline: teacher matching only (no CE), T swept


class KDLoss(Distiller):
    """kd_weight * T^2 KL(p^T(t) || p^T(s)) [+ ce_weight CE]; default 4.0 here, the study sweeps T."""

    name = "kd"
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (0.0, *WEIGHT), "kd_weight": (1.0, *WEIGHT), "t2": (True, None, None)}

    def kd_term(self, s, t, labels, epoch):
        return self.kd_weight * kd_loss(s, t, self.T, self.t2)


# ==============================================================================================
# DKD -- Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022, arXiv 2203.08679


def dkd_terms(student_logits, teacher_logits, target, T):
    """(TCKD_n, NCKD_n), each (B,), T^2 included; target (B,) int64 ground-truth classes.

    TCKD = T^2 KL([p_y, 1-p_y] || [q_y, 1-q_y]);  NCKD = T^2 KL(p_{j!=y} / (1-p_y) || q_{j!=y} / (1-q_y)).
    Identity: KL(p||q) = TCKD + (1 - p_y) NCKD (at T^2 = 1)."""
    s, t = _f32(student_logits) / T, _f32(teacher_logits) / T
    is_y = F.one_hot(target, s.shape[1]).bool()
    bin_t = torch.stack(binary_log_probs(t, target), 1)
    bin_s = torch.stack(binary_log_probs(s, target), 1)
    tckd = kl_from_log_probs(bin_t, bin_s)
    nckd = kl_from_log_probs(masked_log_softmax(t, is_y), masked_log_softmax(s, is_y))
    return tckd * (T * T), nckd * (T * T)


class DKDLoss(Distiller):
    """ce CE + rho(e) kd_weight mean(alpha TCKD + beta NCKD); mdistiller's CIFAR-100 defaults (beta 8;
    some of its other configs use 2 or 6)."""

    name, kd_needs_labels, needs_epoch = "dkd", True, True
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (1.0, *WEIGHT), "kd_weight": (1.0, *WEIGHT),
               "alpha": (1.0, *WEIGHT), "beta": (8.0, *WEIGHT), "warmup": (20, 1, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        tckd, nckd = dkd_terms(s, t, class_indices(labels), self.T)
        self.parts.update(tckd=tckd.mean().detach(), nckd=nckd.mean().detach())
        rho = warmup_factor(epoch, self.warmup)
        return rho * self.kd_weight * (self.alpha * tckd + self.beta * nckd).mean()


# ==============================================================================================
# EA-KD -- Su et al., "EA-KD: Entropy-based Adaptive Knowledge Distillation", ICCV 2025, arXiv 2311.13621


@torch.no_grad()
def entropy_weights(student_logits, teacher_logits, entropy_T=3.0, h_ub=None):
    """w_n = 1/2 H^T_n (1 + H^S_n / H_ub), entropies of p^{tau'} in nats, detached; (B, K) x2 -> (B,).

    Exact entropies (the official code uses log(p + 1e-10)); h_ub=None means log K (paper), the
    official CIFAR code uses the literal 100.0."""
    s, t = _f32(student_logits), _f32(teacher_logits)
    h_ub = math.log(s.shape[1]) if h_ub is None else h_ub
    h_t = entropy_from_log_probs(F.log_softmax(t / entropy_T, dim=1))
    h_s = entropy_from_log_probs(F.log_softmax(s / entropy_T, dim=1))
    return 0.5 * h_t * (1.0 + h_s / h_ub)


class EAKDLoss(Distiller):
    """ce CE + kd_weight mean(w_n KD_n), w_n unnormalised entropy weights; EA-KD's CIFAR-100 defaults."""

    name = "eakd"
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (0.1, *WEIGHT), "kd_weight": (0.9, *WEIGHT),
               "entropy_T": (3.0, *T_RANGE), "h_ub": (None, 1e-3, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        w = entropy_weights(s, t, self.entropy_T, self.h_ub)
        self.parts["mean_w"] = w.mean()
        return self.kd_weight * (w * kd_per_sample(s, t, self.T)).mean()


# ==============================================================================================
# CTKD -- Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023, arXiv 2211.16231


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -lam (lam a Python float)."""

    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def reverse_gradient(x, lam):
    """Gradient reversal layer: y = x, dL/dx = -lam dL/dy."""
    return _ReverseGradient.apply(x, lam)


def cosine_lambda(epoch, ramp_epochs, lam_min=0.0, lam_max=1.0):
    """lam_e = lam_min + 1/2 (lam_max - lam_min)(1 - cos(pi min(e, N) / N)), epochs 1-indexed."""
    return lam_min + 0.5 * (lam_max - lam_min) * (1 - math.cos(math.pi * min(epoch, ramp_epochs) / ramp_epochs))


class CTKDLoss(Distiller):
    """Global curriculum temperature T(theta) = T_start + T_range sigmoid(theta), learned adversarially
    through a gradient reversal layer scaled by lambda_e (cosine ramp over `ramp_epochs`).
    Add `self.parameters()` (theta) to the optimizer; keep it in fp32."""

    name, needs_epoch = "ctkd", True
    HPARAMS = {"ce_weight": (0.1, *WEIGHT), "kd_weight": (0.9, *WEIGHT), "T_start": (1.0, *T_RANGE),
               "T_range": (20.0, 0.0, 100.0), "theta_init": (1.0, None, None),
               "ramp_epochs": (10, 1, None)}  # fmt: skip

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.theta = nn.Parameter(torch.full((1,), float(self.theta_init)))

    def temperature(self, theta=None):
        """T(theta) = T_start + T_range sigmoid(theta), a 0-dim tensor (differentiable in theta)."""
        theta = self.theta if theta is None else theta
        return (self.T_start + self.T_range * torch.sigmoid(theta.float())).squeeze(0)

    def current_T(self):
        """Detached current temperature, 0-dim tensor (for logging)."""
        return self.temperature().detach()

    def kd_term(self, s, t, labels, epoch):
        T = self.temperature(reverse_gradient(self.theta, cosine_lambda(epoch, self.ramp_epochs)))
        self.parts["T"] = T.detach()
        return self.kd_weight * kd_loss(s, t, T)


# ==============================================================================================
# LS -- Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024, arXiv 2403.01427


def standardize_logits(z, unbiased=True, eps=1e-7):
    """Z(z) = (z - mean(z)) / (std(z) + eps) per row (B, K); unbiased std (K-1) as in the code."""
    z = _f32(z)
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True, unbiased=unbiased) + eps)


class LSKDLoss(Distiller):
    """KD on z-scored logits: kd_weight T^2 KL(p^T(Z(t)) || p^T(Z(s))); LS's CIFAR-100 defaults."""

    name = "lskd"
    HPARAMS = {"T": (2.0, *T_RANGE), "ce_weight": (0.1, *WEIGHT), "kd_weight": (9.0, *WEIGHT),
               "unbiased_std": (True, None, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        z_s, z_t = standardize_logits(s, self.unbiased_std), standardize_logits(t, self.unbiased_std)
        return self.kd_weight * kd_loss(z_s, z_t, self.T)


# ==============================================================================================
# MLKD -- Jin, Wang, Lin, "Multi-Level Logit Distillation", CVPR 2023 (pp. 24276-24285)


def batch_correlation_loss(p_s, p_t):
    """(1/B) ||P_t P_t^T - P_s P_s^T||_F^2 on probabilities (B, K) -> (); Gram in fp32."""
    with torch.autocast(p_s.device.type, enabled=False):
        p_s, p_t = _f32(p_s), _f32(p_t)
        return (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / p_s.shape[0]


def class_correlation_loss(p_s, p_t):
    """(1/K) ||P_t^T P_t - P_s^T P_s||_F^2 on probabilities (B, K) -> (); Gram in fp32."""
    with torch.autocast(p_s.device.type, enabled=False):
        p_s, p_t = _f32(p_s), _f32(p_t)
        return (p_t.T @ p_t - p_s.T @ p_s).pow(2).sum() / p_s.shape[1]


@torch.no_grad()
def mlkd_mask_fractions(teacher_weak_logits):
    """Official code's masks reduce to scalars: f_b = mean_n [c_n <= median c], c_n = max_i p^1_ni,
    and f_c = mean_j [cbar_j <= median cbar], cbar_j = sum_n p^1_nj (teacher weak view, T=1)."""
    p = F.softmax(_f32(teacher_weak_logits), dim=1)
    conf, class_conf = p.max(1).values, p.sum(0)
    f_b = (conf <= torch.quantile(conf, 0.5)).float().mean()
    f_c = (class_conf <= torch.quantile(class_conf, 0.5)).float().mean()
    return f_b, f_c


class MLKDLoss(Distiller):
    """Multi-level KD, faithful to the official code: masks are scalars f_b, f_c; the strong-view
    instance block reads weak logits from its 4th temperature on; class/batch terms use the weak view
    only. Temperatures: (T, *temperatures); CE is applied to both student views."""

    name, needs_two_views, batch_coupled = "mlkd", True, True
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (0.1, *WEIGHT), "kd_weight": (0.9, *WEIGHT),
               "temperatures": ((3.0, 5.0, 2.0, 6.0), *T_RANGE)}  # fmt: skip

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.temps = (self.T,) + tuple(self.temperatures)

    def kd_term(self, s, t, labels, epoch):
        (s_w, s_s), (t_w, t_s) = s, t
        f_b, f_c = mlkd_mask_fractions(t_w)
        inst_weak = sum(kd_loss(s_w, t_w, T) for T in self.temps)
        inst_strong = sum(kd_loss(s_s, t_s, T) for T in self.temps[:3])  # code: (tau_0, 3, 5) strong
        inst_strong = inst_strong + sum(kd_loss(s_w, t_w, T) for T in self.temps[3:])  # (2, 6) weak
        p = [(F.softmax(_f32(s_w) / T, 1), F.softmax(_f32(t_w) / T, 1)) for T in self.temps]
        batch = sum(batch_correlation_loss(ps, pt) for ps, pt in p)
        klass = sum(class_correlation_loss(ps, pt) for ps, pt in p)
        self.parts.update(instance=(f_b * inst_weak + inst_strong).detach(), batch=batch.detach(), klass=klass.detach())
        return self.kd_weight * (f_b * inst_weak + inst_strong + f_c * klass + f_b * batch)


# ==============================================================================================
# RLD -- Sun et al., "Knowledge Distillation with Refined Logits", ICCV 2025, arXiv 2408.07703


def rld_terms(student_logits, teacher_logits, target, T, tau_c):
    """(SCD_n, MCD_n), each (B,), squared temperatures included; target (B,) int64.

    SCD = tau_c^2 KL([max p^tc(t), 1 - max] || [p^tc(s)_y, 1 - p^tc(s)_y]);
    MCD = T^2 KL(p^T(t) || p^T(s)) over classes i with t_i < t_y only (0 if none)."""
    s, t = _f32(student_logits), _f32(teacher_logits)
    bin_t = torch.stack(binary_log_probs(t / tau_c, t.argmax(1)), 1)
    bin_s = torch.stack(binary_log_probs(s / tau_c, target), 1)
    scd = kl_from_log_probs(bin_t, bin_s) * (tau_c * tau_c)
    masked = t >= t.gather(1, target[:, None])  # the truth and every class ranked at or above it
    log_pt, log_ps = masked_log_softmax(t / T, masked), masked_log_softmax(s / T, masked)
    mcd = kl_from_log_probs(log_pt, log_ps) * (T * T)  # an all-masked row gives exactly 0
    return scd, mcd


class RLDLoss(Distiller):
    """ce CE + rho(e) kd_weight mean(alpha SCD + beta MCD); tau_c=None means tau_c = T (the official
    README's command; its config file's default is 1.0)."""

    name, kd_needs_labels, needs_epoch = "rld", True, True
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (1.0, *WEIGHT), "kd_weight": (1.0, *WEIGHT),
               "alpha": (1.0, *WEIGHT), "beta": (8.0, *WEIGHT), "tau_c": (None, *T_RANGE),
               "warmup": (20, 1, None)}  # fmt: skip

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.tau_c = self.T if self.tau_c is None else self.tau_c

    def kd_term(self, s, t, labels, epoch):
        scd, mcd = rld_terms(s, t, class_indices(labels), self.T, self.tau_c)
        self.parts.update(scd=scd.mean().detach(), mcd=mcd.mean().detach())
        rho = warmup_factor(epoch, self.warmup)
        return rho * self.kd_weight * (self.alpha * scd + self.beta * mcd).mean()


# ==============================================================================================
# DIST -- Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
#         NeurIPS 2022, arXiv 2205.10536


def pearson_correlation(a, b, dim, eps=1e-8):
    """rho(u, v) = <u - u_bar, v - v_bar> / (||u - u_bar|| ||v - v_bar|| + eps) along dim."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_relations(student_logits, teacher_logits, T):
    """(L_inter, L_intra), each (), without the T^2 factor: 1 - mean rho over rows (classes of one
    sample) and over columns (one class across the batch) of p^T(s) vs p^T(t)."""
    p_s = F.softmax(_f32(student_logits) / T, dim=1)
    p_t = F.softmax(_f32(teacher_logits) / T, dim=1)
    inter = 1 - pearson_correlation(p_s, p_t, dim=1).mean()
    intra = 1 - pearson_correlation(p_s, p_t, dim=0).mean()
    return inter, intra


class DISTLoss(Distiller):
    """ce CE + kd_weight T^2 (beta L_inter + gamma L_intra); DIST's CIFAR-100 defaults (dist_t4).

    Not 0 for identical logits: the official eps = 1e-8 dominates once p^T is nearly uniform
    (K = 100: 7.4e-5 at T = 4, 0.86 at T = 40, 33.7 at T = 100)."""

    name, batch_coupled = "dist", True
    HPARAMS = {"T": (4.0, *T_RANGE), "ce_weight": (1.0, *WEIGHT), "kd_weight": (2.0, *WEIGHT),
               "beta": (1.0, *WEIGHT), "gamma": (1.0, *WEIGHT)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        inter, intra = dist_relations(s, t, self.T)
        self.parts.update(inter=inter.detach(), intra=intra.detach())
        return self.kd_weight * self.T**2 * (self.beta * inter + self.gamma * intra)


# ==============================================================================================
# Registry: every method by name (the one list the scripts, the grid and the tests use)

METHODS = {cls.name: cls for cls in (KDLoss, DKDLoss, EAKDLoss, CTKDLoss, LSKDLoss, MLKDLoss, RLDLoss, DISTLoss)}


def default_hparams(name):
    """{hyperparameter: default} of method `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown KD method {name!r}; valid: {', '.join(METHODS)}")
    return {key: spec[0] for key, spec in METHODS[name].HPARAMS.items()}


def build_loss(name, **hparams):
    """The loss module of method `name` in METHODS; hyperparameters as keywords, each checked against
    its declared type and range (ValueError), unknown names refused (TypeError)."""
    if name not in METHODS:
        raise ValueError(f"unknown KD method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name](**hparams)


# ==============================================================================================
# Control signals (Frank & Davis, arXiv 2603.02430, Fig. 5): replace the teacher's soft target


def soft_target_loss(student_logits, target_probs, T, t2=True):
    """T^2 * KL(target || softmax(s/T)), batchmean, for any target distribution (B, K) -> ().

    0 log 0 = 0 via xlogy, so exact zeros in the target (one-hot, smoothing) are fine."""
    s, p = _f32(student_logits), _f32(target_probs)
    _check_pair(s, p)
    kl = (torch.xlogy(p, p) - p * F.log_softmax(s / T, dim=1)).sum(1)
    return (kl * (T * T) if t2 else kl).mean()


def smoothing_entropy(a, K):
    """h(a) = -(1-a) log(1-a) - a log(a/(K-1)): entropy of a one-hot smoothed to non-max mass a."""
    return -torch.xlogy(1 - a, 1 - a) - torch.xlogy(a, a / (K - 1))


def inverse_smoothing_entropy(H, K, iters=60):
    """a*(H) in [0, (K-1)/K] with h(a*) = H, by vectorised float64 bisection; H (...) nats -> (...)."""
    H = torch.as_tensor(H, dtype=torch.float64).clamp(0.0, math.log(K))
    lo, hi = torch.zeros_like(H), torch.full_like(H, (K - 1) / K)
    for _ in range(iters):  # h is increasing on [0, (K-1)/K]; width (K-1)/K * 2^-60
        mid = 0.5 * (lo + hi)
        below = smoothing_entropy(mid, K) < H
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    a = torch.where(math.log(K) <= H, (K - 1) / K, 0.5 * (lo + hi))  # exact uniform ...
    return torch.where(H <= 0, 0.0, a)  # ... and exact one-hot


def smoothed_one_hot(index, a, K):
    """Target (B, K): 1 - a at class index[n], a/(K-1) elsewhere; a scalar or (B,)."""
    a = torch.as_tensor(a, dtype=torch.float64, device=index.device).expand(index.shape[0])
    out = (a / (K - 1))[:, None].repeat(1, K)
    return out.scatter_(1, index[:, None], (1 - a)[:, None])


def bottom_randomized(probs, order, k, generator=None):
    """Keep the top-k of each row at their classes; permute the other K-k values uniformly at random
    among the other classes, independently per row. order: (B, K) class indices, descending."""
    tail = order[:, k:]
    device = generator.device if generator is not None else probs.device
    perm = torch.rand(tail.shape, generator=generator, device=device).argsort(1).to(probs.device)
    return probs.clone().scatter_(1, tail, probs.gather(1, tail).gather(1, perm))


SIGNALS = ("teacher", "smooth-global", "smooth-instance", "bottomk")


@torch.no_grad()
def soft_targets(teacher_logits, T, signal="teacher", k=None, generator=None, mean_entropy=None):
    """Target distribution (B, K) built from the teacher's T-softmax, for `soft_target_loss`.

    teacher: p^T(t). smooth-global: one smoothing coefficient whose target entropy equals the batch
    mean of H(p^T(t_n)) (or `mean_entropy`, e.g. a dataset mean). smooth-instance: one per row.
    Smoothed targets are centred at the teacher's argmax. bottomk: see `bottom_randomized`."""
    t = _f32(teacher_logits)
    K = t.shape[1]
    if signal == "teacher":
        return F.softmax(t / T, dim=1)
    if signal in ("smooth-global", "smooth-instance"):
        log_p = F.log_softmax(t.double() / T, dim=1)
        H = entropy_from_log_probs(log_p)
        if signal == "smooth-global":
            H = H.mean() if mean_entropy is None else torch.as_tensor(mean_entropy, dtype=torch.float64)
        a = inverse_smoothing_entropy(H.to(t.device), K)
        return smoothed_one_hot(t.argmax(1), a, K).to(t.dtype)
    if signal == "bottomk":
        if k is None or not 0 <= k < K:
            raise ValueError(f"bottomk needs an integer k with 0 <= k < K={K}, got k={k}")
        order = t.argsort(dim=1, descending=True, stable=True)  # logit order: the same for every T
        return bottom_randomized(F.softmax(t / T, dim=1), order, int(k), generator)
    raise ValueError(f"unknown signal {signal!r}; valid: {', '.join(SIGNALS)}")


# ==============================================================================================
# Teacher statistics (Frank & Davis, Table 1 and Fig. 4)


def relative_entropy(probs):
    """H(p) / log K per row, (B, K) probabilities -> (B,) in [0, 1]."""
    p = _f32(probs)
    return -torch.xlogy(p, p).sum(-1) / math.log(p.shape[-1])


def relative_entropy_without_max(probs):
    """H(p without its argmax, renormalised) / log(K-1), (B, K) -> (B,). Needs K >= 3.

    For near-one-hot rows prefer `relative_entropies(logits, T)` (no 1 - p_max cancellation)."""
    p = _f32(probs)
    if p.shape[-1] < 3:
        raise ValueError("relative_entropy_without_max needs K >= 3 classes")
    rest = p.scatter(-1, p.argmax(-1, keepdim=True), 0.0)
    rest = rest / rest.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    return -torch.xlogy(rest, rest).sum(-1) / math.log(p.shape[-1] - 1)


@torch.no_grad()
def relative_entropies(logits, T):
    """(H_rel, H_rel_without_max), each (B,), of softmax(logits / T), computed from log_softmax with
    the argmax masked out (exact even when p_max rounds to 1). Needs K >= 3."""
    z = _f32(logits) / T
    K = z.shape[1]
    if K < 3:
        raise ValueError("relative_entropies needs K >= 3 classes")
    h_full = entropy_from_log_probs(F.log_softmax(z, dim=1)) / math.log(K)
    is_max = F.one_hot(z.argmax(1), K).bool()
    h_rest = entropy_from_log_probs(masked_log_softmax(z, is_max)) / math.log(K - 1)
    return h_full, h_rest  # masked entries have log p = 0 there, so they add exp(0) * 0 = 0


@torch.no_grad()
def related_mass_share(logits, labels, related, T=1.0):
    """Where the wrong-class probability goes: per row, the share of sum_{j != y} p_j that falls on classes
    related to the true class y, p = softmax(logits / T); (B, K), (B,) int64, (K, K) bool -> (B,).
    Chance (a uniform tail) is (related[y].sum() - related[y, y]) / (K - 1)."""
    p = F.softmax(_f32(logits) / T, dim=1)
    wrong = p.scatter(1, labels[:, None], 0.0)
    related = related[labels].clone()
    related[torch.arange(len(labels)), labels] = False
    return (wrong * related).sum(1) / wrong.sum(1).clamp_min(torch.finfo(p.dtype).tiny)


@torch.no_grad()
def mean_sorted_softmax(logits, T):
    """Batch mean of each row's softmax(logits / T) sorted in descending order, (B, K) -> (K,)."""
    return F.softmax(_f32(logits) / T, dim=1).sort(dim=1, descending=True).values.mean(0)


# ==============================================================================================
# Per-layer gradient clipping (Frank & Davis, Sect. 3.2)


@torch.no_grad()
def per_layer_clip_(parameters, max_norm):
    """Clip each parameter tensor's gradient to L2 norm <= max_norm separately (not one global norm).

    Scale = min(1, max_norm / (||g|| + 1e-6)), as torch.nn.utils.clip_grad_norm_ per tensor; grads
    below the threshold are multiplied by exactly 1. Returns the pre-clip norms, a list of P 0-dim tensors."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return []
    norms = torch._foreach_norm(grads)  # one fused kernel per (device, dtype) group
    scales = torch._foreach_add(norms, 1e-6)
    torch._foreach_reciprocal_(scales)
    torch._foreach_mul_(scales, float(max_norm))
    torch._foreach_clamp_max_(scales, 1.0)
    torch._foreach_mul_(grads, scales)
    return norms

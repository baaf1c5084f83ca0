"""Knowledge distillation on logits: the study's eight losses, its control signals, teacher statistics
and per-layer gradient clipping. Imports torch and the standard library only.

Copy one method: take the section "Math helpers" and the method's own section, each from its "# ===="
rule to the next one (DKD: about 80 lines, 57 not blank; tests/test_kd.py runs each such copy with only
torch importable). A method is one plain function that returns its KD term alone, without cross-entropy;
its docstring says which CE weight its paper adds and which schedule, if any, multiplies it. DKD:

    kd_term = warmup_factor(epoch, 20) * dkd_loss(student_logits, teacher_logits, labels, T=4.0)
    loss = F.cross_entropy(student_logits, labels) + kd_term  # DKD's paper adds CE with weight 1
    loss.backward()

The section "Modules" wraps every method as an nn.Module with checked hyperparameters that adds its
paper's CE by default (what distill.py builds; ce_weight=0.0 leaves the KD term alone):

    loss_fn = kd.build_loss("dkd", T=4.0)  # any name in kd.METHODS, its paper's defaults otherwise
    loss = loss_fn(student_logits, teacher_logits, labels=y, epoch=e)

Conventions: B = batch size, K = classes, epochs count from 1. Logits are cast to (at least) float32
on entry, so every loss is safe under bf16 autocast; no loss syncs with the host; every loss is finite
(values and gradients) for T in [0.5, 100] (T_RANGE, the range build_loss accepts) and logits up to
+-1e3. Reductions are "batchmean": sum over classes, mean over the batch. The equations, defaults and
every deviation from the official code, with measured differences, are in docs/METHODS.md.
"""

# ==============================================================================================
# Math helpers: what the methods' sections use (copy this section, then the method's own)

import math

import torch
import torch.nn.functional as F


def f32(x):
    """x cast to at least float32 (bf16/fp16 -> fp32; fp64 stays fp64): safe under autocast."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def kl_from_log_probs(log_p, log_q):
    """KL(p||q) = sum_i p_i (log p_i - log q_i) along the last dim; an underflowing p_i adds exactly 0."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def entropy_from_log_probs(log_p):
    """H(p) = -sum_i p_i log p_i in nats along the last dim; (..., K) -> (...)."""
    return -(log_p.exp() * log_p).sum(-1)


def masked_log_softmax(z, mask):
    """log_softmax over the entries where mask is False, masked ones 0; finite even if a row is all masked."""
    z = z.masked_fill(mask, torch.finfo(z.dtype).min)  # the lowest finite value, not -inf: no NaN
    return F.log_softmax(z, dim=-1).masked_fill(mask, 0.0)


def binary_log_probs(z, index):
    """(log p_c, log(1 - p_c)) of softmax(z) at c = index[n], by log-sum-exps (no 1 - p); (B, K), (B,) -> 2x (B,)."""
    lse = torch.logsumexp(z, dim=1)
    is_c = F.one_hot(index, z.shape[1]).bool()
    log_p = z.gather(1, index[:, None]).squeeze(1) - lse
    log_rest = torch.logsumexp(z.masked_fill(is_c, float("-inf")), dim=1) - lse
    return log_p, log_rest


def class_indices(labels):
    """Hard labels (B,) as int64; soft labels (B, K) (MixUp/CutMix) -> their argmax."""
    return labels.argmax(1) if labels.is_floating_point() else labels.long()


def kd_per_sample(student_logits, teacher_logits, T, t2=True):
    """T^2 KL(softmax(t/T) || softmax(s/T)) per sample, (B, K) x2 -> (B,); T a float or a 0-dim tensor."""
    s, t = f32(student_logits), f32(teacher_logits)
    kl = kl_from_log_probs(F.log_softmax(t / T, dim=1), F.log_softmax(s / T, dim=1))
    return kl * (T * T) if t2 else kl  # T^2 keeps the gradient's scale independent of T


def warmup_factor(epoch, warmup=20):
    """The DKD/RLD ramp rho(e) = min(e / W, 1), epochs counted from 1 (first epoch: 1/W)."""
    return min(epoch / warmup, 1.0)


# ==============================================================================================
# KD -- Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531
#
#   L_KD = mean_n T^2 KL(p^T(t_n) || p^T(s_n)),   p^T(z) = softmax(z / T)
#   dL_KD / ds_n = T (p^T(s_n) - p^T(t_n)) / B


def kd_loss(student_logits, teacher_logits, T, t2=True):
    """L_KD, (B, K) x2 -> (); T a float or a 0-dim tensor (t2=False drops the T^2).

    KD term only: no cross-entropy; the study's KD adds none (Hinton et al. add CE with a small weight)."""
    return kd_per_sample(student_logits, teacher_logits, T, t2).mean()


# ==============================================================================================
# DKD -- Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022, arXiv 2203.08679
#
#   TCKD_n = T^2 KL([p_y, 1 - p_y] || [q_y, 1 - q_y])             p = p^T(t_n), q = p^T(s_n), y the label
#   NCKD_n = T^2 KL(p_{j!=y} / (1 - p_y) || q_{j!=y} / (1 - q_y))
#   L_DKD  = mean_n (alpha TCKD_n + beta NCKD_n),  times rho(e) = min(e / 20, 1) in training
#   (KL(p||q) = TCKD + (1 - p_y) NCKD without the T^2: plain KD mutes NCKD where the teacher is sure)


def dkd_terms(student_logits, teacher_logits, target, T):
    """(TCKD_n, NCKD_n), each (B,), T^2 included; (B, K) x2, target (B,) int64 ground-truth classes."""
    s, t = f32(student_logits) / T, f32(teacher_logits) / T
    is_y = F.one_hot(target, s.shape[1]).bool()
    bin_t = torch.stack(binary_log_probs(t, target), 1)
    bin_s = torch.stack(binary_log_probs(s, target), 1)
    tckd = kl_from_log_probs(bin_t, bin_s)
    nckd = kl_from_log_probs(masked_log_softmax(t, is_y), masked_log_softmax(s, is_y))
    return tckd * (T * T), nckd * (T * T)


def dkd_loss(student_logits, teacher_logits, labels, T, alpha=1.0, beta=8.0):
    """L_DKD, (B, K) x2, labels (B,) or soft (B, K) (their argmax) -> (); mdistiller's CIFAR-100 alpha, beta.

    KD term only: no cross-entropy; DKD adds CE with weight 1 and multiplies this by warmup_factor(epoch, 20)."""
    tckd, nckd = dkd_terms(student_logits, teacher_logits, class_indices(labels), T)
    return (alpha * tckd + beta * nckd).mean()


# ==============================================================================================
# EA-KD -- Su et al., "EA-KD: Entropy-based Adaptive Knowledge Distillation", ICCV 2025, arXiv 2311.13621
#
#   w_n   = 1/2 H(p^tau'(t_n)) (1 + H(p^tau'(s_n)) / H_ub)      entropies in nats, detached, not normalised
#   L_EA  = mean_n w_n T^2 KL(p^T(t_n) || p^T(s_n))             tau' = entropy_T, H_ub = log K


@torch.no_grad()
def entropy_weights(student_logits, teacher_logits, entropy_T=3.0, h_ub=None):
    """w_n, detached; (B, K) x2 -> (B,). Exact entropies (the official code: log(p + 1e-10)); h_ub=None is
    log K (the paper), the official CIFAR code uses the literal 100.0."""
    s, t = f32(student_logits), f32(teacher_logits)
    h_ub = math.log(s.shape[1]) if h_ub is None else h_ub
    h_t = entropy_from_log_probs(F.log_softmax(t / entropy_T, dim=1))
    h_s = entropy_from_log_probs(F.log_softmax(s / entropy_T, dim=1))
    return 0.5 * h_t * (1.0 + h_s / h_ub)


def eakd_loss(student_logits, teacher_logits, T, entropy_T=3.0, h_ub=None):
    """L_EA, (B, K) x2 -> ().

    KD term only: no cross-entropy; EA-KD's CIFAR-100 recipe adds CE with weight 0.1 and weights this term 0.9."""
    w = entropy_weights(student_logits, teacher_logits, entropy_T, h_ub)
    return (w * kd_per_sample(student_logits, teacher_logits, T)).mean()


# ==============================================================================================
# CTKD -- Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023, arXiv 2211.16231
#
#   T(theta) = T_start + T_range sigmoid(GRL(theta, lam_e))    GRL: identity forward, gradient x (-lam_e) back
#   lam_e    = 1/2 (1 - cos(pi min(e, N) / N))                 cosine ramp over N = 10 epochs
#   L_CTKD   = mean_n T^2 KL(p^T(t_n) || p^T(s_n))              the student descends it, theta climbs it
#   In a loop: T = ctkd_temperature(reverse_gradient(theta, cosine_lambda(epoch, 10))), with theta a (1,)
#   parameter (fp32, init 1.0) in the optimizer; then ctkd_loss(student_logits, teacher_logits, T).


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


def cosine_lambda(epoch, ramp_epochs=10, lam_min=0.0, lam_max=1.0):
    """lam_e = lam_min + 1/2 (lam_max - lam_min)(1 - cos(pi min(e, N) / N)), epochs from 1; a float."""
    return lam_min + 0.5 * (lam_max - lam_min) * (1 - math.cos(math.pi * min(epoch, ramp_epochs) / ramp_epochs))


def ctkd_temperature(theta, T_start=1.0, T_range=20.0):
    """T(theta) = T_start + T_range sigmoid(theta), theta (1,) -> a 0-dim tensor, differentiable in theta."""
    return (T_start + T_range * torch.sigmoid(theta.float())).squeeze(0)


def ctkd_loss(student_logits, teacher_logits, T):
    """L_CTKD at the learned temperature T (a 0-dim tensor), (B, K) x2 -> ().

    KD term only: no cross-entropy; CTKD's CIFAR-100 script adds CE with weight 0.1 and weights this term 0.9."""
    return kd_per_sample(student_logits, teacher_logits, T).mean()


# ==============================================================================================
# LS -- Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024, arXiv 2403.01427
#
#   Z(z)  = (z - mean(z)) / (std(z) + 1e-7)                     per row; unbiased std as in the official code
#   L_LS  = mean_n T^2 KL(p^T(Z(t_n)) || p^T(Z(s_n)))          T = the "base temperature"


def standardize_logits(z, unbiased=True, eps=1e-7):
    """Z(z) per row, (B, K) -> (B, K); unbiased=False is the paper's population std."""
    z = f32(z)
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True, unbiased=unbiased) + eps)


def lskd_loss(student_logits, teacher_logits, T, unbiased_std=True):
    """L_LS, (B, K) x2 -> ().

    KD term only: no cross-entropy; LS's CIFAR-100 recipe adds CE with weight 0.1 and weights this term 9 (T = 2)."""
    z_s, z_t = standardize_logits(student_logits, unbiased_std), standardize_logits(teacher_logits, unbiased_std)
    return kd_per_sample(z_s, z_t, T).mean()


# ==============================================================================================
# MLKD -- Jin, Wang, Lin, "Multi-Level Logit Distillation", CVPR 2023 (pp. 24276-24285)
#
#   temps = (T, *temperatures); views w (weak) and s (strong); P = p^tau(weak logits), (B, K)
#   inst(v; tau) = tau^2 mean_n KL(p^tau(t_v,n) || p^tau(s_v,n))
#   batch(tau)   = ||P_t P_t^T - P_s P_s^T||_F^2 / B,   class(tau) = ||P_t^T P_t - P_s^T P_s||_F^2 / K
#   L_ML = f_b sum_tau inst(w) + sum_{temps[:3]} inst(s) + sum_{temps[3:]} inst(w) + sum_tau (f_c class + f_b batch)
#   As the official code: the masks reduce to scalar fractions f_b, f_c; the strong-view instance terms read
#   the weak logits from the 4th temperature on; the batch and class terms use the weak view only.


def batch_correlation_loss(p_s, p_t):
    """(1/B) ||P_t P_t^T - P_s P_s^T||_F^2 on probabilities (B, K) -> (); Gram in fp32."""
    with torch.autocast(p_s.device.type, enabled=False):
        p_s, p_t = f32(p_s), f32(p_t)
        return (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / p_s.shape[0]


def class_correlation_loss(p_s, p_t):
    """(1/K) ||P_t^T P_t - P_s^T P_s||_F^2 on probabilities (B, K) -> (); Gram in fp32."""
    with torch.autocast(p_s.device.type, enabled=False):
        p_s, p_t = f32(p_s), f32(p_t)
        return (p_t.T @ p_t - p_s.T @ p_s).pow(2).sum() / p_s.shape[1]


@torch.no_grad()
def mlkd_mask_fractions(teacher_weak_logits):
    """(f_b, f_c): f_b = mean_n [c_n <= median c], c_n = max_i p^1_ni, and f_c = mean_j [cbar_j <= median cbar],
    cbar_j = sum_n p^1_nj, from the teacher's weak view at T = 1; 0-dim tensors."""
    p = F.softmax(f32(teacher_weak_logits), dim=1)
    conf, class_conf = p.max(1).values, p.sum(0)
    f_b = (conf <= torch.quantile(conf, 0.5)).float().mean()
    f_c = (class_conf <= torch.quantile(class_conf, 0.5)).float().mean()
    return f_b, f_c


def mlkd_loss(student_views, teacher_views, T=4.0, temperatures=(3.0, 5.0, 2.0, 6.0)):
    """L_ML; views are (weak, strong) pairs of (B, K) logits, B >= 2 -> ().

    KD term only: no cross-entropy; MLKD adds CE with weight 0.1 on each student view and weights this term 0.9."""
    (s_w, s_s), (t_w, t_s) = student_views, teacher_views
    temps = (T, *temperatures)
    f_b, f_c = mlkd_mask_fractions(t_w)
    inst_weak = sum(kd_per_sample(s_w, t_w, tau).mean() for tau in temps)
    inst_strong = sum(kd_per_sample(s_s, t_s, tau).mean() for tau in temps[:3])  # code: (tau_0, 3, 5) strong
    inst_strong = inst_strong + sum(kd_per_sample(s_w, t_w, tau).mean() for tau in temps[3:])  # (2, 6) weak
    p = [(F.softmax(f32(s_w) / tau, 1), F.softmax(f32(t_w) / tau, 1)) for tau in temps]
    batch = sum(batch_correlation_loss(ps, pt) for ps, pt in p)
    klass = sum(class_correlation_loss(ps, pt) for ps, pt in p)
    return f_b * inst_weak + inst_strong + f_c * klass + f_b * batch


# ==============================================================================================
# RLD -- Sun et al., "Knowledge Distillation with Refined Logits", ICCV 2025, arXiv 2408.07703
#
#   SCD_n = tau_c^2 KL([m_n, 1 - m_n] || [p^tau_c(s_n)_y, 1 - p^tau_c(s_n)_y]),   m_n = max_i p^tau_c(t_n)_i
#   MCD_n = T^2 KL(p^T over i not in M_n (t_n) || the same for s_n),   M_n = {i : t_ni >= t_ny}
#   L_RLD = mean_n (alpha SCD_n + beta MCD_n),  times rho(e) = min(e / 20, 1) in training


def rld_terms(student_logits, teacher_logits, target, T, tau_c):
    """(SCD_n, MCD_n), each (B,), squared temperatures included; (B, K) x2, target (B,) int64.
    MCD is exactly 0 where the mask holds every class (the truth is the teacher's lowest logit)."""
    s, t = f32(student_logits), f32(teacher_logits)
    bin_t = torch.stack(binary_log_probs(t / tau_c, t.argmax(1)), 1)
    bin_s = torch.stack(binary_log_probs(s / tau_c, target), 1)
    scd = kl_from_log_probs(bin_t, bin_s) * (tau_c * tau_c)
    masked = t >= t.gather(1, target[:, None])  # the truth and every class ranked at or above it
    log_pt, log_ps = masked_log_softmax(t / T, masked), masked_log_softmax(s / T, masked)
    mcd = kl_from_log_probs(log_pt, log_ps) * (T * T)
    return scd, mcd


def rld_loss(student_logits, teacher_logits, labels, T, alpha=1.0, beta=8.0, tau_c=None):
    """L_RLD, (B, K) x2, labels (B,) or soft (B, K) (their argmax) -> (); tau_c=None means tau_c = T (the
    official README's command; its config file's default is 1.0).

    KD term only: no cross-entropy; RLD adds CE with weight 1 and multiplies this by warmup_factor(epoch, 20)."""
    tau_c = T if tau_c is None else tau_c
    scd, mcd = rld_terms(student_logits, teacher_logits, class_indices(labels), T, tau_c)
    return (alpha * scd + beta * mcd).mean()


# ==============================================================================================
# DIST -- Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
#         NeurIPS 2022, arXiv 2205.10536
#
#   rho(u, v) = <u - u_bar, v - v_bar> / (||u - u_bar|| ||v - v_bar|| + 1e-8)      Pearson correlation
#   L_inter = 1 - mean_n rho(P_s[n, :], P_t[n, :]),   L_intra = 1 - mean_j rho(P_s[:, j], P_t[:, j])
#   L_DIST  = T^2 (beta L_inter + gamma L_intra),     P = p^T(logits), (B, K)


def pearson_correlation(a, b, dim, eps=1e-8):
    """rho(u, v) along dim: (B, K) x2 -> (K,) for dim=0, (B,) for dim=1."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_relations(student_logits, teacher_logits, T):
    """(L_inter, L_intra), each (), without the T^2: rows (one sample's classes) and columns (one class
    across the batch) of p^T(s) vs p^T(t); (B, K) x2, B >= 2."""
    p_s = F.softmax(f32(student_logits) / T, dim=1)
    p_t = F.softmax(f32(teacher_logits) / T, dim=1)
    inter = 1 - pearson_correlation(p_s, p_t, dim=1).mean()
    intra = 1 - pearson_correlation(p_s, p_t, dim=0).mean()
    return inter, intra


def dist_loss(student_logits, teacher_logits, T, beta=1.0, gamma=1.0, weight=1.0):
    """weight * L_DIST, (B, K) x2 -> (); weight (the KD weight) times T^2 is taken first, as one float.
    Not 0 for identical logits: eps dominates once p^T is nearly uniform (K = 100, T = 100: 33.7).

    KD term only: no cross-entropy; DIST's CIFAR-100 recipe adds CE with weight 1 and uses weight=2."""
    inter, intra = dist_relations(student_logits, teacher_logits, T)
    return weight * T**2 * (beta * inter + gamma * intra)


# ==============================================================================================
# Modules: each method as an nn.Module with declared, checked hyperparameters; it adds its paper's CE


# The temperatures every loss accepts: finite losses and gradients at +-1e3 logits (tests/test_kd.py).
T_RANGE = (0.5, 100.0)
WEIGHT = (0.0, None)  # a loss weight: any number >= 0


def check_hparam(method, key, value, spec):
    """`value` if it has the type of spec = (default, low, high)'s default (bool, int, float, a tuple of floats;
    None where the default is None) and every number lies in [low, high] (None: unbounded), else ValueError."""
    default, low, high = spec
    where = f"{method} hyperparameter {key}"
    if isinstance(default, bool) != isinstance(value, bool):
        raise ValueError(
            f"{where}: expected {'true or false' if isinstance(default, bool) else 'a number'}, got {value!r}"
        )
    if isinstance(default, bool) or (value is None and default is None):
        return value
    if isinstance(default, tuple):
        if not (isinstance(value, tuple) and value):
            raise ValueError(f"{where}: expected a non-empty tuple of numbers, got {value!r}")
        return tuple(check_hparam(method, key, v, (1.0, low, high)) for v in value)
    integer = isinstance(default, int)
    if not isinstance(value, int if integer else (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected {'an integer' if integer else 'a finite number'}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{where}: {value!r} is outside its valid range {bounds}")
    return value if integer else float(value)


def cross_entropy(logits, labels):
    """CE on raw (T = 1) logits (B, K) against hard labels (B,) or soft targets (B, K) -> (); fp32 or above."""
    logits = f32(logits)
    if labels.is_floating_point():
        return -(f32(labels) * F.log_softmax(logits, dim=1)).sum(1).mean()
    return F.cross_entropy(logits, labels.long())


class Distiller(torch.nn.Module):
    """A method as a module: loss = ce_weight * CE(s, labels) [when ce_weight > 0] + kd_term(...).

    Subclasses declare HPARAMS {name: (default, low, high)}, ce_weight first; the constructor checks every
    value and keeps them in `self.hparams` (and as attributes). Flags tell a training loop what the method
    needs. `parts` keeps the detached "kd" and "ce" of the last call (CTKD: also "T") for logging."""

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
        student_views = self.check_inputs(student_logits, teacher_logits, labels, epoch)
        kd = self.kd_term(student_logits, teacher_logits, labels, epoch)
        self.parts["kd"] = kd.detach()
        if self.ce_weight > 0:
            ce = sum(cross_entropy(v, labels) for v in student_views)
            self.parts["ce"] = ce.detach()
            return self.ce_weight * ce + kd
        return kd

    def check_inputs(self, student_logits, teacher_logits, labels, epoch):
        """The student's views (one, or MLKD's two) if the call gives what the method needs, else ValueError."""
        pairs = [(student_logits, teacher_logits)]
        if self.needs_two_views:
            if not all(isinstance(x, (tuple, list)) and len(x) == 2 for x in (student_logits, teacher_logits)):
                raise ValueError(f"{self.name} needs two views: pass (weak, strong) tuples of (B, K) logits for both")
            pairs = list(zip(student_logits, teacher_logits))
        for s, t in pairs:
            shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in (s, t)]
            if not (isinstance(s, torch.Tensor) and s.dim() == 2 and shapes[0] == shapes[1]):
                raise ValueError(f"{self.name}: pass student and teacher logits of the same shape (B, K), got {shapes}")
        if self.needs_labels and labels is None:
            why = "for its KD term" if self.kd_needs_labels else f"for its CE, ce_weight={self.ce_weight}"
            raise ValueError(f"{self.name} needs labels {why}: pass labels= (B,) class indices or (B, K) soft labels")
        if self.needs_epoch and (epoch is None or epoch < 1):
            raise ValueError(f"{self.name} needs epoch for its schedule: pass epoch=, counted from 1 (got {epoch})")
        if self.batch_coupled and pairs[0][0].shape[0] < 2:
            raise ValueError(f"{self.name} is batch-coupled and needs a batch of at least 2 examples: pass B >= 2")
        return [s for s, _ in pairs]


class KDLoss(Distiller):
    """No CE by default + kd_weight * kd_loss: the study's baseline; T is what the study sweeps."""

    name = "kd"
    HPARAMS = {"ce_weight": (0.0, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (1.0, *WEIGHT),
               "t2": (True, None, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        return self.kd_weight * kd_loss(s, t, self.T, self.t2)


class DKDLoss(Distiller):
    """CE 1 + warmup_factor(e, warmup) * kd_weight * dkd_loss; mdistiller's CIFAR-100 defaults (beta 8;
    some of its other configs use 2 or 6)."""

    name, kd_needs_labels, needs_epoch = "dkd", True, True
    HPARAMS = {"ce_weight": (1.0, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (1.0, *WEIGHT),
               "alpha": (1.0, *WEIGHT), "beta": (8.0, *WEIGHT), "warmup": (20, 1, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        rho = warmup_factor(epoch, self.warmup)
        return rho * self.kd_weight * dkd_loss(s, t, labels, self.T, self.alpha, self.beta)


class EAKDLoss(Distiller):
    """CE 0.1 + kd_weight (0.9) * eakd_loss; EA-KD's CIFAR-100 defaults, h_ub=None meaning log K."""

    name = "eakd"
    HPARAMS = {"ce_weight": (0.1, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (0.9, *WEIGHT),
               "entropy_T": (3.0, *T_RANGE), "h_ub": (None, 1e-3, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        return self.kd_weight * eakd_loss(s, t, self.T, self.entropy_T, self.h_ub)


class CTKDLoss(Distiller):
    """CE 0.1 + kd_weight (0.9) * ctkd_loss at the learned T(theta), reversed gradient scaled by
    cosine_lambda(e, ramp_epochs). Add `self.parameters()` (theta) to the optimizer; keep it in fp32."""

    name, needs_epoch = "ctkd", True
    HPARAMS = {"ce_weight": (0.1, *WEIGHT), "kd_weight": (0.9, *WEIGHT), "T_start": (1.0, *T_RANGE),
               "T_range": (20.0, 0.0, 100.0), "theta_init": (1.0, None, None),
               "ramp_epochs": (10, 1, None)}  # fmt: skip

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.theta = torch.nn.Parameter(torch.full((1,), float(self.theta_init)))

    def temperature(self, theta=None):
        """T(theta), a 0-dim tensor differentiable in theta (default: self.theta, no gradient reversal)."""
        return ctkd_temperature(self.theta if theta is None else theta, self.T_start, self.T_range)

    def current_T(self):
        """Detached current temperature, 0-dim tensor (for logging)."""
        return self.temperature().detach()

    def kd_term(self, s, t, labels, epoch):
        T = self.temperature(reverse_gradient(self.theta, cosine_lambda(epoch, self.ramp_epochs)))
        self.parts["T"] = T.detach()
        return self.kd_weight * ctkd_loss(s, t, T)


class LSKDLoss(Distiller):
    """CE 0.1 + kd_weight (9) * lskd_loss; LS's CIFAR-100 defaults (base temperature 2)."""

    name = "lskd"
    HPARAMS = {"ce_weight": (0.1, *WEIGHT), "T": (2.0, *T_RANGE), "kd_weight": (9.0, *WEIGHT),
               "unbiased_std": (True, None, None)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        return self.kd_weight * lskd_loss(s, t, self.T, self.unbiased_std)


class MLKDLoss(Distiller):
    """CE 0.1 on each student view + kd_weight (0.9) * mlkd_loss; logits are (weak, strong) tuples;
    temperatures (T, *temperatures), the official CIFAR-100 defaults."""

    name, needs_two_views, batch_coupled = "mlkd", True, True
    HPARAMS = {"ce_weight": (0.1, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (0.9, *WEIGHT),
               "temperatures": ((3.0, 5.0, 2.0, 6.0), *T_RANGE)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        return self.kd_weight * mlkd_loss(s, t, self.T, self.temperatures)


class RLDLoss(Distiller):
    """CE 1 + warmup_factor(e, warmup) * kd_weight * rld_loss; zju-SWJ/RLD's defaults, tau_c=None meaning T."""

    name, kd_needs_labels, needs_epoch = "rld", True, True
    HPARAMS = {"ce_weight": (1.0, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (1.0, *WEIGHT),
               "alpha": (1.0, *WEIGHT), "beta": (8.0, *WEIGHT), "tau_c": (None, *T_RANGE),
               "warmup": (20, 1, None)}  # fmt: skip

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.tau_c = self.T if self.tau_c is None else self.tau_c

    def kd_term(self, s, t, labels, epoch):
        rho = warmup_factor(epoch, self.warmup)
        return rho * self.kd_weight * rld_loss(s, t, labels, self.T, self.alpha, self.beta, self.tau_c)


class DISTLoss(Distiller):
    """CE 1 + dist_loss with weight=kd_weight (2); DIST's CIFAR-100 defaults (dist_t4)."""

    name, batch_coupled = "dist", True
    HPARAMS = {"ce_weight": (1.0, *WEIGHT), "T": (4.0, *T_RANGE), "kd_weight": (2.0, *WEIGHT),
               "beta": (1.0, *WEIGHT), "gamma": (1.0, *WEIGHT)}  # fmt: skip

    def kd_term(self, s, t, labels, epoch):
        return dist_loss(s, t, self.T, self.beta, self.gamma, weight=self.kd_weight)


# Every method by name: the one list the scripts, the grid and the tests use
METHODS = {cls.name: cls for cls in (KDLoss, DKDLoss, EAKDLoss, CTKDLoss, LSKDLoss, MLKDLoss, RLDLoss, DISTLoss)}


def build_loss(name, **hparams):
    """The module of method `name` in METHODS: loss(student_logits, teacher_logits, labels=None, epoch=None)
    = ce_weight * CE + the method's KD term. Hyperparameters as keywords, each checked against its declared
    type and range (ValueError); unknown names are refused (TypeError).

    CE added by default (ce_weight): kd 0 (none), dkd 1, eakd 0.1, ctkd 0.1, lskd 0.1, mlkd 0.1 per view,
    rld 1, dist 1. Pass ce_weight=0.0 for the KD term alone (a loop that adds CE itself)."""
    if name not in METHODS:
        raise ValueError(f"unknown KD method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name](**hparams)


# ==============================================================================================
# Control signals (Frank & Davis, arXiv 2603.02430, Fig. 5): replace the teacher's soft target


def soft_target_loss(student_logits, target_probs, T, t2=True):
    """T^2 * KL(target || softmax(s/T)), batchmean, for any target distribution (B, K) -> ().

    0 log 0 = 0 via xlogy, so exact zeros in the target (one-hot, smoothing) are fine."""
    s, p = f32(student_logits), f32(target_probs)
    if s.dim() != 2 or s.shape != p.shape:
        raise ValueError(f"pass logits and target probabilities of the same shape (B, K), got {s.shape}, {p.shape}")
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
    t = f32(teacher_logits)
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


@torch.no_grad()
def relative_entropies(logits, T):
    """(H_rel, H_rel_without_max), each (B,), of softmax(logits / T), computed from log_softmax with
    the argmax masked out (exact even when p_max rounds to 1). Needs K >= 3."""
    z = f32(logits) / T
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
    p = F.softmax(f32(logits) / T, dim=1)
    wrong = p.scatter(1, labels[:, None], 0.0)
    related = related[labels].clone()
    related[torch.arange(len(labels)), labels] = False
    return (wrong * related).sum(1) / wrong.sum(1).clamp_min(torch.finfo(p.dtype).tiny)


@torch.no_grad()
def mean_sorted_softmax(logits, T):
    """Batch mean of each row's softmax(logits / T) sorted in descending order, (B, K) -> (K,)."""
    return F.softmax(f32(logits) / T, dim=1).sort(dim=1, descending=True).values.mean(0)


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

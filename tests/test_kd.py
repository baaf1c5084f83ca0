"""Tests for kd.py. They double as usage examples.

Hand-computed values come from docs/METHODS.md (float64); kd.py runs in float32 here, so they are
compared at ~1e-5 relative. Section numbers refer to docs/METHODS.md.
"""

import ast
import builtins
import math
import pathlib
import re
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import kd
import naive_reference as ref
from helpers import run_script

ROOT = pathlib.Path(__file__).resolve().parents[1]

LN = math.log
TOY_A_T = torch.tensor([[0.0, LN(3)]])  # teacher p(T=1) = [0.25, 0.75]
TOY_A_S = torch.zeros(1, 2)
TOY_B_T = torch.tensor([[LN(6), LN(3), 0.0]])  # teacher p(T=1) = [0.6, 0.3, 0.1]
TOY_B_S = torch.zeros(1, 3)
METHODS = list(kd.METHODS)


def close(x, expected, rel=1e-5, atol=1e-6):
    """x (float32 from kd.py) matches a float64 hand-computed value to ~1e-5 relative."""
    x, expected = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    return torch.allclose(x, expected, rtol=rel, atol=atol)


def label(y):
    return torch.tensor([y])


def random_logits(seed, B=4, K=5, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s, t = (torch.randn(B, K, generator=g) * scale for _ in range(2))
    return s, t, torch.randint(0, K, (B,), generator=g)


def call(loss, s, t, labels, epoch=100):
    """Call any built loss with what it needs (two views for MLKD)."""
    if loss.needs_two_views:
        s, t = (s, s.flip(0)), (t, t.flip(0))  # some "strong view"
    return loss(s, t, labels=labels, epoch=epoch)


# ---------------------------------------------------------------------------------------------
# KD (§1.6) and the generic properties of kd_loss


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 40.0])
def test_kd_identical_logits_give_zero_loss_and_gradient(T):
    s = torch.randn(3, 7, requires_grad=True)
    loss = kd.kd_loss(s, s.detach(), T)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert s.grad.abs().max() < 1e-6


def test_kd_toy_values():
    assert close(kd.kd_loss(TOY_A_S, TOY_A_T, 1.0), 0.130812)
    # T^2 placement: t = [0, 2 ln 3] at T=2 gives the same teacher distribution, loss x 4
    assert close(kd.kd_loss(TOY_A_S, torch.tensor([[0.0, 2 * LN(3)]]), 2.0), 4 * 0.130812)
    assert close(kd.kd_loss(TOY_A_S, TOY_A_T, 1.0, t2=False), 0.130812)


def test_kd_toy_b_value_and_gradient():
    s = TOY_B_S.clone().requires_grad_()
    loss = kd.kd_loss(s, TOY_B_T, 4.0)
    loss.backward()
    assert close(loss, 0.259906)
    assert close(s.grad, [[-0.279674, -0.023039, 0.302713]])


def test_kd_gradient_is_T_times_probability_difference_over_B():
    s, t, _ = random_logits(0, B=6, K=10)
    s.requires_grad_()
    T = 3.0
    kd.kd_loss(s, t, T).backward()
    expected = T * (F.softmax(s.detach() / T, 1) - F.softmax(t / T, 1)) / s.shape[0]
    assert torch.allclose(s.grad, expected, atol=1e-7)


@pytest.mark.filterwarnings("ignore:reduction. 'mean'")
def test_kd_reduction_is_batchmean_not_mean():
    assert close(kd.kd_loss(TOY_A_S.repeat(2, 1), TOY_A_T.repeat(2, 1), 1.0), 0.130812)
    s, t, _ = random_logits(1, B=4, K=10)
    T = 2.0
    per_sample_sum = (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(s / T, 1))).sum(1)
    assert torch.allclose(kd.kd_loss(s, t, T), T * T * per_sample_sum.mean())
    # reduction='mean' divides by B*K: off by a factor K
    torch_mean = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="mean", log_target=True)
    assert torch.allclose(kd.kd_loss(s, t, T, t2=False), 10 * torch_mean)


def test_kd_shift_invariance():
    s, t, _ = random_logits(2)
    base = kd.kd_loss(s, t, 2.0)
    shift = torch.randn(s.shape[0], 1) * 10
    assert torch.allclose(kd.kd_loss(s + shift, t, 2.0), base, atol=1e-6)
    assert torch.allclose(kd.kd_loss(s, t - shift, 2.0), base, atol=1e-6)


def test_kd_underflowing_teacher_probability_contributes_exactly_zero():
    t = torch.tensor([[0.0, -1000.0]])  # exp(-1000) underflows to 0 in fp32
    s = torch.tensor([[0.5, -0.5]], requires_grad=True)
    loss = kd.kd_loss(s, t, 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert close(loss, -F.log_softmax(s.detach(), 1)[0, 0])  # only the p=1 class contributes


def test_kd_accepts_a_learnable_tensor_temperature():
    T = torch.tensor(4.0, requires_grad=True)
    loss = kd.kd_loss(TOY_B_S, TOY_B_T, T)
    loss.backward()
    assert close(loss, 0.259906) and torch.isfinite(T.grad)


def test_soft_target_loss_matches_kd_and_handles_exact_zeros():
    s, t, y = random_logits(3)
    target = kd.soft_targets(t, 2.0, "teacher")
    assert torch.allclose(kd.soft_target_loss(s, target, 2.0), kd.kd_loss(s, t, 2.0), atol=1e-6)
    one_hot = F.one_hot(y, s.shape[1]).float()  # 0 log 0 = 0
    assert torch.allclose(kd.soft_target_loss(s, one_hot, 1.0), F.cross_entropy(s, y))


# ---------------------------------------------------------------------------------------------
# DKD (§2.5)


@pytest.mark.parametrize(
    "y, T, tckd, nckd", [(0, 1.0, 0.148342, 0.130812), (1, 1.0, 0.002545, 0.283031), (0, 4.0, 0.170717, 0.149458)]
)
def test_dkd_toy_values_and_decomposition_identity(y, T, tckd, nckd):
    got_tckd, got_nckd = kd.dkd_terms(TOY_B_S, TOY_B_T, label(y), T)
    assert close(got_tckd, [tckd]) and close(got_nckd, [nckd])
    p_y = F.softmax(TOY_B_T / T, 1)[0, y]
    assert close(got_tckd + (1 - p_y) * got_nckd, kd.kd_loss(TOY_B_S, TOY_B_T, T))


@pytest.mark.parametrize("y, expected", [(0, 1.194838), (1, 2.266792)])
def test_dkd_module_alpha_1_beta_8(y, expected):
    dkd = kd.build_loss("dkd", T=1.0, ce_weight=0.0)
    assert close(dkd(TOY_B_S, TOY_B_T, labels=label(y), epoch=20), expected)


def test_dkd_identical_logits_and_binary_case():
    s, _, y = random_logits(4)
    tckd, nckd = kd.dkd_terms(s, s, y, 4.0)
    assert tckd.abs().max() < 1e-6 and nckd.abs().max() < 1e-6
    tckd, nckd = kd.dkd_terms(TOY_A_S, TOY_A_T, label(1), 1.0)  # K=2: one non-target class
    assert nckd.item() == 0.0 and close(tckd, [0.130812])


def test_dkd_identity_on_random_batches():
    s, t, y = random_logits(5, B=8, K=10)
    tckd, nckd = kd.dkd_terms(s, t, y, 3.0)
    p_y = F.softmax(t / 3.0, 1).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(tckd + (1 - p_y) * nckd, kd.kd_per_sample(s, t, 3.0), atol=1e-5)


def test_dkd_warmup_is_one_indexed():
    s, t, y = random_logits(6)
    dkd = kd.build_loss("dkd", ce_weight=0.0)  # W = 20
    assert torch.allclose(dkd(s, t, y, epoch=1), 0.05 * dkd(s, t, y, epoch=20))
    assert torch.allclose(dkd(s, t, y, epoch=200), dkd(s, t, y, epoch=20))


def test_dkd_saturated_teacher_is_finite():
    t = torch.tensor([[200.0, 0.0, 0.0], [0.0, 0.0, 200.0]])
    s = torch.tensor([[0.0, 200.0, 0.0], [1.0, 2.0, 3.0]], requires_grad=True)
    loss = kd.build_loss("dkd", T=1.0)(s, t, torch.tensor([0, 1]), epoch=20)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_dkd_soft_labels_use_their_argmax():
    s, t, y = random_logits(7)
    dkd = kd.build_loss("dkd")
    soft = 0.9 * F.one_hot(y, 5).float() + 0.02
    hard_kd = dkd(s, t, y, epoch=5) - dkd.parts["ce"]
    soft_kd = dkd(s, t, soft, epoch=5) - dkd.parts["ce"]
    assert torch.allclose(hard_kd, soft_kd)


# ---------------------------------------------------------------------------------------------
# EA-KD (§3.6)


def test_eakd_entropy_weights():
    uniform = torch.zeros(1, 2)
    assert close(kd.entropy_weights(uniform, uniform, 3.0, h_ub=LN(2)), [0.693147])
    assert close(kd.entropy_weights(uniform, uniform, 3.0, h_ub=100.0), [0.348976])
    assert close(kd.entropy_weights(TOY_B_S, TOY_B_T, 3.0), [1.070324])  # h_ub = log K = ln 3
    assert close(kd.entropy_weights(TOY_B_S, TOY_B_T, 3.0, h_ub=100.0), [0.541041])
    saturated = torch.tensor([[100.0, 0.0, 0.0]])
    assert kd.entropy_weights(TOY_B_S, saturated, 3.0).item() < 1e-9


def test_eakd_loss_value_and_gradient():
    eakd = kd.build_loss("eakd", T=1.0, ce_weight=0.0, kd_weight=1.0)  # h_ub = log K
    assert close(eakd(TOY_B_S, TOY_B_T), 1.070324 * 0.200667)
    s, t, _ = random_logits(8)
    s.requires_grad_()
    eakd = kd.build_loss("eakd", T=2.0, ce_weight=0.0, kd_weight=1.0)
    eakd(s, t).backward()
    w = kd.entropy_weights(s, t, 3.0)
    assert not w.requires_grad
    expected = w[:, None] / s.shape[0] * 2.0 * (F.softmax(s.detach() / 2, 1) - F.softmax(t / 2, 1))
    assert torch.allclose(s.grad, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# CTKD (§4.5)


def test_ctkd_initial_temperature_and_derivative():
    ctkd = kd.build_loss("ctkd")
    T = ctkd.temperature()
    (dT,) = torch.autograd.grad(T, ctkd.theta)
    assert close(T, 15.621172) and close(dT, [3.932239])
    assert close(ctkd.current_T(), 15.621172) and not ctkd.current_T().requires_grad
    assert [n for n, _ in ctkd.named_parameters()] == ["theta"] and "theta" in ctkd.state_dict()


def test_ctkd_lambda_schedule():
    expected = [0.0245, 0.0955, 0.2061, 0.3455, 0.5, 0.6545, 0.7939, 0.9045, 0.9755, 1.0]
    assert [round(kd.cosine_lambda(e, 10), 4) for e in range(1, 11)] == expected
    assert [round(kd.cosine_lambda(e, 5), 4) for e in range(1, 6)] == [0.0955, 0.3455, 0.6545, 0.9045, 1.0]
    assert kd.cosine_lambda(50, 10) == 1.0


def test_ctkd_gradient_reversal_and_student_gradient():
    s, t, _ = random_logits(9)
    s.requires_grad_()
    ctkd = kd.build_loss("ctkd", ce_weight=0.0, kd_weight=1.0)
    ctkd(s, t, epoch=10).backward()  # lambda = 1 from epoch N on
    theta = ctkd.theta.detach().clone().requires_grad_()  # same loss without the GRL
    T = ctkd.temperature(theta)
    s_plain = s.detach().clone().requires_grad_()
    kd.kd_loss(s_plain, t, T).backward()
    assert torch.allclose(ctkd.theta.grad, -theta.grad)
    assert torch.allclose(s.grad, s_plain.grad)  # = plain KD at T(theta)
    s_fixed = s.detach().clone().requires_grad_()
    kd.kd_loss(s_fixed, t, T.item()).backward()
    assert torch.allclose(s.grad, s_fixed.grad, atol=1e-7)


def test_gradient_reversal_with_lambda_zero_blocks_only_theta():
    theta = torch.ones(1, requires_grad=True)
    s, t, _ = random_logits(10)
    s.requires_grad_()
    T = 1 + 20 * torch.sigmoid(kd.reverse_gradient(theta, 0.0)).squeeze(0)
    kd.kd_loss(s, t, T).backward()
    s_plain = s.detach().clone().requires_grad_()
    kd.kd_loss(s_plain, t, T.detach()).backward()
    assert theta.grad.item() == 0.0 and torch.allclose(s.grad, s_plain.grad)


def test_ctkd_adversarial_step_increases_temperature():
    ctkd = kd.build_loss("ctkd", ce_weight=0.0, kd_weight=1.0)
    T = torch.tensor(ctkd.current_T().item(), requires_grad=True)
    (dL_dT,) = torch.autograd.grad(kd.kd_loss(TOY_B_S, TOY_B_T, T), T)
    assert dL_dT > 0  # precondition of the toy
    before = ctkd.current_T()
    ctkd(TOY_B_S, TOY_B_T, epoch=10).backward()  # lambda = 1
    with torch.no_grad():
        ctkd.theta -= 10.0 * ctkd.theta.grad  # one SGD step on theta
    assert ctkd.current_T() > before


# ---------------------------------------------------------------------------------------------
# Logit standardization (§5.5)


def test_standardize_logits_pins_unbiased_std():
    assert close(kd.standardize_logits(torch.tensor([[1.0, 2.0, 3.0]])), [[-1.0, 0.0, 1.0]])
    assert close(kd.standardize_logits(torch.tensor([[1.0, 2.0, 3.0]]), unbiased=False), [[-1.224745, 0.0, 1.224745]])
    assert close(kd.standardize_logits(torch.tensor([[0.0, 0.0, 3.0]])), [[-0.57735, -0.57735, 1.154701]])


def test_lskd_values():
    t, s = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 3.0]])
    ls = {T: kd.build_loss("lskd", T=T, ce_weight=0.0, kd_weight=1.0) for T in (1.0, 2.0)}
    assert close(ls[1.0](s, t), 0.050371) and close(ls[2.0](s, t), 0.070594)  # tau_b^2 included
    assert close(kd.kd_loss(s, t, 1.0), 0.266805) and close(kd.kd_loss(s, t, 2.0), 0.356277)


def test_lskd_is_affine_invariant():
    _, t, _ = random_logits(11, K=10)
    ls = kd.build_loss("lskd", ce_weight=0.0)
    assert ls(3 * t + 5, t).abs() < 1e-5
    assert ls(3 * t.double() + 5, t.double()).abs() < 1e-12  # float64 inputs stay float64
    assert kd.kd_loss(3 * t + 5, t, 2.0) > 0.1


def test_lskd_ce_gradient_is_unaffected():
    s, t, y = random_logits(12)
    s.requires_grad_()
    kd.build_loss("lskd", ce_weight=1.0, kd_weight=0.0)(s, t, y).backward()
    s_plain = s.detach().clone().requires_grad_()
    F.cross_entropy(s_plain, y).backward()
    assert torch.allclose(s.grad, s_plain.grad)


# ---------------------------------------------------------------------------------------------
# MLKD (§6.6)


def test_mlkd_identical_logits_give_zero():
    s, _, _ = random_logits(13, B=8)
    mlkd = kd.build_loss("mlkd", ce_weight=0.0)
    assert mlkd((s, s.flip(0)), (s, s.flip(0))).abs() < 1e-6


def test_mlkd_gram_terms():
    p_t = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    p_s = torch.full((2, 2), 0.5)
    assert close(kd.batch_correlation_loss(p_s, p_t), 0.03125)
    assert close(kd.class_correlation_loss(p_s, p_t), 0.03125)


def test_mlkd_masks_are_one_half():
    g = torch.Generator().manual_seed(0)
    f_b, f_c = kd.mlkd_mask_fractions(torch.randn(64, 100, generator=g) * 3)
    assert f_b.item() == 0.5 and f_c.item() == 0.5


def test_mlkd_faithful_bookkeeping():
    """The official objective, term by term; strong-view taus 2 and 6 read the weak logits."""
    (s_w, t_w, _), (s_s, t_s, _) = random_logits(14, B=6), random_logits(15, B=6)
    mlkd = kd.build_loss("mlkd", ce_weight=0.0, kd_weight=1.0)
    assert (mlkd.T, mlkd.temperatures) == (4.0, (3.0, 5.0, 2.0, 6.0))
    f_b, f_c = kd.mlkd_mask_fractions(t_w)

    def probs(z, T):
        return F.softmax(z / T, 1)

    temps = (4.0, 3.0, 5.0, 2.0, 6.0)
    expected = (
        f_b * sum(kd.kd_loss(s_w, t_w, T) for T in temps)
        + sum(kd.kd_loss(s_s, t_s, T) for T in (4.0, 3.0, 5.0))
        + sum(kd.kd_loss(s_w, t_w, T) for T in (2.0, 6.0))
        + f_c * sum(kd.class_correlation_loss(probs(s_w, T), probs(t_w, T)) for T in temps)
        + f_b * sum(kd.batch_correlation_loss(probs(s_w, T), probs(t_w, T)) for T in temps)
    )
    assert torch.allclose(mlkd((s_w, s_s), (t_w, t_s)), expected)
    # garbage in the strong view changes only the (4, 3, 5) strong instance terms
    s_g, t_g = s_s * 7 + 1, t_s.flip(1)
    delta = mlkd((s_w, s_s), (t_w, t_s)) - mlkd((s_w, s_g), (t_w, t_g))
    strong = sum(kd.kd_loss(s_s, t_s, T) - kd.kd_loss(s_g, t_g, T) for T in (4.0, 3.0, 5.0))
    assert torch.allclose(delta, strong, atol=1e-5)


def test_mlkd_ce_on_both_views_and_input_checks():
    (s_w, t_w, y), (s_s, t_s, _) = random_logits(16), random_logits(17)
    mlkd = kd.build_loss("mlkd", kd_weight=0.0)  # CE 0.1 per view
    expected = 0.1 * (F.cross_entropy(s_w, y) + F.cross_entropy(s_s, y))
    assert torch.allclose(mlkd((s_w, s_s), (t_w, t_s), y), expected)
    with pytest.raises(ValueError, match="two views"):
        mlkd(s_w, t_w, y)
    with pytest.raises(ValueError, match="at least 2"):
        mlkd((s_w[:1], s_s[:1]), (t_w[:1], t_s[:1]), y[:1])


# ---------------------------------------------------------------------------------------------
# RLD (§7.5)


@pytest.mark.parametrize(
    "y, T, scd, mcd",
    [(0, 1.0, 0.148342, 0.130812), (1, 1.0, 0.148342, 0.0), (2, 1.0, 0.148342, 0.0), (0, 4.0, 0.170717, 0.149458)],
)
def test_rld_toy_values(y, T, scd, mcd):
    got_scd, got_mcd = kd.rld_terms(TOY_B_S, TOY_B_T, label(y), T, T)
    assert close(got_scd, [scd]) and close(got_mcd, [mcd])


def test_rld_equals_dkd_when_the_teacher_is_always_right():
    s, t, _ = random_logits(18, B=8, K=10)
    y = t.argmax(1)
    rld, dkd = kd.build_loss("rld"), kd.build_loss("dkd")  # tau_c defaults to T
    assert rld.tau_c == rld.T == 4.0
    assert torch.allclose(rld(s, t, y, epoch=7), dkd(s, t, y, epoch=7), rtol=1e-5)


def test_rld_identical_logits():
    s, _, _ = random_logits(19)
    scd, mcd = kd.rld_terms(s, s, s.argmax(1), 4.0, 4.0)
    assert scd.abs().max() < 1e-6 and mcd.abs().max() < 1e-6
    scd, _ = kd.rld_terms(s, s, s.argmin(1), 4.0, 4.0)  # teacher wrong
    assert (scd > 0).all()


def test_rld_fully_masked_row_is_finite():
    s = torch.zeros(1, 3, requires_grad=True)
    scd, mcd = kd.rld_terms(s, TOY_B_T, label(2), 1.0, 1.0)  # truth is the lowest logit
    (scd + mcd).sum().backward()
    assert mcd.item() == 0.0 and torch.isfinite(s.grad).all()


# ---------------------------------------------------------------------------------------------
# DIST (§8.5)


def test_dist_values():
    s, t = torch.tensor([[LN(2), 0.0], [LN(2), 0.0]]), torch.tensor([[LN(3), 0.0], [0.0, LN(3)]])
    inter, intra = kd.dist_relations(s, t, 1.0)
    assert close(inter, 1.0) and close(intra, 1.0)
    s, t = torch.tensor([[0.0, 1, 0], [0, 1, 0]]), torch.tensor([[2.0, 0, 0], [0, 1, 0]])
    inter, intra = kd.dist_relations(s, t, 1.0)
    assert close(inter, 0.75) and close(intra, 1.0)
    assert close(kd.build_loss("dist", T=1.0, ce_weight=0.0, kd_weight=1.0)(s, t), 1.75)


def test_dist_identical_logits_and_t2_scaling():
    s, t, _ = random_logits(20, B=8)
    dist = kd.build_loss("dist", ce_weight=0.0, kd_weight=1.0)  # T = 4
    assert dist(s, s).abs() < 1e-5
    inter, intra = kd.dist_relations(s, t, 4.0)
    assert torch.allclose(dist(s, t), 16 * (inter + intra))


# ---------------------------------------------------------------------------------------------
# Comparison with the naive reference (tests/naive_reference.py)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("K", [2, 5, 10])
def test_against_naive_reference(seed, K):
    s, t, y = random_logits(100 + seed, B=5, K=K)
    T = [0.5, 2.0, 7.0][seed]
    S, Tt, Y = s.double().tolist(), t.double().tolist(), y.tolist()
    assert close(kd.kd_loss(s, t, T), ref.kd(S, Tt, T))
    tckd, nckd = kd.dkd_terms(s, t, y, T)
    assert close(tckd.mean(), ref.dkd(S, Tt, Y, T)[0]) and close(nckd.mean(), ref.dkd(S, Tt, Y, T)[1])
    inter, intra = kd.dist_relations(s, t, T)
    assert close(T * T * (inter + intra), ref.dist(S, Tt, T))
    ls = kd.build_loss("lskd", T=T, ce_weight=0.0, kd_weight=1.0)
    assert close(ls(s, t), ref.lskd(S, Tt, T))
    assert close(kd.soft_targets(t, T, "smooth-instance"), ref.smoothed_targets(Tt, T, per_instance=True))
    assert close(kd.soft_targets(t, T, "smooth-global"), ref.smoothed_targets(Tt, T, per_instance=False))


# ---------------------------------------------------------------------------------------------
# Control signals: entropy-matched label smoothing (§9.1) and bottom K-k randomized (§9.2)


@pytest.mark.parametrize("K", [2, 10, 100, 1000])
def test_inverse_smoothing_entropy_round_trip(K):
    H = torch.linspace(0, math.log(K), 101, dtype=torch.float64)
    a = kd.inverse_smoothing_entropy(H, K)
    assert (kd.smoothing_entropy(a, K) - H).abs().max() < 1e-10


@pytest.mark.parametrize("K, H, a, eps", [(10, 1.0, 0.217034, 0.241149), (100, 1.0, 0.132505, 0.133844),
                                          (100, 2.0, 0.301949, 0.304999), (1000, 1.0, 0.098271, 0.098369)])  # fmt: skip
def test_inverse_smoothing_entropy_reference_values(K, H, a, eps):
    got = kd.inverse_smoothing_entropy(H, K)
    assert abs(got.item() - a) < 1e-6 and abs(got.item() * K / (K - 1) - eps) < 1e-6  # PyTorch's eps


def test_smoothing_endpoints_and_binary_case():
    t = torch.randn(3, 10)
    uniform = kd.soft_targets(t, 1.0, "smooth-global", mean_entropy=math.log(10))
    one_hot = kd.soft_targets(t, 1.0, "smooth-global", mean_entropy=0.0)
    assert torch.allclose(uniform, torch.full((3, 10), 0.1))
    assert torch.equal(one_hot, F.one_hot(t.argmax(1), 10).float())
    teacher = torch.tensor([[LN(0.8), LN(0.2)]])  # K=2: a = min(p) = 0.2
    assert close(kd.soft_targets(teacher, 1.0, "smooth-instance"), [[0.8, 0.2]])


def test_smoothing_reproduces_a_label_smoothed_teacher_and_centres_on_its_argmax():
    p = torch.tensor([[0.1, 0.1, 0.7, 0.1], [0.05, 0.85, 0.05, 0.05]])
    assert close(kd.soft_targets(p.log(), 1.0, "smooth-instance"), p)
    t = torch.randn(16, 10) * 3
    for signal in ("smooth-global", "smooth-instance"):
        assert torch.equal(kd.soft_targets(t, 2.0, signal).argmax(1), t.argmax(1))


@pytest.mark.parametrize("T", [1.0, 4.0, 40.0])
def test_smoothing_matches_teacher_entropy(T):
    t = torch.randn(32, 100) * 5
    H = -(F.softmax(t / T, 1) * F.log_softmax(t / T, 1)).sum(1)
    per_instance = kd.soft_targets(t, T, "smooth-instance")
    per_batch = kd.soft_targets(t, T, "smooth-global")
    assert (-torch.xlogy(per_instance, per_instance).sum(1) - H).abs().max() < 1e-5
    assert (-torch.xlogy(per_batch, per_batch).sum(1) - H.mean()).abs().max() < 1e-5
    assert not per_instance.requires_grad


def test_bottomk_example_and_invariants():
    p = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]).repeat(4000, 1)
    out = kd.soft_targets(p.log(), 1.0, "bottomk", k=2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, :2], p[:, :2])  # top-k kept in place
    assert torch.equal(out.sort(1).values, F.softmax(p.log(), 1).sort(1).values)  # same multiset
    assert close(-(out * out.log()).sum(1), torch.full((4000,), 1.333074))
    for value in (0.15, 0.1, 0.05):  # uniform over the tail slots
        freq = torch.isclose(out[:, 2:], torch.tensor(value)).float().mean(0)
        assert (freq - 1 / 3).abs().max() < 0.04


def test_bottomk_random_logits_identity_and_reproducibility():
    t = torch.randn(64, 10) * 3
    p = F.softmax(t / 2.0, 1)
    assert torch.equal(kd.soft_targets(t, 2.0, "bottomk", k=9), p)  # k = K-1: identity
    for k in (0, 1, 5):
        out = kd.soft_targets(t, 2.0, "bottomk", k=k, generator=torch.Generator().manual_seed(1))
        again = kd.soft_targets(t, 2.0, "bottomk", k=k, generator=torch.Generator().manual_seed(1))
        assert torch.equal(out, again)
        assert torch.equal(out.sort(1).values, p.sort(1).values)
        assert torch.allclose(torch.xlogy(out, out).sum(1), torch.xlogy(p, p).sum(1), atol=1e-6)
        top = t.topk(k, 1).indices
        assert torch.equal(out.gather(1, top), p.gather(1, top))
    with pytest.raises(ValueError, match="k"):
        kd.soft_targets(t, 2.0, "bottomk")
    with pytest.raises(ValueError, match="k"):
        kd.soft_targets(t, 2.0, "bottomk", k=10)
    with pytest.raises(ValueError, match="valid"):
        kd.soft_targets(t, 2.0, "label-smoothing")


# ---------------------------------------------------------------------------------------------
# Relative entropy diagnostics (§9.3)


@pytest.mark.parametrize("p, full, rest", [([0.5, 0.25, 0.25], 0.946395, 1.0), ([0.7, 0.1, 0.1, 0.1], 0.678390, 1.0),
                                             ([0.6, 0.3, 0.1], 0.817345, 0.811278), ([0.2] * 5, 1.0, 1.0)])  # fmt: skip
def test_relative_entropy_values(p, full, rest):
    p = torch.tensor([p])
    h_full, h_rest = kd.relative_entropies(p.log() * 3, 3.0)
    assert close(h_full, [full]) and close(h_rest, [rest])


def test_relative_entropies_of_a_saturated_teacher_from_logits():
    logits = torch.tensor([[1000.0, 0.0, 0.0, 0.0], [0.0, 1000.0, 0.0, 5.0]])
    h_full, h_rest = kd.relative_entropies(logits, 1.0)
    assert h_full.abs().max() < 1e-6 and close(h_rest[0], 1.0)
    assert torch.isfinite(h_rest).all() and h_rest[1] < 0.1


def test_related_mass_share_by_hand():
    """Where the wrong-class probability goes: p = [0.5, 0.3, 0.15, 0.05], true class 0, class 1 related:
    0.3 of the 0.5 wrong mass -> 0.6; with class 3 related instead: 0.1."""
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    related = torch.zeros(4, 4, dtype=torch.bool)
    related[0, 1] = related[1, 0] = True
    assert close(kd.related_mass_share(logits, torch.tensor([0]), related), [0.6])
    related = torch.zeros(4, 4, dtype=torch.bool)
    related[0, 3] = related[0, 0] = True  # the true class itself never counts
    assert close(kd.related_mass_share(logits, torch.tensor([0]), related), [0.1])
    assert close(kd.related_mass_share(logits, torch.tensor([0]), related, T=1e6), [1 / 3], rel=1e-4)  # uniform tail


def test_mean_sorted_softmax():
    logits = torch.tensor([[0.0, LN(3)], [LN(3), 0.0]])
    assert close(kd.mean_sorted_softmax(logits, 1.0), [0.75, 0.25])
    curve = kd.mean_sorted_softmax(torch.randn(8, 10), 4.0)
    assert curve.shape == (10,) and close(curve.sum(), 1.0) and (curve.diff() <= 0).all()


# ---------------------------------------------------------------------------------------------
# Per-layer gradient clipping


def test_per_layer_clip_clips_each_tensor_separately():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(4)] + [torch.nn.Parameter(torch.randn(2))]
    for p, scale in zip(params, [10.0, 0.01, 3.0, 0.5]):
        p.grad = torch.randn_like(p) * scale
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params[:4]]
    for r, p in zip(reference, params):
        r.grad = p.grad.clone()
        torch.nn.utils.clip_grad_norm_([r], max_norm=1.0)  # one tensor at a time
    small, before = params[1].grad.clone(), torch.stack([p.grad.norm() for p in params[:4]])
    norms = torch.stack(kd.per_layer_clip_(params, max_norm=1.0))  # params[4] has no grad: skipped
    assert torch.allclose(norms, before) and (norms[[0, 2]] > 1).all()
    for p, r in zip(params, reference):
        assert torch.allclose(p.grad, r.grad) and p.grad.norm() <= 1.0 + 1e-5
    assert torch.equal(params[1].grad, small)  # under the threshold: untouched
    assert params[4].grad is None


# ---------------------------------------------------------------------------------------------
# Every method: interface, finiteness, autocast


def test_build_loss_interface_and_errors():
    assert METHODS == ["kd", "dkd", "eakd", "ctkd", "lskd", "mlkd", "rld", "dist"]  # the study's eight
    for name in METHODS:
        loss = kd.build_loss(name)
        assert isinstance(loss, torch.nn.Module) and loss.name == name
        assert loss.hparams == {key: spec[0] for key, spec in kd.METHODS[name].HPARAMS.items()}
    flags = {name: (kd.build_loss(name, ce_weight=0.0).needs_labels, *(getattr(kd.build_loss(name), f) for f in
                    ("needs_epoch", "needs_two_views", "batch_coupled"))) for name in METHODS}  # fmt: skip
    assert flags["kd"] == (False, False, False, False) and not kd.build_loss("kd").needs_labels
    assert flags["dkd"] == flags["rld"] == (True, True, False, False)
    assert flags["ctkd"] == (False, True, False, False)
    assert flags["mlkd"] == (False, False, True, True) and flags["dist"] == (False, False, False, True)
    with pytest.raises(ValueError, match="valid: kd, dkd, eakd"):
        kd.build_loss("fitnet")
    with pytest.raises(TypeError, match="warmup"):
        kd.build_loss("kd", warmup=5)
    s, t, y = random_logits(21)
    with pytest.raises(ValueError, match="dkd needs labels"):
        kd.build_loss("dkd")(s, t, epoch=1)
    with pytest.raises(ValueError, match="dkd needs epoch"):
        kd.build_loss("dkd")(s, t, y)
    with pytest.raises(ValueError, match="ctkd needs epoch"):
        kd.build_loss("ctkd", ce_weight=0.0)(s, t)
    with pytest.raises(ValueError, match="dist is batch-coupled"):
        kd.build_loss("dist", ce_weight=0.0)(s[:1], t[:1])


@pytest.mark.parametrize("name", METHODS)
def test_every_method_zero_for_identical_logits(name):
    s, _, _ = random_logits(22, B=8)
    loss = kd.build_loss(name, ce_weight=0.0)
    tolerance = 1e-4 if name == "dist" else 1e-5  # DIST: 1 - rho = eps / (norm^2 + eps), times T^2 w = 32
    assert call(loss, s, s, s.argmax(1)).abs() < tolerance


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("T", [0.5, 1.0, 100.0])
def test_every_method_finite_at_extreme_temperatures_and_logits(name, T):
    g = torch.Generator().manual_seed(23)
    s = ((torch.rand(6, 10, generator=g) * 2 - 1) * 1e3).requires_grad_()
    t = (torch.rand(6, 10, generator=g) * 2 - 1) * 1e3
    t[0, 3], s.data[1, 0] = 1e3, -1e3
    y = torch.randint(0, 10, (6,), generator=g)
    hparams = {"T_start": T} if name == "ctkd" else {"T": T}
    loss = kd.build_loss(name, **hparams)
    soft = F.one_hot(y, 10).float() * 0.7 + 0.03  # MixUp-like soft labels
    for labels in (y, soft):
        s.grad = None
        value = call(loss, s, t, labels)
        value.backward()
        assert value.dim() == 0 and value.dtype == torch.float32
        assert torch.isfinite(value) and torch.isfinite(s.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in loss.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_every_method_is_float32_under_bf16_autocast(name):
    s, t, y = random_logits(24, B=8, K=10)
    s, t = s.bfloat16(), t.bfloat16()  # what a model emits under autocast
    loss = kd.build_loss(name)
    expected = call(loss, s, t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = call(loss, s, t, y)
    assert value.dtype == torch.float32 and torch.allclose(value, expected, rtol=1e-5)
    assert all(v.dtype == torch.float32 for v in loss.parts.values())


# ---------------------------------------------------------------------------------------------
# Dependencies: torch and the standard library only


def test_kd_imports_only_torch_and_stdlib():
    tree = ast.parse((ROOT / "kd.py").read_text())
    modules = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules - {"torch"} <= set(sys.stdlib_module_names), modules


def test_kd_imports_without_numpy_timm_torchvision():
    code = "import sys; sys.modules['timm'] = sys.modules['torchvision'] = sys.modules['numpy'] = None; import kd"
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Modules: CE defaults in plain sight, errors that say what to pass


def test_each_methods_ce_default_is_stated_where_it_is_built():
    doc = " ".join(kd.build_loss.__doc__.split())
    for name, cls in kd.METHODS.items():
        ce = cls.HPARAMS["ce_weight"][0]
        assert next(iter(cls.HPARAMS)) == "ce_weight", f"{name}: HPARAMS should list ce_weight first"
        assert f" {name} {ce:g}" in doc, f"build_loss's docstring misses {name}'s CE weight {ce:g}"
        plain = " ".join(PLAIN_FUNCTION[name].__doc__.split())
        assert "KD term only: no cross-entropy" in plain
        assert (f"CE with weight {ce:g}" if ce > 0 else "adds none") in plain, f"{name}: say which CE its paper adds"


def test_forward_errors_say_what_to_pass():
    s, t, y = random_logits(33)
    cases = [
        ("dkd", {}, (s, t), {"epoch": 1}, "dkd needs labels for its KD term: pass labels="),
        ("eakd", {}, (s, t), {}, "eakd needs labels for its CE, ce_weight=0.1: pass labels="),
        ("dkd", {}, (s, t), {"labels": y}, "dkd needs epoch for its schedule: pass epoch=, counted from 1"),
        ("rld", {}, (s, t), {"labels": y, "epoch": 0}, r"counted from 1 \(got 0\)"),
        ("mlkd", {}, (s, t), {"labels": y}, r"mlkd needs two views: pass \(weak, strong\) tuples"),
        ("kd", {}, (s, t[:, :3]), {}, r"same shape \(B, K\), got \[\(4, 5\), \(4, 3\)\]"),
        ("kd", {}, ((s, s), (t, t)), {}, r"kd: pass student and teacher logits of the same shape"),
        ("mlkd", {"ce_weight": 0.0}, ((s, s), (t, t[:2])), {}, r"got \[\(4, 5\), \(2, 5\)\]"),
        ("dist", {"ce_weight": 0.0}, (s[:1], t[:1]), {}, "at least 2 examples: pass B >= 2"),
    ]
    for name, hparams, logits, keywords, message in cases:
        with pytest.raises(ValueError, match=message):
            kd.build_loss(name, **hparams)(*logits, **keywords)


# ---------------------------------------------------------------------------------------------
# Copyable: each method runs from "Math helpers" plus its own section, as kd.py's docstring says

RULE = "# " + "=" * 94 + "\n"
SECTION_OF = {"kd": "KD --", "dkd": "DKD --", "eakd": "EA-KD --", "ctkd": "CTKD --", "lskd": "LS --", "mlkd": "MLKD --",
              "rld": "RLD --", "dist": "DIST --"}  # fmt: skip
PLAIN_FUNCTION = {"kd": kd.kd_loss, "dkd": kd.dkd_loss, "eakd": kd.eakd_loss, "ctkd": kd.ctkd_loss,
                  "lskd": kd.lskd_loss, "mlkd": kd.mlkd_loss, "rld": kd.rld_loss, "dist": kd.dist_loss}  # fmt: skip


def kd_section(title_start):
    """kd.py's section whose title starts with title_start, from its '# ====' rule up to the next rule."""
    found = [
        RULE + part for part in (ROOT / "kd.py").read_text().split(RULE)[1:] if part.startswith("# " + title_start)
    ]
    assert len(found) == 1, f"kd.py has no single section titled {title_start!r}"
    return found[0]


def method_copy(name):
    """What kd.py's docstring says to copy for one method: the "Math helpers" section, then the method's own."""
    return kd_section("Math helpers") + kd_section(SECTION_OF[name])


def run_copy(name):
    """The namespace of method_copy(name) executed afresh, where only torch and math can be imported."""

    def only_torch(module, *args, **kwargs):
        if module.split(".")[0] not in ("torch", "math"):
            raise ImportError(f"the copy of {name} imports {module}: only torch and math are allowed")
        return builtins.__import__(module, *args, **kwargs)

    namespace = {"__builtins__": {**vars(builtins), "__import__": only_torch}, "__name__": f"copy_of_{name}"}
    exec(compile(method_copy(name), f"<copy of {name}>", "exec"), namespace)
    return namespace


def copied_kd_term(f, name, s, t, y, epoch, theta):
    """The module's default KD term (its weight and schedule included) from the copied plain functions f."""
    if name == "kd":
        return f["kd_loss"](s, t, 4.0)
    if name == "dkd":
        return f["warmup_factor"](epoch, 20) * f["dkd_loss"](s, t, y, 4.0, alpha=1.0, beta=8.0)
    if name == "eakd":
        return 0.9 * f["eakd_loss"](s, t, 4.0, entropy_T=3.0)
    if name == "ctkd":
        T = f["ctkd_temperature"](f["reverse_gradient"](theta, f["cosine_lambda"](epoch, 10)), 1.0, 20.0)
        return 0.9 * f["ctkd_loss"](s, t, T)
    if name == "lskd":
        return 9.0 * f["lskd_loss"](s, t, 2.0)
    if name == "mlkd":
        return 0.9 * f["mlkd_loss"](s, t, 4.0, (3.0, 5.0, 2.0, 6.0))
    if name == "rld":
        return f["warmup_factor"](epoch, 20) * f["rld_loss"](s, t, y, 4.0, alpha=1.0, beta=8.0)
    return f["dist_loss"](s, t, 4.0, beta=1.0, gamma=1.0, weight=2.0)


@pytest.mark.parametrize("epoch", [3, 30])
@pytest.mark.parametrize("name", METHODS)
def test_each_method_copied_alone_matches_the_module_bit_for_bit(name, epoch):
    f = run_copy(name)
    assert PLAIN_FUNCTION[name].__name__ in f and "build_loss" not in f
    s, t, y = random_logits(31, B=8, K=10)
    module = kd.build_loss(name, ce_weight=0.0)  # its KD term alone, at the defaults
    s_module, s_copy = s.clone().requires_grad_(), s.clone().requires_grad_()
    theta = torch.ones(1, requires_grad=True)  # CTKD's theta_init
    expected = call(module, s_module, t, y, epoch)
    if name == "mlkd":  # (weak, strong) views, as `call` builds them
        copied = copied_kd_term(f, name, (s_copy, s_copy.flip(0)), (t, t.flip(0)), y, epoch, theta)
    else:
        copied = copied_kd_term(f, name, s_copy, t, y, epoch, theta)
    expected.backward()
    copied.backward()
    assert torch.equal(copied, expected) and torch.equal(s_copy.grad, s_module.grad)
    if name == "ctkd":
        assert torch.equal(theta.grad, module.theta.grad)


def test_the_docstring_example_runs_on_the_dkd_copy_and_matches_the_module():
    block = re.search(r"\n\n((?: {4}\S.*\n)+)", kd.__doc__).group(1)  # the first indented block
    example = textwrap.dedent(block)
    assert len(example.splitlines()) == 3 and "dkd_loss" in example
    f = run_copy("dkd")
    s, t, y = random_logits(34, B=8, K=10)
    s_copy, s_module = s.clone().requires_grad_(), s.clone().requires_grad_()
    f.update(student_logits=s_copy, teacher_logits=t, labels=y, epoch=3)
    exec(example, f)
    expected = kd.build_loss("dkd")(s_module, t, labels=y, epoch=3)  # CE 1 + warmup * DKD, its defaults
    expected.backward()
    assert torch.equal(f["loss"], expected) and torch.equal(s_copy.grad, s_module.grad)


def test_the_dkd_copy_is_as_short_as_the_docstring_says():
    lines = method_copy("dkd").rstrip("\n").splitlines()
    claim = re.search(r"DKD: about (\d+) lines, (\d+) not blank", " ".join(kd.__doc__.split()))
    assert claim, "kd.py's docstring should say how long the DKD copy is"
    not_blank = [line for line in lines if line.strip()]
    assert abs(len(lines) - int(claim.group(1))) <= 5 and abs(len(not_blank) - int(claim.group(2))) <= 3

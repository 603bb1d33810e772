"""Tests for prmf.losses with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from prmf.losses import (
    TrainingLoss,
    gaussian_kl,
    kl_to_standard_normal,
    masked_valence_mse,
    symmetric_gaussian_kl,
)
from prmf.models import ModelOutput

LOG4 = math.log(4.0)
ALL_ONE = {"kl_weight": 1.0, "recon_weight": 1.0, "cross_kl_weight": 1.0}


def loss_with(**weights: float) -> TrainingLoss:
    """The loss with ``weights``, the other weights 0."""
    return TrainingLoss(**{"kl_weight": 0.0, "recon_weight": 0.0, "cross_kl_weight": 0.0, **weights})


def output(
    logits=None, valence=None, present=None, mus=None, logvars=None, recons=None, targets=None
) -> ModelOutput:
    logits = torch.zeros(2, 3) if logits is None else logits
    n = logits.shape[0]
    return ModelOutput(
        logits=logits,
        valence=torch.zeros(n) if valence is None else valence,
        present=torch.ones(n, 3, dtype=torch.bool) if present is None else present,
        mu=None if mus is None else torch.stack(mus, dim=1),
        logvar=None if logvars is None else torch.stack(logvars, dim=1),
        recons=recons,
        targets=targets,
    )


def test_kl_of_known_gaussian():
    # mu = 1, logvar = 0: 0.5 * (1 + 1 - 1 - 0) = 0.5 per dim -> 1.5 over 3 dims
    kl = kl_to_standard_normal(torch.ones(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(kl, torch.tensor([1.5, 1.5]))
    # mu = 0, logvar = log 4: 0.5 * (0 + 4 - 1 - log 4) = 0.806853 per dim
    kl = kl_to_standard_normal(torch.zeros(1, 1), torch.full((1, 1), LOG4))
    torch.testing.assert_close(kl, torch.tensor([0.5 * (3.0 - LOG4)]))
    assert 0.5 * (3.0 - LOG4) == pytest.approx(0.806853, abs=1e-6)


def test_symmetric_kl_of_known_gaussians():
    # p = N(0, 1), q = N(1, 4):
    # KL(p||q) = 0.5 * (log 4 + (1 + 1) / 4 - 1) = 0.443147
    # KL(q||p) = 0.5 * (-log 4 + (4 + 1) / 1 - 1) = 1.306853
    # symmetric = 0.5 * (0.443147 + 1.306853) = 0.875
    mp, lp = torch.zeros(1, 1), torch.zeros(1, 1)
    mq, lq = torch.ones(1, 1), torch.full((1, 1), LOG4)
    torch.testing.assert_close(gaussian_kl(mp, lp, mq, lq), torch.tensor([0.443147]), atol=1e-6, rtol=0)
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), torch.tensor([1.306853]), atol=1e-6, rtol=0)
    torch.testing.assert_close(symmetric_gaussian_kl(mp, lp, mq, lq), torch.tensor([0.875]))
    torch.testing.assert_close(symmetric_gaussian_kl(mq, lq, mp, lp), torch.tensor([0.875]))
    torch.testing.assert_close(symmetric_gaussian_kl(mp, lp, mp, lp), torch.tensor([0.0]))


def test_valence_mse_ignores_nan():
    pred = torch.tensor([1.0, 2.0, 3.0])
    target = torch.tensor([0.0, float("nan"), 5.0])
    # ((1 - 0)^2 + (3 - 5)^2) / 2 = 2.5
    torch.testing.assert_close(masked_valence_mse(pred, target), torch.tensor(2.5))


def test_valence_mse_without_labels_is_gradient_safe_zero():
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    mse = masked_valence_mse(pred, torch.full((2,), float("nan")))
    assert mse.item() == 0.0
    mse.backward()
    assert torch.equal(pred.grad, torch.zeros(2))


def test_cross_entropy_value_and_total_without_vae():
    # logits [2, 0, 0], label 0: -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2) = 0.239545
    # logits [0, 0, 0], label 2: log 3 = 1.098612 -> mean 0.669079
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = output(logits=logits, valence=torch.tensor([0.5, 1.0]))
    loss_fn = TrainingLoss(kl_weight=1.0, recon_weight=1.0, cross_kl_weight=1.0)
    total, terms = loss_fn(out, torch.tensor([0, 2]), torch.tensor([1.5, float("nan")]))
    ce = (math.log(1 + 2 * math.exp(-2)) + math.log(3)) / 2
    assert terms["ce"] == pytest.approx(ce, abs=1e-6)
    assert terms["valence_mse"] == pytest.approx(1.0)  # (0.5 - 1.5)^2, second unlabeled
    assert terms["kl"] == terms["recon"] == terms["cross_kl"] == 0.0
    assert terms["loss"] == pytest.approx(ce + 1.0, abs=1e-6)
    assert total.item() == pytest.approx(ce + 1.0, abs=1e-6)


def test_kl_averaged_over_present_entries_only():
    # present entries have mu = 1, logvar = 0 over 2 dims -> KL 1.0 each;
    # the absent entry has a huge KL that must be ignored.
    mus = [torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2)]
    logvars = [torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2)]
    mus[1][0] = 100.0
    present = torch.tensor([[True, False, True], [True, True, True]])
    out = output(present=present, mus=mus, logvars=logvars)
    total, terms = loss_with(kl_weight=0.5)(out, torch.tensor([0, 0]), torch.zeros(2))
    assert terms["kl"] == pytest.approx(1.0)
    assert terms["loss"] == pytest.approx(terms["ce"] + 0.5 * 1.0, abs=1e-6)


def test_recon_over_present_modalities_only():
    # modality 0: recon 1 vs target 0 over 2 dims -> per-sample MSE 1
    # modality 1: recon 3 vs target 1 over 4 dims -> per-sample MSE 4
    # modality 2: absent for both samples -> ignored (would be 10000)
    recons = [torch.ones(2, 2), torch.full((2, 4), 3.0), torch.full((2, 3), 100.0)]
    targets = [torch.zeros(2, 2), torch.ones(2, 4), torch.zeros(2, 3)]
    present = torch.tensor([[True, True, False], [True, False, False]])
    # entries: (0,0)=1, (0,1)=4, (1,0)=1 -> mean 2
    out = output(present=present, recons=recons, targets=targets)
    _, terms = loss_with(recon_weight=0.1)(out, torch.tensor([0, 1]), torch.zeros(2))
    assert terms["recon"] == pytest.approx(2.0)
    assert terms["loss"] == pytest.approx(terms["ce"] + 0.2, abs=1e-6)


def test_cross_kl_pairs_where_both_present():
    # modality posteriors (1-d): m0 = N(0, 1), m1 = N(1, 4), m2 = N(0, 1)
    # sample 0: all present -> pairs (0,1)=0.875, (0,2)=0, (1,2)=0.875
    # sample 1: m1 absent -> only pair (0,2)=0
    # mean over the 4 valid (sample, pair) entries = 1.75 / 4 = 0.4375
    mus = [torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(2, 1)]
    logvars = [torch.zeros(2, 1), torch.full((2, 1), LOG4), torch.zeros(2, 1)]
    present = torch.tensor([[True, True, True], [True, False, True]])
    out = output(present=present, mus=mus, logvars=logvars)
    _, terms = loss_with(cross_kl_weight=2.0)(out, torch.tensor([0, 1]), torch.zeros(2))
    assert terms["cross_kl"] == pytest.approx(0.4375)
    # KL to N(0, 1): m0 -> 0, m1 -> 0.5 * (1 + 4 - 1 - log 4) = 1.306853 (present in sample 0 only),
    # m2 -> 0; averaged over the 5 present entries -> 0.261371
    assert terms["kl"] == pytest.approx(1.306853 / 5, abs=1e-6)
    assert terms["loss"] == pytest.approx(terms["ce"] + 2.0 * 0.4375, abs=1e-6)


def test_aux_losses_give_no_gradient_to_absent_modalities():
    mus = [torch.randn(2, 3, requires_grad=True) for _ in range(3)]
    logvars = [torch.randn(2, 3, requires_grad=True) for _ in range(3)]
    recons = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    targets = [torch.randn(2, 4) for _ in range(3)]
    present = torch.tensor([[True, False, True], [True, True, False]])
    out = output(present=present, mus=mus, logvars=logvars, recons=recons, targets=targets)
    total, _ = TrainingLoss(**ALL_ONE)(out, torch.tensor([0, 1]), torch.zeros(2))
    total.backward()
    for m in range(3):
        for b in range(2):
            leaves = (mus[m], logvars[m], recons[m])
            if present[b, m]:
                assert any(t.grad[b].abs().sum() > 0 for t in leaves)
            else:
                assert all(torch.all(t.grad[b] == 0) for t in leaves)


def test_from_arm_reads_the_arms_weights(study_arm):
    exp4 = TrainingLoss.from_arm(study_arm("exp4"))
    assert (exp4.kl_weight, exp4.recon_weight, exp4.cross_kl_weight) == (0.005, 0.15, 0.01)
    # the baseline carries the model class's default weights (schema), which act only with the VAE
    base = TrainingLoss.from_arm(study_arm("baseline"))
    assert (base.kl_weight, base.recon_weight, base.cross_kl_weight) == (0.01, 0.1, 0.01)
    for key in ("kl_weight", "recon_weight", "cross_kl_weight"):
        arm = study_arm("exp4")
        del arm[key]
        with pytest.raises(ValueError, match=f"'exp4' does not set '{key}'.*resolve_arm"):
            TrainingLoss.from_arm(arm)
    with pytest.raises(ValueError, match="kl_weight must be >= 0, got -1.0"):
        TrainingLoss(kl_weight=-1.0, recon_weight=0.0, cross_kl_weight=0.0)
    with pytest.raises(TypeError, match="required keyword-only argument"):
        TrainingLoss(kl_weight=0.5)  # no study defaults here: they are the schema's


def test_empty_present_mask_gives_zero_not_nan():
    mus = [torch.ones(1, 2)] * 3
    logvars = [torch.zeros(1, 2)] * 3
    out = output(logits=torch.zeros(1, 3), present=torch.zeros(1, 3, dtype=torch.bool), mus=mus, logvars=logvars)
    total, terms = TrainingLoss(**ALL_ONE)(out, torch.tensor([0]), torch.tensor([float("nan")]))
    assert terms["kl"] == 0.0 and terms["cross_kl"] == 0.0 and terms["valence_mse"] == 0.0
    assert math.isfinite(total.item())


def test_weights_do_not_act_without_the_vae(study_arm):
    """A deterministic model's objective is CE + valence MSE whatever its (default) VAE weights."""
    import torch.nn.functional as F

    from prmf.losses import masked_valence_mse
    from prmf.models import build_model

    arm = study_arm("baseline", hidden_dim=8)
    torch.manual_seed(0)
    model = build_model(arm, [5, 6, 4], 6)
    xs = [torch.randn(7, d) for d in (5, 6, 4)]
    out = model(xs, torch.ones(7, 3, dtype=torch.bool))
    y, v = torch.arange(7) % 6, torch.randn(7)
    total, terms = TrainingLoss.from_arm(arm).terms(out, y, v)
    want = F.cross_entropy(out.logits, y) + masked_valence_mse(out.valence, v)
    assert float(total) == pytest.approx(float(want), rel=1e-6)
    assert terms[3:].tolist() == [0.0, 0.0, 0.0]  # kl, recon, cross_kl

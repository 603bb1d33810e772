"""Tests for prmf.models: encoders, fusion, proxy attention, modality dropout, arms.

Numbers marked "by hand" are written out from the formulas in the docstrings.
Arms are the study's (config/config.yaml, through conftest's ``study_arm``) at
test size (:data:`SMALL`).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from prmf.models import (
    AttentionBaseline,
    AttentionWeightFusion,
    FastDropout,
    InputMajorLinear,
    LSTMEncoder,
    MaskedMeanFusion,
    ModalityDecoders,
    ModalityEncoders,
    PRMFModel,
    ProxyCrossModalAttention,
    StackedLinear,
    UncertaintyWeightedFusion,
    VariationalEncoders,
    apply_modality_dropout,
    build_model,
    drop_modes,
    dropout_rate,
    masked_time_mean,
)
from prmf.models import COMMON_KEYS, DROPOUT_UNITS, PRMF_KEYS, ModalityDropout
from prmf.models.attention import single_key_attention
from prmf.models.dropout import bernoulli_keep_mask
from prmf.losses import TrainingLoss

DIMS = [6, 5, 4]
N_CLASSES = 4
HIDDEN = 8
B = 5
SMALL = {"hidden_dim": HIDDEN, "num_attention_heads": 2, "dropout": 0.2}

#: the arms of the paper's ablation and comparison rows (names only: their keys are config/config.yaml's)
ARM_NAMES = ["baseline", "robust_v1", "exp1", "exp2", "exp3", "exp4", "exp5"]


@pytest.fixture(scope="module")
def small_arm(study_arm):
    """``small_arm(name, **extra)``: the study's arm ``name`` at test size, plus ``extra``."""
    def make(name: str, **extra) -> dict:
        return study_arm(name, **SMALL, **extra)

    return make


def make_batch(seed: int = 0, frame_level: list[bool] | None = None, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    frame_level = frame_level or [False] * len(DIMS)
    xs, lengths = [], []
    for d, frames in zip(DIMS, frame_level):
        if frames:
            xs.append(torch.randn(B, T, d, generator=g))
            lengths.append(torch.randint(1, T + 1, (B,), generator=g))
        else:
            xs.append(torch.randn(B, d, generator=g))
            lengths.append(None)
    present = torch.ones(B, len(DIMS), dtype=torch.bool)
    labels = torch.randint(N_CLASSES, (B,), generator=g)
    valence = torch.randn(B, generator=g)
    valence[0] = float("nan")
    return xs, present, lengths, labels, valence


# --------------------------------------------------------------------------- fusion

def const_std(values: list[float], h: int = 2) -> torch.Tensor:
    """std ``[1, M, h]`` constant over dims."""
    return torch.tensor(values).reshape(1, -1, 1).expand(1, len(values), h).clone()


MU = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # [1, 3, 2]
ALL = torch.ones(1, 3, dtype=torch.bool)


def test_uncertainty_fusion_std_weights_by_hand():
    # stds 0.5 / 1 / 2 -> u = 0.5, 1, 2 -> 1/u = 2, 1, 0.5 -> softmax:
    # e^2 = 7.389056, e^1 = 2.718282, e^0.5 = 1.648721, sum = 11.756059
    # w = 0.628531, 0.231224, 0.140245
    fusion = UncertaintyWeightedFusion("uncertainty", "std", tau=1.0)
    proxy, w, u = fusion(MU, const_std([0.5, 1.0, 2.0]), ALL)
    torch.testing.assert_close(u, torch.tensor([[0.5, 1.0, 2.0]]))
    torch.testing.assert_close(w, torch.tensor([[0.628531, 0.231224, 0.140245]]), atol=2e-6, rtol=0)
    # proxy = w0 * [1, 0] + w1 * [0, 1] + w2 * [1, 1]
    torch.testing.assert_close(proxy, torch.tensor([[0.628531 + 0.140245, 0.231224 + 0.140245]]),
                               atol=3e-6, rtol=0)


def test_uncertainty_fusion_variance_form_by_hand():
    # u = std^2 = 0.25, 1, 4 -> 1/u = 4, 1, 0.25 -> softmax:
    # e^4 = 54.598150, e^1 = 2.718282, e^0.25 = 1.284025, sum = 58.600457
    fusion = UncertaintyWeightedFusion("uncertainty", "variance", tau=1.0)
    _, w, u = fusion(MU, const_std([0.5, 1.0, 2.0]), ALL)
    torch.testing.assert_close(u, torch.tensor([[0.25, 1.0, 4.0]]))
    torch.testing.assert_close(w, torch.tensor([[0.931701, 0.046387, 0.021912]]), atol=2e-6, rtol=0)


def test_uncertainty_uses_mean_over_dims():
    std = torch.tensor([[[0.5, 1.5], [1.0, 1.0]]])  # mean std 1.0 and 1.0; mean var 1.25 and 1.0
    _, w_std, u_std = UncertaintyWeightedFusion("uncertainty", "std", 1.0)(torch.zeros(1, 2, 2), std,
                                                                      torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(u_std, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(w_std, torch.tensor([[0.5, 0.5]]))
    _, _, u_var = UncertaintyWeightedFusion("uncertainty", "variance", 1.0)(torch.zeros(1, 2, 2), std,
                                                                       torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(u_var, torch.tensor([[1.25, 1.0]]))


@pytest.mark.parametrize(
    "tau, expected",
    [
        # logits 1/u / tau = 4, 2, 1: e^4 = 54.598150, e^2 = 7.389056, e^1 = 2.718282, sum 64.705488
        (0.5, [0.843794, 0.114196, 0.042010]),
        # logits 1, 0.5, 0.25: e^1 = 2.718282, e^0.5 = 1.648721, e^0.25 = 1.284025, sum 5.651028
        (2.0, [0.481024, 0.291756, 0.227220]),
    ],
)
def test_uncertainty_fusion_tau_by_hand(tau, expected):
    _, w, _ = UncertaintyWeightedFusion("uncertainty", "std", tau=tau)(MU, const_std([0.5, 1.0, 2.0]), ALL)
    torch.testing.assert_close(w, torch.tensor([expected]), atol=2e-6, rtol=0)


def test_precision_fusion_by_hand_with_prior_expert():
    # 1-d; modality 0: mu 2, sigma 1 (prec 1); modality 1: mu -1, sigma 0.5 (prec 4);
    # modality 2 absent (mu 100, sigma 0.1 would dominate if it leaked).
    # total precision = 1 (prior) + 1 + 4 = 6; mean = (0 * 1 + 2 * 1 + (-1) * 4) / 6 = -1/3
    # weights = precision share = 1/6, 4/6, 0
    mu = torch.tensor([[[2.0], [-1.0], [100.0]]])
    std = torch.tensor([[[1.0], [0.5], [0.1]]])
    present = torch.tensor([[True, True, False]])
    proxy, w, u = UncertaintyWeightedFusion("precision", "std", 1.0)(mu, std, present)
    torch.testing.assert_close(proxy, torch.tensor([[-1.0 / 3.0]]))
    torch.testing.assert_close(w, torch.tensor([[1.0 / 6.0, 4.0 / 6.0, 0.0]]))
    torch.testing.assert_close(u, torch.tensor([[1.0, 0.5, 0.0]]))


def test_precision_fusion_weights_average_share_over_dims():
    # dim 0: prec 1 and 1 -> shares 1/3, 1/3; dim 1: prec 3 and 0.25 -> totals 4.25 -> 3/4.25, 0.25/4.25
    mu = torch.zeros(1, 2, 2)
    std = torch.tensor([[[1.0, 1.0 / math.sqrt(3.0)], [1.0, 2.0]]])
    _, w, _ = UncertaintyWeightedFusion("precision", "std", 1.0)(mu, std, torch.ones(1, 2, dtype=torch.bool))
    expected = [(1 / 3 + 3 / 4.25) / 2, (1 / 3 + 0.25 / 4.25) / 2]
    torch.testing.assert_close(w, torch.tensor([expected]))


@pytest.mark.parametrize("mode", ["uncertainty", "precision"])
def test_masked_modality_gets_zero_weight_and_no_gradient(mode):
    torch.manual_seed(0)
    mu = torch.randn(4, 3, 5, requires_grad=True)
    std = (torch.rand(4, 3, 5) + 0.1).requires_grad_(True)
    present = torch.tensor([[True, False, True], [False, True, True], [True, True, True], [True, False, False]])
    proxy, w, u = UncertaintyWeightedFusion(mode, "std", tau=0.7)(mu, std, present)
    assert torch.all(w[~present] == 0.0)
    assert torch.all(u[~present] == 0.0)
    if mode == "uncertainty":
        torch.testing.assert_close(w.sum(1), torch.ones(4))
    (proxy.square().sum() + w.sum() + u.sum()).backward()
    assert torch.all(mu.grad[~present] == 0.0)
    assert torch.all(std.grad[~present] == 0.0)
    assert mu.grad[present].abs().sum() > 0
    # the absent modality's values do not matter
    mu2 = mu.detach().clone()
    mu2[~present] = 1e4
    proxy2, w2, _ = UncertaintyWeightedFusion(mode, "std", tau=0.7)(mu2, std.detach(), present)
    torch.testing.assert_close(proxy2, proxy.detach())
    torch.testing.assert_close(w2, w.detach())


def test_fusion_sample_without_modalities_is_zero_not_nan():
    mu, std = torch.randn(2, 3, 4), torch.rand(2, 3, 4) + 0.1
    present = torch.tensor([[False, False, False], [True, False, False]])
    for mode in ("uncertainty", "precision"):
        proxy, w, _ = UncertaintyWeightedFusion(mode, "std", 1.0)(mu, std, present)
        assert torch.isfinite(proxy).all() and torch.isfinite(w).all()
        assert torch.all(proxy[0] == 0) and torch.all(w[0] == 0)
    _, w = MaskedMeanFusion()(mu, present)
    assert torch.all(w[0] == 0)


def test_single_present_modality_gets_full_weight():
    mu, std = torch.randn(1, 3, 4), torch.rand(1, 3, 4) + 0.1
    present = torch.tensor([[False, True, False]])
    proxy, w, _ = UncertaintyWeightedFusion("uncertainty", "std", 1.0)(mu, std, present)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0, 0.0]]))
    torch.testing.assert_close(proxy, mu[:, 1])


def test_masked_mean_fusion():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [50.0, 60.0]]])
    proxy, w = MaskedMeanFusion()(h, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(proxy, torch.tensor([[2.0, 3.0]]))


def test_attention_weight_fusion_masks_absent_modality():
    torch.manual_seed(0)
    fusion = AttentionWeightFusion(3, 4, dropout=0.0).eval()
    h = torch.randn(2, 3, 4)
    present = torch.tensor([[True, False, True], [True, True, True]])
    fused, w = fusion(h, present)
    assert w[0, 1] == 0.0
    h2 = h.clone()
    h2[0, 1] = 123.0
    fused2, w2 = fusion(h2, present)
    torch.testing.assert_close(fused2, fused)
    torch.testing.assert_close(w2, w)
    # raw MERBench weights: fc_att(attention_mlp(cat)), no softmax
    with torch.no_grad():
        cat = h.masked_fill(~present.unsqueeze(-1), 0.0).flatten(1)
        raw = fusion.fc_att(fusion.attention_mlp(cat)) * present
    torch.testing.assert_close(w, raw)
    torch.testing.assert_close(fused, (raw.unsqueeze(-1) * h.masked_fill(~present.unsqueeze(-1), 0)).sum(1))


# --------------------------------------------------------------------------- attention

def test_proxy_attention_shape_and_masking():
    torch.manual_seed(0)
    attn = ProxyCrossModalAttention(3, 8, num_heads=4, dropout=0.0).eval()
    proxy, mu = torch.randn(2, 8), torch.randn(2, 3, 8)
    present = torch.tensor([[True, False, True], [True, True, True]])
    w = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    out = attn(proxy, mu, w, present)
    assert out.shape == (2, 8)
    mu2 = mu.clone()
    mu2[0, 1] = 99.0
    torch.testing.assert_close(attn(proxy, mu2, w, present), out)
    # even a non-zero weight on an absent modality contributes nothing (explicit zeroing)
    w_leak = w.clone()
    w_leak[0, 1] = 1.0
    torch.testing.assert_close(attn(proxy, mu2, w_leak, present)[0], out[0])


def test_proxy_attention_matches_formula():
    torch.manual_seed(0)
    attn = ProxyCrossModalAttention(2, 8, num_heads=2, dropout=0.0).eval()
    proxy, mu = torch.randn(3, 8), torch.randn(3, 2, 8)
    present = torch.ones(3, 2, dtype=torch.bool)
    w = torch.tensor([[0.7, 0.3]] * 3)
    with torch.no_grad():
        a = [attn.attn[m](proxy[:, None], mu[:, m : m + 1], mu[:, m : m + 1])[0][:, 0] for m in range(2)]
        x = attn.norm1(proxy + 0.7 * a[0] + 0.3 * a[1])
        expected = attn.norm2(x + attn.ffn(x))
        torch.testing.assert_close(attn(proxy, mu, w, present), expected)


def test_single_key_attention_equals_multihead_attention_with_gradients():
    torch.manual_seed(0)
    block = torch.nn.MultiheadAttention(8, 4, batch_first=True)
    query = torch.randn(3, 8)
    kv = torch.randn(3, 8, requires_grad=True)
    full, _ = block(query[:, None], kv[:, None], kv[:, None])
    full = full[:, 0]
    (full * torch.arange(8.0)).sum().backward()
    grad_kv, grad_in = kv.grad.clone(), block.in_proj_weight.grad.clone()
    kv.grad = None
    block.zero_grad()
    fast = single_key_attention([block], kv[None])[0]
    torch.testing.assert_close(fast, full)
    (fast * torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(kv.grad, grad_kv)
    torch.testing.assert_close(block.in_proj_weight.grad, grad_in)
    assert torch.all(block.in_proj_weight.grad[:16] == 0)  # query/key rows: no signal
    # with a single key the query does not matter
    other, _ = block(torch.randn(3, 1, 8), kv[:, None], kv[:, None])
    torch.testing.assert_close(other[:, 0], full)


def test_single_key_attention_stacks_blocks_independently():
    torch.manual_seed(0)
    blocks = [torch.nn.MultiheadAttention(8, 2, batch_first=True) for _ in range(3)]
    kv = torch.randn(3, 4, 8)
    with torch.no_grad():
        stacked = single_key_attention(blocks, kv)
        for m, blk in enumerate(blocks):
            alone, _ = blk(torch.randn(4, 1, 8), kv[m][:, None], kv[m][:, None])
            torch.testing.assert_close(stacked[m], alone[:, 0])


def test_proxy_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match="num_attention_heads"):
        ProxyCrossModalAttention(3, 10, num_heads=4, dropout=0.0)


# --------------------------------------------------------------------------- modality dropout

@pytest.mark.parametrize("epoch, expected", [(0, 0.0), (14, 0.0), (15, 0.0), (82.5, 0.25), (150, 0.5), (200, 0.5)])
def test_dropout_schedule_values(epoch, expected):
    # p(e) = 0.5 * (e - 15) / (150 - 15); e = 82.5 -> 0.5 * 67.5 / 135 = 0.25
    assert dropout_rate(epoch, 15, 150, 0.5) == pytest.approx(expected)


def test_dropout_schedule_guards_total_not_after_warmup():
    assert dropout_rate(4, 5, 5, 0.5) == 0.0
    assert dropout_rate(5, 5, 5, 0.5) == 0.5
    assert dropout_rate(7, 10, 3, 0.5) == 0.0


def test_drop_modes_are_the_six_modes():
    modes = drop_modes(3).tolist()
    assert modes == [
        [True, False, False], [False, True, False], [False, False, True],  # A, T, V
        [True, True, False], [True, False, True], [False, True, True],     # A+T, A+V, T+V
    ]
    assert drop_modes(2).tolist() == [[True, False], [False, True]]
    assert drop_modes(4).shape == (14, 4)


def test_apply_modality_dropout_modes_uniform_and_never_all():
    torch.manual_seed(0)
    n = 12000
    present = torch.ones(n, 3, dtype=torch.bool)
    out = apply_modality_dropout(present, 1.0, unit="sample")
    assert out.any(dim=1).all()
    dropped = ~out
    modes = drop_modes(3)
    match = (dropped.unsqueeze(1) == modes.unsqueeze(0)).all(-1)  # [n, 6]
    assert match.any(1).all(), "a drop pattern outside the 6 modes occurred"
    freq = match.float().mean(0)
    assert torch.all((freq - 1 / 6).abs() < 0.02), freq


def test_apply_modality_dropout_rate_matches_p():
    torch.manual_seed(1)
    present = torch.ones(20000, 3, dtype=torch.bool)
    out = apply_modality_dropout(present, 0.3, unit="sample")
    hit = (out != present).any(1).float().mean().item()
    assert abs(hit - 0.3) < 0.015
    assert torch.equal(apply_modality_dropout(present, 0.0, unit="sample"), present)


def test_apply_modality_dropout_respects_missing_and_never_empties():
    torch.manual_seed(2)
    n = 6000
    patterns = torch.tensor([[True, True, False], [False, True, False], [True, False, True]])
    present = patterns.repeat(n // 3, 1)
    out = apply_modality_dropout(present, 1.0, unit="sample")
    assert not (out & ~present).any(), "a missing modality was revived"
    assert out.any(1).all()
    single = present.sum(1) == 1
    assert torch.equal(out[single], present[single])
    # two present: modes that remove both (A+T for [A,T]) keep the sample as is -> 1/6 unchanged... plus
    # modes dropping only the absent modality (V) -> 2/6 unchanged in total
    two = torch.arange(n) % 3 == 0
    unchanged = (out[two] == present[two]).all(1).float().mean().item()
    assert abs(unchanged - 2 / 6) < 0.04


@pytest.mark.parametrize("unit", DROPOUT_UNITS)
def test_apply_modality_dropout_draws_from_torch_only(unit):
    """A given generator is the only source (torch's global RNG untouched); without one, torch's
    global RNG is (Python's ``random`` and NumPy's RNG, which the author's code used, are not)."""
    present = torch.ones(50, 3, dtype=torch.bool)
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    a = apply_modality_dropout(present, 1.0, unit=unit, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), global_state)
    assert torch.equal(a, apply_modality_dropout(present, 1.0, unit=unit, generator=torch.Generator().manual_seed(7)))
    assert (a != present).any(dim=1).all()  # rate 1: every row hit
    outs = []
    for other_seed in (1, 2):
        random.seed(other_seed)
        np.random.seed(other_seed)
        torch.manual_seed(3)
        seeded = torch.get_rng_state()
        outs.append(apply_modality_dropout(present, 0.5, unit=unit))
        assert not torch.equal(torch.get_rng_state(), seeded)  # it drew from torch's global RNG
    assert torch.equal(outs[0], outs[1])


def test_model_dropout_rate_and_eval_off(small_arm):
    torch.manual_seed(0)
    default = build_model(small_arm("exp4"), DIMS, N_CLASSES)
    default.set_epoch(150, 150)
    assert default.modality_dropout_rate == pytest.approx(0.2)  # the paper's p_max (SEED.md)
    model = build_model(small_arm("exp4", modality_dropout_max=0.5, modality_dropout_unit="sample"),
                        DIMS, N_CLASSES)
    assert model.modality_dropout_rate == 0.0
    model.set_epoch(15, 150)
    assert model.modality_dropout_rate == 0.0
    model.set_epoch(150, 150)
    assert model.modality_dropout_rate == pytest.approx(0.5)
    xs, present, lengths, _, _ = make_batch()
    big = [x.repeat(40, 1) for x in xs]
    present_big = present.repeat(40, 1)
    model.train()
    out = model(big, present_big)
    frac = (out.present != present_big).any(1).float().mean().item()
    assert 0.3 < frac < 0.7
    assert torch.all(out.fusion_weights[~out.present] == 0)
    model.eval()
    assert torch.equal(model(big, present_big).present, present_big)
    # switched off: rate 0 whatever the epoch
    off = build_model(small_arm("baseline"), DIMS, N_CLASSES)
    off.set_epoch(100, 150)
    assert off.modality_dropout_rate == 0.0
    off.train()
    assert torch.equal(off(big, present_big).present, present_big)


# --------------------------------------------------------------------------- encoders

def test_fast_dropout_distribution_and_eval_identity():
    torch.manual_seed(0)
    drop = FastDropout(0.4)
    x = torch.ones(200, 500)
    y = drop(x)
    values = torch.unique(y)
    assert values.numel() == 2 and values[0] == 0.0
    assert values[1].item() == pytest.approx(1 / 0.6)
    assert abs((y == 0).float().mean().item() - 0.4) < 0.01
    drop.eval()
    assert drop(x) is x


def test_bernoulli_keep_mask_rate_and_seed():
    torch.manual_seed(0)
    for p in (0.1, 0.25, 0.5):
        keep = bernoulli_keep_mask(torch.Size([400, 1001]), p, torch.device("cpu"))
        assert keep.dtype == torch.bool and keep.shape == (400, 1001)
        assert abs(keep.float().mean().item() - (1 - p)) < 0.003
        # the four 16-bit lanes of each 64-bit draw are each unbiased
        lanes = keep.flatten()[: 400 * 1000].view(-1, 4).float().mean(0)
        assert torch.all((lanes - (1 - p)).abs() < 0.006)
    torch.manual_seed(1)
    a = bernoulli_keep_mask(torch.Size([7, 9]), 0.3, torch.device("cpu"))
    torch.manual_seed(1)
    assert torch.equal(a, bernoulli_keep_mask(torch.Size([7, 9]), 0.3, torch.device("cpu")))


def test_masked_time_mean():
    x = torch.tensor([[[1.0], [3.0], [float("nan")]], [[2.0], [4.0], [6.0]]])
    torch.testing.assert_close(masked_time_mean(x, torch.tensor([2, 3])), torch.tensor([[2.0], [4.0]]))


class _FrameVariational(torch.nn.Module):
    """A one-modality frame-level VariationalEncoders with the LSTMEncoder calling convention."""

    def __init__(self, input_dim, hidden_dim, dropout):
        super().__init__()
        self.enc = VariationalEncoders([input_dim], [True], hidden_dim, dropout)

    def forward(self, x, lengths):
        return tuple(t[:, 0] for t in self.enc([x], [lengths]))


@pytest.mark.parametrize("cls", [LSTMEncoder, _FrameVariational])
def test_lstm_padding_beyond_length_is_ignored(cls):
    torch.manual_seed(0)
    enc = cls(3, 6, dropout=0.3).eval()
    x = torch.randn(4, 5, 3)
    lengths = torch.tensor([5, 2, 3, 1])
    out = enc(x, lengths)
    x2 = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x2[b, n:] = torch.randn(5 - n, 3) * 100
    out2 = enc(x2, lengths)
    longer = torch.cat([x2, torch.randn(4, 4, 3)], dim=1)  # more padding frames
    out3 = enc(longer, lengths)
    for a, b_, c in zip(out if isinstance(out, tuple) else (out,),
                        out2 if isinstance(out2, tuple) else (out2,),
                        out3 if isinstance(out3, tuple) else (out3,)):
        torch.testing.assert_close(a, b_)
        torch.testing.assert_close(a, c)
    # the valid frames do matter
    x4 = x.clone()
    x4[1, 0] += 1.0
    first = lambda o: o[0] if isinstance(o, tuple) else o  # noqa: E731
    assert not torch.allclose(first(enc(x4, lengths))[1], first(out)[1])


def test_lstm_encoder_returns_last_valid_hidden_state():
    """MERBench's LSTMEncoder: linear_1(Dropout(h_n)), no activation; h_n taken at the last valid frame."""
    torch.manual_seed(0)
    enc = LSTMEncoder(3, 4, dropout=0.0).eval()
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 3])
    with torch.no_grad():
        out = enc(x, lengths)
        full, _ = enc.lstm(x[1:2, :3])
        expected = full[0, -1] @ enc.linear_1.weight.T + enc.linear_1.bias
    torch.testing.assert_close(out[1], expected)
    assert (out < 0).any()  # no ReLU on the output


def test_variational_encoder_sampling_and_clamp():
    torch.manual_seed(0)
    enc = VariationalEncoders([6, 3], [False, False], 8, dropout=0.0)
    xs = [torch.randn(4, 6), torch.randn(4, 3)]
    enc.train()
    z, mu, logvar, std = enc(xs, [None, None])
    assert z.shape == mu.shape == logvar.shape == std.shape == (4, 2, 8)
    assert not torch.allclose(z, mu)
    torch.testing.assert_close(std, torch.exp(0.5 * logvar))
    enc.eval()
    z, mu, _, _ = enc(xs, [None, None])
    assert torch.equal(z, mu)
    with torch.no_grad():
        enc.heads.bias[:, :, 8:].fill_(50.0)  # the logvar head's bias
    assert enc(xs, [None, None])[2].max().item() == 10.0
    with torch.no_grad():
        enc.heads.bias[:, :, 8:].fill_(-50.0)
    assert enc(xs, [None, None])[2].min().item() == -10.0


def test_variational_encoders_match_the_per_modality_formula():
    """mu/logvar of modality m = heads_m(ReLU(L2_m(ReLU(L1_m(x_m))))), each modality with its own weights."""
    torch.manual_seed(0)
    enc = VariationalEncoders([6, 3], [False, False], 4, dropout=0.0).eval()
    xs = [torch.randn(5, 6), torch.randn(5, 3)]
    with torch.no_grad():
        _, mu, logvar, std = enc(xs, [None, None])
        for m, x in enumerate(xs):
            s1 = torch.relu(x @ enc.inputs[m].linear.weight + enc.inputs[m].linear.bias)
            s2 = torch.relu(s1 @ enc.shared[0].weight[m] + enc.shared[0].bias[m])
            heads = s2 @ enc.heads.weight[m] + enc.heads.bias[m]
            torch.testing.assert_close(mu[:, m], heads[:, :4])
            torch.testing.assert_close(logvar[:, m], heads[:, 4:].clamp(-10, 10))


def test_modality_encoders_are_merbench_mlp_encoders_and_lstm():
    """Utterance-level m: three Linear+ReLU layers (the middle two stacked); frame-level m: the LSTM state."""
    torch.manual_seed(0)
    enc = ModalityEncoders([6, 3, 5], [False, True, False], 4, dropout=0.0).eval()
    xs = [torch.randn(2, 6), torch.randn(2, 7, 3), torch.randn(2, 5)]
    lengths = [None, torch.tensor([7, 4]), None]
    with torch.no_grad():
        h = enc(xs, lengths)
        assert h.shape == (2, 3, 4)
        for k, m in enumerate(enc.mlp_index):
            a = torch.relu(xs[m] @ enc.inputs[m].linear.weight + enc.inputs[m].linear.bias)
            for layer in (enc.hidden[0], enc.hidden[2]):
                a = torch.relu(a @ layer.weight[k] + layer.bias[k])
            torch.testing.assert_close(h[:, m], a)
        torch.testing.assert_close(h[:, 1], enc.inputs[1].lstm(xs[1], lengths[1]))
    assert enc.mlp_index == [0, 2]


def test_stacked_linear_equals_separate_linear_layers_with_gradients():
    torch.manual_seed(0)
    stacked = StackedLinear(3, 5, 4)
    separate = [torch.nn.Linear(5, 4) for _ in range(3)]
    with torch.no_grad():
        for m, lin in enumerate(separate):
            lin.weight.copy_(stacked.weight[m].T)
            lin.bias.copy_(stacked.bias[m, 0])
    x = torch.randn(3, 7, 5)
    out = stacked(x)
    ref = torch.stack([lin(x[m]) for m, lin in enumerate(separate)])
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    for m, lin in enumerate(separate):
        torch.testing.assert_close(stacked.weight.grad[m], lin.weight.grad.T)
        torch.testing.assert_close(stacked.bias.grad[m, 0], lin.bias.grad)
    # nn.Linear's init range: U(-1/sqrt(in), 1/sqrt(in))
    assert stacked.weight.abs().max() <= 1 / math.sqrt(5) and stacked.weight.std() > 0.1


def test_input_major_linear_equals_nn_linear():
    torch.manual_seed(0)
    fast, ref = InputMajorLinear(7, 3), torch.nn.Linear(7, 3)
    assert fast.weight.shape == (7, 3)
    with torch.no_grad():
        ref.weight.copy_(fast.weight.T)
        ref.bias.copy_(fast.bias)
    x = torch.randn(4, 7)
    torch.testing.assert_close(fast(x), ref(x))
    torch.testing.assert_close(fast(x[None]), ref(x[None]))
    fast(x).sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad.T)
    assert fast.weight.abs().max() <= 1 / math.sqrt(7)


def test_modality_decoders_are_three_layer_mlps():
    torch.manual_seed(0)
    dec = ModalityDecoders(4, [6, 3])
    z = torch.randn(5, 2, 4)
    out = dec(z)
    assert [r.shape for r in out] == [(5, 6), (5, 3)] and len(dec) == 2
    with torch.no_grad():
        for m in range(2):
            a = torch.relu(z[:, m] @ dec.hidden[0].weight[m] + dec.hidden[0].bias[m])
            a = torch.relu(a @ dec.hidden[2].weight[m] + dec.hidden[2].bias[m])
            torch.testing.assert_close(out[m], dec.outputs[m](a))


# --------------------------------------------------------------------------- arms

@pytest.mark.parametrize("name", ARM_NAMES)
@pytest.mark.parametrize("frames", [False, True], ids=["vectors", "frames"])
def test_arm_forward_backward_shapes(name, frames, small_arm):
    torch.manual_seed(0)
    frame_level = [False, True, False] if frames else None
    arm = small_arm(name)
    model = build_model(arm, DIMS, N_CLASSES, frame_level=frame_level)
    model.set_epoch(2, 3)
    model.train()
    xs, present, lengths, labels, valence = make_batch(frame_level=frame_level)
    present[1, 0] = False
    out = model(xs, present, lengths)
    assert out.logits.shape == (B, N_CLASSES)
    assert out.valence.shape == (B,)
    assert out.present.shape == (B, 3) and out.present.dtype == torch.bool
    assert not (out.present & ~present).any()
    assert out.fusion_weights.shape == (B, 3)
    assert torch.all(out.fusion_weights[~out.present] == 0)
    if arm["use_vae"]:
        assert out.uncertainty.shape == (B, 3)
        assert out.mu.shape == out.logvar.shape == (B, 3, HIDDEN)
    else:
        assert out.uncertainty is None and out.mu is None and out.logvar is None
    if arm["use_vae"] and arm["recon_weight"] > 0:
        assert [r.shape for r in out.recons] == [(B, d) for d in DIMS]
        assert [t.shape for t in out.targets] == [(B, d) for d in DIMS]
    else:
        assert out.recons is None and out.targets is None
    total, terms = TrainingLoss.from_arm(arm)(out, labels, valence)
    assert set(terms) == {"loss", "ce", "valence_mse", "kl", "recon", "cross_kl"}
    assert math.isfinite(terms["loss"])
    total.backward()
    grads = [p.grad for p in model.encoders.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.heads.emotion.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ARM_NAMES)
def test_arm_eval_is_deterministic(name, small_arm):
    torch.manual_seed(0)
    model = build_model(small_arm(name), DIMS, N_CLASSES)
    model.set_epoch(100, 150)
    model.eval()
    xs, present, lengths, _, _ = make_batch()
    a, b = model(xs, present, lengths), model(xs, present, lengths)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.valence, b.valence)
    assert torch.equal(a.present, present)
    if a.mu is not None:
        assert torch.equal(a.mu, b.mu)


def test_vae_eval_uses_mu_not_samples(small_arm):
    torch.manual_seed(0)
    model = build_model(small_arm("exp2"), DIMS, N_CLASSES).eval()
    xs, present, lengths, _, _ = make_batch()
    out = model(xs, present, lengths)
    expected = model.decoders(out.mu)
    for r, e in zip(out.recons, expected):
        torch.testing.assert_close(r, e)


@pytest.mark.parametrize("name", ARM_NAMES)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("frames", [False, True], ids=["vectors", "frames"])
def test_absent_modality_values_do_not_matter(name, training, frames, small_arm):
    torch.manual_seed(0)
    frame_level = [True, False, True] if frames else None
    model = build_model(small_arm(name), DIMS, N_CLASSES, frame_level=frame_level)
    model.set_epoch(100, 150)
    model.train(training)
    xs, present, lengths, _, _ = make_batch(frame_level=frame_level)
    present[0, 0] = False
    present[2, 2] = False
    present[3, 1] = False
    present[3, 2] = False
    xs2 = [x.clone() for x in xs]
    lengths2 = [None if n is None else n.clone() for n in lengths]
    for b, m in [(0, 0), (2, 2), (3, 1), (3, 2)]:
        xs2[m][b] = torch.randn_like(xs2[m][b]) * 50 + 7
        if lengths2[m] is not None:
            lengths2[m][b] = 1 if lengths[m][b] > 1 else xs[m].shape[1]
    xs2[1][3] = float("nan")

    torch.manual_seed(11)
    a = model(xs, present, lengths)
    torch.manual_seed(11)
    b = model(xs2, present, lengths2)
    for field in ("logits", "valence", "present", "fusion_weights", "uncertainty", "mu", "logvar"):
        va, vb = getattr(a, field), getattr(b, field)
        if va is not None:
            assert torch.equal(va, vb), field
    for field in ("recons", "targets"):
        va, vb = getattr(a, field), getattr(b, field)
        if va is not None:
            for ta, tb in zip(va, vb):
                assert torch.equal(ta, tb), field


def test_missing_modality_changes_output(small_arm):
    """Sanity: the mask is not a no-op (a present modality does influence the output)."""
    torch.manual_seed(0)
    model = build_model(small_arm("exp4"), DIMS, N_CLASSES).eval()
    xs, present, lengths, _, _ = make_batch()
    full = model(xs, present, lengths).logits
    present2 = present.clone()
    present2[:, 1] = False
    assert not torch.allclose(model(xs, present2, lengths).logits, full)


@pytest.mark.parametrize("name", ["robust_v1", "exp4"])
def test_training_depends_on_the_torch_seed_only(name, small_arm):
    """Initial weights, input dropout, modality dropout and VAE sampling all draw from torch's RNG:
    the same torch seed gives the same masks and trained weights whatever Python's ``random`` and
    NumPy's RNG hold; another torch seed gives other weights."""
    arm = small_arm(name, modality_dropout_max=1.0)  # every batch loses a mode

    def train(torch_seed: int, other_seed: int):
        random.seed(other_seed)
        np.random.seed(other_seed)
        torch.manual_seed(torch_seed)
        model = build_model(arm, DIMS, N_CLASSES)
        model.set_epoch(150, 150)
        loss_fn = TrainingLoss.from_arm(arm)
        xs, present, lengths, labels, valence = make_batch()
        masks = []
        for _ in range(3):
            out = model(xs, present, lengths)
            masks.append(out.present)
            model.zero_grad()
            loss_fn(out, labels, valence)[0].backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
        return model.state_dict(), torch.stack(masks), present

    state_a, masks_a, present = train(5, other_seed=1)
    state_b, masks_b, _ = train(5, other_seed=2)
    assert (masks_a != present).any(dim=-1).all()  # modality dropout acted at every step
    assert torch.equal(masks_a, masks_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    state_c, _, _ = train(6, other_seed=1)
    assert not torch.equal(state_a["heads.emotion.weight"], state_c["heads.emotion.weight"])


# --------------------------------------------------------------------------- build_model

def test_build_model_switches_select_modules(small_arm):
    exp1 = build_model(small_arm("exp1"), DIMS, N_CLASSES)
    assert isinstance(exp1, PRMFModel) and isinstance(exp1.fusion, AttentionWeightFusion)
    assert exp1.proxy_attention is None and exp1.decoders is None
    exp2 = build_model(small_arm("exp2"), DIMS, N_CLASSES)
    assert isinstance(exp2.fusion, UncertaintyWeightedFusion) and exp2.proxy_attention is None
    assert len(exp2.decoders) == 3
    exp3 = build_model(small_arm("exp3"), DIMS, N_CLASSES)
    assert exp3.proxy_attention is not None and len(exp3.decoders) == 3  # recon 0.1, as exp2
    assert build_model(small_arm("exp3", recon_weight=0.0), DIMS, N_CLASSES).decoders is None
    exp4 = build_model(small_arm("exp4"), DIMS, N_CLASSES)
    assert exp4.fusion.tau == 0.8 and exp4.modality_dropout.warmup_epochs == 15
    assert len(exp4.proxy_attention.attn) == 3 and exp4.proxy_attention.attn[0].num_heads == 2
    exp5 = build_model(small_arm("exp5"), DIMS, N_CLASSES)
    assert isinstance(exp5.fusion, MaskedMeanFusion) and exp5.proxy_attention is not None
    base = build_model(small_arm("robust_v1"), DIMS, N_CLASSES)
    assert isinstance(base, AttentionBaseline) and base.modality_dropout.enabled
    prec = build_model(small_arm("exp4", fusion="precision", uncertainty="variance"), DIMS, N_CLASSES)
    assert prec.fusion.fusion == "precision" and prec.fusion.uncertainty == "variance"


def test_build_model_takes_every_value_from_the_arm(study_arm):
    """The study's exp4 as config/config.yaml resolves it, at full size: no value comes from elsewhere."""
    arm = study_arm("exp4")
    model = build_model(arm, DIMS, N_CLASSES)
    assert model.heads.emotion.in_features == arm["hidden_dim"] == 128
    assert model.proxy_attention.attn[0].num_heads == arm["num_attention_heads"] == 4
    assert model.encoders.inputs[0].dropout.p == arm["dropout"] == 0.4
    assert (model.fusion.fusion, model.fusion.uncertainty, model.fusion.tau) == (
        arm["fusion"], arm["uncertainty"], arm["tau"]) == ("uncertainty", "std", 0.8)
    md = model.modality_dropout
    assert (md.enabled, md.p_max, md.warmup_epochs, md.unit) == (True, 0.2, 15, "batch")
    assert model.dropped_modality == arm["dropped_modality"] == "mask"
    assert (model.standardizer is not None) == (arm["standardize"] == "zscore")
    other = build_model({**arm, "hidden_dim": 16, "tau": 0.5, "warmup_epochs": 3, "standardize": "none"},
                        DIMS, N_CLASSES)
    assert other.heads.emotion.in_features == 16 and other.fusion.tau == 0.5
    assert other.modality_dropout.warmup_epochs == 3 and other.standardizer is None


@pytest.mark.parametrize("key", COMMON_KEYS + PRMF_KEYS)
def test_build_model_names_a_missing_key(small_arm, key):
    """build_model has no defaults of its own: a key the arm lacks (or sets to null) is named."""
    arm = small_arm("exp4")
    del arm[key]
    with pytest.raises(ValueError, match=f"does not set '{key}'.*resolve_arm"):
        build_model(arm, DIMS, N_CLASSES)
    with pytest.raises(ValueError, match=f"does not set '{key}'"):
        build_model({**arm, key: None}, DIMS, N_CLASSES)
    if key in COMMON_KEYS:
        base = small_arm("baseline")
        del base[key]
        with pytest.raises(ValueError, match=f"does not set '{key}'"):
            build_model(base, DIMS, N_CLASSES)
    else:  # keys only the P-RMF family reads
        build_model({k: v for k, v in small_arm("baseline").items() if k != key}, DIMS, N_CLASSES)


def test_model_classes_have_no_study_defaults():
    """The values of a study live in the config schema only: the classes need every setting."""
    for cls in (AttentionBaseline, PRMFModel):
        with pytest.raises(TypeError, match="missing .* required keyword-only argument"):
            cls(DIMS, N_CLASSES)
    with pytest.raises(TypeError, match="required keyword-only argument"):
        ModalityDropout(3, True)
    with pytest.raises(TypeError, match="required positional argument"):
        UncertaintyWeightedFusion()
    with pytest.raises(TypeError, match="required keyword-only argument: 'unit'"):
        apply_modality_dropout(torch.ones(2, 3, dtype=torch.bool), 0.5)


def test_build_model_rejects_bad_arms(small_arm):
    with pytest.raises(ValueError, match="does not support use_vae=True"):
        build_model(small_arm("baseline", use_vae=True), DIMS, N_CLASSES)
    with pytest.raises(ValueError, match="does not support use_proxy_attention=True"):
        build_model(small_arm("baseline", use_proxy_attention=True), DIMS, N_CLASSES)
    no_model = small_arm("exp4")
    del no_model["model"]
    with pytest.raises(ValueError, match="arm must set 'model'"):
        build_model(no_model, DIMS, N_CLASSES)
    with pytest.raises(ValueError, match="unknown model 'tfn'"):
        build_model(small_arm("exp1", model="tfn"), DIMS, N_CLASSES)
    with pytest.raises(ValueError, match="fusion='precision' needs use_vae=True"):
        build_model(small_arm("exp1", fusion="precision"), DIMS, N_CLASSES)
    with pytest.raises(ValueError, match=r"uncertainty must be one of \('std', 'variance'\), got 'entropy'"):
        build_model(small_arm("exp4", uncertainty="entropy"), DIMS, N_CLASSES)
    with pytest.raises(ValueError, match="use_modality_dropout must be a boolean"):
        build_model(small_arm("exp1", use_modality_dropout="false"), DIMS, N_CLASSES)
    # keys build_model does not read are ignored
    model = build_model(small_arm("baseline", export_name="x", epochs=3, unrelated=1), DIMS, N_CLASSES)
    assert isinstance(model, AttentionBaseline) and model.heads.emotion.in_features == HIDDEN


def test_modality_dropout_graph_safe_reads_the_rate_tensor(small_arm):
    """The CUDA-graph path: random numbers always drawn, the rate read from a tensor that set_epoch updates."""
    present = torch.ones(4000, 3, dtype=torch.bool)
    assert torch.equal(apply_modality_dropout(present, torch.tensor(0.0), unit="sample"), present)
    hit = apply_modality_dropout(present, torch.tensor(0.3), unit="sample")
    assert abs((~hit).any(dim=1).float().mean().item() - 0.3) < 0.03 and hit.any(dim=1).all()
    for unit in ("batch", "sample"):
        model = build_model(small_arm("exp4", modality_dropout_max=1.0, modality_dropout_unit=unit),
                            DIMS, N_CLASSES)
        md = model.modality_dropout
        md.graph_safe = True
        model.set_epoch(150, 150)
        assert md.rate_tensor.item() == pytest.approx(md.rate) and md.rate == 1.0
        model.train()
        torch.manual_seed(0)
        out = md(present)
        assert (out != present).any(dim=1).all()  # rate 1: every row hit
        if unit == "batch":
            assert (out == out[0]).all()  # one mode for the whole batch
        model.set_epoch(0, 150)  # warm-up: rate 0, same kernels, nothing dropped
        assert md.rate_tensor.item() == 0.0
        assert torch.equal(md(present), present)

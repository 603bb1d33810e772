"""The models against MERBench and the author's code: the ``attention`` baseline layer for
layer, the modality-dropout unit, the dropped-modality rule, feature standardization and the
paper's defaults. Numbers marked "by hand" are written out from MERBench's layer lists or the
formulas in the docstrings (SEED.md is the reference for the study's facts). Arms are the
study's (config/config.yaml, through conftest's ``study_arm``); the MERBench comparisons use
raw features (``standardize: none``), as MERBench has no standardization."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prmf.config import RUNTIME_KEYS, resolve_arm, training_defaults
from prmf.losses import TrainingLoss
from prmf.models import (
    AttentionBaseline,
    FeatureStandardizer,
    LSTMEncoder,
    ModalityDropout,
    PRMFModel,
    UncertaintyWeightedFusion,
    VariationalEncoders,
    apply_modality_dropout,
    build_model,
    drop_modes,
    merbench_state_dict,
    standardization_stats,
    std_for_fusion,
)

MER2023 = [1024, 5120, 768]  # audio hubert-large, text Baichuan-13B, video clip-vit-large (SEED.md)
H = 128
DIMS = [6, 5, 4]
SMALL = {"hidden_dim": 8, "num_attention_heads": 2, "dropout": 0.2}


@pytest.fixture(scope="module")
def merbench_attention(study_arm):
    """``merbench_attention(**extra)``: the study's baseline arm on raw features (MERBench's ``attention``)."""
    return lambda **extra: study_arm("baseline", standardize="none", **extra)


@pytest.fixture(scope="module")
def small_arm(study_arm):
    """``small_arm(name, **extra)``: the study's arm ``name`` at test size, plus ``extra``."""
    return lambda name, **extra: study_arm(name, **SMALL, **extra)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_params(model, m: int) -> int:
    """Parameters of modality m's encoder: its input stage plus its slices of the stacked layers."""
    enc = model.encoders
    total = n_params(enc.inputs[m])
    if m in enc.mlp_index:
        k = enc.mlp_index.index(m)
        total += sum(p[k].numel() for p in enc.hidden.parameters())
    return total


# --------------------------------------------------------------------------- 1. MERBench's attention

# MERBench's Attention for utterance features (toolkit/models/attention.py + modules/encoder.py):
# MLPEncoder(D, H) = Linear(D, H) + Linear(H, H) + Linear(H, H)
MLP = {d: d * H + H + 2 * (H * H + H) for d in MER2023}
# audio 1024*128+128 + 2*(128*128+128) = 131200 + 33024 = 164224
# text  5120*128+128 + 33024 = 655488 + 33024 = 688512
# video  768*128+128 + 33024 =  98432 + 33024 = 131456
ATTENTION_MLP = 3 * H * H + H + 2 * (H * H + H)  # 49280 + 33024 = 82304
FC_ATT = H * 3 + 3  # 387
FC_OUT_1 = H * 6 + 6  # 774
FC_OUT_2 = H * 1 + 1  # 129


def test_attention_utterance_level_has_merbench_parameter_counts(merbench_attention):
    assert MLP == {1024: 164224, 5120: 688512, 768: 131456}
    assert (ATTENTION_MLP, FC_ATT, FC_OUT_1, FC_OUT_2) == (82304, 387, 774, 129)
    model = build_model(merbench_attention(hidden_dim=H), MER2023, 6)
    assert [encoder_params(model, m) for m in range(3)] == [164224, 688512, 131456]
    assert n_params(model.encoders) == 164224 + 688512 + 131456
    assert n_params(model.fusion.attention_mlp) == 82304
    assert n_params(model.fusion.fc_att) == 387
    assert n_params(model.heads.emotion) == 774 and n_params(model.heads.valence) == 129
    # 984192 + 82304 + 387 + 774 + 129
    assert n_params(model) == 1_067_786


def test_attention_frame_level_has_merbench_parameter_counts(merbench_attention):
    # LSTMEncoder(D, H): LSTM 4*(D*H + H*H + 2H) + linear_1 H*H + H
    lstm = {d: 4 * (d * H + H * H + 2 * H) + H * H + H for d in MER2023}
    # audio 4*(131072 + 16384 + 256) + 16512 = 590848 + 16512 = 607360
    # text  4*(655360 + 16384 + 256) + 16512 = 2688000 + 16512 = 2704512
    # video 4*(98304 + 16384 + 256) + 16512 = 459776 + 16512 = 476288
    assert lstm == {1024: 607360, 5120: 2704512, 768: 476288}
    model = build_model(merbench_attention(hidden_dim=H), MER2023, 6, frame_level=[True] * 3)
    assert [encoder_params(model, m) for m in range(3)] == [607360, 2704512, 476288]
    assert n_params(model.encoders.inputs[0].lstm.linear_1) == H * H + H
    assert n_params(model.fusion) == 82304 + 387
    assert n_params(model) == 607360 + 2704512 + 476288 + 82304 + 387 + 774 + 129 == 3_871_754


def _merbench_keys(frames: bool) -> dict[str, tuple[int, ...]]:
    """MERBench Attention's state_dict keys and shapes, written out from its layer list."""
    keys: dict[str, tuple[int, ...]] = {}
    for name, d in zip(("audio", "text", "video"), MER2023):
        if frames:
            keys |= {f"{name}_encoder.rnn.weight_ih_l0": (4 * H, d), f"{name}_encoder.rnn.weight_hh_l0": (4 * H, H),
                     f"{name}_encoder.rnn.bias_ih_l0": (4 * H,), f"{name}_encoder.rnn.bias_hh_l0": (4 * H,),
                     f"{name}_encoder.linear_1.weight": (H, H), f"{name}_encoder.linear_1.bias": (H,)}
        else:
            keys |= {f"{name}_encoder.linear_1.weight": (H, d), f"{name}_encoder.linear_1.bias": (H,),
                     f"{name}_encoder.linear_2.weight": (H, H), f"{name}_encoder.linear_2.bias": (H,),
                     f"{name}_encoder.linear_3.weight": (H, H), f"{name}_encoder.linear_3.bias": (H,)}
    keys |= {"attention_mlp.linear_1.weight": (H, 3 * H), "attention_mlp.linear_1.bias": (H,),
             "attention_mlp.linear_2.weight": (H, H), "attention_mlp.linear_2.bias": (H,),
             "attention_mlp.linear_3.weight": (H, H), "attention_mlp.linear_3.bias": (H,),
             "fc_att.weight": (3, H), "fc_att.bias": (3,),
             "fc_out_1.weight": (6, H), "fc_out_1.bias": (6,), "fc_out_2.weight": (1, H), "fc_out_2.bias": (1,)}
    return keys


@pytest.mark.parametrize("frames", [False, True], ids=["utt", "frames"])
def test_attention_module_tree_is_merbench_layer_for_layer(frames, merbench_attention):
    model = build_model(merbench_attention(hidden_dim=H), MER2023, 6, frame_level=[frames] * 3)
    sd = merbench_state_dict(model)
    assert {k: tuple(v.shape) for k, v in sd.items()} == _merbench_keys(frames)
    assert sum(v.numel() for v in sd.values()) == n_params(model)  # nothing left out, nothing extra


def _merbench_attention_forward(sd, xs, frames):
    """MERBench's Attention.forward in eval mode, written from its source with F.linear on its state_dict."""
    hidden = []
    for name, x in zip(("audio", "text", "video"), xs):
        def p(k, name=name):
            return sd[f"{name}_encoder.{k}"]

        if frames:
            rnn = torch.nn.LSTM(x.shape[-1], p("linear_1.weight").shape[0], batch_first=True)
            rnn.load_state_dict({k[4:]: sd[f"{name}_encoder.{k}"] for k in
                                 ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0")})
            _, (h_n, _) = rnn(x)
            hidden.append(F.linear(h_n.squeeze(0), p("linear_1.weight"), p("linear_1.bias")))  # no activation
        else:
            y = x
            for layer in ("linear_1", "linear_2", "linear_3"):
                y = F.relu(F.linear(y, p(f"{layer}.weight"), p(f"{layer}.bias")))
            hidden.append(y)
    a = torch.cat(hidden, dim=1)
    for layer in ("linear_1", "linear_2", "linear_3"):
        a = F.relu(F.linear(a, sd[f"attention_mlp.{layer}.weight"], sd[f"attention_mlp.{layer}.bias"]))
    att = F.linear(a, sd["fc_att.weight"], sd["fc_att.bias"]).unsqueeze(2)  # [B, 3, 1]
    fused = torch.matmul(torch.stack(hidden, dim=2), att).squeeze(2)  # [B, H, 3] @ [B, 3, 1]
    return (F.linear(fused, sd["fc_out_1.weight"], sd["fc_out_1.bias"]),
            F.linear(fused, sd["fc_out_2.weight"], sd["fc_out_2.bias"]).squeeze(-1))


@pytest.mark.parametrize("frames", [False, True], ids=["utt", "frames"])
def test_attention_computes_merbench_forward(frames, merbench_attention):
    """With every modality present (and all frames valid) our model is MERBench's function."""
    torch.manual_seed(0)
    dims = [6, 5, 4]
    model = build_model(merbench_attention(hidden_dim=8, dropout=0.3), dims, 6,
                        frame_level=[frames] * 3).eval()
    xs = [torch.randn(5, 7, d) if frames else torch.randn(5, d) for d in dims]
    lengths = [torch.full((5,), 7) for _ in dims] if frames else None
    out = model(xs, torch.ones(5, 3, dtype=torch.bool), lengths)
    with torch.no_grad():
        logits, valence = _merbench_attention_forward(merbench_state_dict(model), xs, frames)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.valence, valence)


def test_attention_mlp_is_dropout_then_three_relu_layers(merbench_attention):
    torch.manual_seed(0)
    model = build_model(merbench_attention(hidden_dim=4, dropout=0.5), DIMS, 3)
    mlp = model.fusion.attention_mlp
    assert [type(c).__name__ for c in mlp.children()] == ["FastDropout", "Linear", "Linear", "Linear"]
    assert mlp.dropout.p == 0.5 and mlp.linear_1.in_features == 12
    x = torch.randn(6, 12)
    mlp.eval()
    with torch.no_grad():
        y = x
        for lin in (mlp.linear_1, mlp.linear_2, mlp.linear_3):
            y = torch.relu(y @ lin.weight.T + lin.bias)
        torch.testing.assert_close(mlp(x), y)
        # the dropout acts on the input (MERBench's self.drop(x) before linear_1)
        mlp.train()
        torch.manual_seed(1)
        got = mlp(x)
        torch.manual_seed(1)
        keep = mlp.dropout(torch.ones_like(x))
        y = x * keep
        for lin in (mlp.linear_1, mlp.linear_2, mlp.linear_3):
            y = torch.relu(y @ lin.weight.T + lin.bias)
        torch.testing.assert_close(got, y)


def test_lstm_encoder_dropout_on_final_state_not_on_input():
    torch.manual_seed(0)
    enc = LSTMEncoder(3, 4, dropout=0.5).train()
    assert [type(c).__name__ for c in enc.children()] == ["LSTM", "FastDropout", "Linear"]
    x = torch.randn(6, 5, 3)
    lengths = torch.tensor([5, 4, 3, 2, 1, 5])
    torch.manual_seed(3)
    got = enc(x, lengths)
    with torch.no_grad():
        h_n = torch.stack([enc.lstm(x[b:b + 1, :n])[0][0, -1] for b, n in enumerate(lengths.tolist())])
        torch.manual_seed(3)
        keep = enc.dropout(torch.ones_like(h_n))  # same RNG draw as inside forward: nothing drawn for the input
        torch.testing.assert_close(got, enc.linear_1(h_n * keep))


def test_variational_frame_level_first_layer_is_relu_of_lstm_encoder(merbench_attention):
    """The VAE's frame-level first shared layer is ReLU(LSTMEncoder(x)); no extra H x H projection."""
    torch.manual_seed(0)
    enc = VariationalEncoders([3, 5], [True, False], 4, dropout=0.0).eval()
    stage = enc.inputs[0]
    assert stage.linear is None and stage.relu_frames
    assert n_params(stage) == 4 * (3 * 4 + 4 * 4 + 2 * 4) + 4 * 4 + 4  # LSTMEncoder(3, 4) only
    xs = [torch.randn(2, 6, 3), torch.randn(2, 5)]
    lengths = [torch.tensor([6, 2]), None]
    with torch.no_grad():
        _, mu, logvar, _ = enc(xs, lengths)
        s1 = torch.relu(stage.lstm(xs[0], lengths[0]))
        s2 = torch.relu(s1 @ enc.shared[0].weight[0] + enc.shared[0].bias[0])
        heads = s2 @ enc.heads.weight[0] + enc.heads.bias[0]
    torch.testing.assert_close(mu[:, 0], heads[:, :4])
    torch.testing.assert_close(logvar[:, 0], heads[:, 4:].clamp(-10, 10))
    # the deterministic family has no ReLU after MERBench's linear_1
    assert not build_model(merbench_attention(hidden_dim=4), [3, 5], 2,
                           frame_level=[True, False]).encoders.inputs[0].relu_frames


@pytest.mark.parametrize("frames", [False, True], ids=["utt", "frames"])
def test_exp1_is_the_attention_model_module_for_module(frames, small_arm):
    """robust_v1 (attention + modality dropout) and exp1 (prmf, no VAE, no proxy) are the same network."""
    frame_level = [frames, False, frames]
    torch.manual_seed(4)
    base = build_model(small_arm("robust_v1"), DIMS, 6, frame_level=frame_level)
    torch.manual_seed(4)
    exp1 = build_model(small_arm("exp1"), DIMS, 6, frame_level=frame_level)
    assert isinstance(base, AttentionBaseline) and isinstance(exp1, PRMFModel)
    tree = lambda m: [(n, type(c).__name__) for n, c in m.named_modules() if n]  # noqa: E731
    assert tree(exp1) == tree(base)
    assert n_params(exp1) == n_params(base)
    sa, sb = base.state_dict(), exp1.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # and the same training-mode forward under the same seed (same RNG draws in the same order)
    for m in (base, exp1):
        m.set_epoch(150, 150)
        m.train()
    xs = [torch.randn(16, 5, d) if f else torch.randn(16, d) for d, f in zip(DIMS, frame_level)]
    lengths = [torch.randint(1, 6, (16,)) if f else None for f in frame_level]
    present = torch.ones(16, 3, dtype=torch.bool)
    torch.manual_seed(9)
    a = base(xs, present, lengths)
    torch.manual_seed(9)
    b = exp1(xs, present, lengths)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.present, b.present)


# --------------------------------------------------------------------------- 2. modality-dropout unit

def _reference_sample_dropout(present, p, generator):
    """The per-sample rule written out: a hit and a mode per row, a row never emptied (reference)."""
    modes = drop_modes(present.shape[1])
    hit = torch.rand(present.shape[0], generator=generator) < p
    choice = torch.randint(modes.shape[0], (present.shape[0],), generator=generator)
    dropped = present & ~(modes[choice] & hit.unsqueeze(1))
    return torch.where(dropped.any(1, keepdim=True), dropped, present)


def test_sample_unit_is_the_reference_rule():
    present = torch.rand(300, 3, generator=torch.Generator().manual_seed(0)) < 0.8
    for p in (0.3, 1.0, torch.tensor(0.3)):
        got = apply_modality_dropout(present, p, generator=torch.Generator().manual_seed(5), unit="sample")
        ref = _reference_sample_dropout(present, p, torch.Generator().manual_seed(5))
        assert torch.equal(got, ref)


def test_batch_unit_drops_one_mode_from_every_row():
    torch.manual_seed(0)
    present = torch.ones(64, 3, dtype=torch.bool)
    for _ in range(20):
        out = apply_modality_dropout(present, 1.0, unit="batch")
        assert (out == out[0]).all(), "rows of one batch dropped different modes"
        assert (~out[0]).any() and out[0].any()


def test_batch_unit_never_empties_a_row_and_never_revives():
    # force the mode "drop audio + text" with a one-row mode table
    present = torch.tensor([[True, True, True], [True, True, False], [False, True, True], [False, False, True]])
    out = apply_modality_dropout(present, 1.0, modes=torch.tensor([[True, True, False]]), unit="batch")
    assert out.tolist() == [
        [False, False, True],   # A+T dropped
        [True, True, False],    # A+T would empty it: kept as is
        [False, False, True],   # only T was left to drop
        [False, False, True],   # nothing of A+T present: unchanged
    ]


def test_batch_unit_hit_rate_and_modes_are_uniform():
    torch.manual_seed(123)
    present = torch.ones(8, 3, dtype=torch.bool)
    modes = drop_modes(3)
    calls, p = 6000, 0.3
    hits, counts = 0, torch.zeros(6)
    for _ in range(calls):
        out = apply_modality_dropout(present, p, modes=modes, unit="batch")
        if (out != present).any():
            hits += 1
            assert (out == out[0]).all()
            counts += (~out[0] == modes).all(1).float()
    assert abs(hits / calls - p) < 0.03  # s.e. 0.006
    freq = counts / counts.sum()
    assert counts.sum() == hits
    assert torch.all((freq - 1 / 6).abs() < 0.04), freq  # s.e. about 0.009


@pytest.mark.parametrize("unit", ["batch", "sample"])
def test_rate_zero_leaves_the_mask(unit):
    present = torch.tensor([[True, False, True], [True, True, True]])
    assert apply_modality_dropout(present, 0.0, unit=unit) is present
    assert torch.equal(apply_modality_dropout(present, torch.tensor(0.0), unit=unit), present)
    md = ModalityDropout(3, True, p_max=0.2, warmup_epochs=0, unit=unit).train()
    assert md(present) is present  # rate 0 until set_epoch
    md.graph_safe = True
    assert torch.equal(md(present), present)


def test_the_study_unit_is_batch_and_the_model_takes_the_arms(small_arm):
    assert training_defaults()["modality_dropout_unit"] == "batch"  # the author's random.choice per call
    assert build_model(small_arm("exp1"), DIMS, 6).modality_dropout.unit == "batch"
    sample = build_model(small_arm("robust_v1", modality_dropout_unit="sample"), DIMS, 6)
    assert sample.modality_dropout.unit == "sample"
    with pytest.raises(ValueError, match="modality_dropout_unit must be one of batch, sample, got 'epoch'"):
        build_model(small_arm("exp1", modality_dropout_unit="epoch"), DIMS, 6)
    with pytest.raises(ValueError, match="modality_dropout_unit must be one of .*got 'row'"):
        apply_modality_dropout(torch.ones(10, 3, dtype=torch.bool), 0.5, unit="row")


def test_model_batch_unit_drops_the_same_mode_in_the_whole_batch(small_arm):
    torch.manual_seed(0)
    model = build_model(small_arm("exp2", modality_dropout_max=1.0), DIMS, 6)
    model.set_epoch(150, 150)
    model.train()
    xs = [torch.randn(12, d) for d in DIMS]
    out = model(xs, torch.ones(12, 3, dtype=torch.bool))
    assert (out.present == out.present[0]).all() and not out.present[0].all()
    assert torch.all(out.fusion_weights[~out.present] == 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("unit", ["batch", "sample"])
def test_graph_safe_dropout_captures_in_a_cuda_graph(unit):
    md = ModalityDropout(3, True, p_max=1.0, warmup_epochs=0, unit=unit).cuda().train()
    md.graph_safe = True
    present = torch.ones(32, 3, dtype=torch.bool, device="cuda")
    md.set_epoch(0, 10)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        md(present)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = md(present)
    graph.replay()
    assert torch.equal(out, present)
    md.set_epoch(10, 10)  # rate 1 read from the device tensor by the same graph
    graph.replay()
    assert (out != present).any(1).all()


# --------------------------------------------------------------------------- 3. dropped-modality rule

def test_std_1e6_fusion_weights_by_hand():
    # u = [1.0, 1e6 (absent), 0.5], tau 1: logits 1/(u + 1e-6) = 0.999999, 1e-6, 1.999996
    # softmax ~ e^1, e^0, e^2 / (2.718282 + 1 + 7.389056 = 11.107338) = 0.244729, 0.090031, 0.665240
    mu = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]]])
    std = torch.tensor([[[1.0, 1.0], [0.3, 0.3], [0.5, 0.5]]])
    present = torch.tensor([[True, False, True]])
    replaced = std_for_fusion(std, present)
    assert torch.equal(replaced[0, 1], torch.full((2,), 1e6)) and torch.equal(replaced[:, [0, 2]], std[:, [0, 2]])
    proxy, w, u = UncertaintyWeightedFusion("uncertainty", "std", tau=1.0)(mu, replaced, None)
    torch.testing.assert_close(u, torch.tensor([[1.0, 1e6, 0.5]]))
    torch.testing.assert_close(w, torch.tensor([[0.244729, 0.090031, 0.665240]]), atol=2e-6, rtol=0)
    torch.testing.assert_close(proxy, torch.tensor([[0.244729 + 5 * 0.090031, 5 * 0.090031 + 0.665240]]),
                               atol=1e-5, rtol=0)
    # mask: softmax over the present two only: e^1 / (e^1 + e^2) = 1 / (1 + e) = 0.268941; absent exactly 0
    proxy, w, _ = UncertaintyWeightedFusion("uncertainty", "std", tau=1.0)(mu, std, present)
    assert w[0, 1].item() == 0.0
    torch.testing.assert_close(w, torch.tensor([[0.268942, 0.0, 0.731058]]), atol=2e-6, rtol=0)
    torch.testing.assert_close(proxy, torch.tensor([[0.268942, 0.731058]]), atol=2e-6, rtol=0)


def _vae_with_constant_std(arm: dict):
    """``arm``'s VAE model with encoders that output std 1.0 / 0.7 / 0.5 for the three modalities, whatever x."""
    torch.manual_seed(0)
    model = build_model(arm, DIMS, 6).eval()
    with torch.no_grad():
        model.encoders.heads.weight[:, :, 8:] = 0.0
        for m, s in enumerate((1.0, 0.7, 0.5)):
            model.encoders.heads.bias[m, :, 8:] = 2 * math.log(s)  # logvar = 2 log std
    return model


def test_model_std_1e6_weights_by_hand_and_mask_exact_zero(small_arm):
    xs = [torch.randn(2, d) for d in DIMS]
    present = torch.tensor([[True, False, True], [True, True, True]])
    # exp3 (VAE, proxy attention, recon 0.1) with the tau of the hand numbers
    author = _vae_with_constant_std(small_arm("exp3", tau=1.0, dropped_modality="std_1e6"))(xs, present)
    masked = _vae_with_constant_std(small_arm("exp3", tau=1.0, dropped_modality="mask"))(xs, present)
    # sample 0: u = [1.0, 1e6, 0.5] -> the hand numbers above; with "mask" the absent weight is exactly 0
    torch.testing.assert_close(author.fusion_weights[0], torch.tensor([0.244729, 0.090031, 0.665240]),
                               atol=2e-5, rtol=0)
    assert author.uncertainty[0, 1].item() == 1e6
    assert masked.fusion_weights[0, 1].item() == 0.0 and masked.uncertainty[0, 1].item() == 0.0
    torch.testing.assert_close(masked.fusion_weights[0], torch.tensor([0.268942, 0.0, 0.731058]),
                               atol=2e-5, rtol=0)
    # sample 1, all present: both rules agree
    torch.testing.assert_close(author.fusion_weights[1], masked.fusion_weights[1])
    torch.testing.assert_close(author.logits[1], masked.logits[1])
    # the unmasked proxy attention and the 9 % weight change sample 0's output
    assert not torch.allclose(author.logits[0], masked.logits[0])
    # losses stay masked: same mu, logvar, mask, recon terms -> same KL / recon / cross-KL
    assert torch.equal(author.present, present) and torch.equal(author.mu, masked.mu)
    assert torch.equal(author.logvar, masked.logvar)
    loss = TrainingLoss(kl_weight=1.0, recon_weight=1.0, cross_kl_weight=1.0)
    ta = loss.terms(author, torch.tensor([0, 1]), torch.zeros(2))[1]
    tm = loss.terms(masked, torch.tensor([0, 1]), torch.zeros(2))[1]
    torch.testing.assert_close(ta[3:], tm[3:])  # kl, recon, cross_kl


def test_std_1e6_attention_is_not_masked(small_arm):
    model = _vae_with_constant_std(small_arm("exp3", dropped_modality="std_1e6"))
    xs = [torch.randn(1, d) for d in DIMS]
    present = torch.tensor([[True, False, True]])
    out = model(xs, present)
    attn = model.proxy_attention
    with torch.no_grad():
        w = out.fusion_weights
        proxy = (w.unsqueeze(-1) * out.mu).sum(1)
        a = [attn.attn[m](proxy[:, None], out.mu[:, m:m + 1], out.mu[:, m:m + 1])[0][:, 0] for m in range(3)]
        x = attn.norm1(proxy + sum(w[:, m:m + 1] * a[m] for m in range(3)))  # absent modality included
        rep = attn.norm2(x + attn.ffn(x))
    torch.testing.assert_close(out.logits, model.heads.emotion(rep))


@pytest.mark.parametrize("name", ["exp1", "exp5"])
def test_std_1e6_without_vae_is_mask(name, small_arm):
    outs = []
    for rule in ("mask", "std_1e6"):
        torch.manual_seed(0)
        model = build_model(small_arm(name, dropped_modality=rule), DIMS, 6).eval()
        outs.append(model([torch.randn(3, d) for d in DIMS], torch.tensor([[True, False, True]] * 3)))
    assert torch.equal(outs[0].logits, outs[1].logits)
    assert torch.equal(outs[0].fusion_weights, outs[1].fusion_weights)
    assert outs[1].fusion_weights[0, 1] == 0.0
    with pytest.raises(ValueError, match="dropped_modality must be one of mask, std_1e6, got 'zero'"):
        build_model(small_arm("baseline", dropped_modality="zero"), DIMS, 6)


@pytest.mark.parametrize("rule", ["mask", "std_1e6"])
@pytest.mark.parametrize("standardize", ["none", "zscore"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_absent_modality_input_values_do_not_matter(rule, standardize, training, small_arm):
    torch.manual_seed(0)
    model = build_model(small_arm("exp4", dropped_modality=rule, standardize=standardize), DIMS, 6)
    if model.standardizer is not None:
        model.standardizer.set_stats([(np.full(d, 0.5), np.full(d, 2.0)) for d in DIMS])
    model.set_epoch(150, 150)
    model.train(training)
    xs = [torch.randn(4, d) for d in DIMS]
    present = torch.tensor([[True, False, True], [False, True, True], [True, True, True], [True, True, False]])
    variants = []
    for fill in (0.0, float("nan"), 1e4):
        v = [x.clone() for x in xs]
        for b, m in [(0, 1), (1, 0), (3, 2)]:
            v[m][b] = fill
        variants.append(v)
    variants[2][1][0] = torch.randn(5) * 100  # garbage
    outs = []
    for v in variants:
        torch.manual_seed(11)
        outs.append(model(v, present))
    for out in outs[1:]:
        for field in ("logits", "valence", "present", "fusion_weights", "uncertainty", "mu", "logvar"):
            assert torch.equal(getattr(out, field), getattr(outs[0], field)), field
        for ra, rb in zip(out.recons + out.targets, outs[0].recons + outs[0].targets):
            assert torch.equal(ra, rb)


# --------------------------------------------------------------------------- 4. standardization

def test_standardization_stats_by_hand():
    x = np.array([
        [1.0, 2.0, 7.0],
        [3.0, 6.0, 7.0],
        [100.0, 100.0, 100.0],  # absent (present False): left out
        [0.0, 0.0, 0.0],        # all zero (MERBench's missing face / transcript): left out
        [5.0, 10.0, 7.0],
    ], dtype=np.float32)
    present = np.array([[True], [True], [False], [True], [True]])
    [(mean, std)] = standardization_stats([x], present, [None])
    # rows 0, 1, 4: mean [3, 6, 7]; var [(4 + 0 + 4)/3, (16 + 0 + 16)/3, 0] = [8/3, 32/3, 0]
    # std [1.632993, 3.265986, floor]; floor = 1e-3 * sqrt((8/3 + 32/3 + 0) / 3) = 1e-3 * 2.108185
    assert mean.dtype == np.float32 and std.dtype == np.float32
    np.testing.assert_allclose(mean, [3.0, 6.0, 7.0], rtol=1e-6)
    np.testing.assert_allclose(std, [1.632993, 3.265986, 0.002108185], rtol=1e-6)
    [(_, std2)] = standardization_stats([x], present, [None], std_floor=0.5)
    np.testing.assert_allclose(std2, [1.632993, 3.265986, 1.054093], rtol=1e-6)  # 0.5 * 2.108185


def test_standardization_stats_frame_level_by_hand():
    pad = 99.0
    x = np.full((4, 4, 2), pad, dtype=np.float32)
    x[0, :2] = [[1, 0], [3, 2]]
    x[1, :3] = [[5, 4], [0, 0], [2, 6]]  # a zero frame inside a valid row counts
    x[2] = -50.0                            # absent row
    x[3, :1] = [[0, 0]]                     # all zero over its valid frames (padding 99 ignored)
    lengths = np.array([2, 3, 4, 1])
    present = np.array([[True], [True], [False], [True]])
    [(mean, std)] = standardization_stats([x], present, [lengths])
    # frames [1,0] [3,2] [5,4] [0,0] [2,6]: mean [11/5, 12/5] = [2.2, 2.4]
    # var dim0 (1.44 + 0.64 + 7.84 + 4.84 + 0.04) / 5 = 2.96; dim1 (5.76 + 0.16 + 2.56 + 5.76 + 12.96) / 5 = 5.44
    np.testing.assert_allclose(mean, [2.2, 2.4], rtol=1e-6)
    np.testing.assert_allclose(std, [math.sqrt(2.96), math.sqrt(5.44)], rtol=1e-6)


def test_standardization_stats_edge_cases():
    x = np.zeros((3, 2), dtype=np.float32)
    [(mean, std)] = standardization_stats([x], np.ones((3, 1), bool))  # no usable row: identity
    assert mean.tolist() == [0.0, 0.0] and std.tolist() == [1.0, 1.0]
    const = np.array([[2.0, 3.0], [2.0, 3.0]], dtype=np.float32)
    [(mean, std)] = standardization_stats([const], np.ones((2, 1), bool))  # all constant: centre only
    assert mean.tolist() == [2.0, 3.0] and std.tolist() == [1.0, 1.0]
    nan = np.array([[1.0, np.nan]], dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        standardization_stats([nan], np.ones((1, 1), bool))
    with pytest.raises(ValueError, match="present"):
        standardization_stats([x], np.ones((3, 2), bool))


def test_feature_standardizer_forward_by_hand():
    std_mod = FeatureStandardizer([2, 2])
    std_mod.set_stats([(np.array([1.0, 2.0]), np.array([2.0, 4.0])), (np.array([0.0, 1.0]), np.array([1.0, 0.5]))])
    assert set(std_mod.state_dict()) == {"mean_0", "std_0", "mean_1", "std_1"}
    utt = torch.tensor([[3.0, 6.0], [1.0, 0.0]])
    frames = torch.tensor([[[1.0, 2.0], [2.0, 0.0], [0.0, 0.0]]])
    a, b = std_mod([utt, frames], [None, torch.tensor([2])])
    torch.testing.assert_close(a, torch.tensor([[1.0, 1.0], [0.0, -0.5]]))
    torch.testing.assert_close(b, torch.tensor([[[1.0, 2.0], [2.0, -2.0], [0.0, 0.0]]]))  # padding frame stays 0
    with pytest.raises(ValueError, match="std"):
        std_mod.set_stats([(np.zeros(2), np.array([1.0, 0.0])), (np.zeros(2), np.ones(2))])
    with pytest.raises(ValueError, match="shape"):
        std_mod.set_stats([(np.zeros(3), np.ones(3)), (np.zeros(2), np.ones(2))])


def _stats(dims, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=d).astype(np.float32), rng.uniform(0.5, 2.0, size=d).astype(np.float32)) for d in dims]


def test_standardized_model_equals_unstandardized_model_on_standardized_inputs(small_arm):
    """Standardization comes first, absent modalities are zeroed after it, recon targets are standardized."""
    torch.manual_seed(0)
    z = build_model(small_arm("exp3", standardize="zscore"), DIMS, 6).eval()
    torch.manual_seed(0)
    plain = build_model(small_arm("exp3", standardize="none"), DIMS, 6).eval()
    stats = _stats(DIMS)
    z.standardizer.set_stats(stats)
    xs = [torch.randn(4, d) * 3 + 1 for d in DIMS]
    present = torch.tensor([[True, False, True], [True, True, True], [False, True, True], [True, True, False]])
    pre = [(x - torch.from_numpy(m)) / torch.from_numpy(s) for x, (m, s) in zip(xs, stats)]
    a, b = z(xs, present), plain(pre, present)
    torch.testing.assert_close(a.logits, b.logits)
    for ta, tb, x, m in zip(a.targets, b.targets, pre, range(3)):
        torch.testing.assert_close(ta, tb)
        torch.testing.assert_close(ta[present[:, m]], x[present[:, m]])
        assert torch.all(ta[~present[:, m]] == 0)  # absent: zeros, not -mean/std
    prepared, _, _ = z.prepare_inputs(xs, present, None)
    assert torch.all(prepared[1][0] == 0) and torch.all(prepared[0][2] == 0)


@pytest.mark.parametrize("frames", [False, True], ids=["utt", "frames"])
def test_standardizer_state_dict_round_trip(frames, small_arm):
    frame_level = [frames, False, False]
    arm = small_arm("exp4", standardize="zscore")
    torch.manual_seed(0)
    model = build_model(arm, DIMS, 6, frame_level=frame_level).eval()
    model.standardizer.set_stats(_stats(DIMS))
    assert {"standardizer.mean_0", "standardizer.std_0", "standardizer.mean_2", "standardizer.std_2"} <= set(
        model.state_dict())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    fresh = build_model(arm, DIMS, 6, frame_level=frame_level).eval()
    fresh.load_state_dict(torch.load(buf))
    xs = [torch.randn(3, 5, DIMS[0]) if frames else torch.randn(3, DIMS[0])] + [torch.randn(3, d) for d in DIMS[1:]]
    lengths = [torch.tensor([5, 2, 3]) if frames else None, None, None]
    present = torch.ones(3, 3, dtype=torch.bool)
    assert torch.equal(fresh(xs, present, lengths).logits, model(xs, present, lengths).logits)
    # without the loaded statistics the output differs (they matter)
    torch.manual_seed(0)
    unset = build_model(arm, DIMS, 6, frame_level=frame_level).eval()
    assert not torch.allclose(unset(xs, present, lengths).logits, model(xs, present, lengths).logits)
    # "none" adds nothing to the state_dict
    torch.manual_seed(0)
    none = build_model({**arm, "standardize": "none"}, DIMS, 6, frame_level=frame_level)
    assert none.standardizer is None
    assert list(none.state_dict()) == [k for k in model.state_dict() if not k.startswith("standardizer.")]
    with pytest.raises(ValueError, match="standardize must be one of none, zscore, got 'minmax'"):
        build_model({**arm, "standardize": "minmax"}, DIMS, 6)


# --------------------------------------------------------------------------- 5. defaults

def test_paper_defaults_live_in_the_schema(study_config):
    """The seed's class defaults that the study keeps (SEED.md): p_max 0.2, tau 1.0, per-batch dropout;
    the pipeline's own: exact masking, raw features. They are the schema's ``training`` defaults, the
    one place a default is written, and an arm that sets nothing gets them."""
    defaults = training_defaults()
    assert (defaults["modality_dropout_max"], defaults["tau"], defaults["modality_dropout_unit"]) == (0.2, 1.0, "batch")
    assert (defaults["dropped_modality"], defaults["standardize"], defaults["fusion"], defaults["uncertainty"]) == (
        "mask", "none", "uncertainty", "std")
    assert not (defaults["use_vae"] or defaults["use_proxy_attention"] or defaults["use_modality_dropout"])
    # the author's model-class defaults (SEED.md), acting only with the VAE
    assert (defaults["kl_weight"], defaults["recon_weight"], defaults["cross_kl_weight"]) == (0.01, 0.1, 0.01)
    # validation fills them into `training` (not into the arms, which keep only what they set) ...
    assert {k: study_config["training"][k] for k in ("use_vae", "tau", "kl_weight", "fusion")} == {
        "use_vae": False, "tau": 1.0, "kl_weight": 0.01, "fusion": "uncertainty"}
    assert "tau" not in study_config["arms"]["baseline"] and study_config["arms"]["exp4"]["tau"] == 0.8
    # ... and resolve_arm takes them from the schema for a config that was not validated
    bare = resolve_arm({"arms": {"bare": {"model": "prmf"}}}, "bare")
    assert {k: bare[k] for k in defaults if k not in RUNTIME_KEYS} == {
        k: v for k, v in defaults.items() if k not in RUNTIME_KEYS}
    model = build_model(bare, DIMS, 6)
    md = model.modality_dropout
    assert (md.enabled, md.p_max, md.unit, model.dropped_modality, model.standardizer) == (
        False, 0.2, "batch", "mask", None)

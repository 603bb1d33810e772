"""Training of one fold: determinism, early stopping, selection, device fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prmf.data.folds import make_folds
from prmf.data.synthetic import SyntheticConfig, generate
from prmf.train import process_age, resolve_device, train_fold, train_pack

#: what the tests change of the study's arms: a small model, 4 short epochs, the dropout warm-up in reach
TEST_SIZE = {"hidden_dim": 16, "num_attention_heads": 2, "dropout": 0.2, "lr": 3e-3, "batch_size": 32,
             "epochs": 4, "early_stop": 4, "warmup_epochs": 1}


@pytest.fixture(scope="module")
def exp4_arm(study_arm):
    """The study's exp4 (full P-RMF, config/config.yaml) at test size."""
    return study_arm("exp4", **TEST_SIZE)


@pytest.fixture(scope="module")
def data():
    from prmf.data.zero_rows import flag_zero_rows

    store = generate(SyntheticConfig(scale=0.08, dims={"audio": 6, "text": 8, "video": 5}))
    flag_zero_rows(store)
    return store, make_folds(store, 2, seed=0)


def test_same_seed_gives_identical_predictions(data, exp4_arm):
    store, folds = data
    a = train_fold(store, folds, 0, exp4_arm, seed=3, device="cpu")
    b = train_fold(store, folds, 0, exp4_arm, seed=3, device="cpu")
    for split in ("val", "test1", "test2", "test3"):
        np.testing.assert_array_equal(a.predictions[split].logits, b.predictions[split].logits)
        np.testing.assert_array_equal(a.predictions[split].valence, b.predictions[split].valence)
    c = train_fold(store, folds, 0, exp4_arm, seed=4, device="cpu")
    assert not np.array_equal(a.predictions["test1"].logits, c.predictions["test1"].logits)


def test_best_epoch_selection_and_early_stop(data, exp4_arm):
    store, folds = data
    arm = {**exp4_arm, "epochs": 30, "early_stop": 2, "lr": 0.05}
    res = train_fold(store, folds, 1, arm, seed=0, device="cpu")
    scores = [h["val_score"] for h in res.history]
    assert res.best_epoch == int(np.argmax(scores))
    # stopped exactly `early_stop` epochs after the best one, or ran out of epochs
    assert res.epochs_run == min(30, res.best_epoch + 1 + 2)
    # the restored weights reproduce the best epoch's validation metrics
    assert res.metrics["val"]["f1"] == pytest.approx(res.history[res.best_epoch]["val_f1"])
    # valence is known on val: selection score = f1 - 0.25 * mse
    h = res.history[res.best_epoch]
    assert h["val_score"] == pytest.approx(h["val_f1"] - 0.25 * h["val_mse"])
    # predictions cover the fold's held-out part and every test split
    assert len(res.predictions["val"].names) == len(folds["folds"][1]["val"])
    assert res.metrics["test3"]["val_mse"] is None
    # absent modalities (test2, flagged by the source) carry no uncertainty
    t2 = res.predictions["test2"]
    absent = np.stack([store.missing[m][store.split == "test2"] for m in store.modalities], 1)
    assert absent.any() and np.isnan(t2.uncertainty[absent]).all()
    assert np.all(t2.fusion_weights[absent] == 0)


def test_history_records_dropout_schedule_and_weights(data, exp4_arm):
    store, folds = data
    res = train_fold(store, folds, 0, exp4_arm, seed=0, device="cpu")
    rates = [h["modality_dropout_rate"] for h in res.history]
    # warmup 1, E 4, p_max 0.2 (the study's): p(e) = 0.2 * (e - 1) / 3
    assert rates == pytest.approx([0.0, 0.0, 0.2 / 3, 0.4 / 3])
    assert all(abs(sum(h[f"weight_{m}"] for m in store.modalities) - 1) < 1e-5 for h in res.history)


def test_device_auto_falls_back_to_cpu_with_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    messages = []
    assert resolve_device("auto", warn=messages.append) == torch.device("cpu")
    assert "no CUDA device visible" in messages[0]
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        resolve_device("cuda")


def test_train_fold_needs_a_resolved_arm(data, exp4_arm):
    store, folds = data
    for key in ("early_stop", "valence_weight_in_selection", "standardize"):
        arm = {k: v for k, v in exp4_arm.items() if k != key}
        with pytest.raises(ValueError, match=f"'exp4' does not set '{key}'.*resolve_arm"):
            train_fold(store, folds, 0, arm, seed=0, device="cpu")
    with pytest.raises(ValueError, match="does not set 'tau'"):  # the model's keys: build_model names them
        train_fold(store, folds, 0, {k: v for k, v in exp4_arm.items() if k != "tau"}, seed=0, device="cpu")


def test_stale_folds_are_refused(data, exp4_arm):
    store, folds = data
    bad = {**folds, "folds": [{"fold": 0, "train": folds["folds"][0]["train"], "val": ["no_such_sample"]}]}
    with pytest.raises(ValueError, match="rerun make_folds"):
        train_fold(store, bad, 0, exp4_arm, seed=0, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["exp4", "baseline"])
def test_train_fold_on_cuda(data, name, study_arm):
    """The whole fold (stacked GEMMs, FastDropout masks, fused Adam) runs on a GPU and predicts every split."""
    store, folds = data
    arm = study_arm(name, **TEST_SIZE)
    res = train_fold(store, folds, 0, arm, seed=0, device="cuda", cuda_graphs=False)
    for split in ("val", "test1", "test2", "test3"):
        pred = res.predictions[split]
        assert np.isfinite(pred.logits).all() and np.isfinite(pred.valence).all()
    assert all(v.device.type == "cpu" for v in res.state_dict.values())
    assert len(res.history) == TEST_SIZE["epochs"] and np.isfinite(res.history[-1]["train_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_training_is_reproducible_and_learns(data, exp4_arm):
    """Graph replay: same seed -> same predictions; it trains as well as the eager loop on this tiny set."""
    store, folds = data
    arm = {**exp4_arm, "epochs": 6, "early_stop": 6, "batch_size": 8}  # several full batches per epoch -> replays
    a = train_fold(store, folds, 0, arm, seed=1, device="cuda", cuda_graphs=True)
    b = train_fold(store, folds, 0, arm, seed=1, device="cuda", cuda_graphs=True)
    np.testing.assert_array_equal(a.predictions["test1"].logits, b.predictions["test1"].logits)
    eager = train_fold(store, folds, 0, arm, seed=1, device="cuda", cuda_graphs=False)
    # the loss decreased under replay as it does eagerly
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert abs(a.history[-1]["train_loss"] - eager.history[-1]["train_loss"]) < 0.5 * eager.history[0]["train_loss"]


def test_use_cuda_graphs_only_on_cuda_with_vectors():
    from prmf.train import use_cuda_graphs

    assert use_cuda_graphs(True, torch.device("cuda"), [False, False, False])
    assert not use_cuda_graphs(False, torch.device("cuda"), [False, False, False])
    assert not use_cuda_graphs(True, torch.device("cpu"), [False, False, False])
    assert not use_cuda_graphs(True, torch.device("cuda"), [False, True, False])


def test_early_stop_null_runs_every_epoch(data, exp4_arm):
    """MERBench's loop: no early stopping, every epoch runs, the best one is kept."""
    store, folds = data
    res = train_fold(store, folds, 1, {**exp4_arm, "epochs": 6, "early_stop": None, "lr": 0.05}, seed=0, device="cpu")
    assert res.epochs_run == 6
    assert res.best_epoch == int(np.argmax([h["val_score"] for h in res.history]))


def test_grad_clip_clamps_every_gradient_element(data, exp4_arm):
    from prmf.losses import TrainingLoss
    from prmf.models import build_model
    from prmf.train import _step, make_optimizer, tensor_set

    store, folds = data
    rows = np.flatnonzero(store.split == "train")[:32]
    train = tensor_set(store, rows, torch.device("cpu"))
    grads = {}
    for clip in (None, 1e-4):
        torch.manual_seed(0)
        model = build_model(exp4_arm, list(store.dims().values()), len(store.class_names))
        opt = make_optimizer(model, 1e-3, 0.0)
        _step(model, TrainingLoss.from_arm(exp4_arm), opt, train, torch.arange(32), grad_clip=clip)
        grads[clip] = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    assert grads[None] > 1e-3
    assert grads[1e-4] <= 1e-4 + 1e-12


def test_zscore_fold_fits_on_training_rows_and_saves_the_statistics(data, tmp_path, exp4_arm):
    from prmf.models import build_model
    from prmf.models.standardize import standardization_stats

    store, folds = data
    arm = {**exp4_arm, "standardize": "zscore"}
    res = train_fold(store, folds, 0, arm, seed=0, device="cpu")
    row_of = {n: i for i, n in enumerate(store.names)}
    tr = np.array([row_of[n] for n in folds["folds"][0]["train"]])
    present = np.stack([~store.missing[m][tr] for m in store.modalities], 1)
    want = standardization_stats([store.features[m][tr] for m in store.modalities], present)
    for j, (mean, std) in enumerate(want):
        np.testing.assert_allclose(res.state_dict[f"standardizer.mean_{j}"].numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(res.state_dict[f"standardizer.std_{j}"].numpy(), std, rtol=1e-6)
    # the saved state dict alone reproduces the fold's predictions (self-contained model.pt)
    torch.save(res.state_dict, tmp_path / "model.pt")
    model = build_model(arm, list(store.dims().values()), len(store.class_names))
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    from prmf.train import predict, tensor_set

    t1 = tensor_set(store, store.indices("test1"), torch.device("cpu"))
    np.testing.assert_allclose(predict(model, t1).logits, res.predictions["test1"].logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["mask", "std_1e6"])
def test_dropped_modality_rules_train(data, rule, exp4_arm):
    store, folds = data
    res = train_fold(store, folds, 0, {**exp4_arm, "dropped_modality": rule}, seed=0, device="cpu")
    t2 = res.predictions["test2"]
    absent = np.stack([store.missing[m][store.split == "test2"] for m in store.modalities], 1)
    assert np.isfinite(t2.logits).all()
    if rule == "mask":
        assert np.all(t2.fusion_weights[absent] == 0)
    else:  # the author's trick leaves an absent modality a small, non-zero weight
        assert np.all(t2.fusion_weights[absent] > 0)
        assert np.all(t2.fusion_weights[absent] < t2.fusion_weights[~absent].max())


def test_fold_health_is_recorded(data, exp4_arm):
    store, folds = data
    res = train_fold(store, folds, 0, exp4_arm, seed=0, device="cpu")
    assert set(res.health) >= {"collapsed", "reasons", "majority_rate", "best_val_acc"}
    assert res.health["best_val_acc"] == pytest.approx(max(h["val_acc"] for h in res.history))


def _same_fold(packed, alone):
    """Two FoldResults of one (seed, fold) agree in every number but the timings."""
    assert packed.best_epoch == alone.best_epoch and packed.epochs_run == alone.epochs_run
    assert packed.state_dict.keys() == alone.state_dict.keys()
    for key in alone.state_dict:
        torch.testing.assert_close(packed.state_dict[key], alone.state_dict[key], rtol=0, atol=0)
    for split, pred in alone.predictions.items():
        np.testing.assert_array_equal(packed.predictions[split].logits, pred.logits)
        np.testing.assert_array_equal(packed.predictions[split].valence, pred.valence)
        np.testing.assert_array_equal(packed.predictions[split].uncertainty, pred.uncertainty)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(packed.history) == drop(alone.history)
    assert packed.metrics == alone.metrics and packed.health == alone.health


@pytest.mark.parametrize("name", ["exp4", "baseline"])
def test_packed_members_equal_the_folds_trained_alone(data, study_arm, name):
    store, folds = data
    # early stopping with a short patience: the members stop at different epochs, and a
    # stopped member must take no further step while the others go on
    arm = study_arm(name, **{**TEST_SIZE, "epochs": 12, "early_stop": 2, "lr": 0.03})
    members = [(3, 0), (3, 1), (5, 0), (6, 1)]
    packed = train_pack(store, folds, members, arm, device="cpu")
    alone = [train_fold(store, folds, fold, arm, seed, device="cpu") for seed, fold in members]
    assert len({r.epochs_run for r in alone}) > 1, "test setup: members should stop at different epochs"
    for p, a in zip(packed, alone):
        _same_fold(p, a)
    # members differ from each other (own seeds, own folds)
    assert not np.array_equal(packed[0].predictions["test1"].logits, packed[2].predictions["test1"].logits)


def test_pack_refuses_a_repeated_member(data, exp4_arm):
    store, folds = data
    with pytest.raises(ValueError, match="listed twice"):
        train_pack(store, folds, [(0, 0), (0, 0)], exp4_arm, device="cpu")


def test_startup_seconds_is_the_process_age_at_the_first_step(data, exp4_arm):
    store, folds = data
    before = process_age()
    res = train_fold(store, folds, 0, {**exp4_arm, "epochs": 1}, seed=0, device="cpu")
    after = process_age()
    assert before is not None and before <= res.startup_seconds <= after


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("graphs", [True, False])
def test_packed_members_on_cuda_match_the_folds_trained_alone(data, study_arm, graphs):
    """On a GPU the members run on their own CUDA streams (and graphs); the numbers are a fold's own.
    Kernels may differ in summation order between runs, so equal within float32 noise."""
    store, folds = data
    arm = study_arm("exp4", **{**TEST_SIZE, "epochs": 8, "early_stop": 3})
    members = [(0, 0), (0, 1), (1, 0)]
    packed = train_pack(store, folds, members, arm, device="cuda", cuda_graphs=graphs)
    for (seed, fold), p in zip(members, packed):
        a = train_fold(store, folds, fold, arm, seed, device="cuda", cuda_graphs=graphs)
        assert p.best_epoch == a.best_epoch and p.epochs_run == a.epochs_run
        for split in a.predictions:
            np.testing.assert_allclose(p.predictions[split].logits, a.predictions[split].logits, rtol=1e-4, atol=1e-5)


def test_history_tsv_is_the_text_pandas_writes(data, study_arm):
    import pandas as pd

    from prmf.train import history_tsv

    store, folds = data
    res = train_fold(store, folds, 0, study_arm("baseline", **TEST_SIZE), seed=0, device="cpu")
    rows = [{**r, "val_mse": float("nan")} if i == 1 else r for i, r in enumerate(res.history)]
    text = history_tsv(rows)
    assert text == pd.DataFrame(rows).to_csv(sep="\t", index=False)
    assert "\t\t" in text.splitlines()[2]  # the NaN is an empty field


def test_a_training_job_imports_no_table_plot_or_stats_library(tmp_path):
    """A fold job (store read, training, all four files written) imports neither pandas, scikit-learn,
    scipy nor matplotlib: each costs start-up in every one of a study's jobs."""
    import subprocess
    import sys

    code = f"""
import sys, yaml
from prmf.config import resolve_arm, validate_config
from prmf.data.folds import make_folds, write_folds
from prmf.data.store import write_store
from prmf.data.synthetic import SyntheticConfig, generate
from prmf.train import train_and_save_folds
cfg = yaml.safe_load(open("config/config.yaml")); validate_config(cfg)
heavy = ("pandas", "sklearn", "scipy", "matplotlib")
store = generate(SyntheticConfig(scale=0.05, dims={{"audio": 6, "text": 8, "video": 5}}))
write_store(r"{tmp_path}/s.h5", store); write_folds(r"{tmp_path}/f.json", make_folds(store, 2, seed=0))
for m in [m for m in sys.modules if m.split(".")[0] in heavy]:
    del sys.modules[m]
arm = {{**resolve_arm(cfg, "exp4"), "epochs": 1}}
out = r"{tmp_path}/out"
train_and_save_folds(r"{tmp_path}/s.h5", r"{tmp_path}/f.json", [(0, 0)], arm, device="cpu",
                     models=[out + "/model.pt"], predictions=[out + "/predictions.npz"],
                     metrics=[out + "/metrics.json"], histories=[out + "/history.tsv"])
print(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)))
"""
    from e2e_helpers import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert (tmp_path / "out" / "history.tsv").read_text().startswith("epoch\t")


def test_pack_members_share_one_copy_of_the_train_split(data, exp4_arm):
    """A fold's training and validation parts index the pack's one train-split tensor set; a batch of
    a part is exactly the batch of a copied set of the same rows."""
    from prmf.train import FoldTrainer, _shared_sets, tensor_set

    store, folds = data
    cpu = torch.device("cpu")
    shared = _shared_sets(store, cpu)
    a = FoldTrainer(store, folds, 0, exp4_arm, 0, cpu, say=lambda _: None, shared_sets=shared)
    b = FoldTrainer(store, folds, 1, exp4_arm, 0, cpu, say=lambda _: None, shared_sets=shared)
    assert a.train.base is b.train.base is a.sets["val"].base is shared["train"]
    assert a.sets["test1"] is b.sets["test1"]
    row_of = {n: i for i, n in enumerate(store.names)}
    copied = tensor_set(store, np.array([row_of[n] for n in folds["folds"][0]["train"]]), cpu)
    assert list(a.train.names) == list(copied.names) == folds["folds"][0]["train"]
    idx = torch.tensor([5, 0, 3, len(copied) - 1])
    for got, want in zip(a.train.batch(idx), copied.batch(idx)):
        if isinstance(got, list):
            for g, w in zip(got, want):
                assert (g is None and w is None) or torch.equal(g, w)
        else:
            assert torch.equal(got, want)


def test_graphed_steps_get_the_folds_generator(data, exp4_arm, monkeypatch):
    """The CUDA-graph path is built with the fold's own generator (registered with the graph at
    capture); built here on CPU, where no step is taken, so a signature slip cannot hide until a GPU."""
    import prmf.train as train_mod
    from prmf.models import ModalityDropout

    store, folds = data
    monkeypatch.setattr(train_mod, "use_cuda_graphs", lambda *a: True)
    trainer = train_mod.FoldTrainer(store, folds, 0, exp4_arm, 0, torch.device("cpu"), say=lambda _: None)
    assert trainer.graphed is not None and trainer.graphed.generator is trainer.generator
    assert all(m.generator is trainer.generator for m in trainer.model.modules()
               if hasattr(m, "generator") and m is not trainer.model)
    assert any(isinstance(m, ModalityDropout) and m.graph_safe for m in trainer.model.modules())

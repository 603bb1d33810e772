"""The paper's study, value by value (../shared/SEED.md), against the configs.

The values below are copied by hand from SEED.md's tables: this test is the
check that the config still says what the paper did. Change a value in
config/config.yaml or config/mer2023.yaml and it fails naming the arm and key.
"""

from __future__ import annotations

import pytest

from prmf.config import PACKAGE_ROOT, load_config, resolve_arm, training_arms

DEFAULT = PACKAGE_ROOT / "config" / "config.yaml"
MER2023 = PACKAGE_ROOT / "config" / "mer2023.yaml"

# SEED.md, "Hyper-parameters (the author's train_v2.sh, reported best)" -- shared by every arm
# (warm-up 15 and the loss weights are Exp4's; see the ablation table).
TRAINING = {
    "epochs": 150,
    "early_stop": 40,
    "lr": 3e-4,
    "weight_decay": 1e-4,
    "batch_size": 32,
    "hidden_dim": 128,
    "dropout": 0.4,
    "num_attention_heads": 4,
    "modality_dropout_max": 0.2,
}

# SEED.md, "Ablation (the author's run_ablation.sh)"; None = "–" (the arm has no such part).
ABLATION = {
    #       VAE    proxy  md    kl     recon  xkl   tau   p_max warm-up
    "exp1": (False, False, True, None, None, None, None, 0.2, 0),
    "exp2": (True, False, True, 0.01, 0.1, 0.01, 1.0, 0.2, 0),
    "exp3": (True, True, True, 0.01, 0.1, 0.01, 1.0, 0.2, 0),
    "exp4": (True, True, True, 0.005, 0.15, 0.01, 0.8, 0.2, 15),
    "exp5": (False, True, True, None, None, None, 1.0, 0.2, 0),
}
KEYS = ("use_vae", "use_proxy_attention", "use_modality_dropout", "kl_weight", "recon_weight",
        "cross_kl_weight", "tau", "modality_dropout_max", "warmup_epochs")


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_config(DEFAULT, MER2023)


def test_mer2023_training_block_is_the_papers(paper):
    for key, value in TRAINING.items():
        assert paper["training"][key] == pytest.approx(value), f"training.{key}"
    # fidelity switches of the paper's arms
    assert paper["training"]["modality_dropout_unit"] == "batch"  # the author's random.choice per batch
    assert paper["training"]["standardize"] == "none"  # neither MERBench nor the author normalise
    assert paper["training"]["grad_clip"] is None
    assert paper["cv"]["folds"] == 5


@pytest.mark.parametrize("arm", sorted(ABLATION))
def test_ablation_arm_is_the_papers(paper, arm):
    params = resolve_arm(paper, arm)
    for key, want in zip(KEYS, ABLATION[arm]):
        if want is None:  # "–": the arm has no VAE, so the loss weights cannot act
            assert not params["use_vae"], f"{arm}.{key}"
            continue
        assert params[key] == pytest.approx(want), f"{arm}.{key}"
    for key, value in TRAINING.items():
        assert params[key] == pytest.approx(value), f"{arm}.{key}"


def test_class_defaults_are_the_authors(paper):
    """SEED.md: the model class's defaults, used where an arm does not set them."""
    cfg = dict(paper, arms={**paper["arms"], "bare_vae": {"model": "prmf", "use_vae": True}})
    bare = resolve_arm(cfg, "bare_vae")
    assert (bare["kl_weight"], bare["recon_weight"], bare["cross_kl_weight"], bare["tau"]) == (0.01, 0.1, 0.01, 1.0)
    assert (bare["modality_dropout_max"], bare["warmup_epochs"]) == (0.2, 0)


def test_comparison_rows(paper):
    base = resolve_arm(paper, "baseline")
    assert base["model"] == "attention" and not base["use_modality_dropout"]
    v1 = resolve_arm(paper, "robust_v1")
    assert v1["model"] == "attention" and v1["use_modality_dropout"] and v1["modality_dropout_max"] == 0.2
    # "Baseline (v0)" as MERBench's main-release.py trains it: L2 1e-5, 100 epochs, no early stop
    mb = resolve_arm(paper, "baseline_merbench")
    assert (mb["model"], mb["epochs"], mb["early_stop"], mb["weight_decay"], mb["lr"]) == (
        "attention", 100, None, 1e-5, 1e-3)
    assert (mb["hidden_dim"], mb["dropout"]) == (128, 0.4)


def test_default_study_uses_the_papers_model_values():
    """The synthetic study shortens training, but every arm's model values are the paper's."""
    cfg = load_config(DEFAULT)
    for arm, row in ABLATION.items():
        params = resolve_arm(cfg, arm)
        for key, want in zip(KEYS, row):
            if want is not None:
                assert params[key] == pytest.approx(want), f"{arm}.{key}"


def test_identical_arms_train_once(paper):
    assert training_arms(paper)["exp1"] == "robust_v1"
    trained = set(training_arms(paper).values())
    assert "exp1" not in trained and {"exp4", "exp4_zscore", "baseline_merbench"} <= trained


def test_overlay_redefines_no_default_arm():
    """mer2023.yaml adds arms; it never repeats (and so cannot drift from) an arm of config.yaml."""
    import yaml

    base_arms = set(yaml.safe_load(DEFAULT.read_text())["arms"])
    overlay_arms = set(yaml.safe_load(MER2023.read_text()).get("arms", {}))
    assert not base_arms & overlay_arms

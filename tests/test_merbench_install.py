"""``prmf.interop``: the MERBench adapter and ``install`` / ``uninstall`` into a MERBench checkout.

Most tests need no MERBench: the adapter runs on MERBench-shaped batches and
install / uninstall run on a fake checkout holding the anchors of MERBench's
files (tests/merbench_checkout.py). The tests marked ``real MERBench`` run
MERBench's own ``main-release.py`` on a copy of the folder that the env var
``MERBENCH_DIR`` names (the ``MERBench/`` folder of a MERTools checkout), and
are skipped without it.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from merbench_checkout import (  # noqa: E402
    FEATURE_ARGS,
    copy_checkout,
    merbench_source,
    prepare_for_cpu,
    run_main_release,
    tree_hashes,
    write_fake_checkout,
    write_import_stubs,
)

from prmf.interop import (  # noqa: E402
    MERBENCH_MODELS,
    MerbenchCheckoutError,
    MerbenchStateError,
    install,
    is_installed,
    uninstall,
)
from prmf.interop.merbench_adapter import (  # noqa: E402
    AttentionRobust,
    AttentionRobustV2,
    add_merbench_arguments,
    front_padded_to_lengths,
    merbench_arm,
)
from prmf.interop.merbench_install import BACKUP_SUFFIX  # noqa: E402

DIMS = {"audio_dim": 8, "text_dim": 12, "video_dim": 6}
B, H, C = 6, 16, 6


def merbench_args(**overrides) -> argparse.Namespace:
    """What MERBench's ``main-release.py`` hands a model (after ``merge_args_config``)."""
    values = dict(DIMS, output_dim1=C, output_dim2=1, hidden_dim=H, dropout=0.2, grad_clip=-1.0,
                  feat_type="utt", epochs=10, lr=1e-3, l2=1e-5, batch_size=B)
    values.update(overrides)
    return argparse.Namespace(**values)


def utt_batch(seed: int = 0, n: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(n, d, generator=g)
            for key, d in zip(("audios", "texts", "videos"), DIMS.values())}


# --------------------------------------------------------------------------- adapter


@pytest.mark.parametrize("cls", [AttentionRobust, AttentionRobustV2])
@pytest.mark.parametrize("training", [True, False])
def test_forward_returns_merbench_four_tuple(cls, training):
    torch.manual_seed(0)
    model = cls(merbench_args())
    model.train(training)
    features, emos_out, vals_out, interloss = model(utt_batch())
    assert features.shape == (B, H)
    assert emos_out.shape == (B, C)
    assert vals_out.shape == (B, 1)  # as MERBench's attention (fc_out_2: H -> output_dim2)
    assert interloss.dim() == 0 and torch.isfinite(interloss)
    if cls is AttentionRobust:
        assert float(interloss) == 0.0  # no VAE: MERBench adds CE + MSE itself
    elif training:
        assert float(interloss.detach()) > 0.0  # KL / recon / cross-KL of P-RMF
    assert model.grad_clip == -1.0


def test_one_merbench_training_step_updates_every_used_parameter():
    torch.manual_seed(0)
    model = AttentionRobustV2(merbench_args())
    batch, emos, vals = utt_batch(), torch.randint(0, C, (B,)), torch.randn(B)
    _, emos_out, vals_out, interloss = model(batch)
    # MERBench's CELoss and MSELoss (toolkit/utils/loss.py)
    ce = torch.nn.functional.nll_loss(torch.log_softmax(emos_out, 1), emos, reduction="sum") / B
    mse = torch.nn.functional.mse_loss(vals_out.view(-1, 1), vals.view(-1, 1), reduction="sum") / B
    (interloss + ce + mse).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_robust_and_v2_are_the_study_arms():
    v1, v2 = AttentionRobust(merbench_args()), AttentionRobustV2(merbench_args())
    assert v1.arm["arm"] == "robust_v1" and v1.arm["model"] == "attention" and v1.arm["use_modality_dropout"]
    assert v2.arm["arm"] == "exp4" and v2.arm["use_vae"] and v2.arm["use_proxy_attention"]
    assert (v2.arm["kl_weight"], v2.arm["recon_weight"], v2.arm["cross_kl_weight"], v2.arm["tau"],
            v2.arm["warmup_epochs"]) == (0.005, 0.15, 0.01, 0.8, 15)
    for model in (v1, v2):  # MERBench's args win; MERBench feeds raw features
        assert (model.arm["hidden_dim"], model.arm["dropout"], model.arm["grad_clip"]) == (H, 0.2, None)
        assert model.arm["standardize"] == "none" and model.model.standardizer is None


def test_ablation_switches_from_args():
    args = merbench_args(use_vae="false", use_proxy_attention=True, kl_weight=0.5, tau=2.0,
                         warmup_epochs=3, grad_clip=0.8)
    arm = merbench_arm("exp4", args)
    assert arm["use_vae"] is False and arm["use_proxy_attention"] is True
    assert (arm["kl_weight"], arm["tau"], arm["warmup_epochs"], arm["grad_clip"]) == (0.5, 2.0, 3, 0.8)
    model = AttentionRobustV2(args)  # Exp5: proxy attention without the VAE
    assert not model.model.use_vae and model.model.proxy_attention is not None
    assert model.grad_clip == 0.8
    _, _, _, interloss = model(utt_batch())
    assert float(interloss) == 0.0


def test_add_merbench_arguments_parses_switches_and_keeps_merbench_options():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--tau", type=float, default=None)  # an option the parser already has is left alone
    add_merbench_arguments(parser)
    args = parser.parse_args(["--use_vae", "false", "--kl_weight", "0.02", "--warmup_epochs", "4",
                              "--dropped_modality", "std_1e6"])
    assert (args.use_vae, args.kl_weight, args.warmup_epochs, args.dropped_modality) == (False, 0.02, 4, "std_1e6")
    assert args.use_proxy_attention is None and args.tau is None and args.prmf_config is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--use_vae", "maybe"])


@pytest.mark.parametrize("cls", [AttentionRobust, AttentionRobustV2])
def test_zero_rows_are_absent_and_their_values_do_not_matter(cls):
    """A zero row (MERBench: no face / empty transcript) is an absent modality: the adapter's output
    equals the prmf model's with that modality masked, whatever values it is given there."""
    torch.manual_seed(0)
    model = cls(merbench_args()).eval()
    batch = utt_batch()
    batch["videos"][1] = 0.0
    batch["texts"][3] = 0.0
    features, emos_out, vals_out, _ = model(batch)

    xs = [batch["audios"].clone(), batch["texts"].clone(), batch["videos"].clone()]
    xs[2][1] = 100.0  # any value: masked
    xs[1][3] = -7.0
    present = torch.ones(B, 3, dtype=torch.bool)
    present[1, 2] = present[3, 1] = False
    out = model.model(xs, present)
    torch.testing.assert_close(emos_out, out.logits)
    torch.testing.assert_close(vals_out[:, 0], out.valence)
    # and a tiny non-zero row is a present modality (only all-zero rows are absent)
    batch["videos"][1, 0] = 1e-3
    assert not torch.allclose(model(batch)[1][1], emos_out[1])


def test_front_padded_frames_to_lengths():
    x = torch.zeros(3, 5, 2)
    x[0, 2:] = torch.arange(1.0, 7.0).view(3, 2)  # 2 padding frames in front, 3 valid
    x[1] = 1.0  # no padding
    x[1, 2] = 0.0  # a zero frame inside the sequence is data, not padding
    moved, lengths = front_padded_to_lengths(x)  # row 2: every frame zero -> absent
    assert lengths.tolist() == [3, 5, 0]
    torch.testing.assert_close(moved[0, :3], x[0, 2:])
    assert (moved[0, 3:] == 0).all() and (moved[2] == 0).all()
    torch.testing.assert_close(moved[1], x[1])


@pytest.mark.parametrize("cls", [AttentionRobust, AttentionRobustV2])
def test_frame_level_padding_does_not_matter(cls):
    """MERBench pads frames in front (to the longest sequence of the data set); the output of a sample
    does not depend on how much padding it got, and an all-zero sequence is an absent modality."""
    torch.manual_seed(0)
    model = cls(merbench_args(feat_type="frm_unalign")).eval()
    assert model.frame_level == [True, True, True]
    g = torch.Generator().manual_seed(1)
    seqs = {key: torch.randn(2, 3, d, generator=g) for key, d in zip(("audios", "texts", "videos"), DIMS.values())}
    seqs["videos"][1] = 0.0  # sample 1: no face
    short = {key: x.clone() for key, x in seqs.items()}
    padded = {key: torch.cat([torch.zeros(2, 4, x.shape[2]), x], dim=1) for key, x in seqs.items()}
    f1, e1, v1, l1 = model(short)
    f2, e2, v2, l2 = model(padded)
    assert f1.shape == (2, H) and e1.shape == (2, C) and v1.shape == (2, 1)
    torch.testing.assert_close(e1, e2)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(l1, l2)
    present_value = model(dict(short, videos=torch.where(torch.tensor([False, True]).view(2, 1, 1),
                                                         torch.full_like(short["videos"], 5.0), short["videos"])))
    assert not torch.allclose(present_value[1][1], e1[1])  # a present video would change sample 1


def test_epoch_hook_counts_merbench_training_passes():
    """MERBench's loop: per epoch one training pass (model.train(), several batches), then eval passes.
    The adapter advances its epoch at the first training forward after eval and sets the schedule."""
    torch.manual_seed(0)
    model = AttentionRobustV2(merbench_args(epochs=10, warmup_epochs=2))
    rates, epochs = [], []
    for _ in range(10):
        model.train()
        for seed in range(3):  # three batches, one epoch
            model(utt_batch(seed))
        rates.append(model.model.modality_dropout_rate)
        epochs.append(model.epoch)
        model.eval()
        model(utt_batch(9))  # eval loader
        model(utt_batch(10))  # test loaders
    assert epochs == list(range(10))
    assert rates[:3] == [0.0, 0.0, 0.0]  # warm-up (epochs 0, 1) and p(2) = 0
    assert all(b > a for a, b in zip(rates[2:], rates[3:]))  # rises after the warm-up
    assert rates[-1] == pytest.approx(0.2 * (9 - 2) / (10 - 2))
    v1 = AttentionRobust(merbench_args(epochs=4))  # robust_v1: no warm-up
    for _ in range(4):
        v1.train()
        v1(utt_batch())
        v1.eval()
        v1(utt_batch())
    assert v1.epoch == 3 and v1.model.modality_dropout_rate == pytest.approx(0.2 * 3 / 4)


# --------------------------------------------------------------------------- install on a fake checkout


@pytest.fixture()
def fake(tmp_path) -> Path:
    return write_fake_checkout(tmp_path / "MERBench")


def test_install_registers_models_and_uninstall_restores_byte_for_byte(fake):
    before = tree_hashes(fake)
    report = install(fake)
    assert report.changed and is_installed(fake)
    assert sorted(p.relative_to(fake).as_posix() for p in report.written) == [
        f"toolkit/models/{name}.py" for name in sorted(MERBENCH_MODELS)]
    assert len(report.edited) == 4 and all(Path(str(p) + BACKUP_SUFFIX).is_file() for p in report.edited)
    for path in report.edited:  # every inserted block is marked
        text = path.read_text()
        assert text.count("# >>> prmf merbench install") == text.count("# <<< prmf merbench install") >= 1
    models_init = (fake / "toolkit/models/__init__.py").read_text()
    assert "'attention_robust_v2': AttentionRobustV2," in models_init
    assert "from .attention_robust_v2 import AttentionRobustV2" in models_init
    assert "'attention_robust': Data_Feat," in (fake / "toolkit/data/__init__.py").read_text()
    thin = (fake / "toolkit/models/attention_robust_v2.py").read_text()
    assert "from prmf.interop.merbench_adapter import AttentionRobustV2" in thin and len(thin.splitlines()) < 15

    installed = tree_hashes(fake)
    again = install(fake)  # idempotent: nothing changes, byte for byte
    assert not again.changed and tree_hashes(fake) == installed

    pycache = fake / "toolkit/models/__pycache__"
    pycache.mkdir()
    (pycache / "attention_robust_v2.cpython-311.pyc").write_bytes(b"stale")
    removed = uninstall(fake)
    assert removed.changed and not is_installed(fake)
    assert not (pycache / "attention_robust_v2.cpython-311.pyc").exists()
    pycache.rmdir()
    assert tree_hashes(fake) == before
    assert not uninstall(fake).changed  # nothing left to undo


def test_installed_yaml_and_arguments_work(fake):
    import yaml

    install(fake)
    tune = yaml.safe_load((fake / "toolkit/model-tune.yaml").read_text())
    for name in MERBENCH_MODELS:
        assert set(tune[name]) == {"hidden_dim", "dropout", "grad_clip", "lr"}
        assert all(isinstance(v, list) for v in tune[name].values())
    out = subprocess.run([sys.executable, "main-release.py", "--model", "attention_robust_v2", "--use_vae", "no",
                          "--kl_weight", "0.3"], cwd=fake, capture_output=True, text=True, check=True)
    args = ast.literal_eval(out.stdout.strip())
    assert (args["use_vae"], args["kl_weight"], args["tau"], args["epochs"]) == (False, 0.3, None, 100)


def test_installed_model_map_builds_and_runs_the_adapter(fake):
    install(fake)
    code = (
        "import argparse, torch\n"
        "from toolkit.models import get_models\n"
        f"args = argparse.Namespace(model='attention_robust_v2', **{dict(merbench_args().__dict__)!r})\n"
        "model = get_models(args)\n"
        "batch = {k: torch.randn(4, d) for k, d in (('audios', 8), ('texts', 12), ('videos', 6))}\n"
        "f, e, v, l = model(batch)\n"
        "print(type(model.model).__name__, tuple(e.shape), tuple(v.shape), model.model.grad_clip)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=fake, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AttentionRobustV2", "(4,", "6)", "(4,", "1)", "-1.0"]


@pytest.mark.parametrize("rel", ["main-release.py", "toolkit/models/__init__.py", "toolkit/data/__init__.py",
                                 "toolkit/model-tune.yaml"])
def test_refuses_a_folder_without_a_file_it_edits(fake, rel):
    (fake / rel).unlink()
    before = tree_hashes(fake)
    with pytest.raises(MerbenchCheckoutError, match="missing: not a MERBench checkout") as err:
        install(fake)
    assert err.value.path == (fake / rel).resolve()
    assert tree_hashes(fake) == before


@pytest.mark.parametrize("rel, anchor, what", [
    ("toolkit/models/__init__.py", "from .attention import Attention", "from .attention import Attention"),
    ("toolkit/models/__init__.py", "'attention': Attention,", "MODEL_MAP entry"),
    ("toolkit/data/__init__.py", "'attention': Data_Feat,", "MODEL_DATASET_MAP entry"),
    ("toolkit/model-tune.yaml", "attention:\n", "top-level entry `attention:`"),
    ("main-release.py", "args = parser.parse_args()", "args = parser.parse_args()"),
])
def test_refuses_a_file_without_its_anchor(fake, rel, anchor, what):
    path = fake / rel
    path.write_text(path.read_text().replace(anchor, "# something else\n"))
    before = tree_hashes(fake)
    with pytest.raises(MerbenchCheckoutError) as err:
        install(fake)
    assert err.value.path == path.resolve() and what in err.value.problem
    assert tree_hashes(fake) == before  # refused before touching anything


def test_refuses_other_folders(tmp_path, fake):
    with pytest.raises(MerbenchCheckoutError, match="no such folder"):
        install(tmp_path / "nowhere")
    with pytest.raises(MerbenchCheckoutError, match="MERTools checkout; pass its MERBench folder"):
        install(fake.parent)  # the MERTools root (holds MERBench/)


def test_refuses_conflicting_registrations_and_files(fake):
    thin = fake / "toolkit/models/attention_robust_v2.py"
    thin.write_text("class AttentionRobustV2: ...  # the author's copied model file\n")
    before = tree_hashes(fake)
    with pytest.raises(MerbenchStateError, match="not written by prmf"):
        install(fake)
    assert tree_hashes(fake) == before
    thin.unlink()

    models = fake / "toolkit/models/__init__.py"
    models.write_text(models.read_text().replace("'lmf': None,", "'attention_robust_v2': None,"))
    before = tree_hashes(fake)
    with pytest.raises(MerbenchStateError, match="outside prmf's blocks"):
        install(fake)
    assert tree_hashes(fake) == before


def test_edits_after_install_are_not_silently_lost(fake):
    original = tree_hashes(fake)
    install(fake)
    tune = fake / "toolkit/model-tune.yaml"
    tune.write_text(tune.read_text() + "mine:\n  lr: [1e-3]\n")
    with pytest.raises(MerbenchStateError, match="changed since prmf installed"):
        install(fake)
    with pytest.raises(MerbenchStateError, match="--force"):
        uninstall(fake)
    assert (fake / "toolkit/models/attention_robust.py").exists()  # the refusal changed nothing
    uninstall(fake, force=True)
    assert tree_hashes(fake) == original


def test_uninstall_without_backups_removes_the_marked_blocks(fake):
    original = tree_hashes(fake)
    report = install(fake)
    for backup in report.backups:
        backup.unlink()
    with pytest.raises(MerbenchStateError, match="no backup"):
        install(fake)  # markers without their backup: refused, not installed twice
    removed = uninstall(fake)
    assert len(removed.stripped) == 4 and not removed.restored
    assert {k: v[0] for k, v in tree_hashes(fake).items()} == {k: v[0] for k, v in original.items()}


# --------------------------------------------------------------------------- the real MERBench

REAL = merbench_source()
real_merbench = pytest.mark.skipif(
    REAL is None or not (REAL / "main-release.py").is_file(),
    reason="real MERBench: set MERBENCH_DIR to the MERBench/ folder of a MERTools checkout",
)


def _scan(result_dir: Path):
    from prmf.merbench_results import scan_result_dirs

    return scan_result_dirs([str(result_dir)])


@pytest.fixture()
def real_checkout(tmp_path):
    """A CPU-ready copy of ``MERBENCH_DIR`` reading a tiny MER2023-layout data set, and its stubs."""
    from merbench_fixture import make_merbench_root

    checkout = copy_checkout(REAL, tmp_path / "MERBench")
    data = make_merbench_root(tmp_path / "mer2023-dataset-process", zero_rows={"text": 1, "video": 2})
    prepare_for_cpu(checkout, data)
    return checkout, write_import_stubs(tmp_path / "stubs")


@real_merbench
def test_real_merbench_trains_our_models_and_uninstall_restores_it(real_checkout, tmp_path):
    checkout, stubs = real_checkout
    before = tree_hashes(checkout)
    report = install(checkout)
    assert report.changed and is_installed(checkout)
    installed = tree_hashes(checkout)
    assert not install(checkout).changed and tree_hashes(checkout) == installed

    hyper = tmp_path / "hyper.yaml"
    hyper.write_text("".join(f"{name}:\n  hidden_dim: 16\n  dropout: 0.2\n  grad_clip: -1.0\n  lr: 1e-3\n"
                             for name in MERBENCH_MODELS))
    runs = {
        "attention_robust": [],
        "attention_robust_v2": ["--warmup_epochs", "0", "--use_proxy_attention", "true"],
    }
    for name, extra in runs.items():
        save_root = tmp_path / f"saved_{name}"
        done = run_main_release(checkout, ["--dataset", "MER2023", "--model", name, *FEATURE_ARGS,
                                           "--feat_type", "utt", "--epochs", "2", "--batch_size", "8",
                                           "--hyper_path", str(hyper), "--save_root", str(save_root), *extra],
                                stubs)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result_dir = Path(f"{save_root}-trimodal") / "result"
        files = sorted(p.name for p in result_dir.glob("*.npz"))
        assert len(files) == 4, files
        assert all(f"_model:{name}+utt+None_f1:" in f and "_acc:" in f and "_val:" in f for f in files)
        scan = _scan(result_dir)
        assert not scan.skipped
        records = scan.records
        assert sorted(records["split"]) == ["cv", "test1", "test2", "test3"]
        assert set(records["model"]) == {name} and set(records["dataset"]) == {"MER2023"}
        assert records["acc"].between(0, 1).all() and records["f1"].between(0, 1).all()
        saved = np.load(result_dir / files[0], allow_pickle=True)["args"].item()
        assert saved.model == name and saved.epochs == 2 and saved.hidden_dim == 16
        if name == "attention_robust_v2":
            assert saved.warmup_epochs == 0 and saved.use_proxy_attention is True and saved.use_vae is None

    removed = uninstall(checkout)
    assert len(removed.restored) == 4
    assert not any((checkout / "toolkit/models/__pycache__").glob("attention_robust*"))
    assert tree_hashes(checkout) == before  # every file as before, byte for byte (caches aside)

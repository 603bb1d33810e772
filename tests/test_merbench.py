"""MERBench / MER2023 import: labels, features, validation, restricted unpickling, ``prmf import-merbench``."""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from prmf.cli import main
from prmf.data import merbench
from prmf.data.merbench import (
    MerbenchImportError,
    MerbenchImportWarning,
    import_merbench,
    load_label_file,
)
from prmf.data.safe_pickle import UnsafePickleError, restricted_loads
from prmf.data.store import EMOTIONS, SPLITS, read_store

from merbench_fixture import (
    AUDIO_FEATURE,
    TEXT_FEATURE,
    VIDEO_FEATURE_FRA,
    fixture_features,
    make_merbench_root,
    sample_file,
)

N_PER_SPLIT = (24, 6, 6, 8)
N = sum(N_PER_SPLIT)
DIMS = (8, 12, 6)


# --------------------------------------------------------------------------- helpers


def trusted_labels(root: Path) -> dict[str, dict]:
    """Label corpora of *our own* fixture file, read the unrestricted way for reference."""
    with np.load(root / "label-6way.npz", allow_pickle=True) as z:
        return {k: z[k].item() for k in z.files}


def write_labels(root: Path, corpora: dict[str, dict]) -> None:
    np.savez(root / "label-6way.npz", **{k: np.array(v, dtype=object) for k, v in corpora.items()})


def raw_frames(path: Path) -> np.ndarray:
    """[T, D] of a sample file or per-face folder, read with plain numpy."""
    if path.is_dir():
        return np.concatenate([np.atleast_2d(np.load(f)) for f in sorted(path.glob("*.npy"))])
    arr = np.load(path)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def import_error(root: Path, features=None, **kw) -> str:
    with pytest.raises(MerbenchImportError) as info:
        import_merbench(root, features or fixture_features(), workers=1, progress=False, **kw)
    return str(info.value)


def first_name(root: Path, split: str = "train") -> str:
    return sorted(trusted_labels(root)[f"{split}_corpus"])[0]


@pytest.fixture(scope="module")
def utt_root(tmp_path_factory) -> Path:
    return make_merbench_root(tmp_path_factory.mktemp("utt") / "mer", N_PER_SPLIT, DIMS, seed=0)


@pytest.fixture(scope="module")
def fra_root(tmp_path_factory) -> Path:
    return make_merbench_root(tmp_path_factory.mktemp("fra") / "mer", N_PER_SPLIT, DIMS, seed=1, frame_level_video=True)


@pytest.fixture()
def root(tmp_path) -> Path:
    """A fresh (mutable) root per test."""
    return make_merbench_root(tmp_path / "mer", N_PER_SPLIT, DIMS, seed=2)


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("fra", [False, True])
def test_import_utterance_level(utt_root, fra_root, fra):
    root = fra_root if fra else utt_root
    feats = fixture_features(fra)
    store = import_merbench(root, feats, workers=1, progress=False)
    corpora = trusted_labels(root)

    # names: train, test1, test2, test3, sorted within split
    expected_names = [n for s in SPLITS for n in sorted(corpora[f"{s}_corpus"])]
    assert list(store.names) == expected_names
    assert list(store.split) == [s for s, k in zip(SPLITS, N_PER_SPLIT) for _ in range(k)]
    assert store.source == "merbench" and store.dataset == "MER2023"
    assert store.feature_names == feats
    assert store.class_names == list(EMOTIONS)
    assert store.lengths == {}
    assert all(not m.any() and m.shape == (N,) for m in store.missing.values())

    for i, (name, split) in enumerate(zip(store.names, store.split)):
        entry = corpora[f"{split}_corpus"][name]
        assert store.labels[i] == EMOTIONS.index(entry["emo"])
        if entry["val"] == -10:
            assert np.isnan(store.valence[i])
        else:
            assert store.valence[i] == pytest.approx(entry["val"], abs=1e-6)
    # test3 has no valence; one train sample carries the -10 placeholder
    assert np.isnan(store.valence[store.split == "test3"]).all()
    assert np.isnan(store.valence[store.split == "train"]).sum() == 1
    assert np.isfinite(store.valence[np.isin(store.split, ["test1", "test2"])]).all()
    assert store.valence.dtype == np.float32 and store.labels.dtype == np.int64

    assert {m: x.shape for m, x in store.features.items()} == {"audio": (N, 8), "text": (N, 12), "video": (N, 6)}
    for m, x in store.features.items():
        assert x.dtype == np.float32
        for i, name in enumerate(store.names):
            want = raw_frames(sample_file(root, feats[m], name)).mean(axis=0)
            np.testing.assert_allclose(x[i], want, rtol=1e-5, atol=1e-6, err_msg=f"{m} {name}")
    # the fixture really exercises averaging over time and a per-face folder
    text_lens = [raw_frames(sample_file(root, TEXT_FEATURE, n)).shape[0] for n in store.names]
    assert max(text_lens) > 1
    assert any(sample_file(root, feats["video"], n).is_dir() for n in store.names)


def test_import_frame_level(fra_root):
    feats = fixture_features(True)
    store = import_merbench(fra_root, feats, frame_level={"video": True}, workers=1, progress=False)
    x, lens = store.features["video"], store.lengths["video"]
    raws = [raw_frames(sample_file(fra_root, VIDEO_FEATURE_FRA, n)) for n in store.names]
    assert x.ndim == 3 and x.shape == (N, max(r.shape[0] for r in raws), 6)
    assert lens.dtype == np.int64 and list(lens) == [r.shape[0] for r in raws]
    assert len(set(lens.tolist())) > 1, "fixture should have varying lengths"
    assert set(store.lengths) == {"video"} and store.features["audio"].shape == (N, 8)
    for i, r in enumerate(raws):
        np.testing.assert_array_equal(x[i, : lens[i]], r.astype(np.float32))
        assert not x[i, lens[i] :].any(), "padding must be zero"
    assert store.frame_level() == {"audio": False, "text": False, "video": True}

    short = import_merbench(fra_root, feats, frame_level={"video": True}, max_frames=3, workers=1, progress=False)
    xs, ls = short.features["video"], short.lengths["video"]
    assert xs.shape == (N, 3, 6) and list(ls) == [min(r.shape[0], 3) for r in raws]
    for i, r in enumerate(raws):
        np.testing.assert_array_equal(xs[i, : ls[i]], r[:3].astype(np.float32))
        assert not xs[i, ls[i] :].any()


def test_emo_as_int_index_gives_same_labels(tmp_path):
    a = make_merbench_root(tmp_path / "a", seed=5)
    b = make_merbench_root(tmp_path / "b", seed=5, emo_as_index=True)
    assert isinstance(next(iter(trusted_labels(b)["train_corpus"].values()))["emo"], int)
    sa = import_merbench(a, fixture_features(), workers=1, progress=False)
    sb = import_merbench(b, fixture_features(), workers=1, progress=False)
    np.testing.assert_array_equal(sa.labels, sb.labels)
    assert (sa.labels >= 0).all() and len(set(sa.labels[sa.split == "train"].tolist())) == 6


def test_workers_2_uses_processes_and_matches_serial(fra_root, monkeypatch):
    calls = []
    real = merbench._run_parallel

    def spy(tasks, workers, bar):
        calls.append((len(tasks), workers))
        return real(tasks, workers, bar)

    monkeypatch.setattr(merbench, "_run_parallel", spy)
    monkeypatch.setattr(merbench, "PARALLEL_MIN_TASKS", 1)
    feats = fixture_features(True)
    par = import_merbench(fra_root, feats, frame_level={"video": True}, workers=2, progress=False)
    assert calls == [(3 * N, 2)]
    monkeypatch.setattr(merbench, "PARALLEL_MIN_TASKS", 10**9)
    ser = import_merbench(fra_root, feats, frame_level={"video": True}, workers=2, progress=False)
    assert len(calls) == 1, "small inputs must stay serial"
    for m in par.features:
        np.testing.assert_array_equal(par.features[m], ser.features[m])
    np.testing.assert_array_equal(par.lengths["video"], ser.lengths["video"])
    np.testing.assert_array_equal(par.names, ser.names)


def test_progress_only_on_a_tty(utt_root, capsys):
    import_merbench(utt_root, fixture_features(), workers=1, progress=True)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a TTY

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    tty = FakeTTY()
    bar = merbench._Progress(5, "reading", True, stream=tty)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert "5/5" in tty.getvalue()
    quiet = io.StringIO()
    bar = merbench._Progress(5, "reading", True, stream=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""


def test_extra_files_are_a_warning(root):
    (root / "features" / AUDIO_FEATURE / "sample_99999999.npy").write_bytes(b"junk")
    (root / "features" / AUDIO_FEATURE / "README.txt").write_text("notes")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = import_merbench(root, fixture_features(), workers=1, progress=False)
    assert len(store) == N
    assert [w.category for w in caught] == [MerbenchImportWarning]
    message = str(caught[0].message)
    assert message.startswith(f"[warning] {root / 'features' / AUDIO_FEATURE}: 2 extra file(s)/folder(s)")
    assert "(e.g. sample_99999999)" in message


def test_clean_root_imports_without_warnings(utt_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(import_merbench(utt_root, fixture_features(), workers=1, progress=False)) == N


# --------------------------------------------------------------------------- bad inputs


def test_missing_sample_file(root):
    name = first_name(root, "test2")
    (root / "features" / TEXT_FEATURE / f"{name}.npy").unlink()
    msg = import_error(root)
    assert TEXT_FEATURE in msg and name in msg and f"1 of {N}" in msg and "fix:" in msg


def test_many_missing_samples_list_first_ten_and_count(root):
    names = sorted(trusted_labels(root)["train_corpus"])[1:15]
    for n in names:
        (root / "features" / AUDIO_FEATURE / f"{n}.npy").unlink()
    msg = import_error(root)
    assert "14 of" in msg and "and 4 more" in msg
    assert names[0] in msg and names[9] in msg and names[13] not in msg


def test_dim_mismatch(root):
    name = first_name(root, "test1")
    np.save(root / "features" / TEXT_FEATURE / f"{name}.npy", np.ones((2, 13), np.float32))
    msg = import_error(root)
    assert "inconsistent feature dims" in msg and TEXT_FEATURE in msg
    assert f"{name} (D=13)" in msg and "D=12" in msg


def test_nan_in_feature_names_the_file(root):
    name = first_name(root, "test3")
    bad = np.zeros(8, np.float32)
    bad[3] = np.nan
    np.save(root / "features" / AUDIO_FEATURE / f"{name}.npy", bad)
    msg = import_error(root)
    assert f"{AUDIO_FEATURE}/{name}.npy" in msg and "NaN/Inf" in msg and name in msg


def test_inf_in_a_per_face_file_names_that_face(root):
    face_dir = next(p for p in (root / "features" / "clip-vit-large-patch14-UTT").iterdir() if p.is_dir())
    face = sorted(face_dir.glob("*.npy"))[1]
    arr = np.load(face)
    arr[0] = np.inf
    np.save(face, arr)
    msg = import_error(root)
    assert str(face) in msg and "NaN/Inf" in msg and face_dir.name in msg


def test_truncated_npy(root):
    name = first_name(root)
    f = root / "features" / TEXT_FEATURE / f"{name}.npy"
    f.write_bytes(f.read_bytes()[:-7])
    msg = import_error(root)
    assert str(f) in msg and "truncated" in msg


def test_pickled_object_npy_is_refused(root, tmp_path):
    name = first_name(root, "test1")
    target = tmp_path / "npy-pwned"
    f = root / "features" / AUDIO_FEATURE / f"{name}.npy"
    np.save(f, np.array([RunsShell(target)], dtype=object), allow_pickle=True)
    msg = import_error(root)
    assert str(f) in msg and "pickled-object" in msg
    assert not target.exists()


def test_unknown_emotion_label(root):
    corpora = trusted_labels(root)
    name = sorted(corpora["test1_corpus"])[2]
    corpora["test1_corpus"][name]["emo"] = "confused"
    write_labels(root, corpora)
    msg = import_error(root)
    assert name in msg and "'confused'" in msg and "label-6way.npz" in msg
    assert "neutral, angry, happy, sad, worried, surprise" in msg


def test_sample_in_two_splits(root):
    corpora = trusted_labels(root)
    name = sorted(corpora["train_corpus"])[4]
    corpora["test2_corpus"][name] = dict(corpora["train_corpus"][name])
    write_labels(root, corpora)
    msg = import_error(root)
    assert "more than one split" in msg and f"{name} (train and test2)" in msg


def test_valence_placeholder_and_out_of_range(root):
    corpora = trusted_labels(root)
    names = sorted(corpora["test1_corpus"])
    corpora["test1_corpus"][names[0]]["val"] = np.float64(-10)  # numpy scalar in the pickle
    corpora["test1_corpus"][names[1]]["val"] = float("nan")
    write_labels(root, corpora)
    store = import_merbench(root, fixture_features(), workers=1, progress=False)
    v = dict(zip(store.names, store.valence))
    assert np.isnan(v[names[0]]) and np.isnan(v[names[1]]) and np.isfinite(v[names[2]])
    corpora["test1_corpus"][names[2]]["val"] = 7.5
    write_labels(root, corpora)
    msg = import_error(root)
    assert "invalid valence" in msg and names[2] in msg


def test_unsafe_sample_name(root):
    corpora = trusted_labels(root)
    corpora["train_corpus"]["../../etc/passwd"] = {"emo": "happy", "val": 0.0}
    write_labels(root, corpora)
    assert "unsafe sample name" in import_error(root)


def test_missing_label_file_and_feature_folder(root):
    (root / "label-6way.npz").unlink()
    msg = import_error(
        root, {"audio": AUDIO_FEATURE, "text": "no-such-feature-UTT", "video": "clip-vit-large-patch14-UTT"}
    )
    assert "label-6way.npz not found" in msg and "dataset.root" in msg
    assert "no-such-feature-UTT" in msg and "feature folder for modality 'text' not found" in msg
    assert TEXT_FEATURE in msg  # lists the available folders


def test_all_fatal_findings_in_one_message(root):
    corpora = trusted_labels(root)
    names = sorted(corpora["train_corpus"])
    corpora["train_corpus"][names[1]]["emo"] = "bored"
    write_labels(root, corpora)
    (root / "features" / AUDIO_FEATURE / f"{names[2]}.npy").unlink()
    np.save(root / "features" / TEXT_FEATURE / f"{names[3]}.npy", np.full((1, 12), np.nan, np.float32))
    with pytest.raises(MerbenchImportError) as info:
        import_merbench(root, fixture_features(), workers=1, progress=False)
    err = info.value
    assert len([p for p in err.problems if p.fatal]) == 3
    for n in names[1:4]:
        assert n in str(err)
    assert "'bored'" in str(err) and "NaN/Inf" in str(err) and "no feature file" in str(err)
    assert str(err).startswith(f"MERBench import of {root} failed with 3 problem(s):\n  1. [error]")


def test_bad_arguments(utt_root):
    with pytest.raises(ValueError, match="unknown modality"):
        import_merbench(utt_root, {"smell": AUDIO_FEATURE}, workers=1)
    with pytest.raises(ValueError, match="frame_level"):
        import_merbench(utt_root, {"audio": AUDIO_FEATURE}, frame_level={"video": True}, workers=1)
    with pytest.raises(ValueError, match="max_frames"):
        import_merbench(utt_root, fixture_features(), max_frames=0, workers=1)


# --------------------------------------------------------------------------- restricted unpickling


class RunsShell:
    """Pickles to ``os.system('echo pwned > target')``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


class RunsEval:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.target)!r}).write_text('pwned')",))


class UserClass:
    """A plain user class whose unpickling (``__setstate__``) runs code."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __setstate__(self, state):
        Path(state["target"]).write_text("pwned")


PAYLOADS = {
    "os.system": (RunsShell, "system"),
    "builtins.eval": (RunsEval, "builtins.eval"),
    "user class": (UserClass, "UserClass"),
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_malicious_label_pickle_is_refused(tmp_path, kind):
    cls, refused = PAYLOADS[kind]
    target = tmp_path / "pwned"
    path = tmp_path / "label-6way.npz"
    corpus = {"sample_00000001": {"emo": cls(target), "val": 0.0}}
    np.savez(path, train_corpus=np.array(corpus, dtype=object), test1_corpus=np.array({}, dtype=object))

    with pytest.raises(UnsafePickleError) as info:
        load_label_file(path)
    msg = str(info.value)
    assert str(path) in msg and "train_corpus" in msg and refused in msg and "fix:" in msg
    assert not target.exists(), "the payload ran"

    # control: the payload is live -- unrestricted loading *does* run it
    with np.load(path, allow_pickle=True) as z:
        z["train_corpus"]
    assert target.exists()


def test_malicious_label_file_refused_by_import_and_cli(root, tmp_path, capsys):
    target = tmp_path / "pwned-import"
    corpora = trusted_labels(root)
    corpora["train_corpus"][first_name(root)]["val"] = RunsShell(target)
    write_labels(root, corpora)
    msg = import_error(root)
    assert "unsafe pickle refused" in msg and "system" in msg and "label-6way.npz" in msg
    out = tmp_path / "out" / "features.h5"
    assert run_cli(root, out) == 2
    assert "system" in capsys.readouterr().err
    assert not out.exists() and not target.exists()


def test_label_file_roundtrip_matches_numpy(utt_root):
    assert load_label_file(utt_root / "label-6way.npz") == trusted_labels(utt_root)


def test_label_file_written_by_old_numpy_core_pickle(tmp_path):
    """Pickles from numpy < 2 name ``numpy.core.multiarray``; they load without warnings."""
    corpus = {"s1": {"emo": np.int64(2), "val": np.float64(1.25)}, "s2": {"emo": "sad", "val": np.float32(-10)}}
    payload = pickle.dumps(np.array(corpus, dtype=object), protocol=2)
    assert b"numpy._core.multiarray" in payload or b"numpy.core.multiarray" in payload
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    path = tmp_path / "label-6way.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_corpus.npy", buf.getvalue() + payload)
        numeric = io.BytesIO()
        np.save(numeric, np.arange(3))
        zf.writestr("counts.npy", numeric.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = load_label_file(path)
    assert got == {"train_corpus": corpus}


def test_restricted_loads_refuses_attribute_walks():
    # protocol-4 qualified name: numpy.ndarray.__reduce__ style walking is not allowed
    evil = b"\x80\x04\x8c\x05numpy\x8c\x0fndarray.__new__\x93."
    with pytest.raises(UnsafePickleError, match="numpy.ndarray.__new__"):
        restricted_loads(evil, source="x")
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        restricted_loads(pickle.dumps(RunsShell(Path("/nonexistent/x"))), source="x")
    assert restricted_loads(pickle.dumps({"a": [1, 2.5, ("x",)]})) == {"a": [1, 2.5, ("x",)]}


# --------------------------------------------------------------------------- prmf import-merbench


def run_cli(root: Path, out: Path, *extra: str, features: str | None = None) -> int:
    feats = features or ",".join(fixture_features().values())
    return main(["import-merbench", str(root), "--features", feats, "--output", str(out), "--workers", "1", *extra])


def test_cli_success_writes_store(fra_root, tmp_path, capsys):
    out = tmp_path / "out" / "features.h5"
    feats = ",".join(fixture_features(True).values())
    rc = run_cli(fra_root, out, "--frame-level", "video", "--max-frames", "4", features=feats)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "train 24, test1 6, test2 6, test3 8" in captured.out
    assert "NaN) for 9 sample" in captured.out and "D=12" in captured.out
    store = read_store(out)
    direct = import_merbench(
        fra_root, fixture_features(True), frame_level={"video": True}, max_frames=4, workers=1, progress=False
    )
    assert store.source == "merbench" and store.feature_names == fixture_features(True)
    np.testing.assert_array_equal(store.features["video"], direct.features["video"])
    np.testing.assert_array_equal(store.lengths["video"], direct.lengths["video"])
    np.testing.assert_array_equal(store.names, direct.names)


def test_cli_failure_writes_nothing(root, tmp_path, capsys):
    name = first_name(root, "test1")
    np.save(root / "features" / AUDIO_FEATURE / f"{name}.npy", np.ones(9, np.float32))
    out = tmp_path / "out" / "features.h5"
    assert run_cli(root, out) == 2
    err = capsys.readouterr().err
    assert name in err and "Nothing was written" in err
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()


def test_cli_bad_feature_list(utt_root, tmp_path, capsys):
    out = tmp_path / "features.h5"
    assert run_cli(utt_root, out, features=f"{AUDIO_FEATURE},{TEXT_FEATURE}") == 2
    err = capsys.readouterr().err
    assert err.startswith("prmf import-merbench: --features expects 3 comma-separated feature folder names in "
                          "audio,text,video order")
    assert err.endswith(f"got '{AUDIO_FEATURE},{TEXT_FEATURE}'\n") and not out.exists()


def test_cli_bad_frame_level(utt_root, tmp_path, capsys):
    out = tmp_path / "features.h5"
    assert run_cli(utt_root, out, "--frame-level", "video,smell") == 2
    assert capsys.readouterr().err == (
        "prmf import-merbench: --frame-level: unknown modality ['smell']; expected some of audio,text,video\n")
    assert not out.exists()


def test_cli_prints_import_warnings(root, tmp_path, capsys):
    (root / "features" / AUDIO_FEATURE / "README.txt").write_text("notes")
    assert run_cli(root, tmp_path / "features.h5") == 0
    err = capsys.readouterr().err
    assert err == f"warning: [warning] {root / 'features' / AUDIO_FEATURE}: 1 extra file(s)/folder(s) not in " \
                  "label-6way.npz are ignored\n"

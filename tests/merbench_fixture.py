"""Build a small MERBench-shaped folder for tests.

Public helpers (also used by the end-to-end Snakemake test):

* :func:`make_merbench_root` writes ``ROOT/label-6way.npz`` and ``ROOT/features/``
  exactly as MERBench lays them out, with class-informative features so a model
  trained on the import learns something;
* :func:`fixture_features` gives the ``modality -> feature folder`` mapping
  (what ``import_merbench(features=...)`` / ``--features`` / the config expects).

Usage::

    from merbench_fixture import make_merbench_root, fixture_features
    root = make_merbench_root(tmp_path / "mer2023-dataset-process")
    store = import_merbench(root, fixture_features())
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_FEATURE",
    "TEXT_FEATURE",
    "VIDEO_FEATURE_FRA",
    "VIDEO_FEATURE_UTT",
    "FIXTURE_EMOTIONS",
    "fixture_features",
    "make_merbench_root",
    "sample_file",
]

AUDIO_FEATURE = "chinese-hubert-large-UTT"
TEXT_FEATURE = "Baichuan-13B-Base-UTT"
VIDEO_FEATURE_UTT = "clip-vit-large-patch14-UTT"
VIDEO_FEATURE_FRA = "clip-vit-large-patch14-FRA"
FIXTURE_EMOTIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")  # MERBench index order
_SPLITS = ("train", "test1", "test2", "test3")
_CLASS_VALENCE = (0.0, -3.0, 3.0, -3.5, -2.0, 1.5)


def fixture_features(frame_level_video: bool = False) -> dict[str, str]:
    """``modality -> feature folder name`` of a root built by :func:`make_merbench_root`."""
    video = VIDEO_FEATURE_FRA if frame_level_video else VIDEO_FEATURE_UTT
    return {"audio": AUDIO_FEATURE, "text": TEXT_FEATURE, "video": video}


def sample_file(root: Path, feature: str, name: str) -> Path:
    """Path of ``name``'s feature: ``<name>.npy`` or, for per-face samples, the folder ``<name>/``."""
    folder = Path(root) / "features" / feature
    f = folder / f"{name}.npy"
    return f if f.exists() else folder / name


def make_merbench_root(
    root: Path,
    n_per_split: tuple[int, int, int, int] = (24, 6, 6, 8),
    dims: tuple[int, int, int] = (8, 12, 6),
    seed: int = 0,
    frame_level_video: bool = False,
    *,
    face_folder_samples: int = 1,
    train_placeholder_valence: int = 1,
    emo_as_index: bool = False,
    max_frames: int = 6,
    separation: float = 2.0,
    noise: float = 0.5,
    zero_rows: dict[str, int] | None = None,
) -> Path:
    """Write a MERBench ``mer2023-dataset-process``-shaped folder and return ``root``.

    Layout::

        root/label-6way.npz    train_corpus/test1_corpus/test2_corpus/test3_corpus: 0-d object
                               arrays (np.savez) holding {name: {'emo': str, 'val': float}}
        root/features/chinese-hubert-large-UTT/<name>.npy      [D_audio]        (1-D)
        root/features/Baichuan-13B-Base-UTT/<name>.npy         [T, D_text]      (T in 1..3, importer averages)
        root/features/clip-vit-large-patch14-UTT/<name>.npy    [D_video]        (frame_level_video=False)
        root/features/clip-vit-large-patch14-FRA/<name>.npy    [T, D_video]     (frame_level_video=True,
                                                                                 T in 2..max_frames)
        root/features/<video>/<name>/00000.npy, 00001.npy ...  per-face [D_video] files for the first
                                                               ``face_folder_samples`` train samples

    Args:
        root: folder to create (parents too).
        n_per_split: samples in train, test1, test2, test3 (names unique across splits).
        dims: feature dims (audio, text, video).
        seed: everything is deterministic given the seed.
        frame_level_video: write the video feature as frame-level ``-FRA`` ``[T, D]`` files.
        face_folder_samples: how many train samples store video as a per-face folder.
        train_placeholder_valence: how many train samples carry MERBench's ``-10``
            valence placeholder (test3 always does).
        emo_as_index: store ``'emo'`` as the int index instead of the class name.
        max_frames: longest video sequence (frame level / per-face folders).
        separation, noise: class prototype scale and per-sample/per-frame noise;
            features are ``prototype[class] + noise * N(0, 1)``, so classes are
            separable from every modality.
        zero_rows: modality -> k: in every split, k samples get MERBench's "absent"
            vector for that modality instead of features (``np.zeros(dim)``, or
            ``np.zeros((1, dim))`` for frame-level files, as MERBench's extractors
            write for no face / an empty transcript). Different modalities hit
            different samples, and never the per-face-folder ones.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    d_a, d_t, d_v = (int(d) for d in dims)
    n_total = int(sum(n_per_split))
    # names sorted order != insertion order, unique across splits
    ids = rng.choice(np.arange(1, 100 * n_total + 1), size=n_total, replace=False)
    names_all = [f"sample_{i:08d}" for i in ids]

    feats = fixture_features(frame_level_video)
    folders = {m: root / "features" / f for m, f in feats.items()}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    proto = {
        "audio": rng.normal(size=(6, d_a)) * separation,
        "text": rng.normal(size=(6, d_t)) * separation,
        "video": rng.normal(size=(6, d_v)) * separation,
    }

    corpora: dict[str, dict] = {}
    pos = 0
    for split, n in zip(_SPLITS, n_per_split):
        names = names_all[pos : pos + n]
        pos += n
        classes = rng.permutation(np.arange(n) % 6)
        corpus = {}
        zero_at: dict[str, set[int]] = {}
        start = face_folder_samples if split == "train" else 0
        for m in ("audio", "text", "video"):
            k = int((zero_rows or {}).get(m, 0))
            zero_at[m] = set(range(start, min(n, start + k)))
            start += k
        for j, (name, c) in enumerate(zip(names, classes)):
            c = int(c)
            if split == "test3" or (split == "train" and j < train_placeholder_valence):
                val = -10.0
            else:
                val = float(np.clip(_CLASS_VALENCE[c] + rng.normal(scale=0.5), -5, 5))
            corpus[name] = {"emo": c if emo_as_index else FIXTURE_EMOTIONS[c], "val": val}

            a = proto["audio"][c] + noise * rng.normal(size=d_a)
            np.save(folders["audio"] / f"{name}.npy", a.astype(np.float32))
            t_len = int(rng.integers(1, 4))
            t = proto["text"][c] + noise * rng.normal(size=(t_len, d_t))
            np.save(folders["text"] / f"{name}.npy", t.astype(np.float32))
            v_len = int(rng.integers(2, max_frames + 1))
            v = (proto["video"][c] + noise * rng.normal(size=(v_len, d_v))).astype(np.float32)
            if split == "train" and j < face_folder_samples:
                face_dir = folders["video"] / name
                face_dir.mkdir(exist_ok=True)
                for k in range(v_len):
                    np.save(face_dir / f"{k:05d}.npy", v[k])
            elif frame_level_video:
                np.save(folders["video"] / f"{name}.npy", v)
            else:
                np.save(folders["video"] / f"{name}.npy", v.mean(axis=0))
            # MERBench's absent vectors overwrite what was written above
            if j in zero_at["audio"]:
                np.save(folders["audio"] / f"{name}.npy", np.zeros(d_a, dtype=np.float32))
            if j in zero_at["text"]:
                np.save(folders["text"] / f"{name}.npy", np.zeros((1, d_t), dtype=np.float32))
            if j in zero_at["video"]:
                shape = (1, d_v) if frame_level_video else (d_v,)
                np.save(folders["video"] / f"{name}.npy", np.zeros(shape, dtype=np.float32))
        corpora[f"{split}_corpus"] = corpus

    np.savez(root / "label-6way.npz", **{k: np.array(v, dtype=object) for k, v in corpora.items()})
    return root

"""The feature store: one HDF5 file that everything downstream reads.

Layout of ``features.h5`` (h5py)::

    /names                [N]        utf-8 sample names, unique
    /labels               [N]        int64 emotion index into attrs["class_names"]
    /valence              [N]        float32, NaN where unknown
    /split                [N]        utf-8, one of train/test1/test2/test3
    /features/{modality}  [N, D]     float32 utterance-level features
                          [N, T, D]  float32 frame-level features (zero padded)
    /lengths/{modality}   [N]        int64 valid frames (frame-level modalities only)
    /missing/{modality}   [N]        bool, True where the modality is absent for
                                     that sample: flagged by the source, or an
                                     all-zero row (MERBench's extractors write
                                     zeros for no face / empty transcript;
                                     ``dataset.zero_rows: missing``)
    attrs: class_names, modalities, feature_names (JSON), source, dataset,
           content_hash (sha256 over every array), format_version

Writes are atomic: the file is written to ``<path>.tmp`` and renamed, so a
crash never leaves a file that Snakemake would take as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SPLITS: tuple[str, ...] = ("train", "test1", "test2", "test3")
EMOTIONS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
MODALITIES: tuple[str, ...] = ("audio", "text", "video")
FORMAT_VERSION = 1


@dataclass
class FeatureStore:
    """In-memory view of ``features.h5``.

    Attributes:
        names: ``[N]`` sample names.
        labels: ``[N]`` int64 class indices into ``class_names``.
        valence: ``[N]`` float32 valence in [-5, 5], NaN where unknown.
        split: ``[N]`` split of each sample (``SPLITS``).
        features: modality -> ``[N, D]`` or ``[N, T, D]`` float32.
        missing: modality -> ``[N]`` bool, absent (source flag or all-zero row).
        lengths: modality -> ``[N]`` int64 frame counts (frame-level only).
        class_names: emotion names, index order of ``labels``.
        feature_names: modality -> feature extractor name (e.g. ``chinese-hubert-large-UTT``).
        source: ``synthetic`` or ``merbench``.
        dataset: dataset name (e.g. ``MER2023``).
    """

    names: np.ndarray
    labels: np.ndarray
    valence: np.ndarray
    split: np.ndarray
    features: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    class_names: list[str]
    feature_names: dict[str, str]
    source: str
    dataset: str
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def modalities(self) -> list[str]:
        """Modality names in store order."""
        return list(self.features)

    def __len__(self) -> int:
        return int(len(self.names))

    def indices(self, split: str) -> np.ndarray:
        """``[n]`` int64 row indices of the samples in ``split``."""
        return np.flatnonzero(self.split == split)

    def dims(self) -> dict[str, int]:
        """Feature dimension per modality."""
        return {m: int(x.shape[-1]) for m, x in self.features.items()}

    def frame_level(self) -> dict[str, bool]:
        """True for modalities stored as ``[N, T, D]``."""
        return {m: x.ndim == 3 for m, x in self.features.items()}


def content_hash(store: FeatureStore) -> str:
    """sha256 over names, labels, valence, split, features, masks (hex)."""
    h = hashlib.sha256()
    for arr in (store.names.astype("U"), store.labels, store.valence, store.split.astype("U")):
        h.update(np.ascontiguousarray(arr).tobytes())
    for m in store.features:
        h.update(m.encode())
        h.update(np.ascontiguousarray(store.features[m]).tobytes())
        h.update(np.ascontiguousarray(store.missing[m]).tobytes())
        if m in store.lengths:
            h.update(np.ascontiguousarray(store.lengths[m]).tobytes())
    return h.hexdigest()


def write_store(path: str | Path, store: FeatureStore) -> str:
    """Write ``store`` to ``path`` atomically; returns the content hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    digest = content_hash(store)
    str_dt = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("names", data=np.asarray(store.names, dtype=object), dtype=str_dt)
            f.create_dataset("labels", data=np.asarray(store.labels, dtype=np.int64))
            f.create_dataset("valence", data=np.asarray(store.valence, dtype=np.float32))
            f.create_dataset("split", data=np.asarray(store.split, dtype=object), dtype=str_dt)
            g, gm, gl = f.create_group("features"), f.create_group("missing"), f.create_group("lengths")
            for m, x in store.features.items():
                g.create_dataset(m, data=np.asarray(x, dtype=np.float32))
                gm.create_dataset(m, data=np.asarray(store.missing[m], dtype=bool))
                if m in store.lengths:
                    gl.create_dataset(m, data=np.asarray(store.lengths[m], dtype=np.int64))
            f.attrs["class_names"] = json.dumps(list(store.class_names))
            f.attrs["modalities"] = json.dumps(list(store.features))
            f.attrs["feature_names"] = json.dumps(dict(store.feature_names))
            f.attrs["source"] = store.source
            f.attrs["dataset"] = store.dataset
            f.attrs["content_hash"] = digest
            f.attrs["format_version"] = FORMAT_VERSION
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    store.content_hash = digest
    return digest


def read_store(path: str | Path) -> FeatureStore:
    """Read a feature store written by :func:`write_store`.

    Raises:
        ValueError: naming the file and the missing key when the layout is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: feature store not found; run the prepare_dataset rule first")
    with h5py.File(path, "r") as f:
        for key in ("names", "labels", "valence", "split", "features", "missing"):
            if key not in f:
                raise ValueError(
                    f"{path}: key '{key}' missing; this is not a prmf feature store "
                    f"(rebuild it with `prmf synth` or `prmf import-merbench`)"
                )
        modalities = json.loads(f.attrs["modalities"])
        return FeatureStore(
            names=f["names"].asstr()[...].astype(str),
            labels=f["labels"][...],
            valence=f["valence"][...],
            split=f["split"].asstr()[...].astype(str),
            features={m: f["features"][m][...] for m in modalities},
            missing={m: f["missing"][m][...] for m in modalities},
            lengths={m: f["lengths"][m][...] for m in modalities if m in f.get("lengths", {})},
            class_names=json.loads(f.attrs["class_names"]),
            feature_names=json.loads(f.attrs["feature_names"]),
            source=str(f.attrs["source"]),
            dataset=str(f.attrs["dataset"]),
            content_hash=str(f.attrs["content_hash"]),
        )

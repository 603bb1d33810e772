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

Writes are atomic (:mod:`prmf.atomic`): the HDF5 image is built in memory
(h5py never writes to the disk itself: after a failed write it can print pages
of tracebacks and crash the interpreter), the free space is checked against
its size, and it is written to a temporary file beside the target, fsync-ed
and renamed, so a crash or a full disk never leaves a file that Snakemake
would take as complete. Writing needs memory for one more copy of the store.

Reads go through :func:`read_store`, which names the file, what is wrong and
the fix (:class:`StoreError`) for a missing, empty, non-HDF5, truncated or
incomplete file and for labels outside the class list; with
``verify_hash=True`` it recomputes the ``content_hash`` (about 0.2 s for a
MER2023-sized store, 5030 x 6912 float32) and refuses a store whose contents
changed after it was written.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from prmf.atomic import ensure_free_space, write_bytes

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

    def present(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), M]`` bool: modality ``m`` (store order) present for each of ``rows``."""
        return np.stack([~np.asarray(self.missing[m][rows], dtype=bool) for m in self.modalities], axis=1)

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


def store_nbytes(store: FeatureStore) -> int:
    """Approximate size of ``store`` on disk (bytes): every array plus the strings' heap."""
    arrays = [store.labels, store.valence, *store.features.values(), *store.missing.values(), *store.lengths.values()]
    size = sum(int(np.asarray(a).nbytes) for a in arrays)
    for strings in (store.names, store.split):
        size += sum(len(str(x).encode()) for x in strings) + 32 * len(strings)
    return size


def write_store(path: str | Path, store: FeatureStore) -> str:
    """Write ``store`` to ``path`` atomically; returns the content hash.

    Raises:
        prmf.atomic.OutputError: the folder lacks the space (checked before
            writing, against the arrays' size and again against the file's)
            or the write failed; ``path`` is unchanged (absent or the previous
            store) and no temporary file is left.
    """
    path = Path(path)
    ensure_free_space(path, store_nbytes(store))  # before spending time and memory on the image
    digest = content_hash(store)
    str_dt = h5py.string_dtype("utf-8")
    image = io.BytesIO()
    # the HDF5 image in memory: h5py never sees a failed write
    with h5py.File(image, "w") as f:
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
    data = image.getbuffer()
    ensure_free_space(path, data.nbytes)
    write_bytes(path, data)
    del data
    store.content_hash = digest
    return digest


class StoreError(ValueError):
    """A feature store that cannot be used. The message is one line: the file, what is wrong, the fix."""


#: what to do about a damaged store (the pipeline rebuilds it from its source)
REBUILD_FIX = ("delete it and run Snakemake again (the prepare_dataset rule rebuilds it; outside Snakemake: "
               "`prmf synth` or `prmf import-merbench`)")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KEYS = ("names", "labels", "valence", "split", "features", "missing")
_ATTRS = ("class_names", "modalities", "feature_names", "source", "dataset")
_MAX_LISTED = 5


def _bad(path: Path, what: str, fix: str = REBUILD_FIX) -> StoreError:
    return StoreError(f"{path}: {what}; {fix}")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _h5_problem(err: BaseException) -> str:
    """h5py's error as a short phrase (``truncated: 1000 of 246963 bytes`` where it says so)."""
    text = _one_line(err)
    m = re.search(r"truncated file: eof = (\d+).*?stored_eof = (\d+)", text)
    if m:
        return f"truncated HDF5 file ({m[1]} of {m[2]} bytes present)"
    return f"damaged HDF5 file ({text})"


def _listed(names: np.ndarray) -> str:
    shown = ", ".join(map(str, names[:_MAX_LISTED]))
    return shown + (f" (+{len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _check_file(path: Path) -> None:
    """Existence, non-empty, HDF5 signature: the problems h5py reports least clearly."""
    if not path.exists():
        raise _bad(path, "feature store not found", "run the prepare_dataset rule first (or `prmf synth` / "
                                                    "`prmf import-merbench`)")
    if path.is_dir():
        raise _bad(path, "is a folder, not a feature store file", "point to the features.h5 file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    except OSError as err:
        raise _bad(path, f"cannot be read ({_one_line(err.strerror or err)})", "check its permissions") from err
    if size == 0:
        raise _bad(path, "empty file (0 bytes): an interrupted write")
    if head != _HDF5_SIGNATURE and not h5py.is_hdf5(str(path)):  # is_hdf5 also finds a user block
        raise _bad(path, f"not an HDF5 file (no HDF5 signature; {size} bytes)")


def _read(path: Path, f: h5py.File) -> FeatureStore:
    missing_keys = [k for k in _KEYS if k not in f]
    missing_attrs = [a for a in _ATTRS if a not in f.attrs]
    if missing_keys or missing_attrs:
        parts = []
        for kind, names in (("key", missing_keys), ("attribute", missing_attrs)):
            if names:
                parts.append(f"{kind}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}")
        raise _bad(path, f"incomplete feature store: {' and '.join(parts)} missing")
    try:
        modalities = json.loads(f.attrs["modalities"])
        class_names = json.loads(f.attrs["class_names"])
        feature_names = json.loads(f.attrs["feature_names"])
    except (TypeError, ValueError) as err:
        raise _bad(path, f"unreadable attributes (not JSON: {_one_line(err)})") from err
    absent = [f"features/{m}" for m in modalities if m not in f["features"]]
    absent += [f"missing/{m}" for m in modalities if m not in f["missing"]]
    if absent:
        raise _bad(path, f"incomplete feature store: modality data {absent} missing (attrs list "
                         f"modalities {modalities})")
    lengths_group = f.get("lengths", {})
    return FeatureStore(
        names=f["names"].asstr()[...].astype(str),
        labels=f["labels"][...],
        valence=f["valence"][...],
        split=f["split"].asstr()[...].astype(str),
        features={m: f["features"][m][...] for m in modalities},
        missing={m: f["missing"][m][...] for m in modalities},
        lengths={m: lengths_group[m][...] for m in modalities if m in lengths_group},
        class_names=list(class_names),
        feature_names=dict(feature_names),
        source=str(f.attrs["source"]),
        dataset=str(f.attrs["dataset"]),
        content_hash=str(f.attrs.get("content_hash", "")),
    )


def _check_store(path: Path, store: FeatureStore, contents: bool) -> None:
    """Per-sample arrays of one length; with ``contents``, feature rows too and labels in the class list."""
    n = len(store.names)
    sized = {"labels": store.labels, "valence": store.valence, "split": store.split}
    sized.update({f"missing/{m}": v for m, v in store.missing.items()})
    sized.update({f"lengths/{m}": v for m, v in store.lengths.items()})
    if contents:
        sized.update({f"features/{m}": v for m, v in store.features.items()})
    wrong = [f"{k} has {len(v)}" for k, v in sized.items() if len(v) != n]
    if wrong:
        raise _bad(path, f"incomplete feature store: {n} sample names but {', '.join(wrong)} rows")
    for m, x in store.features.items():
        if x.ndim not in (2, 3) or (x.ndim == 3 and m not in store.lengths):
            raise _bad(path, f"features/{m} has shape {x.shape}; expected [N, D], or [N, T, D] with lengths/{m}")
    if contents:
        c = len(store.class_names)
        bad = np.flatnonzero((store.labels < 0) | (store.labels >= c))
        if len(bad):
            raise _bad(path, f"{len(bad)} label(s) outside the class list 0..{c - 1} "
                             f"({', '.join(store.class_names)}): samples {_listed(store.names[bad])} "
                             f"(first label {int(store.labels[bad[0]])})")


def read_store(path: str | Path, *, check_contents: bool = True, verify_hash: bool = False) -> FeatureStore:
    """Read a feature store written by :func:`write_store`; the one way a store is opened.

    Args:
        check_contents: also check that every modality has one feature row
            per sample and that every label indexes the class list (training
            needs both; validation reports them as findings instead).
        verify_hash: recompute the content hash and compare it with the one
            recorded when the store was written (about 0.2 s per 140 MB).

    Raises:
        StoreError: one line naming the file, what is wrong (not found, empty,
            not HDF5, truncated or damaged, keys / attributes / modalities
            missing, arrays of different lengths, labels outside the class
            list, hash mismatch) and what to do.
    """
    path = Path(path)
    _check_file(path)
    try:
        with h5py.File(path, "r") as f:
            store = _read(path, f)
    except StoreError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise _bad(path, _h5_problem(err)) from err
    _check_store(path, store, check_contents)
    if verify_hash:
        verify_content_hash(path, store)
    return store


def verify_content_hash(path: str | Path, store: FeatureStore) -> None:
    """Raise :class:`StoreError` unless ``store``'s contents hash to its recorded ``content_hash``."""
    if not store.content_hash:
        raise _bad(Path(path), "no content_hash recorded, so its contents cannot be verified")
    actual = content_hash(store)
    if actual != store.content_hash:
        raise _bad(Path(path), f"content hash mismatch: recorded {store.content_hash[:12]}, contents hash to "
                               f"{actual[:12]}; the file changed after it was written (edited or damaged)")

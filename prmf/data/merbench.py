"""Import MERBench / MER2023 features into the prmf feature store.

Reads MERBench's ``mer2023-dataset-process`` folder::

    ROOT/label-6way.npz            train_corpus, test1_corpus, test2_corpus, test3_corpus:
                                   0-d object arrays holding {name: {'emo': str|int, 'val': float}}
    ROOT/features/<FeatureName>/<sample>.npy      [D] or [T, D]
    ROOT/features/<FeatureName>/<sample>/*.npy    per-face files, stacked in sorted order

and returns a :class:`~prmf.data.store.FeatureStore` (the caller writes it with
:func:`~prmf.data.store.write_store`, only after a fully successful import).

* Labels are decoded without unrestricted unpickling (:mod:`prmf.data.safe_pickle`).
* Utterance-level modalities are averaged over time (``mean(axis=0)``, as MERBench
  does); frame-level modalities are kept as ``[N, T, D]`` zero padded plus ``lengths``.
* MERBench's valence placeholder ``-10`` (any valence < -5.5 or non-finite) becomes NaN.
* All-zero rows (MERBench's extractors write ``np.zeros(dim)`` for a clip with no
  detected face or an empty transcript) are flagged in the store's ``missing``
  mask with ``zero_rows="missing"`` (the default; :mod:`prmf.data.zero_rows`).
* Every sample is checked (present in every feature folder, readable, finite,
  consistent dims, known label, unique split); all fatal findings are reported
  together in one :class:`MerbenchImportError`.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prmf.data.safe_pickle import UnsafePickleError, load_npz_restricted
from prmf.data.store import EMOTIONS, MODALITIES, SPLITS, FeatureStore
from prmf.data.zero_rows import flag_zero_rows

__all__ = [
    "LABEL_FILE",
    "MerbenchImportError",
    "MerbenchImportWarning",
    "Problem",
    "UnsafePickleError",
    "import_merbench",
    "load_label_file",
]

LABEL_FILE = "label-6way.npz"
FEATURES_DIR = "features"
CORPUS_KEYS: dict[str, str] = {s: f"{s}_corpus" for s in SPLITS}
#: valence below this (MERBench stores -10 when unknown) or non-finite -> NaN
VALENCE_PLACEHOLDER_BELOW = -5.5
VALENCE_MAX = 5.5
#: below this many files the reads run serially even when ``workers > 1``
PARALLEL_MIN_TASKS = 256
CHUNK_SIZE = 64
MAX_LISTED = 10  # how many names a message lists before "... and N more"

_FIX_ROOT = (
    "check `dataset.root` in the config: it must be MERBench's "
    "`mer2023-dataset-process` folder holding label-6way.npz and features/"
)
_FIX_FEATURES = "check the feature names (`dataset.features` in the config / --features) against ROOT/features/"
_FIX_REEXTRACT = "re-extract the feature for this sample with MERBench (or restore the file from the original download)"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One finding of the raw-folder validation.

    Attributes:
        severity: ``"error"`` (fatal, import refused) or ``"warning"``.
        where: the folder or file concerned.
        message: what is wrong (names the sample(s) where relevant).
        fix: what to do about it.
        sample: the sample name when the problem concerns one sample.
    """

    severity: str
    where: str
    message: str
    fix: str = ""
    sample: str | None = None

    @property
    def fatal(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        who = f" sample '{self.sample}':" if self.sample else ""
        fix = f"\n     fix: {self.fix}" if self.fix else ""
        return f"[{self.severity}] {self.where}:{who} {self.message}{fix}"


class MerbenchImportError(Exception):
    """The MERBench folder cannot be imported; ``problems`` holds every finding."""

    def __init__(self, root: str | Path, problems: Sequence[Problem]):
        self.root = Path(root)
        self.problems = list(problems)
        errors = [p for p in self.problems if p.fatal]
        warns = [p for p in self.problems if not p.fatal]
        lines = [f"MERBench import of {self.root} failed with {len(errors)} problem(s):"]
        lines += [f"  {i}. {p}" for i, p in enumerate(errors, 1)]
        if warns:
            lines.append(f"and {len(warns)} warning(s):")
            lines += [f"  - {p}" for p in warns]
        lines.append("Nothing was written to the feature store.")
        super().__init__("\n".join(lines))


class MerbenchImportWarning(UserWarning):
    """Non-fatal finding of the import (e.g. extra files in a feature folder)."""


def _list_names(items: Sequence[str], n: int = MAX_LISTED) -> str:
    """The first ``n`` items, comma separated, then ``... and K more``."""
    shown = ", ".join(items[:n])
    return shown + (f", ... and {len(items) - n} more" if len(items) > n else "")


# --------------------------------------------------------------------------- labels


def load_label_file(path: str | Path) -> dict[str, dict[str, dict]]:
    """Corpora of a MERBench ``label-6way.npz`` without unrestricted unpickling.

    Returns:
        npz key (``train_corpus``, ...) -> ``{sample name: entry}``; entries are
        whatever the file holds (normally ``{'emo': str|int, 'val': float}``).
        Non-object (plain numeric) members are not corpora and are skipped.

    Raises:
        UnsafePickleError: a pickle references a global outside the allow-list
            (names the file, key and global).
        ValueError: the file is not an npz or a corpus is not a dict.
        OSError: the file cannot be read.
    """
    path = Path(path)
    out: dict[str, dict[str, dict]] = {}
    for key, arr in load_npz_restricted(path).items():
        if arr.dtype != object:
            continue
        if arr.ndim != 0:
            raise ValueError(f"{path} (key '{key}'): expected a 0-d object array holding a dict, got shape {arr.shape}")
        corpus = arr.item()
        if not isinstance(corpus, dict):
            raise ValueError(
                f"{path} (key '{key}'): expected a pickled dict name -> entry, got {type(corpus).__name__}"
            )
        out[key] = corpus
    return out


def _emotion_index(emo: Any) -> int | None:
    if isinstance(emo, (bool, np.bool_)):
        return None
    if isinstance(emo, (int, np.integer)):
        return int(emo) if 0 <= int(emo) < len(EMOTIONS) else None
    if isinstance(emo, (float, np.floating)) and float(emo).is_integer():
        return _emotion_index(int(emo))
    if isinstance(emo, bytes):
        emo = emo.decode("utf-8", "replace")
    if isinstance(emo, str):
        s = emo.strip().lower()
        return EMOTIONS.index(s) if s in EMOTIONS else None
    return None


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


@dataclass
class _Labels:
    names: list[str]
    split: list[str]
    labels: list[int]
    valence: list[float]


def _parse_labels(root: Path, problems: list[Problem]) -> _Labels | None:
    path = root / LABEL_FILE
    if not path.is_file():
        problems.append(Problem("error", str(path), f"label file {LABEL_FILE} not found", _FIX_ROOT))
        return None
    try:
        corpora = load_label_file(path)
    except UnsafePickleError as err:
        problems.append(Problem("error", str(path), f"unsafe pickle refused: {err}"))
        return None
    except (ValueError, OSError, EOFError) as err:
        problems.append(
            Problem("error", str(path), f"unreadable label file: {err}",
                    "restore label-6way.npz from the MERBench download")
        )  # fmt: skip
        return None

    seen: dict[str, str] = {}
    dupes: dict[str, list[str]] = {}
    unknown: list[str] = []
    bad_val: list[str] = []
    unsafe: list[str] = []
    out = _Labels([], [], [], [])
    for split in SPLITS:
        key = CORPUS_KEYS[split]
        corpus = corpora.get(key)
        if not corpus:  # missing or empty: the split has no samples
            sev = "error" if split == "train" else "warning"
            what = (f"key '{key}' missing (found: {sorted(corpora)}); split '{split}' is empty" if key not in corpora
                    else f"key '{key}' is empty ({{}}); split '{split}' has no samples")
            problems.append(
                Problem(sev, str(path), what, "use MERBench's label-6way.npz with train/test1/test2/test3 corpora")
            )  # fmt: skip
            continue
        rows = []
        for raw_name, entry in corpus.items():
            name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else str(raw_name)
            if not _safe_name(name):
                unsafe.append(repr(name))
                continue
            if name in seen:
                dupes.setdefault(name, [seen[name]]).append(split)
                continue
            seen[name] = split
            if isinstance(entry, Mapping):
                emo = entry.get("emo", entry.get("emotion"))
                val = entry.get("val", entry.get("valence", float("nan")))
            else:  # bare label
                emo, val = entry, float("nan")
            idx = _emotion_index(emo)
            if idx is None:
                unknown.append(f"{name} ({split}): {emo!r}")
                idx = -1
            try:
                v = float(val)
            except (TypeError, ValueError):
                bad_val.append(f"{name}: {val!r}")
                v = float("nan")
            if not math.isfinite(v) or v < VALENCE_PLACEHOLDER_BELOW:
                v = float("nan")
            elif v > VALENCE_MAX:
                bad_val.append(f"{name}: {v!r}")
            rows.append((name, idx, v))
        for name, idx, v in sorted(rows):
            out.names.append(name)
            out.split.append(split)
            out.labels.append(idx)
            out.valence.append(v)

    if unknown:
        problems.append(
            Problem("error", str(path),
                    f"{len(unknown)} sample(s) with an unknown emotion label: {_list_names(unknown)}; "
                    f"allowed: {', '.join(EMOTIONS)} (or their index 0-{len(EMOTIONS) - 1})",
                    "fix the labels in label-6way.npz or drop those samples",
                    sample=unknown[0].split(" ")[0])
        )  # fmt: skip
    if dupes:
        items = [f"{n} ({' and '.join(s)})" for n, s in sorted(dupes.items())]
        problems.append(
            Problem("error", str(path), f"{len(dupes)} sample(s) appear in more than one split: {_list_names(items)}",
                    "each sample must belong to exactly one of train/test1/test2/test3; remove the duplicates",
                    sample=sorted(dupes)[0])
        )  # fmt: skip
    if bad_val:
        problems.append(
            Problem("error", str(path),
                    f"{len(bad_val)} sample(s) with an invalid valence (expected a number in [-5, 5], "
                    f"or -10 for unknown): {_list_names(bad_val)}",
                    "fix 'val' in label-6way.npz", sample=bad_val[0].split(":")[0])
        )  # fmt: skip
    if unsafe:
        problems.append(
            Problem("error", str(path), f"{len(unsafe)} unsafe sample name(s) (path separators): {_list_names(unsafe)}",
                    "sample names must be plain file names")
        )  # fmt: skip
    if not out.names:
        problems.append(Problem("error", str(path), "no labelled samples found", _FIX_ROOT))
    return out


# --------------------------------------------------------------------------- file reads


def _load_npy(path: str) -> tuple[np.ndarray | None, str | None]:
    """``[T, D]`` float array of one ``.npy`` or ``(None, message)``."""
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except ValueError as err:
        msg = str(err)
        if "pickle" in msg.lower() or "object arrays" in msg.lower():
            return None, f"pickled-object .npy refused (features must be plain numeric arrays): {msg}"
        return None, f"unreadable or truncated .npy ({msg})"
    except (EOFError, OSError) as err:
        return None, f"unreadable or truncated .npy ({type(err).__name__}: {err})"
    if not isinstance(arr, np.ndarray):
        return None, "not a .npy array (an .npz archive?)"
    if arr.dtype.kind not in "biuf":
        return None, f"dtype {arr.dtype} is not numeric"
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        return None, f"shape {arr.shape}: expected [D] or [T, D]"
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        return None, f"empty array of shape {arr.shape}"
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        return None, f"contains NaN/Inf ({bad} of {arr.size} values)"
    return arr, None


def _read_one(kind: str, path: str, frame_level: bool, max_frames: int | None):
    """Returns ``(array, None, None)`` or ``(None, file, message)``."""
    if kind == "file":
        arr, err = _load_npy(path)
        if err:
            return None, path, err
    else:  # per-face folder
        files = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
        if not files:
            return None, path, "per-face folder holds no .npy files"
        parts = []
        for f in files:
            fp = os.path.join(path, f)
            arr, err = _load_npy(fp)
            if err:
                return None, fp, err
            if parts and arr.shape[1] != parts[0].shape[1]:
                return None, fp, f"face feature dim {arr.shape[1]} differs from {parts[0].shape[1]} in {files[0]}"
            parts.append(arr)
        arr = np.concatenate(parts, axis=0)
    if frame_level:
        if max_frames is not None:
            arr = arr[:max_frames]
        return np.ascontiguousarray(arr, dtype=np.float32), None, None
    return arr.mean(axis=0, dtype=np.float64).astype(np.float32), None, None


def _read_chunk(chunk: list[tuple]) -> list[tuple]:
    out = []
    for mod, row, kind, path, frame_level, max_frames in chunk:
        out.append((mod, row, *_read_one(kind, path, frame_level, max_frames)))
    return out


class _Progress:
    """Progress on stderr, only when stderr is a TTY (tqdm when importable)."""

    def __init__(self, total: int, desc: str, enabled: bool, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled and total > 0 and isatty is not None and isatty())
        self.total, self.desc, self.done, self._last = total, desc, 0, 0.0
        self._tqdm = None
        if self.enabled:
            try:
                from tqdm import tqdm  # optional

                self._tqdm = tqdm(total=total, desc=desc, file=self.stream, unit="file")
            except ImportError:
                self._tqdm = None

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(n)
            return
        now = time.monotonic()
        if now - self._last > 0.1 or self.done >= self.total:
            self._last = now
            self.stream.write(f"\r{self.desc}: {self.done}/{self.total} ({100 * self.done // self.total}%)")
            self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self.stream.write("\n")
            self.stream.flush()


def _run_serial(tasks: list[tuple], bar: _Progress) -> list[tuple]:
    results = []
    for i in range(0, len(tasks), CHUNK_SIZE):
        chunk = tasks[i : i + CHUNK_SIZE]
        results.extend(_read_chunk(chunk))
        bar.update(len(chunk))
    return results


def _run_parallel(tasks: list[tuple], workers: int, bar: _Progress) -> list[tuple]:
    size = max(1, min(CHUNK_SIZE, math.ceil(len(tasks) / (workers * 4))))
    chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    results: list[tuple] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_read_chunk, c): len(c) for c in chunks}
        for fut in as_completed(futures):
            results.extend(fut.result())
            bar.update(futures[fut])
    return results


def _run_tasks(tasks: list[tuple], workers: int, progress: bool) -> list[tuple]:
    bar = _Progress(len(tasks), "reading MERBench features", progress)
    try:
        if workers > 1 and len(tasks) >= PARALLEL_MIN_TASKS:
            try:
                return _run_parallel(tasks, workers, bar)
            except (OSError, BrokenProcessPool) as err:  # no semaphores / killed worker
                warnings.warn(
                    f"parallel feature reading failed ({type(err).__name__}: {err}); reading serially",
                    MerbenchImportWarning,
                    stacklevel=3,
                )
                bar.done = 0
        return _run_serial(tasks, bar)
    finally:
        bar.close()


# --------------------------------------------------------------------------- scan


@dataclass
class _Scan:
    problems: list[Problem]
    labels: _Labels | None
    data: dict[str, dict[int, np.ndarray]]


def _check_args(features: Mapping[str, str], frame_level: Mapping[str, bool] | None, max_frames: int | None):
    if not features:
        raise ValueError(f"features: give modality -> feature folder name for some of {MODALITIES}")
    bad = [m for m in features if m not in MODALITIES]
    if bad:
        raise ValueError(f"features: unknown modality {bad}; expected some of {list(MODALITIES)}")
    bad = [m for m in (frame_level or {}) if m not in features]
    if bad:
        raise ValueError(f"frame_level: modality {bad} is not among the imported ones {list(features)}")
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")


def _scan(root, features, frame_level, max_frames, workers, progress) -> _Scan:
    root = Path(root)
    features = {m: features[m] for m in MODALITIES if m in features}
    frame_level = {m: bool((frame_level or {}).get(m, False)) for m in features}
    problems: list[Problem] = []
    if not root.is_dir():
        problems.append(Problem("error", str(root), "MERBench root folder not found", _FIX_ROOT))
        return _Scan(problems, None, {})
    labels = _parse_labels(root, problems)

    feat_root = root / FEATURES_DIR
    tasks: list[tuple] = []
    folders: dict[str, Path] = {}
    for mod, fname in features.items():
        folder = feat_root / fname
        folders[mod] = folder
        if not folder.is_dir():
            if feat_root.is_dir():
                have = sorted(p.name for p in feat_root.iterdir() if p.is_dir())
                hint = f" (available: {_list_names(have)})" if have else f" ({feat_root} is empty)"
            else:
                hint = f" ({feat_root} does not exist)"
            problems.append(
                Problem("error", str(folder), f"feature folder for modality '{mod}' not found{hint}",
                        _FIX_FEATURES + "; " + _FIX_ROOT)
            )  # fmt: skip
            continue
        if labels is None:
            continue
        npy, dirs, other = set(), set(), 0
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir():
                    dirs.add(e.name)
                elif e.name.endswith(".npy"):
                    npy.add(e.name[:-4])
                else:
                    other += 1
        missing = []
        for row, name in enumerate(labels.names):
            if name in npy:
                tasks.append((mod, row, "file", str(folder / f"{name}.npy"), frame_level[mod], max_frames))
            elif name in dirs:
                tasks.append((mod, row, "faces", str(folder / name), frame_level[mod], max_frames))
            else:
                missing.append(name)
        if missing:
            problems.append(
                Problem("error", str(folder),
                        f"{len(missing)} of {len(labels.names)} labelled sample(s) have no feature file "
                        f"(<name>.npy or per-face folder <name>/): {_list_names(missing)}",
                        f"extract '{fname}' for these samples (or check that --features names the right folder)",
                        sample=missing[0])
            )  # fmt: skip
        known = set(labels.names)
        extra = len(npy - known) + len(dirs - known) + other
        if extra:
            examples = sorted((npy | dirs) - known)[:3]
            problems.append(
                Problem("warning", str(folder),
                        f"{extra} extra file(s)/folder(s) not in {LABEL_FILE} are ignored"
                        + (f" (e.g. {', '.join(examples)})" if examples else ""))
            )  # fmt: skip

    results = _run_tasks(tasks, workers, progress) if tasks else []
    data: dict[str, dict[int, np.ndarray]] = {m: {} for m in features}
    for mod, row, arr, bad_file, msg in results:
        if arr is None:
            problems.append(Problem("error", bad_file, msg, _FIX_REEXTRACT, sample=labels.names[row]))
        else:
            data[mod][row] = arr
    for mod, rows in data.items():
        dims = Counter(int(a.shape[-1]) for a in rows.values())
        if len(dims) > 1:
            ref = max(sorted(dims), key=lambda d: dims[d])
            odd = sorted(r for r, a in rows.items() if a.shape[-1] != ref)
            items = [f"{labels.names[r]} (D={rows[r].shape[-1]})" for r in odd]
            problems.append(
                Problem("error", str(folders[mod]),
                        f"inconsistent feature dims: {dims[ref]} sample(s) have D={ref}, "
                        f"{len(odd)} differ: {_list_names(items)}",
                        "all files of one feature folder must come from the same extractor; re-extract the odd ones",
                        sample=labels.names[odd[0]])
            )  # fmt: skip
    # errors first (stable), then warnings
    problems.sort(key=lambda p: not p.fatal)
    return _Scan(problems, labels, data)


# --------------------------------------------------------------------------- import


def import_merbench(
    root: str | Path,
    features: Mapping[str, str],
    *,
    dataset: str = "MER2023",
    frame_level: Mapping[str, bool] | None = None,
    max_frames: int | None = None,
    workers: int = 4,
    progress: bool = True,
    zero_rows: str = "missing",
) -> FeatureStore:
    """Import a MERBench feature folder as a :class:`FeatureStore` (not written).

    Args:
        root: MERBench ``mer2023-dataset-process`` folder.
        features: modality (``audio``/``text``/``video``) -> feature folder name
            under ``root/features`` (e.g. ``chinese-hubert-large-UTT``).
        dataset: dataset name recorded in the store.
        frame_level: modality -> True to keep ``[N, T, D]`` (zero padded) plus
            ``lengths``; other modalities are averaged over time.
        max_frames: truncate frame-level sequences to this many frames.
        workers: processes for the file reads (serial for <= 1 or small inputs).
        progress: show a progress bar on stderr when it is a TTY.
        zero_rows: ``"missing"`` flags every all-zero row (utterance level: all
            zeros; frame level: every frame zero) as absent in ``missing``;
            ``"error"`` flags nothing (validation then reports them as fatal).

    Returns:
        The store: samples ordered train, test1, test2, test3, names sorted
        within each split; ``missing`` = the all-zero rows (or all False);
        ``source="merbench"``.

    Raises:
        MerbenchImportError: listing every fatal finding (nothing is returned).
        ValueError: invalid arguments.
    """
    _check_args(features, frame_level, max_frames)
    scan = _scan(root, features, frame_level, max_frames, workers, progress)
    if any(p.fatal for p in scan.problems):
        raise MerbenchImportError(root, scan.problems)
    for p in scan.problems:
        warnings.warn(str(p), MerbenchImportWarning, stacklevel=2)

    lab = scan.labels
    n = len(lab.names)
    feats: dict[str, np.ndarray] = {}
    lengths: dict[str, np.ndarray] = {}
    for mod, rows in scan.data.items():
        d = int(next(iter(rows.values())).shape[-1])
        if (frame_level or {}).get(mod, False):
            lens = np.array([rows[r].shape[0] for r in range(n)], dtype=np.int64)
            x = np.zeros((n, int(lens.max()), d), dtype=np.float32)
            for r in range(n):
                x[r, : lens[r]] = rows[r]
            lengths[mod] = lens
        else:
            x = np.zeros((n, d), dtype=np.float32)
            for r in range(n):
                x[r] = rows[r]
        feats[mod] = x
    store = FeatureStore(
        names=np.array(lab.names, dtype=str),
        labels=np.array(lab.labels, dtype=np.int64),
        valence=np.array(lab.valence, dtype=np.float32),
        split=np.array(lab.split, dtype=str),
        features=feats,
        missing={m: np.zeros(n, dtype=bool) for m in feats},
        class_names=list(EMOTIONS),
        feature_names={m: features[m] for m in feats},
        source="merbench",
        dataset=dataset,
        lengths=lengths,
    )
    flag_zero_rows(store, zero_rows)
    return store

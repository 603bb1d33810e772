"""MERBench result files: name format, parsing, scanning, best-of-runs and its tables.

MERBench (and this pipeline, which writes the same names) stores one NPZ per
evaluated split, and the metrics live in the *file name*::

    {split}_features:{f1+f2+f3}[_dataset:{DATASET}]_model:{model}+{feat_type}+{e2e}
        _f1:{f1:.4f}_acc:{acc:.4f}_val:{val:.4f}_{timestamp}.npz

(one line, no line break). Rules used here:

* ``split`` is one of :data:`RESULT_SPLITS` (``cv``, ``test1``, ``test2``, ``test3``).
* ``features`` are sorted with :func:`sorted` and joined by ``+``; a feature
  name is any non-empty text without ``+`` or ``/`` (letters, digits, ``-``,
  ``.`` and ``_`` all occur in practice).
* ``_dataset:{DATASET}`` is optional (older MERBench versions omit it).
* The model part is ``{model}+{feat_type}+{e2e}``; ``model`` is the text before
  the *last two* ``+``-separated fields, so ``attention_robust_v2+utt+None``
  gives model ``attention_robust_v2``. A model part with fewer than three
  fields is malformed.
* ``val`` is a 4-decimal number, or ``nan`` (older names of ours). For a
  split without valence labels (test3) MERBench still writes a number: the MSE
  of the predictions against its ``-10`` placeholder
  (:func:`merbench_val_for_name`); our exports write the same, so the seed's
  extraction regex (``val:`` then digits, a dot, digits) reads every name. Our own
  ``predictions_*.npz``, ``summary.json`` and tables keep the honest NaN/None.
* ``timestamp`` is ``time.time()`` as written by Python: an integer
  (``1769910916``) or a float (``1769910916.3972666``).

Names that do not follow these rules are not results: :func:`parse_result_name`
returns ``None`` and :func:`scan_result_dirs` lists them as *skipped*. A name is
not enough: the scan also opens each file (:func:`check_result_file`,
``np.load(allow_pickle=False)``, nothing unpickled) and skips, with the reason,
anything that is not a readable NPZ archive, and folders named like results.

Display convention: tables show F1 and ACC as **percentages with two decimals**
(MERBench style, ``0.7593`` -> ``75.93``); the raw fractions stay in the data
frames. Model names are shown through a ``display_names`` mapping given by the
caller (the study config's arms and ``display_names``, see
:func:`model_display_names`); a model without an entry is shown by its name.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from prmf.markdown import MISSING_CELL, format_stat, markdown_table

log = logging.getLogger(__name__)

RESULT_SPLITS: tuple[str, ...] = ("cv", "test1", "test2", "test3")
"""Evaluation splits a MERBench result name can carry, in display order (``cv``: cross-validation;
not the feature store's ``prmf.data.store.SPLITS``, which has ``train``)."""

RECORD_COLUMNS: tuple[str, ...] = (
    "dir",
    "file",
    "split",
    "model",
    "features",
    "dataset",
    "f1",
    "acc",
    "val",
    "timestamp",
)
"""Columns of :attr:`ScanReport.records` (``file`` is the full path)."""

COUNT_COLUMNS: tuple[str, ...] = ("dir", "n_npz", "n_parsed", "n_skipped")

BEST_COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, "n_runs")
"""Columns of :func:`select_best` output (``n_runs`` = candidates in the group)."""

_NUM = r"\d+(?:\.\d+)?"
_RESULT_RE = re.compile(
    r"^(?P<split>" + "|".join(RESULT_SPLITS) + r")"
    r"_features:(?P<features>[^/]+?)"
    r"(?:_dataset:(?P<dataset>[^/]+?))?"
    r"_model:(?P<model_part>[^/]+)"
    rf"_f1:(?P<f1>{_NUM})"
    rf"_acc:(?P<acc>{_NUM})"
    rf"_val:(?P<val>{_NUM}|nan|NaN)"
    rf"_(?P<timestamp>{_NUM})\.npz$"
)


@dataclass(frozen=True)
class ResultName:
    """The fields of one parsed MERBench result file name."""

    split: str
    features: tuple[str, ...]
    dataset: str | None
    model: str
    feat_type: str
    e2e: str
    f1: float
    acc: float
    val: float
    timestamp: float
    filename: str


# --------------------------------------------------------------------------- names


#: MERBench's label file stores this valence where it is unknown (test3)
MERBENCH_VALENCE_PLACEHOLDER = -10.0


def merbench_val_for_name(valence_pred: np.ndarray, valence_true: np.ndarray) -> float:
    """The ``val:`` number MERBench writes in a result name: valence MSE over the split.

    ``valence_pred``, ``valence_true`` ``[N]`` (NaN = unknown). Unknown labels
    count as MERBench's ``-10`` placeholder, exactly as MERBench computes it, so
    a split without any valence label (test3) gets ``mean((pred + 10)**2)``
    instead of NaN. A split with labels gets the plain MSE over its labelled
    samples (MERBench never mixes the two: on MER2023 a split has all or none).
    """
    pred = np.asarray(valence_pred, dtype=np.float64)
    true = np.asarray(valence_true, dtype=np.float64)
    known = np.isfinite(true)
    if known.any():
        return float(np.mean((pred[known] - true[known]) ** 2))
    if not len(pred):
        return math.nan
    return float(np.mean((pred - MERBENCH_VALENCE_PLACEHOLDER) ** 2))


def _format_timestamp(timestamp: float) -> str:
    """Write a timestamp like Python's ``time.time()`` output in MERBench names.

    Integral values are written without a fraction (``1769910916``), others
    with :func:`repr` (``1769910916.3972666``), which round-trips exactly.
    """
    value = float(timestamp)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def format_result_name(
    split: str,
    feature_names: Sequence[str],
    model: str,
    f1: float,
    acc: float,
    val: float,
    timestamp: float,
    dataset: str | None = None,
    feat_type: str = "utt",
    e2e: str = "None",
) -> str:
    """Build a MERBench result file name.

    Features are sorted; metrics are written with 4 decimals and a NaN valence
    as ``val:nan``. The name is parsed back before it is returned, so anything
    :func:`parse_result_name` would not read back identically (a ``+`` in a
    feature name, an unknown split, a negative metric, ...) raises.

    Raises:
        ValueError: when the fields cannot make a name that parses back to them.
    """
    features = sorted(feature_names)
    parts = [f"{split}_features:{'+'.join(features)}"]
    if dataset is not None:
        parts.append(f"dataset:{dataset}")
    parts.append(f"model:{model}+{feat_type}+{e2e}")
    parts.append(f"f1:{f1:.4f}_acc:{acc:.4f}_val:{val:.4f}")
    parts.append(_format_timestamp(timestamp))
    name = "_".join(parts) + ".npz"
    _check_round_trip(name, split, features, dataset, model, feat_type, e2e, val)
    return name


def _check_round_trip(
    name: str,
    split: str,
    features: list[str],
    dataset: str | None,
    model: str,
    feat_type: str,
    e2e: str,
    val: float,
) -> None:
    """Raise ``ValueError`` unless ``name`` parses back to the given fields."""
    parsed = parse_result_name(name)
    if parsed is None:
        raise ValueError(f"fields do not make a valid MERBench result name: {name!r}")
    expected = (split, tuple(features), dataset, model, feat_type, e2e)
    got = (parsed.split, parsed.features, parsed.dataset, parsed.model, parsed.feat_type, parsed.e2e)
    if got != expected or math.isnan(parsed.val) != math.isnan(val):
        raise ValueError(
            f"name {name!r} would parse back as {got}, not {expected}; "
            "feature names must not contain '+', feat_type/e2e must not contain '+'"
        )


def _split_model_part(model_part: str) -> tuple[str, str, str] | None:
    """Split ``{model}+{feat_type}+{e2e}`` at the last two ``+``."""
    fields = model_part.rsplit("+", 2)
    if len(fields) != 3 or not all(fields):
        return None
    model, feat_type, e2e = fields
    return model, feat_type, e2e


def parse_result_name(filename: str) -> ResultName | None:
    """Parse a MERBench result file name (a bare name or a path).

    Returns:
        The parsed fields, or ``None`` when the name does not follow the
        pattern described in the module docstring.
    """
    name = PurePath(filename).name
    match = _RESULT_RE.match(name)
    if match is None:
        return None
    features = tuple(match["features"].split("+"))
    if not all(features):
        return None
    model_fields = _split_model_part(match["model_part"])
    if model_fields is None:
        return None
    model, feat_type, e2e = model_fields
    return ResultName(
        split=match["split"],
        features=features,
        dataset=match["dataset"],
        model=model,
        feat_type=feat_type,
        e2e=e2e,
        f1=float(match["f1"]),
        acc=float(match["acc"]),
        val=float(match["val"]),
        timestamp=float(match["timestamp"]),
        filename=name,
    )


# --------------------------------------------------------------------------- scan


class SkippedFile(NamedTuple):
    """A ``*.npz`` entry that is not a result: its folder as given, its path relative to it, and why."""

    dir: str
    name: str
    reason: str = ""


#: why a file was skipped (:attr:`SkippedFile.reason`)
SKIP_NAME = "name is not a MERBench result name"
SKIP_FOLDER = "a folder, not a result file"

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member / an empty zip
_PICKLE_NEEDED = "Object arrays cannot be loaded when allow_pickle=False"


def check_result_file(path: str | Path) -> str | None:
    """``None`` when ``path`` is a readable NPZ archive, else why it is not a result file.

    Every member is loaded with ``allow_pickle=False`` (which also checks its
    CRC). A member that needs pickle (MERBench saves its ``args`` namespace as
    an object array) counts as valid and is not unpickled. Anything else that
    fails (no zip signature, an empty file, a damaged or empty archive) is
    invalid.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if not head:
        return "empty file (0 bytes)"
    if head not in _ZIP_SIGNATURES:
        return "not an NPZ archive (no zip signature)"
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                return "NPZ archive holds no arrays"
            for key in archive.files:
                try:
                    archive[key]
                except ValueError as err:
                    if _PICKLE_NEEDED not in str(err):
                        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        return f"damaged NPZ archive ({' '.join(str(err).split()) or type(err).__name__})"
    return None


@dataclass
class ScanReport:
    """What :func:`scan_result_dirs` found.

    Attributes:
        records: one row per parsed result file, columns :data:`RECORD_COLUMNS`
            (``dir`` as given, ``file`` the full path, ``features`` joined by
            ``+``, ``dataset`` ``None`` when the name has none).
        skipped: a :class:`SkippedFile` ``(dir, name, reason)`` for every
            ``*.npz`` that is not a result: a name that did not parse, a file
            that is not a readable NPZ archive (:func:`check_result_file`), a
            folder named ``*.npz``; ``name`` is the path relative to ``dir``.
        missing_dirs: folders that do not exist (or are not folders).
        counts: one row per folder given, in the order given (duplicates
            removed), columns :data:`COUNT_COLUMNS`; missing folders have zeros.
    """

    records: pd.DataFrame
    skipped: list[SkippedFile] = field(default_factory=list)
    missing_dirs: list[str] = field(default_factory=list)
    counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COUNT_COLUMNS)))


def _record(dir_key: str, path: Path, parsed: ResultName) -> dict[str, object]:
    """One row of :attr:`ScanReport.records`."""
    return {
        "dir": dir_key,
        "file": str(path),
        "split": parsed.split,
        "model": parsed.model,
        "features": "+".join(parsed.features),
        "dataset": parsed.dataset,
        "f1": parsed.f1,
        "acc": parsed.acc,
        "val": parsed.val,
        "timestamp": parsed.timestamp,
    }


def _unique(items: Sequence[str | Path]) -> list[str]:
    """The items as strings, duplicates removed, first occurrence kept."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(str(item), None)
    return list(seen)


def scan_result_dirs(dirs: Sequence[str | Path]) -> ScanReport:
    """Find, parse and open every ``*.npz`` below each folder (recursively).

    A file becomes a record only when its name parses and its contents are a
    readable NPZ archive (:func:`check_result_file`); every other ``*.npz``
    entry, folders included, is listed in :attr:`ScanReport.skipped` with the
    reason. Missing folders are logged with ``logging.warning`` and listed in
    :attr:`ScanReport.missing_dirs`. A file reachable from two given folders
    (one nested in the other) is counted under the first one only. Files are
    visited in sorted order, so the result is deterministic.
    """
    rows: list[dict[str, object]] = []
    skipped: list[SkippedFile] = []
    missing: list[str] = []
    counts: list[dict[str, object]] = []
    seen_files: set[Path] = set()
    for dir_key in _unique(dirs):
        root = Path(dir_key)
        if not root.is_dir():
            log.warning("result folder %s does not exist (or is not a folder); skipped", dir_key)
            missing.append(dir_key)
            counts.append({"dir": dir_key, "n_npz": 0, "n_parsed": 0, "n_skipped": 0})
            continue
        n_npz = n_parsed = 0
        for path in sorted(root.rglob("*.npz")):
            resolved = path.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            n_npz += 1
            parsed = parse_result_name(path.name)
            reason = (SKIP_FOLDER if path.is_dir() else SKIP_NAME if parsed is None
                      else check_result_file(path))
            if reason is not None or parsed is None:
                skipped.append(SkippedFile(dir_key, path.relative_to(root).as_posix(), reason or SKIP_NAME))
                continue
            n_parsed += 1
            rows.append(_record(dir_key, path, parsed))
        counts.append({"dir": dir_key, "n_npz": n_npz, "n_parsed": n_parsed, "n_skipped": n_npz - n_parsed})
    records = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    return ScanReport(
        records=records,
        skipped=skipped,
        missing_dirs=missing,
        counts=pd.DataFrame(counts, columns=list(COUNT_COLUMNS)),
    )


# --------------------------------------------------------------------------- best


def _split_rank(split: pd.Series) -> pd.Series:
    """Position of each split in :data:`RESULT_SPLITS` (unknown splits last)."""
    order = {name: i for i, name in enumerate(RESULT_SPLITS)}
    return split.map(lambda s: order.get(s, len(order)))


def select_best(records: pd.DataFrame) -> pd.DataFrame:
    """Pick the best result file per ``(model, split)``.

    The winner has the highest ``acc``; ties go to the higher ``f1``, then the
    newest ``timestamp``, then the smallest file path (so the choice is
    deterministic). The winning row keeps every record column (``file`` is its
    path) and gains ``n_runs``, the number of candidates in its group.

    Returns:
        One row per ``(model, split)``, sorted by model then split order
        (:data:`RESULT_SPLITS`), index reset.
    """
    if records.empty:
        return pd.DataFrame(columns=list(BEST_COLUMNS))
    ordered = records.assign(_split_rank=_split_rank(records["split"])).sort_values(
        ["model", "_split_rank", "acc", "f1", "timestamp", "file"],
        ascending=[True, True, False, False, False, True],
        kind="mergesort",
    )
    sizes = ordered.groupby(["model", "split"], sort=False)["file"].transform("size")
    best = ordered.assign(n_runs=sizes.astype(int)).drop_duplicates(["model", "split"], keep="first")
    return best.drop(columns="_split_rank").reset_index(drop=True)[[*records.columns, "n_runs"]]


# --------------------------------------------------------------------------- names shown


def model_display_names(config: Mapping) -> dict[str, str]:
    """Model (export) name -> display name from a study config.

    The config's ``display_names`` (names of external MERBench result files),
    then each run arm's ``export_name`` -> its ``display_name`` over them: a
    model the study trains has one name in every table.
    """
    from prmf.config import resolve_arm, run_arms

    names = dict(config.get("display_names") or {})
    for arm in run_arms(config):
        params = resolve_arm(config, arm)
        names[params["export_name"]] = params["display_name"]
    return names


def display_name(model: str, display_names: Mapping[str, str] | None = None) -> str:
    """Human name of a model: its entry in ``display_names``, else the model name itself."""
    return (display_names or {}).get(model, model)


# --------------------------------------------------------------------------- render


def _aligned_text(frame: pd.DataFrame, n_left: int = 1) -> str:
    """Plain-text table with space-padded columns; the first ``n_left`` left-aligned, others right."""
    cells = [[str(c) for c in frame.columns]] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(frame.columns))]

    def fmt(row: list[str]) -> str:
        padded = [cell.ljust(w) if i < n_left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        return "  ".join(padded).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in cells[1:]]
    return "\n".join(lines)


def _frame_markdown(frame: pd.DataFrame, align: Sequence[str]) -> str:
    return markdown_table(list(frame.columns), frame.itertuples(index=False), align)


def best_wide(best: pd.DataFrame, display_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``select_best`` output as one row per model (sorted), ``{split} F1``/``{split} ACC`` in %.

    Columns: ``Method`` (display name), ``Model`` (raw name, keeps rows
    distinct when two models share a display name), then F1 and ACC for
    each split of :data:`RESULT_SPLITS`; cells without a result are
    :data:`prmf.markdown.MISSING_CELL`.
    """
    cells = {(r.model, r.split): r for r in best.itertuples(index=False)}
    rows = []
    for model in sorted(best["model"].unique()):
        row: dict[str, str] = {"Method": display_name(model, display_names), "Model": model}
        for split in RESULT_SPLITS:
            hit = cells.get((model, split))
            row[f"{split} F1"] = format_stat(hit.f1 if hit else None)
            row[f"{split} ACC"] = format_stat(hit.acc if hit else None)
        rows.append(row)
    columns = ["Method", "Model"] + [f"{s} {m}" for s in RESULT_SPLITS for m in ("F1", "ACC")]
    return pd.DataFrame(rows, columns=columns)


def _winners(best: pd.DataFrame, display_names: Mapping[str, str] | None) -> pd.DataFrame:
    """One row per winning file: method, model, split, ACC, F1, runs, file."""
    frame = best.assign(_rank=_split_rank(best["split"])).sort_values(["model", "_rank"], kind="mergesort")
    return pd.DataFrame(
        {
            "Method": [display_name(m, display_names) for m in frame["model"]],
            "Model": frame["model"].tolist(),
            "Split": frame["split"].tolist(),
            "ACC": [format_stat(v) for v in frame["acc"]],
            "F1": [format_stat(v) for v in frame["f1"]],
            "Runs": [str(int(n)) for n in frame["n_runs"]],
            "File": frame["file"].tolist(),
        }
    )


def _render_tsv(best: pd.DataFrame, display_names: Mapping[str, str] | None) -> str:
    """Wide table (empty cells where no result) plus one ``{split} file`` column per split, tab separated."""
    wide = best_wide(best, display_names).replace(MISSING_CELL, "")
    files = {(r.model, r.split): r.file for r in best.itertuples(index=False)}
    for split in RESULT_SPLITS:
        wide[f"{split} file"] = [files.get((m, split), "") for m in wide["Model"]]
    return wide.to_csv(sep="\t", index=False, lineterminator="\n")


def render_best(
    best: pd.DataFrame,
    fmt: Literal["md", "tsv", "console"],
    display_names: Mapping[str, str] | None = None,
) -> str:
    """Render :func:`select_best` output.

    All formats show models as rows and ``{split} F1`` / ``{split} ACC`` for
    ``cv``, ``test1``, ``test2``, ``test3`` as columns, in percent with two
    decimals (MERBench style).

    * ``md``: the table, then a second section listing the winning file of
      each (model, split) with its number of candidate runs.
    * ``tsv``: the table (empty cells where no result) plus one
      ``{split} file`` column per split with the winning file's path.
    * ``console``: the table as aligned plain text, then the winning files.

    Every format ends with a newline.

    Raises:
        ValueError: for another ``fmt``.
    """
    if fmt == "tsv":
        return _render_tsv(best, display_names)
    if fmt not in ("md", "console"):
        raise ValueError(f"unknown format {fmt!r}; expected md, tsv or console")
    wide = best_wide(best, display_names)
    winners = _winners(best, display_names)
    if fmt == "md":
        return (
            "## Best result per model and split\n\n"
            "F1 and ACC in %; per (model, split) the run with the highest ACC "
            "(ties: higher F1, then newest file).\n\n"
            f"{_frame_markdown(wide, ['l', 'l'] + ['r'] * 8)}\n\n"
            "## Winning files\n\n"
            f"{_frame_markdown(winners, ['l', 'l', 'l', 'r', 'r', 'r', 'l'])}\n"
        )
    files = "\n".join(f"  {r.Model} {r.Split}: {r.File} (best of {r.Runs})" for r in winners.itertuples(index=False))
    return f"{_aligned_text(wide, n_left=2)}\n\nwinning files:\n{files}\n"


# --------------------------------------------------------------------------- extract


class NoResultsError(ValueError):
    """No parseable MERBench result file in the folders searched (the message names them).

    ``report`` is the scan that found nothing (its skipped and missing folders).
    """

    def __init__(self, message: str, report: ScanReport):
        super().__init__(message)
        self.report = report


def format_skipped(report: ScanReport) -> str:
    """The files a scan skipped: a count line, then one indented ``path: reason`` per line; ``""`` when none."""
    if not report.skipped:
        return ""
    lines = [f"skipped {len(report.skipped)} *.npz file(s) that are not MERBench results:"]
    for entry in report.skipped:
        reason = entry[2] if len(entry) > 2 and entry[2] else SKIP_NAME
        lines.append(f"  {Path(entry[0]) / entry[1]}: {reason}")
    return "\n".join(lines) + "\n"


def _tsv_beside(output: str | Path) -> Path:
    """The TSV written beside the Markdown file ``output``; raises ``ValueError`` if ``output`` is a TSV."""
    output = Path(output)
    if output.suffix == ".tsv":
        raise ValueError(f"output {output} must not end in .tsv (the TSV is written beside it)")
    return output.with_suffix(".tsv")


def write_best(output: str | Path, best: pd.DataFrame, display_names: Mapping[str, str] | None = None) -> Path:
    """Write ``output`` (Markdown) and the TSV beside it (suffix ``.tsv``), both or neither; returns the TSV path.

    Raises:
        ValueError: when ``output`` itself ends in ``.tsv``.
        prmf.atomic.OutputError: a file could not be written; neither changed.
    """
    from prmf.atomic import write_files

    output, tsv = Path(output), _tsv_beside(output)
    write_files({output: render_best(best, "md", display_names), tsv: render_best(best, "tsv", display_names)})
    return tsv


def extract_best(
    result_dirs: Sequence[str | Path],
    output: str | Path | None = None,
    display_names: Mapping[str, str] | None = None,
) -> tuple[ScanReport, pd.DataFrame]:
    """Scan ``result_dirs``, select the best run per (model, split), write the tables.

    Args:
        result_dirs: folders searched recursively (missing ones are logged and
            listed in the report).
        output: Markdown file to write; the TSV goes beside it (suffix ``.tsv``).
        display_names: model name -> display name (a model without one is
            shown by its name).

    Returns:
        The scan report (its ``skipped`` names: :func:`format_skipped`) and
        :func:`select_best`'s table.

    Raises:
        ValueError: when ``output`` ends in ``.tsv`` (checked before scanning).
        NoResultsError: when no parseable result file was found; names the folders.
    """
    if output is not None:
        _tsv_beside(output)  # fail before scanning
    report = scan_result_dirs(result_dirs)
    if report.records.empty:
        searched = ", ".join(_unique(result_dirs))
        raise NoResultsError(f"no MERBench result file (*.npz) found in: {searched}", report)
    best = select_best(report.records)
    if output is not None:
        write_best(output, best, display_names)
    return report, best

"""Feature-store validation: bad data must never reach training.

:func:`validate_store` runs every check on a :class:`FeatureStore` and returns
a :class:`ValidationReport`. Findings are ``fatal`` (training would be wrong
or crash) or ``warning`` (worth a look, not wrong). :func:`validate_file`
reads the store, writes ``validation.json`` and ``validation.md`` and raises
:class:`FeatureValidationError` naming file, sample and modality when any
finding is fatal.

Checks (``check`` key of a finding):

- ``names_unique``: no duplicate sample names (fatal)
- ``splits_known`` / ``splits_disjoint``: every split in train/test1/test2/test3,
  no name in two splits (fatal)
- ``train_present``: the train split is not empty (fatal)
- ``rows_aligned``: every modality has one feature row per labelled sample (fatal)
- ``dims_consistent``: a modality's dimension matches the configured one (fatal)
- ``finite``: no NaN/Inf in any feature (fatal)
- ``zero_rows``: all-zero rows (MERBench's extractors write them for a clip with
  no face or an empty transcript) flagged absent in the ``missing`` mask are a
  warning with counts per split and the first names; unflagged ones (only
  under ``dataset.zero_rows: error``) are fatal
- ``all_absent``: a sample with every modality absent (fatal: nothing to fuse)
- ``constant_columns``: feature columns constant over train (warning)
- ``class_names`` / ``labels_range``: known emotion names, labels index them (fatal)
- ``valence_range``: valence within [-5, 5] or NaN (fatal)
- ``class_coverage``: every class present in train (warning)
- ``content_hash``: the file's contents hash to the value recorded when it was
  written (fatal; :func:`validate_file` only)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prmf.atomic import write_files
from prmf.data.store import EMOTIONS, SPLITS, FeatureStore, StoreError, read_store, verify_content_hash
from prmf.data.zero_rows import zero_rows
from prmf.markdown import markdown_table

MAX_LISTED = 10


@dataclass
class Finding:
    """One validation result."""

    check: str
    severity: str  # "fatal" | "warning" | "ok"
    message: str
    modality: str | None = None
    samples: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class ValidationReport:
    """All findings for one store, plus a summary of what was checked."""

    path: str
    findings: list[Finding]
    summary: dict

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fatal"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "ok": not self.fatal,
            "n_fatal": len(self.fatal),
            "n_warnings": len(self.warnings),
            "summary": self.summary,
            "findings": [asdict(f) for f in self.findings],
        }

    def to_markdown(self) -> str:
        status = "PASSED" if not self.fatal else f"FAILED ({len(self.fatal)} fatal)"
        lines = [f"# Feature validation: {status}", "", f"Store: `{self.path}`", ""]
        s = self.summary
        lines.append(markdown_table(
            ["split", "samples", "valence known"],
            [(split, n, s["valence_known"][split]) for split, n in s["split_sizes"].items()],
            ["l", "r", "r"],
        ))
        lines += ["", markdown_table(
            ["modality", "feature", "dim", "frame-level", "flagged missing", "all-zero rows"],
            [(m, info["feature_name"], info["dim"], "yes" if info["frame_level"] else "no", info["flagged_missing"],
              info["zero_rows"]) for m, info in s["modalities"].items()],
            ["l", "l", "r", "c", "r", "r"],
        )]
        absent = s.get("absent_by_split") or {}
        if any(any(v["count"] for v in per.values()) for per in absent.values()):
            lines += ["", "Absent entries (all-zero rows from the extractor, or flagged by the source), "
                      "masked in training and evaluation:", "", markdown_table(
                          ["modality", "split", "absent", "first samples"],
                          [(m, split, v["count"], ", ".join(v["first"]))
                           for m, per in absent.items() for split, v in per.items() if v["count"]],
                          ["l", "l", "r", "l"],
                      )]
        lines += ["", markdown_table(["check", "severity", "message"],
                                     [(f.check, f.severity, f.message) for f in self.findings], ["l", "l", "l"])]
        return "\n".join(lines) + "\n"


class FeatureValidationError(RuntimeError):
    """Raised when a store has fatal findings; the message lists all of them."""


def _listed(names: np.ndarray) -> str:
    shown = ", ".join(map(str, names[:MAX_LISTED]))
    more = f" (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return shown + more


def validate_store(
    store: FeatureStore, path: str = "<memory>", expected_dims: dict[str, int] | None = None
) -> ValidationReport:
    """Run every check on ``store``; never raises on bad data."""
    out: list[Finding] = []

    def add(check: str, bad: bool, msg_bad: str, msg_ok: str, severity: str = "fatal", **kw) -> None:
        out.append(Finding(check, severity if bad else "ok", msg_bad if bad else msg_ok, **kw))

    n = len(store.names)
    names = np.asarray(store.names)
    uniq, counts = np.unique(names, return_counts=True)
    dup = uniq[counts > 1]
    add("names_unique", len(dup) > 0,
        f"{path}: {len(dup)} duplicate sample name(s): {_listed(dup)}; each sample must appear once "
        "(remove the duplicates from the source)",
        f"{n} unique sample names", samples=list(map(str, dup[:MAX_LISTED])), count=len(dup))

    unknown_split = sorted(set(np.unique(store.split)) - set(SPLITS))
    add("splits_known", bool(unknown_split),
        f"{path}: unknown split(s) {unknown_split}; allowed {list(SPLITS)}",
        "all splits known")
    # disjointness: a name labelled in two splits
    in_two = [str(nm) for nm in dup if len(set(store.split[names == nm])) > 1]
    add("splits_disjoint", bool(in_two),
        f"{path}: sample(s) in more than one split: {_listed(np.asarray(in_two))}; "
        "a sample must belong to exactly one of train/test1/test2/test3",
        "splits disjoint", samples=in_two[:MAX_LISTED], count=len(in_two))
    n_train = int((store.split == "train").sum())
    add("train_present", n_train == 0, f"{path}: the train split is empty; cross-validation needs it",
        f"{n_train} training samples")

    bad_classes = [c for c in store.class_names if c not in EMOTIONS]
    add("class_names", bool(bad_classes),
        f"{path}: unknown class name(s) {bad_classes}; expected a subset of {list(EMOTIONS)}",
        f"classes {list(store.class_names)}")
    bad_lab = np.flatnonzero((store.labels < 0) | (store.labels >= len(store.class_names)))
    add("labels_range", len(bad_lab) > 0,
        f"{path}: {len(bad_lab)} label(s) outside 0..{len(store.class_names) - 1}, samples "
        f"{_listed(names[bad_lab])}", "labels index the class names",
        samples=list(map(str, names[bad_lab][:MAX_LISTED])), count=len(bad_lab))
    v = store.valence
    bad_val = np.flatnonzero(np.isfinite(v) & ((v < -5) | (v > 5)) | np.isinf(v))
    add("valence_range", len(bad_val) > 0,
        f"{path}: {len(bad_val)} valence value(s) outside [-5, 5], samples {_listed(names[bad_val])} "
        f"(first value {v[bad_val[0]] if len(bad_val) else ''}); unknown valence must be NaN, "
        "not a placeholder like -10",
        "valence within [-5, 5] or NaN", samples=list(map(str, names[bad_val][:MAX_LISTED])),
        count=len(bad_val))
    train = store.split == "train"
    missing_cls = [store.class_names[c] for c in range(len(store.class_names))
                   if not np.any(store.labels[train] == c)]
    add("class_coverage", bool(missing_cls), f"classes absent from train: {missing_cls}",
        "every class present in train", severity="warning")

    mod_summary, absent_by_split = {}, {}
    for m, x in store.features.items():
        miss = np.asarray(store.missing.get(m, np.zeros(n, bool)), dtype=bool)
        add("rows_aligned", x.shape[0] != n or miss.shape[0] != n,
            f"{path}: modality '{m}' has {x.shape[0]} feature rows for {n} labelled samples; "
            "every labelled sample needs features in every modality (re-import the features)",
            f"{m}: one row per sample", modality=m)
        if x.shape[0] != n:
            continue
        if expected_dims and m in expected_dims:
            add("dims_consistent", x.shape[-1] != expected_dims[m],
                f"{path}: modality '{m}' has dimension {x.shape[-1]} but the config expects "
                f"{expected_dims[m]}; fix dataset dims or the features", f"{m}: dim {x.shape[-1]}",
                modality=m)
        flat = x.reshape(n, -1)
        finite_rows = np.isfinite(flat).all(axis=1)
        bad = np.flatnonzero(~finite_rows)
        add("finite", len(bad) > 0,
            f"{path}: modality '{m}': {len(bad)} sample(s) with NaN/Inf features: {_listed(names[bad])}; "
            "fix or drop these samples in the source",
            f"{m}: all finite", modality=m, samples=list(map(str, names[bad][:MAX_LISTED])),
            count=len(bad))
        zero = zero_rows(x)  # the rule the store builder flags by (a NaN row is left to `finite`)
        unflagged = np.flatnonzero(zero & ~miss)
        flagged_zero = np.flatnonzero(zero & miss)
        if len(unflagged):
            add("zero_rows", True,
                f"{path}: modality '{m}': {len(unflagged)} all-zero feature row(s) not flagged absent: "
                f"{_listed(names[unflagged])}; MERBench's extractors write a zero vector when a clip has no "
                "face or an empty transcript: set dataset.zero_rows: missing to treat them as absent, or "
                "re-extract these samples", "", modality=m,
                samples=list(map(str, names[unflagged][:MAX_LISTED])), count=len(unflagged))
        elif len(flagged_zero):
            per_split = ", ".join(f"{sp} {int((store.split[flagged_zero] == sp).sum())}" for sp in SPLITS
                                  if (store.split[flagged_zero] == sp).any())
            add("zero_rows", True,
                f"modality '{m}': {len(flagged_zero)} all-zero row(s) treated as absent ({per_split}); "
                f"first: {_listed(names[flagged_zero])}", "", severity="warning", modality=m,
                samples=list(map(str, names[flagged_zero][:MAX_LISTED])), count=len(flagged_zero))
        else:
            add("zero_rows", False, "", f"{m}: no all-zero rows", modality=m)
        tr = flat[train & finite_rows & ~miss]
        if len(tr) > 1:
            const = np.flatnonzero(np.ptp(tr, axis=0) == 0)
            add("constant_columns", len(const) > 0,
                f"modality '{m}': {len(const)} feature column(s) constant over train "
                f"(first: {const[:MAX_LISTED].tolist()})", f"{m}: no constant columns",
                severity="warning", modality=m, count=len(const))
        absent_by_split[m] = {
            sp: {"count": int((miss & (store.split == sp)).sum()),
                 "first": list(map(str, names[miss & (store.split == sp)][:3]))}
            for sp in SPLITS
        }
        mod_summary[m] = {
            "feature_name": store.feature_names.get(m, m),
            "dim": int(x.shape[-1]),
            "frame_level": x.ndim == 3,
            "flagged_missing": int(miss.sum()),
            "zero_rows": int(zero.sum()),
        }

    if store.features and all(x.shape[0] == n for x in store.features.values()):
        absent_all = np.ones(n, dtype=bool)
        for m in store.features:
            absent_all &= np.asarray(store.missing.get(m, np.zeros(n, bool)), dtype=bool)
        bad_abs = np.flatnonzero(absent_all)
        add("all_absent", len(bad_abs) > 0,
            f"{path}: {len(bad_abs)} sample(s) with every modality absent (all-zero or flagged missing): "
            f"{_listed(names[bad_abs])}; there is nothing to fuse for them: drop them from the label file "
            "or re-extract their features",
            "every sample has at least one modality present",
            samples=list(map(str, names[bad_abs][:MAX_LISTED])), count=len(bad_abs))

    summary = {
        "n_samples": n,
        "source": store.source,
        "dataset": store.dataset,
        "content_hash": store.content_hash,
        "classes": list(store.class_names),
        "split_sizes": {s: int((store.split == s).sum()) for s in SPLITS},
        "valence_known": {s: int(np.isfinite(v[store.split == s]).sum()) for s in SPLITS},
        "class_counts_train": {c: int((store.labels[train] == i).sum())
                               for i, c in enumerate(store.class_names)},
        "modalities": mod_summary,
        "absent_by_split": absent_by_split,
    }
    return ValidationReport(path=str(path), findings=out, summary=summary)


def _hash_finding(store: FeatureStore, path: str | Path) -> Finding:
    """``content_hash``: the contents still hash to the value recorded when the store was written (fatal)."""
    try:
        verify_content_hash(path, store)
    except StoreError as err:
        return Finding("content_hash", "fatal", str(err))
    return Finding("content_hash", "ok", f"contents match the recorded hash {store.content_hash[:12]}")


def validate_file(
    store_path: str | Path,
    json_out: str | Path | None = None,
    md_out: str | Path | None = None,
    expected_dims: dict[str, int] | None = None,
) -> ValidationReport:
    """Validate ``store_path``, write the reports, raise on fatal findings.

    The store's ``content_hash`` is recomputed (``content_hash`` check, fatal
    on a mismatch). The reports are written even when validation fails (they
    explain why), atomically and both or neither; the caller (Snakemake)
    deletes outputs of a failed job, so nothing partial is taken as complete.

    Raises:
        prmf.data.store.StoreError: the file cannot be read as a store.
        FeatureValidationError: fatal findings (the reports are written).
        prmf.atomic.OutputError: a report could not be written (neither is).
    """
    store = read_store(store_path, check_contents=False)  # labels and rows are findings here
    report = validate_store(store, str(store_path), expected_dims)
    report.findings.insert(0, _hash_finding(store, store_path))
    outputs = {}
    if json_out:
        outputs[json_out] = json.dumps(report.to_json(), indent=2) + "\n"
    if md_out:
        outputs[md_out] = report.to_markdown()
    write_files(outputs)  # both or neither
    if report.fatal:
        raise FeatureValidationError(
            "feature validation failed:\n" + "\n".join(f"  - [{f.check}] {f.message}" for f in report.fatal)
        )
    return report

"""MERBench's all-zero rows = absent modality: detection, flagging, validation, synthetic flaws."""

from __future__ import annotations

import numpy as np
import pytest

from prmf.data.merbench import import_merbench
from prmf.data.prepare import build_store
from prmf.data.synthetic import SyntheticConfig, generate
from prmf.data.validation import validate_store
from prmf.data.zero_rows import flag_zero_rows, zero_rows

from merbench_fixture import fixture_features, make_merbench_root

SMALL = dict(scale=0.05, dims={"audio": 6, "text": 8, "video": 5})


def test_zero_rows_utterance_and_frame_level():
    x = np.array([[0, 0], [0, 1e-9], [np.nan, 0], [0, 0]], dtype=np.float32)
    assert zero_rows(x).tolist() == [True, False, False, True]  # NaN is not zero: left to `finite`
    frames = np.zeros((3, 4, 2), dtype=np.float32)
    frames[1, 2, 0] = 0.5  # one non-zero frame: present
    assert zero_rows(frames).tolist() == [True, False, True]


def test_flag_zero_rows_policies():
    s = generate(SyntheticConfig(**SMALL))
    n_zero = {m: int(zero_rows(x).sum()) for m, x in s.features.items()}
    assert sum(n_zero.values()) > 0  # test2's absent entries
    assert flag_zero_rows(s, "error") == {m: 0 for m in s.features}
    assert not any(s.missing[m].any() for m in s.features)
    assert flag_zero_rows(s, "missing") == n_zero
    for m in s.features:
        assert np.array_equal(s.missing[m], zero_rows(s.features[m]))
    assert flag_zero_rows(s, "missing") == {m: 0 for m in s.features}  # idempotent
    with pytest.raises(ValueError, match="zero_rows"):
        flag_zero_rows(s, "ignore")


def test_merbench_import_flags_zero_rows_in_two_modalities(tmp_path):
    root = make_merbench_root(tmp_path / "r", n_per_split=(12, 6, 6, 6), zero_rows={"text": 1, "video": 2},
                              frame_level_video=True)
    store = import_merbench(root, fixture_features(True), workers=1, progress=False, frame_level={"video": True})
    assert store.missing["text"].sum() == 4 and store.missing["video"].sum() == 8
    assert not store.missing["audio"].any()
    for m in ("text", "video"):
        assert np.all(store.features[m][store.missing[m]] == 0)
    strict = import_merbench(root, fixture_features(True), workers=1, progress=False,
                             frame_level={"video": True}, zero_rows="error")
    assert not any(strict.missing[m].any() for m in strict.features)
    report = validate_store(strict, "f.h5")
    fatal = [f for f in report.fatal if f.check == "zero_rows"]
    assert {f.modality for f in fatal} == {"text", "video"}
    assert "dataset.zero_rows: missing" in fatal[0].message


def test_validation_counts_absent_entries_per_split_as_warning(tmp_path):
    root = make_merbench_root(tmp_path / "r", n_per_split=(12, 6, 6, 6), zero_rows={"text": 1, "video": 2})
    store = import_merbench(root, fixture_features(), workers=1, progress=False)
    report = validate_store(store, "f.h5")
    assert not report.fatal
    warn = {f.modality: f for f in report.warnings if f.check == "zero_rows"}
    assert warn["video"].count == 8 and "train 2, test1 2, test2 2, test3 2" in warn["video"].message
    assert report.summary["absent_by_split"]["text"]["test3"]["count"] == 1
    md = report.to_markdown()
    assert "| video | test1 | 2 |" in md and "| text | train | 1 |" in md


def test_sample_with_every_modality_absent_is_fatal_and_named():
    s = generate(SyntheticConfig(**SMALL))
    for m in s.features:
        s.features[m][5] = 0
    flag_zero_rows(s)
    report = validate_store(s, "f.h5")
    fatal = [f for f in report.fatal if f.check == "all_absent"]
    assert fatal and s.names[5] in fatal[0].message and fatal[0].samples[0] == s.names[5]


def test_synthetic_default_carries_merbench_flaws():
    """The default study's data: scales orders of magnitude apart, text outlier dims, zero rows."""
    import yaml

    from prmf.config import PACKAGE_ROOT

    ds = yaml.safe_load((PACKAGE_ROOT / "config" / "config.yaml").read_text())["dataset"]
    store = build_store({**ds, "zero_rows": "missing"})
    train = store.split == "train"
    rms = {m: float(np.sqrt(np.mean(store.features[m][train & ~store.missing[m]] ** 2))) for m in store.features}
    assert rms["text"] > 30 * rms["audio"]  # orders of magnitude apart
    col = np.abs(store.features["text"][train]).max(axis=0)
    assert np.sort(col)[-4:].min() > 5 * np.median(col)  # a few outlier dimensions
    frac = {m: float(store.missing[m][train].mean()) for m in store.features}
    assert 0.02 <= frac["video"] <= 0.09 and 0.004 <= frac["text"] <= 0.05 and frac["audio"] == 0
    assert not validate_store(store).fatal
    present = np.stack([~store.missing[m] for m in store.features], 1)
    assert present.any(axis=1).all()  # never every modality absent

"""Foundation unit tests: synthetic generator, feature store, validation, folds."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from prmf.data.folds import make_folds
from prmf.data.store import EMOTIONS, StoreError, read_store, write_store
from prmf.data.synthetic import MER2023_TRAIN_CLASS_COUNTS, SyntheticConfig, class_counts, generate, split_sizes
from prmf.data.validation import FeatureValidationError, validate_file, validate_store

SMALL = dict(scale=0.1, dims={"audio": 10, "text": 14, "video": 8})


@pytest.fixture(scope="module")
def store():
    return generate(SyntheticConfig(**SMALL))


# ---------------------------------------------------------------- generator
def test_generator_is_deterministic():
    a, b = generate(SyntheticConfig(**SMALL)), generate(SyntheticConfig(**SMALL))
    for m in a.features:
        np.testing.assert_array_equal(a.features[m], b.features[m])
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.valence, b.valence)
    c = generate(SyntheticConfig(seed=1, **SMALL))
    assert not np.array_equal(a.features["audio"], c.features["audio"])


def test_generator_defaults_are_the_schemas():
    """SyntheticConfig's field defaults (for direct use) must say what the config schema says."""
    import dataclasses

    import yaml

    from prmf.config import SCHEMA

    props = yaml.safe_load(SCHEMA.read_text())["properties"]["dataset"]["properties"]["synthetic"]["properties"]
    schema = {key: spec["default"] for key, spec in props.items()}
    ours = {f.name: getattr(SyntheticConfig(), f.name) for f in dataclasses.fields(SyntheticConfig)}
    assert set(schema) == set(ours) - {"feature_names"}  # feature names come from dataset.features
    assert {key: ours[key] for key in schema} == schema


def test_generator_shapes_and_split_sizes(store):
    sizes = split_sizes(0.1)
    assert sizes == {"train": 337, "test1": 41, "test2": 41, "test3": 83}
    for s, n in sizes.items():
        assert (store.split == s).sum() == n
    assert store.features["audio"].shape == (502, 10)
    assert store.features["text"].shape == (502, 14)
    assert store.features["video"].shape == (502, 8)
    assert all(x.dtype == np.float32 for x in store.features.values())
    assert store.class_names == list(EMOTIONS)
    assert len(set(store.names)) == len(store.names)


def test_class_proportions_follow_mer2023():
    # 3373 * 0.1 rounds to 337: largest-remainder apportionment of 871/822/689/383/462/146
    counts = class_counts(337)
    assert counts.sum() == 337
    exact = np.array(MER2023_TRAIN_CLASS_COUNTS) / 3373 * 337
    assert np.all(np.abs(counts - exact) < 1)
    assert class_counts(3373).tolist() == list(MER2023_TRAIN_CLASS_COUNTS)


def test_train_labels_have_mer2023_counts(store):
    train = store.labels[store.split == "train"]
    assert np.bincount(train, minlength=6).tolist() == class_counts(337).tolist()


def test_valence_range_and_correlation(store):
    v, lab = store.valence, store.labels
    known = np.isfinite(v)
    assert np.all((v[known] >= -5) & (v[known] <= 5))
    # happy (2) is positive on average, sad (3) negative
    assert v[known & (lab == 2)].mean() > 1.5
    assert v[known & (lab == 3)].mean() < -1.5


def test_test3_has_no_valence_and_others_do(store):
    assert np.isnan(store.valence[store.split == "test3"]).all()
    for s in ("train", "test1", "test2"):
        assert np.isfinite(store.valence[store.split == s]).all()


def test_test2_is_corrupted(store):
    from prmf.data.zero_rows import zero_rows

    t1, t2 = store.split == "test1", store.split == "test2"
    # some test2 samples miss a modality: an all-zero row only, as MERBench writes it
    # (the generator flags nothing; the store builder flags zero rows)
    absent = {m: zero_rows(store.features[m]) for m in store.features}
    assert sum(int(a[t2].sum()) for a in absent.values()) > 0
    for m in store.features:
        assert not store.missing[m].any()
        assert not absent[m][~t2].any()
    # stronger noise on audio and video: larger per-feature spread than clean test1
    for m in ("audio", "video"):
        present = t2 & ~absent[m]
        assert store.features[m][present].std() > 1.4 * store.features[m][t1].std()


def test_fusion_beats_single_modality():
    from sklearn.linear_model import LogisticRegression

    s = generate(SyntheticConfig(scale=0.3))
    tr, te = s.split == "train", s.split == "test1"
    single = []
    for m in s.features:
        clf = LogisticRegression(max_iter=300).fit(s.features[m][tr], s.labels[tr])
        single.append(clf.score(s.features[m][te], s.labels[te]))
    x = np.concatenate(list(s.features.values()), axis=1)
    fused = LogisticRegression(max_iter=600).fit(x[tr], s.labels[tr]).score(x[te], s.labels[te])
    assert fused > max(single) + 0.05
    assert min(single) > 1 / 6 + 0.1  # every modality carries signal


# ---------------------------------------------------------------- store
def test_store_round_trip(tmp_path, store):
    path = tmp_path / "features.h5"
    digest = write_store(path, store)
    back = read_store(path)
    assert back.content_hash == digest
    np.testing.assert_array_equal(back.names, store.names)
    np.testing.assert_array_equal(back.labels, store.labels)
    np.testing.assert_array_equal(back.valence, store.valence)  # NaN compare equal here
    np.testing.assert_array_equal(back.split, store.split)
    for m in store.features:
        np.testing.assert_array_equal(back.features[m], store.features[m])
        np.testing.assert_array_equal(back.missing[m], store.missing[m])
    assert back.feature_names == store.feature_names
    assert back.class_names == list(EMOTIONS)
    assert back.source == "synthetic"
    assert not (tmp_path / "features.h5.tmp").exists()


def test_read_store_names_missing_key(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=np.array([b"a"]))
    with pytest.raises(StoreError, match=r"bad\.h5: incomplete feature store: keys 'labels', 'valence', .* missing"):
        read_store(path)


# ---------------------------------------------------------------- validation
def _fatal_checks(report):
    return {f.check for f in report.fatal}


def flagged(s):
    """The store as the builder writes it: zero rows flagged absent (dataset.zero_rows: missing)."""
    from prmf.data.zero_rows import flag_zero_rows

    flag_zero_rows(s)
    return s


def test_clean_store_validates():
    report = validate_store(flagged(generate(SyntheticConfig(**SMALL))),
                            expected_dims={"audio": 10, "text": 14, "video": 8})
    assert not report.fatal, [f.message for f in report.fatal]


def test_duplicate_names(store):
    s = generate(SyntheticConfig(**SMALL))
    s.names[5] = s.names[4]
    r = validate_store(s, "f.h5")
    assert "names_unique" in _fatal_checks(r)
    assert str(s.names[4]) in next(f.message for f in r.fatal if f.check == "names_unique")


def test_sample_in_two_splits():
    s = generate(SyntheticConfig(**SMALL))
    test_row = int(np.flatnonzero(s.split == "test1")[0])
    s.names[test_row] = s.names[0]  # a train sample's name again, under test1
    r = validate_store(s, "f.h5")
    assert "splits_disjoint" in _fatal_checks(r)
    assert s.names[0] in next(f.message for f in r.fatal if f.check == "splits_disjoint")


def test_unknown_split():
    s = generate(SyntheticConfig(**SMALL))
    s.split = s.split.astype(object)
    s.split[3] = "test9"
    assert "splits_known" in _fatal_checks(validate_store(s))


def test_nan_feature_names_sample_and_modality():
    s = generate(SyntheticConfig(**SMALL))
    s.features["video"][7, 2] = np.nan
    r = validate_store(s, "features.h5")
    msg = next(f.message for f in r.fatal if f.check == "finite")
    assert "video" in msg and s.names[7] in msg and "features.h5" in msg


def test_inf_feature():
    s = generate(SyntheticConfig(**SMALL))
    s.features["audio"][1, 0] = np.inf
    assert "finite" in _fatal_checks(validate_store(s))


def test_unflagged_zero_row_is_fatal_flagged_is_not():
    s = flagged(generate(SyntheticConfig(**SMALL)))
    s.features["text"][3] = 0
    r = validate_store(s)
    assert "zero_rows" in _fatal_checks(r)
    assert s.names[3] in next(f.message for f in r.fatal if f.check == "zero_rows")
    s.missing["text"][3] = True
    assert "zero_rows" not in _fatal_checks(validate_store(s))


def test_dim_mismatch():
    s = generate(SyntheticConfig(**SMALL))
    r = validate_store(s, expected_dims={"audio": 11})
    msg = next(f.message for f in r.fatal if f.check == "dims_consistent")
    assert "audio" in msg and "10" in msg and "11" in msg


def test_rows_not_aligned():
    s = generate(SyntheticConfig(**SMALL))
    s.features["audio"] = s.features["audio"][:-3]
    r = validate_store(s)
    assert "rows_aligned" in _fatal_checks(r)


def test_constant_columns_warn():
    s = flagged(generate(SyntheticConfig(**SMALL)))
    s.features["audio"][:, 4] = 1.5
    r = validate_store(s)
    assert any(f.check == "constant_columns" and f.modality == "audio" for f in r.warnings)
    assert not r.fatal


def test_unknown_class_name():
    s = generate(SyntheticConfig(**SMALL))
    s.class_names = list(EMOTIONS[:5]) + ["bored"]
    msg = next(f.message for f in validate_store(s).fatal if f.check == "class_names")
    assert "bored" in msg


def test_label_out_of_range():
    s = generate(SyntheticConfig(**SMALL))
    s.labels[2] = 9
    assert "labels_range" in _fatal_checks(validate_store(s))


def test_valence_placeholder_is_fatal():
    s = generate(SyntheticConfig(**SMALL))
    s.valence[0] = -10.0
    msg = next(f.message for f in validate_store(s).fatal if f.check == "valence_range")
    assert s.names[0] in msg and "NaN" in msg


def test_empty_train():
    s = generate(SyntheticConfig(**SMALL))
    s.split = np.where(s.split == "train", "test1", s.split)
    assert "train_present" in _fatal_checks(validate_store(s))


def test_validate_file_writes_reports_and_raises(tmp_path):
    s = generate(SyntheticConfig(**SMALL))
    s.features["audio"][0, 0] = np.nan
    path = tmp_path / "features.h5"
    write_store(path, s)
    with pytest.raises(FeatureValidationError, match="audio"):
        validate_file(path, tmp_path / "v.json", tmp_path / "v.md")
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["ok"] is False and report["n_fatal"] >= 1
    assert "FAILED" in (tmp_path / "v.md").read_text()


# ---------------------------------------------------------------- folds
def test_folds_stratified_disjoint_cover_and_seeded(store):
    f = make_folds(store, 5, seed=3)
    train_names = set(store.names[store.split == "train"])
    vals = [set(x["val"]) for x in f["folds"]]
    assert set().union(*vals) == train_names
    assert sum(len(v) for v in vals) == len(train_names)  # disjoint
    for x in f["folds"]:
        assert set(x["train"]) | set(x["val"]) == train_names
        assert not set(x["train"]) & set(x["val"])
    # stratified: each fold's class counts within 1 of train/5
    lab = dict(zip(store.names, store.labels))
    total = np.bincount([lab[n] for n in train_names], minlength=6)
    for v in vals:
        c = np.bincount([lab[n] for n in v], minlength=6)
        assert np.all(np.abs(c - total / 5) <= 1)
    assert make_folds(store, 5, seed=3) == f
    assert make_folds(store, 5, seed=4)["folds"][0]["val"] != f["folds"][0]["val"]


def test_folds_refuse_too_many_folds():
    s = generate(SyntheticConfig(scale=0.01, dims={"audio": 4, "text": 4, "video": 4}))
    with pytest.raises(ValueError, match="rarest emotion"):
        make_folds(s, 5)

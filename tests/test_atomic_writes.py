"""Outputs are written atomically, failures are one line with a distinct exit code, inputs are checked.

* every writer (the ``prmf`` subcommands and the library functions the workflow
  scripts call), with the disk full (``ENOSPC`` injected into
  :mod:`prmf.atomic`'s own write, or into the final rename), leaves no new file
  at its target, no temporary file, the previous file intact; the command
  exits 3 with one line naming the path and the cause;
* on a real full file system (a small tmpfs, where one can be mounted) the
  feature store write fails cleanly, even when the free-space check is
  bypassed (h5py never writes to the disk itself);
* ``extract-best`` opens every candidate: a file that is not an NPZ archive
  never wins, a folder named like a result is listed as skipped;
* a damaged feature store gives one line naming it, for ``validate`` and
  ``train-fold``; a changed value fails validation (``content_hash``);
* config errors are one line (no schema dump); ``tables.ablation_arms`` is
  checked; an empty test split in MERBench's label file warns.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from e2e_helpers import REPO, TINY_CONFIG
from merbench_fixture import fixture_features, make_merbench_root
from prmf import atomic
from prmf.atomic import OutputError
from prmf.cli import EXIT_FINDINGS, EXIT_INPUT, EXIT_IO, main
from prmf.data.store import StoreError, read_store, write_store

ENOSPC_LINE = "no space left on device writing {path}: free space or point {option} elsewhere"


def leftovers(folder: Path) -> list[str]:
    """Temporary or backup files :mod:`prmf.atomic` would leave behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name.endswith((".tmp", ".bak")))


class _HalfWrite:
    """A file that writes half of what it is given, then fails with ENOSPC (a disk filling up)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._fh.write(view[: len(view) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.fixture
def disk_full(monkeypatch):
    """Every file :mod:`prmf.atomic` writes runs out of space half-way (the temporary file is left half written)."""
    monkeypatch.setattr(atomic, "open", lambda path, mode="r", *a, **k: _HalfWrite(open(path, mode, *a, **k)),
                        raising=False)


@pytest.fixture
def rename_fails(monkeypatch):
    """``fail(target)``: the rename of a temporary file onto ``target`` fails with ENOSPC (others go through)."""
    real = os.replace
    failing: set[Path] = set()

    def replace(src, dst, *a, **k):
        if Path(dst) in failing and Path(src).name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    return failing.add


# --------------------------------------------------------------------------- the helper


def test_write_text_is_atomic_and_respects_the_umask(tmp_path):
    target = tmp_path / "sub" / "a.md"
    assert atomic.write_text(target, "hello\n") == target
    assert target.read_text() == "hello\n" and leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_files_all_or_none_with_rollback(tmp_path, rename_fails):
    md, tsv = tmp_path / "best.md", tmp_path / "best.tsv"
    md.write_text("old md")
    tsv.write_text("old tsv")
    rename_fails(tsv)  # the second rename fails after the first succeeded: the first is rolled back
    with pytest.raises(OutputError) as info:
        atomic.write_files({md: "new md", tsv: "new tsv"})
    assert info.value.errno == errno.ENOSPC and info.value.path == tsv
    assert str(info.value) == ENOSPC_LINE.format(path=tsv, option="the output")
    assert (md.read_text(), tsv.read_text()) == ("old md", "old tsv")
    assert leftovers(tmp_path) == []
    new = tmp_path / "new.md"
    with pytest.raises(OutputError):
        atomic.write_files({new: "x", tmp_path / "best.tsv": "y"})
    assert not new.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("code, cause", [(errno.EDQUOT, "disk quota exceeded"), (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")])
def test_output_error_names_the_cause(tmp_path, monkeypatch, code, cause):
    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic, "_write_temp", refuse)
    with pytest.raises(OutputError) as info:
        atomic.write_bytes(tmp_path / "x.bin", b"data")
    assert info.value.line("--output").startswith(f"{cause} writing {tmp_path / 'x.bin'}: ")
    assert "--output" in info.value.line("--output") and not (tmp_path / "x.bin").exists()


def test_free_space_check_refuses_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 20, 9 << 20, 1 << 20))
    with pytest.raises(OutputError, match=r"writing .*big\.bin \(needs about 6\.0 MiB, 1\.0 MiB free\): free space"):
        atomic.ensure_free_space(tmp_path / "big.bin", 5 << 20)


# --------------------------------------------------------------------------- every prmf writer


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny store, its folds, the tiny study config, a MERBench root, a result folder and a fake checkout."""
    from merbench_checkout import write_fake_checkout

    from prmf.merbench_results import format_result_name

    d = tmp_path_factory.mktemp("inputs")
    cfg = d / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    store, folds = d / "features.h5", d / "folds.json"
    assert main(["synth", "--config", str(cfg), "--output", str(store)]) == 0
    assert main(["folds", str(store), "--output", str(folds), "--folds", "2"]) == 0
    results = d / "results"
    results.mkdir()
    name = format_result_name("test1", ["a-UTT", "t-UTT"], "attention", 0.6, 0.61, 1.5, 1700000000)
    np.savez(results / name, names=np.array(["s1"]))
    return {"config": cfg, "store": store, "folds": folds, "results": results,
            "merbench": make_merbench_root(d / "mer", (24, 6, 6, 8)),
            "checkout": write_fake_checkout(d / "MERBench")}


def _cases(i: dict[str, Path], out: Path) -> dict[str, tuple[list[str], list[Path], str]]:
    """subcommand -> (argv, the files it writes in order, the option naming them)."""
    run = out / "run"
    feats = ",".join(fixture_features().values())
    return {
        "synth": (["synth", "--config", str(i["config"]), "--output", str(out / "features.h5")],
                  [out / "features.h5"], "--output"),
        "validate": (["validate", str(i["store"]), "--json", str(out / "v.json"), "--md", str(out / "v.md")],
                     [out / "v.json", out / "v.md"], "--json"),
        "folds": (["folds", str(i["store"]), "--output", str(out / "folds.json"), "--folds", "2"],
                  [out / "folds.json"], "--output"),
        "train-fold": (["train-fold", "--config", str(i["config"]), "--arm", "exp4", "--seed", "0", "--fold", "0",
                        "--store", str(i["store"]), "--folds", str(i["folds"]), "--outdir", str(run)],
                       [run / "model.pt", run / "predictions.npz", run / "metrics.json", run / "history.tsv"],
                       "--outdir"),
        "import-merbench": (["import-merbench", str(i["merbench"]), "--features", feats, "--output",
                             str(out / "f.h5"), "--workers", "1", "--no-progress"], [out / "f.h5"], "--output"),
        "extract-best": (["extract-best", "--result-dir", str(i["results"]), "--output", str(out / "best.md")],
                         [out / "best.md", out / "best.tsv"], "--output"),
    }


def _previous(targets: list[Path]) -> dict[Path, bytes]:
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(f"previous complete {t.name}\n".encode())
    return {t: t.read_bytes() for t in targets}


def _check_failure(capsys, out: Path, command: str, targets: list[Path], before: dict[Path, bytes], failed: Path,
                   option: str, rc: int) -> None:
    err = capsys.readouterr().err
    assert rc == EXIT_IO, err
    assert err.splitlines()[-1] == f"prmf {command}: " + ENOSPC_LINE.format(path=failed, option=option)
    assert "Traceback" not in err and sum("no space left" in line for line in err.splitlines()) == 1
    for t in targets:
        assert (t.read_bytes() if t.exists() else None) == before.get(t), t
    assert leftovers(out) == []


@pytest.mark.parametrize("previous", [False, True], ids=["new", "previous"])
@pytest.mark.parametrize("command", ["synth", "validate", "folds", "train-fold", "import-merbench", "extract-best"])
def test_cli_disk_full_leaves_nothing(inputs, tmp_path, capsys, disk_full, command, previous):
    argv, targets, option = _cases(inputs, tmp_path / "out")[command]
    before = _previous(targets) if previous else {}
    rc = main(argv)
    _check_failure(capsys, tmp_path / "out", command, targets, before, targets[0], option, rc)


@pytest.mark.parametrize("previous", [False, True], ids=["new", "previous"])
@pytest.mark.parametrize("command", ["validate", "train-fold", "extract-best"])
def test_cli_multi_file_outputs_roll_back(inputs, tmp_path, capsys, rename_fails, command, previous):
    """The last rename of a multi-file output fails: the files already renamed are put back (or removed)."""
    argv, targets, option = _cases(inputs, tmp_path / "out")[command]
    before = _previous(targets) if previous else {}
    rename_fails(targets[-1])
    rc = main(argv)
    option = "--md" if command == "validate" else option  # the line names the option of the file that failed
    _check_failure(capsys, tmp_path / "out", command, targets, before, targets[-1], option, rc)


def test_cli_outputs_written_when_the_disk_has_room(inputs, tmp_path, capsys):
    for command, (argv, targets, _) in _cases(inputs, tmp_path / "out").items():
        assert main(argv) == 0, command
        assert all(t.is_file() and t.stat().st_size for t in targets), command
    assert leftovers(tmp_path / "out") == []


def test_merbench_install_disk_full_changes_nothing(inputs, tmp_path, capsys, disk_full):
    from merbench_checkout import tree_hashes

    root = shutil.copytree(inputs["checkout"], tmp_path / "MERBench")
    before = tree_hashes(root)
    assert main(["merbench", "install", str(root)]) == EXIT_IO
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("prmf merbench install: no space left on device writing ")
    assert tree_hashes(root) == before and leftovers(root) == []


# --------------------------------------------------------------------------- library writers (workflow scripts)


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    """One tiny fold trained in-process (its FoldResult and its written files)."""
    from prmf.config import load_config, resolve_arm
    from prmf.data.folds import read_folds
    from prmf.train import fold_output_paths, save_fold, train_fold

    arm = resolve_arm(load_config(inputs["config"]), "exp4")
    store = read_store(inputs["store"])
    result = train_fold(store, read_folds(inputs["folds"]), 0, arm, 0, device="cpu", threads=1)
    paths = fold_output_paths(tmp_path_factory.mktemp("fold0"))
    save_fold(result, store, arm, 0, 0, **paths)
    return {"arm": arm, "store": store, "result": result, "paths": paths}


def _library_writers(inputs, trained) -> dict:
    """name -> (callable(out) that writes, the files it writes under ``out``)."""
    import pandas as pd

    from prmf.aggregate import aggregate_run
    from prmf.data.folds import make_folds, write_folds
    from prmf.data.prepare import prepare_dataset
    from prmf.data.validation import validate_file
    from prmf.merbench_results import extract_best
    from prmf.plots import plot_training_curves
    from prmf.robustness import write_robustness
    from prmf.train import save_fold

    store, arm, res = trained["store"], trained["arm"], trained["result"]
    fold = trained["paths"]
    return {
        "prepare_dataset": (lambda o: prepare_dataset(TINY_CONFIG["dataset"], o / "features.h5"), ["features.h5"]),
        "write_folds": (lambda o: write_folds(o / "folds.json", make_folds(store, 2, 0)), ["folds.json"]),
        "validate_file": (lambda o: validate_file(inputs["store"], o / "v.json", o / "v.md"), ["v.json", "v.md"]),
        "save_fold": (lambda o: save_fold(res, store, arm, 0, 0, model=o / "model.pt", predictions=o / "p.npz",
                                          metrics=o / "m.json", history=o / "h.tsv"),
                      ["model.pt", "p.npz", "m.json", "h.tsv"]),
        "aggregate_run": (lambda o: aggregate_run([fold["predictions"]], [fold["metrics"]], arm, 0, "tiny",
                                                  ["a", "t", "v"], o / "summary.json", o, o / "exports"),
                          ["summary.json", "predictions_cv.npz"]),
        "write_robustness": (lambda o: write_robustness(pd.DataFrame({"arm": ["exp4"], "value": [0.5]}),
                                                        o / "r.tsv"), ["r.tsv"]),
        "extract_best": (lambda o: extract_best([inputs["results"]], o / "best.md"), ["best.md", "best.tsv"]),
        "plots": (lambda o: plot_training_curves([fold["history"]], "P-RMF", [o / "c.png", o / "c.svg"]),
                  ["c.png", "c.svg"]),
        "write_text (tables scripts)": (lambda o: atomic.write_text(o / "t.md", "| a |\n"), ["t.md"]),
    }


LIBRARY_WRITERS = ["prepare_dataset", "write_folds", "validate_file", "save_fold", "aggregate_run",
                   "write_robustness", "extract_best", "plots", "write_text (tables scripts)"]


@pytest.mark.parametrize("previous", [False, True], ids=["new", "previous"])
@pytest.mark.parametrize("writer", LIBRARY_WRITERS)
def test_library_writer_disk_full(inputs, trained, tmp_path, disk_full, writer, previous):
    write, names = _library_writers(inputs, trained)[writer]
    out = tmp_path / "out"
    out.mkdir()
    targets = [out / n for n in names]
    before = _previous(targets) if previous else {}
    with pytest.raises(OutputError) as info:
        write(out)
    assert info.value.errno == errno.ENOSPC and info.value.path in targets
    assert str(info.value) == ENOSPC_LINE.format(path=info.value.path, option="the output")
    for t in targets:
        assert (t.read_bytes() if t.exists() else None) == before.get(t), t
    assert leftovers(out) == []


@pytest.mark.parametrize("writer", LIBRARY_WRITERS)
def test_library_writer_writes(inputs, trained, tmp_path, writer):
    write, names = _library_writers(inputs, trained)[writer]
    out = tmp_path / "out"
    out.mkdir()
    write(out)
    assert all((out / n).is_file() and (out / n).stat().st_size for n in names)
    assert leftovers(out) == []


def test_saved_model_loads(trained):
    import torch

    state = torch.load(trained["paths"]["model"], weights_only=True)
    assert set(state) == set(trained["result"].state_dict)


# --------------------------------------------------------------------------- a real full file system


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and permission to mount; skipped otherwise)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_store_on_a_full_tmpfs(tiny_tmpfs):
    """The real thing: the free-space check refuses; bypassed, the write still fails cleanly (no h5py crash)."""
    previous = tiny_tmpfs / "features.h5"
    previous.write_bytes(b"previous")
    proc = subprocess.run([sys.executable, "-m", "prmf.cli", "synth", "--output", str(previous), "--scale", "0.3"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == EXIT_IO, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(
        f"prmf synth: no space left on device writing {previous} (needs about ")
    script = textwrap.dedent(f"""
        import numpy as np
        import prmf.data.store as st
        from prmf.atomic import OutputError
        from prmf.data.synthetic import SyntheticConfig, generate
        st.ensure_free_space = lambda *a, **k: None  # as if the disk filled up after the check
        store = generate(SyntheticConfig(scale=0.3))
        for _ in range(3):
            try:
                st.write_store({str(previous)!r}, store)
            except OutputError as err:
                print(err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert proc.stdout == f"no space left on device writing {previous}: free space or point the output elsewhere\n" * 3
    assert previous.read_bytes() == b"previous" and leftovers(tiny_tmpfs) == []


# --------------------------------------------------------------------------- extract-best reads contents


def test_fake_npz_never_wins(tmp_path, capsys):
    from prmf.merbench_results import SKIP_FOLDER, extract_best, format_result_name

    res = tmp_path / "result"
    res.mkdir()

    def name(acc, ts):
        return format_result_name("test1", ["a-UTT", "t-UTT"], "attention", acc, acc, 0.1, ts)

    np.savez(res / name(0.60, 1700000000), names=np.array(["s1"]))  # real, modest
    with open(res / name(0.65, 1700000005), "wb") as fh:  # MERBench's own: args pickled -> valid, not unpickled
        np.savez(fh, args=np.array({"lr": 1e-3}, dtype=object), emo_probs=np.zeros((2, 6)))
    (res / name(0.99, 1700000001)).write_text("not a result\n")  # a text file with a winning name
    (res / name(0.98, 1700000002)).mkdir()  # a folder named like a result
    (res / name(0.97, 1700000003)).write_bytes(b"")  # empty
    real = (res / name(0.60, 1700000000)).read_bytes()
    (res / name(0.96, 1700000004)).write_bytes(real[: len(real) // 2])  # truncated archive
    with open(res / name(0.95, 1700000006), "wb") as fh:  # a plain .npy, not an archive
        np.save(fh, np.zeros(3))

    report, best = extract_best([res], tmp_path / "best.md")
    assert best["acc"].tolist() == [0.65]
    reasons = {n: r for _, n, r in report.skipped}
    assert reasons[name(0.99, 1700000001)] == "not an NPZ archive (no zip signature)"
    assert reasons[name(0.98, 1700000002)] == SKIP_FOLDER
    assert reasons[name(0.97, 1700000003)] == "empty file (0 bytes)"
    assert reasons[name(0.96, 1700000004)].startswith("damaged NPZ archive")
    assert reasons[name(0.95, 1700000006)] == "not an NPZ archive (no zip signature)"
    assert report.counts["n_npz"].tolist() == [7] and report.counts["n_skipped"].tolist() == [5]

    assert main(["extract-best", "--result-dir", str(res), "--format", "tsv"]) == 0
    out, err = capsys.readouterr()
    assert "65.00" in out and "99.00" not in out
    assert err.startswith("skipped 5 *.npz file(s) that are not MERBench results:\n")
    assert f"  {res / name(0.99, 1700000001)}: not an NPZ archive (no zip signature)\n" in err
    assert f"  {res / name(0.98, 1700000002)}: a folder, not a result file\n" in err


def test_only_fake_npz_is_no_result(tmp_path, capsys):
    from prmf.merbench_results import format_result_name

    name = format_result_name("test1", ["a-UTT"], "attention", 0.99, 0.99, 0.1, 1700000001)
    (tmp_path / name).write_text("x")
    assert main(["extract-best", "--result-dir", str(tmp_path), "--output", str(tmp_path / "best.md")]) \
        == EXIT_FINDINGS
    assert not (tmp_path / "best.md").exists() and not (tmp_path / "best.tsv").exists()


# --------------------------------------------------------------------------- damaged feature stores


def _damage(store: Path, kind: str, out: Path) -> Path:
    bad = out / f"{kind}.h5"
    data = store.read_bytes()
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "not-hdf5":
        bad.write_text("features\n")
    elif kind == "bad-labels":  # written by write_store: the content hash matches, the labels do not
        s = read_store(store)
        s.labels[3] = 17
        write_store(bad, s)
    else:
        bad.write_bytes(data)
        with h5py.File(bad, "a") as f:
            if kind == "no-video":
                del f["features/video"]
            elif kind == "no-labels":
                del f["labels"]
            elif kind == "changed-value":
                f["features/audio"][0, 0] += 1.0
    return bad


WHAT = {
    "truncated": "truncated HDF5 file (",
    "empty": "empty file (0 bytes)",
    "not-hdf5": "not an HDF5 file",
    "no-video": "incomplete feature store: modality data ['features/video'] missing",
    "no-labels": "incomplete feature store: key 'labels' missing",
    "bad-labels": "1 label(s) outside the class list 0..5",
    "changed-value": "content hash mismatch",
}


@pytest.mark.parametrize("kind", list(WHAT))
def test_train_fold_names_a_damaged_store(inputs, tmp_path, capsys, kind):
    bad = _damage(inputs["store"], kind, tmp_path)
    rc = main(["train-fold", "--config", str(inputs["config"]), "--arm", "exp4", "--seed", "0", "--fold", "0",
               "--store", str(bad), "--folds", str(inputs["folds"]), "--outdir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == EXIT_INPUT
    assert len(err.splitlines()) == 1 and err.startswith(f"prmf train-fold: {bad}: {WHAT[kind]}"), err
    assert "delete it and run Snakemake again" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", [k for k in WHAT if k not in ("bad-labels", "changed-value")])
def test_validate_names_a_damaged_store(inputs, tmp_path, capsys, kind):
    bad = _damage(inputs["store"], kind, tmp_path)
    assert main(["validate", str(bad), "--json", str(tmp_path / "v.json")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"prmf validate: {bad}: {WHAT[kind]}"), err
    assert not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("kind, check", [("bad-labels", "labels_range"), ("changed-value", "content_hash")])
def test_validate_reports_bad_labels_and_a_changed_value(inputs, tmp_path, capsys, kind, check):
    """Findings with reports (exit 1): labels outside the class list; a value changed after writing."""
    bad = _damage(inputs["store"], kind, tmp_path)
    assert main(["validate", str(bad), "--json", str(tmp_path / "v.json")]) == EXIT_FINDINGS
    err = capsys.readouterr().err
    assert f"[{check}] {bad}: " in err
    fatal = [f for f in json.loads((tmp_path / "v.json").read_text())["findings"] if f["severity"] == "fatal"]
    assert [f["check"] for f in fatal] == [check]


def test_content_hash_ok_finding(inputs, tmp_path):
    from prmf.data.validation import validate_file

    report = validate_file(inputs["store"])
    assert report.findings[0].check == "content_hash" and report.findings[0].severity == "ok"


def test_read_store_verify_hash(inputs, tmp_path):
    bad = _damage(inputs["store"], "changed-value", tmp_path)
    read_store(bad)  # not verified by default
    with pytest.raises(StoreError, match="content hash mismatch"):
        read_store(bad, verify_hash=True)


def test_write_store_round_trip_through_memory(tmp_path):
    from prmf.data.synthetic import SyntheticConfig, generate

    store = generate(SyntheticConfig(scale=0.05))
    digest = write_store(tmp_path / "f.h5", store)
    assert read_store(tmp_path / "f.h5", verify_hash=True).content_hash == digest
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- config and label file


def test_misspelled_config_key_is_one_line(tmp_path, capsys, inputs):
    from prmf.config import ConfigError, load_config

    cfg = yaml.safe_load(inputs["config"].read_text())
    cfg["training"]["epoch"] = 3
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith("config: unknown key training.epoch (did you mean 'epochs'?); allowed keys under "
                          "training: ") and "\n" not in msg and len(msg) < 600
    assert main(["synth", "--config", str(path), "--output", str(tmp_path / "f.h5")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err == f"prmf synth: {msg}\n"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["dataset"].__setitem__("source", "merbnch"),
     "config: dataset.source is 'merbnch'; allowed values: 'synthetic', 'merbench'"),
    (lambda c: c["training"].__setitem__("epochs", -3), "config: training.epochs: -3 is less than the minimum of 1"),
    (lambda c: c["tables"].__setitem__("ablation_arms", ["exp4", "exp9"]),
     "tables.ablation_arms: arm(s) ['exp9'] not defined under 'arms' (defined: ['baseline', 'exp4'])"),
    (lambda c: c["tables"].__setitem__("reference_arm", "exp9"),
     "tables.reference_arm: arm 'exp9' is not defined under 'arms' (defined: ['baseline', 'exp4'])"),
])
def test_config_errors_are_one_line(edit, message):
    import copy

    from prmf.config import ConfigError, validate_config

    cfg = copy.deepcopy(TINY_CONFIG)
    edit(cfg)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert str(info.value) == message


def test_empty_test_split_warns(tmp_path):
    from prmf.data.merbench import MerbenchImportWarning, import_merbench

    root = make_merbench_root(tmp_path / "mer", (24, 6, 6, 8))
    with np.load(root / "label-6way.npz", allow_pickle=True) as z:
        corpora = {k: z[k] for k in z.files}
    corpora["test2_corpus"] = np.array({}, dtype=object)
    np.savez(root / "label-6way.npz", **corpora)
    with pytest.warns(MerbenchImportWarning) as caught:
        store = import_merbench(root, fixture_features(), workers=1, progress=False)
    assert any("key 'test2_corpus' is empty ({}); split 'test2' has no samples" in str(w.message) for w in caught)
    assert not (store.split == "test2").any()

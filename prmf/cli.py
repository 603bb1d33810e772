"""``prmf`` command line: the pipeline's steps as subcommands.

    prmf synth --output features.h5 [--config config/config.yaml] [--seed S] [--scale F]
    prmf validate features.h5 [--json out.json] [--md out.md]
    prmf folds features.h5 --output folds.json [--folds 5] [--seed 0]
    prmf train-fold --config C [--config OVERLAY] --arm A --seed S --fold K --store F --folds J --outdir D
    prmf import-merbench ROOT --features a,t,v --output features.h5
    prmf extract-best --result-dir DIR [--result-dir DIR2 ...] [--config C] [--display-names N.yaml] --output best.md
    prmf merbench install|uninstall MERBENCH_DIR

All argument parsing, printing and exit codes live here; the library functions
they call raise and return. Exit codes, the same for every subcommand:

* 0 -- success.
* 1 -- findings: ``validate`` found fatal problems (the reports are written),
  ``extract-best`` found no result file.
* 2 -- bad input or usage: wrong options (argparse), a config that fails the
  schema or its cross-checks, an unreadable or damaged feature store (one line
  naming it and the fix), a refused MERBench import or install, a missing
  input file.
* 3 -- I/O failure writing an output (disk full, quota, read-only, permission):
  one line naming the path, the cause and the fix; the target is unchanged
  (absent, or the previous complete file) and no temporary file is left.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2
EXIT_IO = 3


def _synth(args: argparse.Namespace) -> int:
    from prmf.data.prepare import build_store
    from prmf.data.store import write_store

    dataset = {"name": "synthetic", "source": "synthetic", "synthetic": {}}
    if args.config:
        from prmf.config import load_config

        dataset = load_config(*args.config)["dataset"]
        if dataset["source"] != "synthetic":
            where = " + ".join(args.config)
            print(f"{where}: dataset.source is {dataset['source']!r}, not 'synthetic'", file=sys.stderr)
            return EXIT_INPUT
    dataset = {**dataset, "synthetic": dict(dataset.get("synthetic") or {})}
    if args.seed is not None:
        dataset["synthetic"]["seed"] = args.seed
    if args.scale is not None:
        dataset["synthetic"]["scale"] = args.scale
    if args.dataset:
        dataset["name"] = args.dataset
    store = build_store(dataset)  # the same store the pipeline's prepare_dataset writes
    digest = write_store(args.output, store)
    sizes = {s: int((store.split == s).sum()) for s in ("train", "test1", "test2", "test3")}
    print(f"wrote {args.output}: {len(store)} samples {sizes}, dims {store.dims()}, sha256 {digest[:12]}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from prmf.data.validation import FeatureValidationError, validate_file

    try:
        report = validate_file(args.store, args.json, args.md)
    except FeatureValidationError as e:
        print(f"{args.store}: {e}", file=sys.stderr)
        return EXIT_FINDINGS
    print(f"{args.store}: validation passed ({len(report.warnings)} warning(s))")
    for w in report.warnings:
        print(f"  warning [{w.check}] {w.message}")
    return EXIT_OK


def _folds(args: argparse.Namespace) -> int:
    from prmf.data.folds import make_folds, write_folds
    from prmf.data.store import read_store

    write_folds(args.output, make_folds(read_store(args.store), args.folds, args.seed))
    print(f"wrote {args.output}")
    return EXIT_OK


def _train_fold(args: argparse.Namespace) -> int:
    from prmf.config import load_config, resolve_arm, runtime_settings
    from prmf.data.folds import read_folds
    from prmf.data.store import read_store
    from prmf.train import fold_output_paths, save_fold, train_fold

    cfg = load_config(*args.config)
    arm = resolve_arm(cfg, args.arm)
    rt = runtime_settings(cfg)
    # labels against the class list, rows per sample, and the content hash (~0.2 s for MER2023) before training
    store = read_store(args.store, verify_hash=True)
    res = train_fold(store, read_folds(args.folds), args.fold, arm, args.seed, device=args.device or rt["device"],
                     threads=args.threads or rt["threads"], progress=lambda s: print(s, file=sys.stderr),
                     cuda_graphs=rt["cuda_graphs"] and not args.no_cuda_graphs)
    save_fold(res, store, arm, args.seed, args.fold, **fold_output_paths(args.outdir))
    print(f"fold {args.fold}: best epoch {res.best_epoch + 1}, val {res.metrics['val']}")
    return EXIT_OK


# --------------------------------------------------------------------------- import-merbench


def _parse_feature_list(text: str) -> dict[str, str]:
    """``"a,t,v"`` (audio, text, video folder names) -> modality mapping; ``ValueError`` naming ``--features``."""
    from prmf.data.store import MODALITIES

    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != len(MODALITIES) or not all(parts):
        raise ValueError(
            f"--features expects {len(MODALITIES)} comma-separated feature folder names in "
            f"{','.join(MODALITIES)} order (e.g. chinese-hubert-large-UTT,Baichuan-13B-Base-UTT,"
            f"clip-vit-large-patch14-UTT), got {text!r}"
        )
    return dict(zip(MODALITIES, parts))


def _parse_frame_level(text: str) -> list[str]:
    """``"video"`` / ``"audio,video"`` -> modalities; ``ValueError`` naming ``--frame-level``."""
    from prmf.data.store import MODALITIES

    mods = [m.strip() for m in (text or "").split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITIES]
    if bad:
        raise ValueError(f"--frame-level: unknown modality {bad}; expected some of {','.join(MODALITIES)}")
    return mods


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root", metavar="ROOT", help="MERBench mer2023-dataset-process folder (label-6way.npz, features/)"
    )
    parser.add_argument("--features", required=True, metavar="A,T,V",
                        help="feature folder names under ROOT/features in audio,text,video order")
    parser.add_argument("--output", required=True, metavar="FEATURES_H5", help="feature store to write")
    parser.add_argument("--dataset", default="MER2023", help="dataset name recorded in the store (default MER2023)")
    parser.add_argument("--frame-level", default="", metavar="MODALITIES",
                        help="comma-separated modalities kept frame level [N,T,D] (e.g. video)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="truncate frame-level sequences")
    parser.add_argument("--workers", type=int, default=4, help="processes reading feature files (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    parser.add_argument("--zero-rows", choices=("missing", "error"), default="missing",
                        help="all-zero feature rows (MERBench: no face / empty transcript): flag them absent "
                             "(missing, default) or leave them for validation to reject (error)")


def _import_summary(store, root: str, output: str, digest: str) -> str:
    """One paragraph: sizes per split, features and dims, unknown valence, absent entries, the file written."""
    import numpy as np

    from prmf.data.store import SPLITS

    counts = ", ".join(f"{s} {int((store.split == s).sum())}" for s in SPLITS)
    dims = []
    for m, x in store.features.items():
        shape = f"T<={x.shape[1]}, D={x.shape[2]}, frame level" if x.ndim == 3 else f"D={x.shape[1]}"
        dims.append(f"{m} {store.feature_names[m]} ({shape})")
    nan = int(np.isnan(store.valence).sum())
    absent = ", ".join(f"{m} {int(np.asarray(store.missing[m]).sum())}" for m in store.features)
    return (
        f"Imported {store.dataset} from {root}: {len(store)} samples ({counts}); "
        f"features {'; '.join(dims)}; valence unknown (NaN) for {nan} sample(s); "
        f"absent (all-zero rows) {absent}; "
        f"wrote {output} (sha256 {digest[:12]})."
    )


def _import_merbench(args: argparse.Namespace) -> int:
    """0 on success; 2 on a refused import (every finding on stderr, nothing written); 3 when the write fails."""
    from prmf.data.merbench import MerbenchImportError, MerbenchImportWarning, import_merbench
    from prmf.data.store import write_store

    try:
        features = _parse_feature_list(args.features)
        frame_level = _parse_frame_level(args.frame_level)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MerbenchImportWarning)
            store = import_merbench(args.root, features, dataset=args.dataset,
                                    frame_level={m: True for m in frame_level}, max_frames=args.max_frames,
                                    workers=args.workers, progress=not args.no_progress, zero_rows=args.zero_rows)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (MerbenchImportError, ValueError) as err:
        print(f"prmf import-merbench: {err}", file=sys.stderr)
        return EXIT_INPUT
    digest = write_store(args.output, store)  # OutputError: one line, exit 3 (main)
    print(_import_summary(store, str(args.root), str(args.output), digest))
    return EXIT_OK


# --------------------------------------------------------------------------- extract-best


#: where MERBench's main-release.py writes trimodal results (--save_root ./saved + "-trimodal" + /result)
MERBENCH_RESULT_DIR = "saved-trimodal/result"


def _add_extract_best_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--result-dir", "--result_dir", dest="result_dirs", action="append", metavar="DIR",
                        help="folder searched recursively for MERBench *.npz result files (repeatable; "
                             "--result_dir is the original extract_best_results.py spelling); default: "
                             f"{MERBENCH_RESULT_DIR} (MERBench's trimodal result folder, from inside MERBench/)")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE.md",
                        help="write the Markdown table here and a TSV beside it (same name, .tsv)")
    parser.add_argument("--format", choices=("md", "tsv", "console"), default="console",
                        help="what is printed on stdout (default: console)")
    parser.add_argument("--config", action="append", metavar="YAML",
                        help="study config whose arms (export_name -> display_name) and display_names name the "
                             "models; repeat to layer an overlay")
    parser.add_argument("--display-names", type=Path, default=None, metavar="FILE.yaml",
                        help="YAML mapping model name -> display name (over --config's names); "
                             "without either, models are shown by their names")


def _load_display_names(path: str | Path) -> dict[str, str]:
    """Read a YAML mapping ``model name -> display name``.

    Raises:
        ValueError: naming the file, when it is not a mapping of strings to strings.
        OSError: when it cannot be read.
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected a mapping of model name -> display name (strings)")
    return dict(data)


def _display_names(config: Sequence[str] | None, names_file: Path | None) -> dict[str, str]:
    """Names of ``--config`` (study arms and ``display_names``), then ``--display-names`` over them."""
    names: dict[str, str] = {}
    if config:
        from prmf.config import load_config
        from prmf.merbench_results import model_display_names

        names.update(model_display_names(load_config(*config)))
    if names_file is not None:
        names.update(_load_display_names(names_file))
    return names


def _extract_best(args: argparse.Namespace) -> int:
    """0 on success; 1 when no result file was found; 2 for an output ending in .tsv or unreadable names;
    3 when the tables cannot be written (neither the Markdown nor the TSV changes).

    Skipped files go to stderr (count, then one ``path: reason`` per line), the
    table in ``--format`` to stdout.
    """
    from prmf.merbench_results import NoResultsError, extract_best, format_skipped, render_best

    try:
        names = _display_names(args.config, args.display_names)
    except (OSError, ValueError) as err:  # the message names the file (and the key)
        print(f"error: display names: {err}", file=sys.stderr)
        return EXIT_INPUT
    if not args.result_dirs:
        print(f"no --result-dir given: scanning ./{MERBENCH_RESULT_DIR} (MERBench's trimodal result folder)",
              file=sys.stderr)
        args.result_dirs = [MERBENCH_RESULT_DIR]
    try:
        report, best = extract_best(args.result_dirs, args.output, names)
    except NoResultsError as err:
        sys.stderr.write(format_skipped(err.report))
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FINDINGS
    except ValueError as err:
        print(f"error: --output: {err}", file=sys.stderr)
        return EXIT_INPUT
    sys.stderr.write(format_skipped(report))
    sys.stdout.write(render_best(best, args.format, names))
    return EXIT_OK


# --------------------------------------------------------------------------- merbench install


def _merbench(args: argparse.Namespace) -> int:
    """0 on success (also when nothing changed); 2 when refused (nothing changed); 3 when a write fails."""
    from prmf.atomic import OutputError
    from prmf.interop.merbench_install import MerbenchInstallError, install, uninstall

    try:
        if args.action == "install":
            report = install(args.merbench_dir)
        else:
            report = uninstall(args.merbench_dir, force=args.force)
    except MerbenchInstallError as err:
        print(f"prmf merbench {args.action}: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        line = err.line("MERBENCH_DIR") if isinstance(err, OutputError) else str(err)
        print(f"prmf merbench {args.action}: {line}", file=sys.stderr)
        return EXIT_IO
    print(report.summary())
    return EXIT_OK


def _add_merbench_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("merbench", help="install / uninstall the P-RMF models in a MERBench checkout")
    msub = s.add_subparsers(dest="action", required=True)
    m = msub.add_parser("install", help="register attention_robust and attention_robust_v2 in MERBENCH_DIR")
    m.add_argument("merbench_dir", metavar="MERBENCH_DIR", help="the MERBench/ folder of a MERTools checkout")
    m.set_defaults(func=_merbench)
    m = msub.add_parser("uninstall", help="undo install: restore every edited file from its backup, delete ours")
    m.add_argument("merbench_dir", metavar="MERBENCH_DIR", help="the MERBench/ folder of a MERTools checkout")
    m.add_argument("--force", action="store_true",
                   help="restore the backups even where an edited file changed after the install")
    m.set_defaults(func=_merbench)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prmf", description="P-RMF experiment pipeline tools")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the synthetic MER-like feature store")
    s.add_argument("--output", required=True)
    s.add_argument("--config", action="append", metavar="YAML",
                   help="take dataset.synthetic from this study config (repeat to layer overlays)")
    s.add_argument("--seed", type=int)
    s.add_argument("--scale", type=float)
    s.add_argument("--dataset", help="dataset name recorded in the store")
    s.set_defaults(func=_synth)

    s = sub.add_parser("validate", help="validate a feature store (exit 1 on fatal findings)")
    s.add_argument("store")
    s.add_argument("--json")
    s.add_argument("--md")
    s.set_defaults(func=_validate)

    s = sub.add_parser("folds", help="seeded stratified CV folds of the train split")
    s.add_argument("store")
    s.add_argument("--output", required=True)
    s.add_argument("--folds", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_folds)

    s = sub.add_parser("train-fold", help="train one arm x seed x fold outside Snakemake")
    s.add_argument("--config", required=True, action="append", metavar="YAML",
                   help="study config; repeat to layer an overlay, e.g. --config config/config.yaml "
                        "--config config/mer2023.yaml")
    for a in ("--arm", "--store", "--folds", "--outdir"):
        s.add_argument(a, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--fold", type=int, required=True)
    s.add_argument("--device")
    s.add_argument("--threads", type=int)
    s.add_argument("--no-cuda-graphs", action="store_true",
                   help="run every training step eagerly on a GPU (default: training.cuda_graphs)")
    s.set_defaults(func=_train_fold)

    s = sub.add_parser("import-merbench", help="import a MERBench/MER2023 feature folder into a store")
    _add_import_arguments(s)
    s.set_defaults(func=_import_merbench)

    s = sub.add_parser("extract-best", help="best result per (model, split) from MERBench-named NPZ files")
    _add_extract_best_arguments(s)
    s.set_defaults(func=_extract_best)

    _add_merbench_parser(sub)
    return p


#: options whose value is a path the subcommand writes (named in an I/O error's fix)
_OUTPUT_OPTIONS = ("output", "json", "md", "outdir")


def _output_option(args: argparse.Namespace, path: Path) -> str:
    """The option that named ``path``, else its folder (``--outdir``), else its sibling of another suffix
    (``best.tsv`` beside ``--output best.md``), else ``the output``."""
    given = [(f"--{name}", Path(getattr(args, name))) for name in _OUTPUT_OPTIONS if getattr(args, name, None)]
    for matches in (lambda v: path == v, lambda v: v in path.parents,
                    lambda v: path.with_suffix("") == v.with_suffix("")):
        for option, value in given:
            if matches(value):
                return option
    return "the output"


def _failure(args: argparse.Namespace, err: Exception) -> tuple[int, str] | None:
    """Exit code and one-line message for the errors every subcommand shares; None: not ours (re-raised)."""
    from prmf.atomic import OutputError

    if isinstance(err, OutputError):
        return EXIT_IO, err.line(_output_option(args, err.path))
    if isinstance(err, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return EXIT_INPUT, f"{err.strerror}: {err.filename}" if err.filename else str(err)
    if isinstance(err, OSError):
        return EXIT_IO, str(err)
    if isinstance(err, ValueError):  # ConfigError, StoreError, refused values: messages name the file / key
        return EXIT_INPUT, str(err)
    if type(err).__module__.startswith("yaml"):
        return EXIT_INPUT, " ".join(str(err).split())
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (0 ok, 1 findings, 2 bad input, 3 I/O failure)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        failure = _failure(args, err)
        if failure is None:
            raise
        code, message = failure
        print(f"prmf {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

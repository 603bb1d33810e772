"""``prmf`` command line: the pipeline's steps as subcommands.

    prmf synth --output features.h5 [--config config/config.yaml] [--seed S] [--scale F]
    prmf validate features.h5 [--json out.json] [--md out.md]
    prmf folds features.h5 --output folds.json [--folds 5] [--seed 0]
    prmf train-fold --config C [--config OVERLAY] --arm A --seed S --fold K --store F --folds J --outdir D
    prmf import-merbench ROOT --features a,t,v --output features.h5
    prmf extract-best --result-dir DIR [--result-dir DIR2 ...] --output best.md
"""

from __future__ import annotations

import argparse
import sys


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
            return 2
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
    return 0


def _validate(args: argparse.Namespace) -> int:
    from prmf.data.validation import FeatureValidationError, validate_file

    try:
        report = validate_file(args.store, args.json, args.md)
    except FeatureValidationError as e:
        print(f"{args.store}: {e}", file=sys.stderr)
        return 1
    print(f"{args.store}: validation passed ({len(report.warnings)} warning(s))")
    for w in report.warnings:
        print(f"  warning [{w.check}] {w.message}")
    return 0


def _folds(args: argparse.Namespace) -> int:
    from prmf.data.folds import make_folds, write_folds
    from prmf.data.store import read_store

    write_folds(args.output, make_folds(read_store(args.store), args.folds, args.seed))
    print(f"wrote {args.output}")
    return 0


def _train_fold(args: argparse.Namespace) -> int:
    from prmf.config import load_config, resolve_arm, runtime_settings
    from prmf.data.folds import read_folds
    from prmf.data.store import read_store
    from prmf.train import fold_output_paths, save_fold, train_fold

    cfg = load_config(*args.config)
    arm = resolve_arm(cfg, args.arm)
    rt = runtime_settings(cfg)
    store = read_store(args.store)
    res = train_fold(store, read_folds(args.folds), args.fold, arm, args.seed, device=args.device or rt["device"],
                     threads=args.threads or rt["threads"], progress=lambda s: print(s, file=sys.stderr),
                     cuda_graphs=rt["cuda_graphs"] and not args.no_cuda_graphs)
    save_fold(res, store, arm, args.seed, args.fold, **fold_output_paths(args.outdir))
    print(f"fold {args.fold}: best epoch {res.best_epoch + 1}, val {res.metrics['val']}")
    return 0


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

    try:
        from prmf.data.merbench import add_import_arguments, cli_import_merbench

        s = sub.add_parser("import-merbench", help="import a MERBench/MER2023 feature folder into a store")
        add_import_arguments(s)
        s.set_defaults(func=cli_import_merbench)
    except ImportError:  # pragma: no cover - module under construction
        pass
    try:
        from prmf.results import add_extract_best_arguments, cli_extract_best

        s = sub.add_parser("extract-best", help="best result per (model, split) from MERBench-named NPZ files")
        add_extract_best_arguments(s)
        s.set_defaults(func=cli_extract_best)
    except ImportError:  # pragma: no cover
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

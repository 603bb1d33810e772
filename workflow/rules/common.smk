# Config access, arm/seed/fold lists, input functions and wildcard constraints.
from prmf.config import (
    check_config,
    resolve_arm,
    run_arms,
    runtime_settings,
    training_arms,
)

MERBENCH_LABEL_FILE = "label-6way.npz"

check_config(config)

DATASET = config["dataset"]["name"]
ARMS = run_arms(config)
SEEDS = [int(s) for s in config["seeds"]]
FOLDS = list(range(int(config["cv"]["folds"])))
DATA = f"results/data/{DATASET}"
RUNS = f"results/runs/{DATASET}"
EXPORTS = f"results/exports/{DATASET}"
LOGS = f"results/logs/{DATASET}"
BENCH = f"results/benchmarks/{DATASET}"
RUNTIME = runtime_settings(config)
# arm -> the arm whose folds it reads; identical arms (robust_v1 = exp1) train once
TRAIN_ARM = training_arms(config)
TRAINED_ARMS = sorted(set(TRAIN_ARM.values()))


wildcard_constraints:
    dataset=DATASET,
    arm="|".join(config["arms"]),
    seed=r"\d+",
    fold=r"\d+",
    split="cv|test1|test2|test3",


def arm_params(wildcards):
    """The resolved parameters of one arm: the only arm-specific job parameters."""
    return resolve_arm(config, wildcards.arm)


def dataset_params():
    """Exactly the config keys that define the feature store."""
    ds = config["dataset"]
    keys = ["name", "source", "modalities", "zero_rows"]
    if ds["source"] == "synthetic":
        keys += ["synthetic", "features"]
    else:
        keys += ["root", "features", "frame_level", "max_frames"]
    return {k: ds.get(k) for k in keys}


def prepare_inputs(wildcards):
    """A MERBench import depends on the label file; the generator on nothing."""
    ds = config["dataset"]
    if ds["source"] == "merbench":
        return {"labels": f"{ds['root']}/{MERBENCH_LABEL_FILE}"}
    return {}


def feature_names():
    """Feature (extractor) name per modality, in modality order."""
    ds = config["dataset"]
    return [ds["features"].get(m, f"synthetic-{m}-UTT") for m in ds["modalities"]]


def expected_dims():
    ds = config["dataset"]
    return dict(ds["synthetic"]["dims"]) if ds["source"] == "synthetic" else {}


def fold_files(wildcards, name):
    """The fold files an arm's run reads: those of the arm that trains its model."""
    return expand(
        f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/{name}",
        arm=TRAIN_ARM.get(wildcards.arm, wildcards.arm),
        seed=wildcards.seed,
        fold=FOLDS,
    )


def summaries(arms=None):
    return expand(
        f"{RUNS}/{{arm}}/seed{{seed}}/summary.json", arm=arms or ARMS, seed=SEEDS
    )


def export_dirs(arms=None):
    return expand(f"{EXPORTS}/{{arm}}/seed{{seed}}", arm=arms or ARMS, seed=SEEDS)


def all_targets():
    targets = [f"{DATA}/validation.md"] + summaries()
    for extra in EXTRA_TARGETS:
        targets += extra() if callable(extra) else list(extra)
    return targets


# stage files (report.smk, robustness.smk) append their final outputs here
EXTRA_TARGETS = []


# ---- report stage: config access and input functions
from pathlib import Path

from prmf.merbench_results import model_display_names

TABLES = "results/tables"
REFERENCE_ARM = config["tables"]["reference_arm"]
# ablation arms this study trains; the others are named as skipped in the table
ABLATION_RUN_ARMS = [a for a in config["tables"]["ablation_arms"] if a in ARMS]
# our exports first, then the external MERBench result folders of the config
RESULT_DIRS = [EXPORTS] + list(config["extract"]["result_dirs"])


def existing_external_result_dirs(wildcards):
    """External result folders that exist: inputs, so adding a top-level file reruns.

    Missing folders are not inputs (the job would not start); the scan reports them.
    """
    return [d for d in config["extract"]["result_dirs"] if Path(d).is_dir()]


def arm_table_params():
    """Resolved arms (display names, export names) in run order, for table rows."""
    return {arm: resolve_arm(config, arm) for arm in ARMS}


def run_summaries(arms):
    """summary.json of the given arms x seeds (none for an empty list)."""
    return summaries(arms) if arms else []


# ---- robustness stage: config access and input functions
from prmf.robustness import RobustnessConfig

ROBUSTNESS = RobustnessConfig.from_dict(config.get("robustness", {})).to_dict()
ROBUSTNESS_DIR = f"results/robustness/{DATASET}"
ROBUSTNESS_TABLE = "results/tables/robustness.md"
PLOTS = "results/plots"
# the split the single-split figures show: the first test split evaluated, else cv
ROBUSTNESS_FIGURE_SPLIT = next(
    (s for s in ROBUSTNESS["splits"] if s != "cv"), ROBUSTNESS["splits"][0]
)
FIGURE_FORMATS = ["png", "svg"]


def robustness_tsvs(wildcards=None):
    return expand(f"{ROBUSTNESS_DIR}/{{arm}}/seed{{seed}}.tsv", arm=ARMS, seed=SEEDS)


def arm_display_names():
    """Run arms (in order) -> display name of the resolved arm."""
    return {arm: resolve_arm(config, arm)["display_name"] for arm in ARMS}


def figure(name, category="Robustness", subcategory="Figures"):
    """The PNG and SVG of a figure, wrapped for the report."""
    files = []
    for ext in FIGURE_FORMATS:
        labels = {"figure": name, "format": ext.upper()}
        kw = dict(category=category, subcategory=subcategory, labels=labels)
        files.append(report(f"{PLOTS}/{name}.{ext}", **kw))
    return files


def figure_files(name):
    return [f"{PLOTS}/{name}.{ext}" for ext in FIGURE_FORMATS]

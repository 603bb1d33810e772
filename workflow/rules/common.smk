# Config access, arm/seed/fold lists, input functions and wildcard constraints.
from prmf.config import check_config, resolve_arm, run_arms, runtime_settings

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
    keys = ["name", "source", "modalities"]
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
    return expand(
        f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/{name}",
        arm=wildcards.arm,
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

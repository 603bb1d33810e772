# Config access, arm/seed/fold lists, input functions and wildcard constraints.

# ---- the workflow's own source: where the prmf package of this workflow lives
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from snakemake.sourcecache import HostingProviderFile, LocalGitFile, LocalSourceFile


def workflow_source_root(basedir):
    """A local folder holding this workflow's repository (prmf/, workflow/, config/).

    ``basedir`` is the folder of this file (workflow/rules) as Snakemake knows it:
    a local path (a checkout, or a module given by path) is used as it is; a file
    of a git repository (a module ``github(...)`` / ``gitlab(...)``, as snakedeploy
    writes it, or ``gitfile(...)``) is exported at its commit, once, to
    ``.snakemake/prmf-source/<commit>`` in the working directory. None otherwise.
    """
    if isinstance(basedir, LocalSourceFile):
        return Path(basedir.get_path_or_uri(secret_free=True)).resolve().parents[1]
    if isinstance(basedir, LocalGitFile):
        import git

        repo = git.Repo(basedir.repo_path)
    elif isinstance(basedir, HostingProviderFile):
        basedir.cache_path = workflow.sourcecache.cache_path
        repo = basedir.hosted_repo.repo
    else:
        return None
    commit = repo.commit(basedir.ref).hexsha
    root = Path(".snakemake", "prmf-source", commit).resolve()
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root.parent, prefix=f".{commit}.")
        with tempfile.TemporaryFile() as fh:
            repo.archive(fh, treeish=commit)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, **safe)
        try:
            os.rename(tmp, root)
        except OSError:  # a concurrent job exported it first
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# Parsing, local jobs (PYTHONPATH) and --sdm conda jobs (PRMF_SOURCE, read by the
# environment's hook from workflow/envs/prmf.post-deploy.sh) import the prmf of
# this workflow's own source; a copy of workflow/ without prmf/ beside it uses the
# installed package.
PRMF_SOURCE = workflow_source_root(workflow.current_basedir)
if PRMF_SOURCE is not None and (PRMF_SOURCE / "prmf" / "__init__.py").is_file():
    PRMF_SOURCE = str(PRMF_SOURCE)
    if PRMF_SOURCE not in sys.path:
        sys.path.insert(0, PRMF_SOURCE)
    _pythonpath = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    _pythonpath = [PRMF_SOURCE] + [p for p in _pythonpath if p and p != PRMF_SOURCE]
    os.environ.update(PRMF_SOURCE=PRMF_SOURCE, PYTHONPATH=os.pathsep.join(_pythonpath))

from prmf.config import (
    validate_config,
    resolve_arm,
    resolve_pack,
    run_arms,
    runtime_settings,
    training_uses_gpu,
)
from prmf.tuning import training_arms, tuning_plan

MERBENCH_LABEL_FILE = "label-6way.npz"

# the schema (defaults filled in) and the cross-checks; a problem is one line naming the key
validate_config(config)

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
# GPU-tagged training jobs only when training runs on a GPU: on a CPU-only machine the
# folds then run side by side (cores / training.threads at once) under --resources gpu=1
TRAIN_GPU = 1 if training_uses_gpu(RUNTIME["device"]) else 0
# tuned arms and their draws (known at parse time from tuning.seed; empty when tuning is off)
TUNING = tuning_plan(config)
TUNING_DIR = f"results/tuning/{DATASET}"
# arm -> the arm whose folds it reads; identical untuned arms (robust_v1 = exp1) train
# once; a tuned arm reads its own
TRAIN_ARM = training_arms(config, TUNING)
TRAINED_ARMS = sorted(set(TRAIN_ARM.values()))


def job_slots():
    """Training jobs that can run at once here: --cores / training.threads (--cores is 1
    when not given, e.g. on a cluster's submitting host)."""
    try:
        cores = workflow.cores
    except Exception:
        cores = None
    return max(1, int(cores or 1) // int(RUNTIME["threads"]))


# fold models per training job (training.pack; prmf.config.resolve_pack): auto packs an
# arm's seeds x folds on a GPU or when the arms fill the cores, else an arm x seed's folds
# when those fill them, else one fold per job. train.smk / tune.smk define every layout's
# rules and pick this one by rule order.
PACK = resolve_pack(
    RUNTIME["pack"],
    TRAIN_GPU == 1,
    arms=len(TRAINED_ARMS),
    seeds=len(SEEDS),
    slots=job_slots(),
)


wildcard_constraints:
    dataset=DATASET,
    arm="|".join(config["arms"]),
    seed=r"\d+",
    fold=r"\d+",
    split="cv|test1|test2|test3",


def arm_params(wildcards):
    """The resolved parameters of one arm: the only arm-specific job parameters (a tuned
    arm's without its drawn keys: its scripts read them from chosen.yaml)."""
    return TUNING.final_params(config, wildcards.arm)


def arm_seeds(arm):
    """Seeds of an arm's runs: the study's, or 0..final_seeds-1 for a tuned arm."""
    return TUNING.arm_seeds(arm, SEEDS)


def chosen_input(wildcards):
    """A tuned arm's final runs read its chosen.yaml (unpack: nothing for other arms)."""
    if TUNING.tuned(wildcards.arm):
        return {"chosen": f"{TUNING_DIR}/{wildcards.arm}/chosen.yaml"}
    return {}


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


def fold_files(wildcards, name, seeds=None):
    """The fold files an arm's run reads (those of the arm that trains its model), for
    the run's seed or for ``seeds``."""
    return expand(
        f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/{name}",
        arm=TRAIN_ARM.get(wildcards.arm, wildcards.arm),
        seed=wildcards.seed if seeds is None else seeds,
        fold=FOLDS,
    )


def pack_files(name, seeds=None):
    """Outputs ``name`` of a pack job: each fold of the job's ``{arm}`` x ``{seed}``
    (``seeds=None``), or each of ``seeds`` x folds of its ``{arm}``."""
    if seeds is None:
        return [f"{RUNS}/{{arm}}/seed{{seed}}/fold{fold}/{name}" for fold in FOLDS]
    return [f"{RUNS}/{{arm}}/seed{s}/fold{f}/{name}" for s in seeds for f in FOLDS]


def pack_members(wildcards, seeds=None):
    """The (seed, fold) members of a pack job, in the order of :func:`pack_files`."""
    seeds = [int(wildcards.seed)] if seeds is None else seeds
    return [[int(s), f] for s in seeds for f in FOLDS]


def seed_packed_arms(tuned):
    """Trained arms of a ``pack: seeds`` rule: the tuned ones (their seeds are tuning's
    final_seeds) or the others (the study's seeds)."""
    return [a for a in TRAINED_ARMS if bool(TUNING.tuned(a)) == tuned]


def summaries(arms=None):
    return [
        f"{RUNS}/{arm}/seed{seed}/summary.json"
        for arm in arms or ARMS
        for seed in arm_seeds(arm)
    ]


def export_dirs(arms=None):
    return [
        f"{EXPORTS}/{arm}/seed{seed}" for arm in arms or ARMS for seed in arm_seeds(arm)
    ]


def all_targets():
    targets = [f"{DATA}/validation.md"] + summaries()
    for extra in EXTRA_TARGETS:
        targets += extra() if callable(extra) else list(extra)
    return targets


# stage files (report.smk, robustness.smk) append their final outputs here
EXTRA_TARGETS = []


# ---- report stage: config access and input functions
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
    return [
        f"{ROBUSTNESS_DIR}/{arm}/seed{seed}.tsv"
        for arm in ARMS
        for seed in arm_seeds(arm)
    ]


def arm_display_names():
    """Run arms (in order) -> display name of the resolved arm."""
    return {arm: resolve_arm(config, arm)["display_name"] for arm in ARMS}


def figure(name, category="Robustness", subcategory="Figures"):
    """The PNG and SVG of a figure, wrapped for the report; caption report/<name>.rst."""
    files = []
    for ext in FIGURE_FORMATS:
        labels = {"figure": name, "format": ext.upper()}
        kw = dict(category=category, subcategory=subcategory, labels=labels)
        kw["caption"] = f"../report/{name}.rst"
        files.append(report(f"{PLOTS}/{name}.{ext}", **kw))
    return files


def figure_files(name):
    return [f"{PLOTS}/{name}.{ext}" for ext in FIGURE_FORMATS]


# ---- tuning stage: config access and input functions
TUNED_ARMS = list(TUNING.arms)


def tune_metrics(wildcards):
    """metrics.json of every draw x fold of one arm, draw-major."""
    return [
        f"{TUNING_DIR}/{wildcards.arm}/draw{draw}/fold{fold}/metrics.json"
        for draw in range(TUNING.draws)
        for fold in FOLDS
    ]


def tune_pack_files(name):
    """Outputs ``name`` of a tune_pack job: each fold of its ``{arm}`` x ``{draw}``."""
    return [f"{TUNING_DIR}/{{arm}}/draw{{draw}}/fold{fold}/{name}" for fold in FOLDS]


def selection_job(wildcards):
    """Everything tune_select needs to know about one arm's search (plain values)."""
    at = TUNING.arms[wildcards.arm]
    return {
        "arm": wildcards.arm,
        "space": at.space,
        "pinned": at.pinned,
        "draws": at.draws,
        "sampler_seed": at.sampler_seed,
        "train_seeds": [TUNING.draw_seed(d) for d in range(TUNING.draws)],
        "metric": TUNING.metric,
        "valence_weight": resolve_arm(config, wildcards.arm)[
            "valence_weight_in_selection"
        ],
        "budget": TUNING.budget(wildcards.arm),
        "final_seeds": list(TUNING.final_seeds),
        "folds": len(FOLDS),
    }

"""A training job (train_fold, train_pack, train_pack_tuned, train_pack_seed, tune_fold,
tune_pack): train the (seed, fold) members of params.members with params.arm in one
process and write each member's predictions, metrics, history and, where the rule names
one, model. A tuned arm's final runs put the values of chosen.yaml on top of the arm."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import train_and_save_folds  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402


def files(name):
    """Output ``name`` as a list (a one-fold rule names a single file); None when absent."""
    value = snakemake.output.get(name)
    return None if value is None else [value] if isinstance(value, str) else list(value)


arm = with_chosen(snakemake.params.arm, snakemake.input.get("chosen"))
members = [(int(seed), int(fold)) for seed, fold in snakemake.params.members]
if snakemake.wildcards.get("draw") is not None:
    print(f"draw {snakemake.wildcards.draw} of {arm['arm']}, training seed {members[0][0]}", file=sys.stderr)
train_and_save_folds(
    snakemake.input.store,
    snakemake.input.folds,
    members,
    arm,
    models=files("model"),  # tuning draws keep no weights: nothing reads them
    predictions=files("predictions"),
    metrics=files("metrics"),
    histories=files("history"),
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)

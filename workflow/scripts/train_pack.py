"""Train several seed x fold members of one arm in one process (training.pack) and
write each member's model, predictions, metrics and history, as train_fold does."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import train_and_save_folds  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

out = snakemake.output
train_and_save_folds(
    snakemake.input.store,
    snakemake.input.folds,
    [(int(seed), int(fold)) for seed, fold in snakemake.params.members],
    # a tuned arm's final runs: the chosen values of its random search (input chosen.yaml)
    with_chosen(snakemake.params.arm, snakemake.input.get("chosen")),
    models=out.model,
    predictions=out.predictions,
    metrics=out.metrics,
    histories=out.history,
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)

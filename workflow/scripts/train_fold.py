"""Train one arm x seed x fold and write model, predictions, metrics and history."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import train_and_save_folds  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

out = snakemake.output
train_and_save_folds(
    snakemake.input.store,
    snakemake.input.folds,
    [(int(snakemake.wildcards.seed), int(snakemake.wildcards.fold))],
    # a tuned arm's final run: the chosen values of its random search (input chosen.yaml)
    with_chosen(snakemake.params.arm, snakemake.input.get("chosen")),
    models=[out.model],
    predictions=[out.predictions],
    metrics=[out.metrics],
    histories=[out.history],
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)

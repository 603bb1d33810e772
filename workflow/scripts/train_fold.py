"""Train one arm x seed x fold and write model, predictions, metrics and history."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import save_fold, train_fold_from_files  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

# a tuned arm's final run: the chosen values of its random search (input chosen.yaml)
arm = with_chosen(snakemake.params.arm, snakemake.input.get("chosen"))
seed, fold = int(snakemake.wildcards.seed), int(snakemake.wildcards.fold)
result, store = train_fold_from_files(
    snakemake.input.store,
    snakemake.input.folds,
    fold,
    arm,
    seed,
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)
out = snakemake.output
save_fold(result, store, arm, seed, fold, model=out.model, predictions=out.predictions,
          metrics=out.metrics, history=out.history)

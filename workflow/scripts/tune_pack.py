"""Train one draw of a tuned arm on every CV fold in one process (tune_pack, training.pack
not none): the arm's own training code, the numbers tune_fold would give.

Writes each fold's predictions, metrics and history; not the weights (nothing reads them).
The selection reads only the validation metrics (prmf.tuning.read_val_metrics).
"""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import train_and_save_folds  # noqa: E402

arm = snakemake.params.arm
members = [(int(seed), int(fold)) for seed, fold in snakemake.params.members]
print(f"draw {snakemake.wildcards.draw} of {arm['arm']}, training seed {members[0][0]}", file=sys.stderr)
out = snakemake.output
train_and_save_folds(
    snakemake.input.store,
    snakemake.input.folds,
    members,
    arm,
    predictions=out.predictions,
    metrics=out.metrics,
    histories=out.history,
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)

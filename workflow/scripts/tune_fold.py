"""Train one draw of a tuned arm on one CV fold (tune_fold): the arm's own training code.

Writes predictions (every split, as any fold), metrics and history; not the weights
(nothing reads them, and an arm's draws x folds of them would be large). The
selection reads only the validation metrics (prmf.tuning.read_val_metrics).
"""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import train_and_save_folds  # noqa: E402

arm, seed = snakemake.params.arm, int(snakemake.params.seed)
print(f"draw {snakemake.wildcards.draw} of {arm['arm']}, training seed {seed}", file=sys.stderr)
out = snakemake.output
train_and_save_folds(
    snakemake.input.store,
    snakemake.input.folds,
    [(seed, int(snakemake.wildcards.fold))],
    arm,
    predictions=[out.predictions],
    metrics=[out.metrics],
    histories=[out.history],
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)

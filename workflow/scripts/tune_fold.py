"""Train one draw of a tuned arm on one CV fold (tune_fold): the arm's own training code.

Writes predictions (every split, as any fold), metrics and history; not the weights
(nothing reads them, and an arm's draws x folds of them would be large). The
selection reads only the validation metrics (prmf.tuning.read_val_metrics).
"""
import sys
import tempfile
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import save_fold, train_fold_from_files  # noqa: E402

arm, seed, fold = snakemake.params.arm, int(snakemake.params.seed), int(snakemake.wildcards.fold)
print(f"draw {snakemake.wildcards.draw} of {arm['arm']}, training seed {seed}", file=sys.stderr)
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
with tempfile.TemporaryDirectory() as tmp:
    save_fold(result, store, arm, seed, fold, model=Path(tmp) / "model.pt",
              predictions=out.predictions, metrics=out.metrics, history=out.history)

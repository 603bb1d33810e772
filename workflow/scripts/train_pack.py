"""Train several seed x fold members of one arm in one process (training.pack) and
write each member's model, predictions, metrics and history, as train_fold does."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.train import save_fold, train_pack_from_files  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

# a tuned arm's final runs: the chosen values of its random search (input chosen.yaml)
arm = with_chosen(snakemake.params.arm, snakemake.input.get("chosen"))
members = [(int(seed), int(fold)) for seed, fold in snakemake.params.members]
results, store = train_pack_from_files(
    snakemake.input.store,
    snakemake.input.folds,
    members,
    arm,
    device=snakemake.params.device,
    cuda_graphs=snakemake.params.cuda_graphs,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)
out = snakemake.output
for i, ((seed, fold), result) in enumerate(zip(members, results)):
    save_fold(result, store, arm, seed, fold, model=out.model[i], predictions=out.predictions[i],
              metrics=out.metrics[i], history=out.history[i])

"""Robustness conditions (subsets, missing rate, noise) of one arm x seed from its fold models."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prmf.data.folds import read_folds  # noqa: E402
from prmf.data.store import read_store  # noqa: E402
from prmf.robustness import evaluate_robustness, write_robustness  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

df = evaluate_robustness(
    read_store(snakemake.input.store),
    read_folds(snakemake.input.folds),
    list(snakemake.input.models),
    with_chosen(snakemake.params.arm, snakemake.input.get("chosen")),  # a tuned arm: its chosen values
    int(snakemake.wildcards.seed),
    snakemake.params.protocol,
    device=snakemake.params.device,
    threads=snakemake.threads,
    progress=lambda line: print(line, file=sys.stderr),
)
write_robustness(df, snakemake.output.tsv)

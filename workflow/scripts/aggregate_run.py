"""Aggregate the folds of one arm x seed: summary.json, split NPZs, MERBench-named exports."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from prmf.aggregate import aggregate_run  # noqa: E402
from prmf.tuning import with_chosen  # noqa: E402

summary = aggregate_run(
    snakemake.input.predictions,
    snakemake.input.metrics,
    with_chosen(snakemake.params.arm, snakemake.input.get("chosen")),  # a tuned arm: its chosen values
    int(snakemake.wildcards.seed),
    snakemake.params.dataset,
    snakemake.params.features,
    snakemake.output.summary,
    Path(snakemake.output.summary).parent,
    snakemake.output.exports,
)
print(summary["metrics"], file=sys.stderr)

"""Aggregate the folds of one arm x seed: summary.json, split NPZs, MERBench-named exports."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from prmf.aggregate import aggregate_run  # noqa: E402

summary = aggregate_run(
    snakemake.input.predictions,
    snakemake.input.metrics,
    snakemake.params.arm,
    int(snakemake.wildcards.seed),
    snakemake.params.dataset,
    snakemake.params.features,
    snakemake.output.summary,
    Path(snakemake.output.summary).parent,
    snakemake.output.exports,
)
print(summary["metrics"], file=sys.stderr)

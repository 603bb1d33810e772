"""Accuracy / weighted F1 vs random missing rate per arm (± std over seeds)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.plots import plot_missing_rate  # noqa: E402
from prmf.robustness import read_robustness  # noqa: E402

p = snakemake.params
plot_missing_rate(read_robustness(snakemake.input.tsvs), p.display_names, p.rates, p.n_modalities,
                  [snakemake.output.png, snakemake.output.svg], splits=p.splits)

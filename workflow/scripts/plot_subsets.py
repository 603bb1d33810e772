"""Heat map arms x present-modality subsets (accuracy)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.plots import plot_subsets_heatmap  # noqa: E402
from prmf.robustness import read_robustness  # noqa: E402

p = snakemake.params
plot_subsets_heatmap(read_robustness(snakemake.input.tsvs), p.display_names, p.modalities, p.split,
                     [snakemake.output.png, snakemake.output.svg], metric="acc")

"""Fusion weight and uncertainty of the noised modality vs its SNR."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.plots import plot_fusion_weights  # noqa: E402
from prmf.robustness import read_robustness  # noqa: E402

p = snakemake.params
plot_fusion_weights(read_robustness(snakemake.input.tsvs), p.display_names, p.modalities, p.snr_db, p.split,
                    [snakemake.output.png, snakemake.output.svg])

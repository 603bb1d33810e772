"""Per-epoch training loss and validation F1 of one arm (all seeds x folds)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.plots import plot_training_curves  # noqa: E402

plot_training_curves(snakemake.input.histories, snakemake.params.display_name,
                     [snakemake.output.png, snakemake.output.svg])

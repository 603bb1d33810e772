"""Figure: every draw's CV score, sorted, one line per tuned arm."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from prmf.plots import plot_tuning_draws  # noqa: E402

tables = {arm: pd.read_csv(path, sep="\t") for arm, path in zip(snakemake.params.arms, snakemake.input.draws)}
plot_tuning_draws(tables, snakemake.params.display_names, snakemake.params.metric, list(snakemake.output))

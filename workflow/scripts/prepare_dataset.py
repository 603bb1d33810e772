"""Build results/data/{dataset}/features.h5 from the configured source."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.data.prepare import prepare_dataset  # noqa: E402

prepare_dataset(snakemake.params.dataset, snakemake.output.store, workers=snakemake.params.workers)

"""Seeded, stratified CV folds of the train split."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.data.folds import make_folds, write_folds  # noqa: E402
from prmf.data.store import read_store  # noqa: E402

folds = make_folds(
    read_store(snakemake.input.store), snakemake.params.n_folds, snakemake.params.split_seed
)
write_folds(snakemake.output.folds, folds)

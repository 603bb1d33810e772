"""Best result per (model, split) over the MERBench-named result folders -> Markdown + TSV."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import logging  # noqa: E402

from prmf.results import extract_best  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
md, tsv = Path(snakemake.output.md), Path(snakemake.output.tsv)
if md.with_suffix(".tsv") != tsv:
    raise ValueError(f"output tsv must sit beside the Markdown file: {tsv} != {md.with_suffix('.tsv')}")
status = extract_best(snakemake.params.result_dirs, md, fmt=None, display_names=snakemake.params.display_names)
sys.exit(status)

"""Best result per (model, split) over the MERBench-named result folders -> Markdown + TSV."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import logging  # noqa: E402

from prmf.merbench_results import extract_best, format_skipped  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
md, tsv = Path(snakemake.output.md), Path(snakemake.output.tsv)
if md.with_suffix(".tsv") != tsv:
    raise ValueError(f"output tsv must sit beside the Markdown file: {tsv} != {md.with_suffix('.tsv')}")
report, _ = extract_best(snakemake.params.result_dirs, md, display_names=snakemake.params.display_names)
print(format_skipped(report), end="", file=sys.stderr)

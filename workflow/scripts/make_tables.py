"""One paper table (params.table: comparison, prmf_best, sources or ablation) -> Markdown."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import json  # noqa: E402
import logging  # noqa: E402

from prmf import tables  # noqa: E402
from prmf.atomic import write_text  # noqa: E402
from prmf.merbench_results import scan_result_dirs, select_best  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def load_summaries():
    return [json.loads(Path(path).read_text()) for path in snakemake.input.get("summaries", [])]


def comparison():
    best = select_best(scan_result_dirs(snakemake.params.result_dirs).records)
    return tables.comparison_table(load_summaries(), best, snakemake.params.arms, snakemake.params.display_names,
                                   tuning=snakemake.params.get("tuning"))


def prmf_best():
    return tables.prmf_best_table(load_summaries(), arm=snakemake.params.arm)


def sources():
    return tables.sources_table(scan_result_dirs(snakemake.params.result_dirs))


def ablation():
    return tables.ablation_table(
        load_summaries(), snakemake.params.arms, snakemake.params.ablation_arms, snakemake.params.reference,
        tuning=snakemake.params.get("tuning"),
    )


BUILDERS = {"comparison": comparison, "prmf_best": prmf_best, "sources": sources, "ablation": ablation}
text = BUILDERS[snakemake.params.table]()
write_text(snakemake.output.md, text)
print(f"wrote {snakemake.output.md}", file=sys.stderr)

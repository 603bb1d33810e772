"""results/tables/robustness.md: arms x conditions, mean ± std over seeds."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.atomic import write_text  # noqa: E402
from prmf.robustness import read_robustness  # noqa: E402
from prmf.tables import robustness_markdown  # noqa: E402

md = robustness_markdown(
    read_robustness(snakemake.input.tsvs),
    snakemake.params.display_names,
    snakemake.params.modalities,
    snakemake.params.protocol,
    dataset=snakemake.params.dataset,
)
write_text(snakemake.output.md, md)

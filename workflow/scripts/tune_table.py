"""results/tables/tuning.md: every tuned arm's budget, chosen values, best vs median draw."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.atomic import write_text  # noqa: E402
from prmf.tables import tuning_table  # noqa: E402
from prmf.tuning import read_chosen  # noqa: E402

records = [read_chosen(path) for path in snakemake.input.chosen]
text = tuning_table(records, snakemake.params.display_names, snakemake.params.dataset)
write_text(snakemake.output.md, text)
print(f"wrote {snakemake.output.md}", file=sys.stderr)

"""Choose one tuned arm's configuration from its draws' CV (validation) metrics (tune_select)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.tuning import format_values, run_selection  # noqa: E402

out = snakemake.output
record = run_selection(
    snakemake.params.job,
    list(snakemake.input.metrics),
    draws_tsv=out.draws,
    chosen_yaml=out.chosen,
    study=out.study,
)
print(
    f"{record['arm']}: draw {record['draw']} of {record['budget']['draws']} chosen, "
    f"CV {record['metric']} {record['cv']['mean']:.4f} (median draw {record['median_draw_cv']:.4f}): "
    f"{format_values(record['values'])}",
    file=sys.stderr,
)

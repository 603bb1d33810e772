"""Validate the feature store; fails the job (and so the study) on fatal findings."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from prmf.data.validation import validate_file  # noqa: E402

report = validate_file(
    snakemake.input.store,
    snakemake.output.json,
    snakemake.output.md,
    expected_dims=snakemake.params.expected_dims,
)
print(f"validation passed with {len(report.warnings)} warning(s)", file=sys.stderr)

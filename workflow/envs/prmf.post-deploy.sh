#!/usr/bin/env bash
# Runs once inside the freshly created conda environment (snakemake --sdm conda).
# The jobs import prmf from the workflow's own source: workflow/rules/common.smk
# exports its location as PRMF_SOURCE (a checkout, or the repository of a module
# deployed with snakedeploy, exported at its commit under .snakemake/prmf-source/),
# and this hook puts that folder first on the environment's sys.path. Nothing is
# copied into the environment, so it never keeps an old prmf when the deployment
# moves to another release of the workflow (the environment itself is rebuilt when
# prmf.yaml changes).
set -euo pipefail
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import os, sys; p = os.environ.get("PRMF_SOURCE"); p and p not in sys.path and sys.path.insert(0, p)' \
    >"$site/prmf_source.pth"

#!/usr/bin/env bash
# Runs inside the freshly created conda environment, from the project root.
set -euo pipefail
pip install --no-deps -e .

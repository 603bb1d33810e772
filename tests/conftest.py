"""Shared fixtures: the study's arms (from config/config.yaml, never copied) and the tiny e2e study.

* ``study_config`` -- ``config/config.yaml`` loaded and validated (schema defaults filled).
* ``study_arm(name, **overrides)`` -- the resolved arm ``name`` of that config
  (:func:`prmf.config.resolve_arm`) with ``overrides`` on top: a test changes
  only what it needs (``hidden_dim``, ``epochs``...), the rest is the study's.
* ``tiny_study`` -- ``(project, proc)``: the tiny project of
  :func:`e2e_helpers.make_tiny_project` after one full ``snakemake`` run (every
  target), trained once per test session. Tests must not change it; a test that
  edits the project works on :func:`e2e_helpers.copy_project` of it.
  ``robustness_project`` is the same fixture under the name
  ``tests/test_robustness.py`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from prmf.config import PACKAGE_ROOT, load_config, resolve_arm

STUDY_CONFIG = PACKAGE_ROOT / "config" / "config.yaml"


@pytest.fixture(scope="session")
def study_config() -> dict:
    return load_config(STUDY_CONFIG)


@pytest.fixture(scope="session")
def study_arm(study_config) -> Callable[..., dict]:
    def make(name: str, **overrides) -> dict:
        return {**resolve_arm(study_config, name), **overrides}

    return make


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> tuple[Path, CompletedProcess]:
    from e2e_helpers import make_tiny_project, run_snakemake

    project = make_tiny_project(tmp_path_factory.mktemp("tiny_study"))
    return project, run_snakemake(project)


@pytest.fixture(scope="session")
def robustness_project(tiny_study) -> tuple[Path, CompletedProcess]:
    return tiny_study

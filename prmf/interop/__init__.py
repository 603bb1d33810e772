"""Running the study's models inside other toolkits.

* :mod:`prmf.interop.merbench_install` -- ``install`` / ``uninstall`` the
  P-RMF models into a MERBench checkout (``prmf merbench install DIR``), so
  that MERBench's own ``main-release.py --model attention_robust_v2`` trains
  them. Light: importing it needs neither torch nor MERBench.
* :mod:`prmf.interop.merbench_adapter` -- the model classes MERBench
  instantiates (``AttentionRobust``, ``AttentionRobustV2``): MERBench's
  ``args`` and batch dicts in, our models inside. Imported by the thin
  modules that ``install`` writes into MERBench's ``toolkit/models/``.
"""

from __future__ import annotations

from .merbench_install import (
    MERBENCH_MODELS,
    InstallReport,
    MerbenchCheckoutError,
    MerbenchInstallError,
    MerbenchStateError,
    UninstallReport,
    check_merbench_checkout,
    install,
    is_installed,
    uninstall,
)

__all__ = [
    "MERBENCH_MODELS",
    "InstallReport",
    "MerbenchCheckoutError",
    "MerbenchInstallError",
    "MerbenchStateError",
    "UninstallReport",
    "check_merbench_checkout",
    "install",
    "is_installed",
    "uninstall",
]

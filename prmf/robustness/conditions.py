"""Conditions of the robustness protocol: their names, and the draws (masks, noise) that make each one.

A condition is named by a string (the ``condition`` column of the TSV):
``subset:audio+text``, ``missing:0.3``, ``noise:video:-5dB`` and the
summaries ``subset:mean_incomplete``, ``missing:mean``, ``noise:<mod>`` and
``noise:mean``. :func:`plan_draws` maps every predicted condition's name to
its draws, so a result is always looked up by the name of its condition.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np

from prmf.robustness.config import RobustnessConfig
from prmf.robustness.perturb import combine_available, cpm_missing_mask

#: summary conditions: means over the incomplete subsets, over the missing rates, over modalities and SNRs
SUBSET_MEAN_INCOMPLETE = "subset:mean_incomplete"
MISSING_MEAN = "missing:mean"
NOISE_MEAN = "noise:mean"

#: first part of a draw's seed: which kind of draw it is
_MASK_STREAM, _NOISE_STREAM = 1, 2


# ------------------------------------------------------------------ naming
def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Non-empty modality subsets by size, then modality order (complete set last)."""
    mods = list(modalities)
    return [c for k in range(1, len(mods) + 1) for c in combinations(mods, k)]


def subset_condition(subset: Sequence[str]) -> str:
    """``subset:audio+text``: only these modalities present (all of them: the clean condition)."""
    return "subset:" + "+".join(subset)


def missing_condition(rate: float) -> str:
    return f"missing:{rate:.1f}" if round(rate, 1) == rate else f"missing:{rate:g}"


def snr_label(snr: float) -> str:
    return f"{snr:g}dB"


def noise_condition(modality: str, snr: float | None = None) -> str:
    """``noise:<mod>:<snr>dB``, or without ``snr`` the summary ``noise:<mod>`` over SNR levels."""
    return f"noise:{modality}" if snr is None else f"noise:{modality}:{snr_label(snr)}"


def condition_rng(cfg: RobustnessConfig, split: str, *parts: int) -> np.random.Generator:
    """The generator of one (split, condition, draw); independent of the arm."""
    return np.random.default_rng([int(cfg.seed), zlib.crc32(split.encode()), *[int(p) for p in parts]])


# ------------------------------------------------------------------ draws
@dataclass(frozen=True)
class NoiseDraw:
    """Noise on one modality: index in the store's modalities, SNR, its index in ``cfg.snr_db``, draw number."""

    modality: int
    snr_db: float
    level: int
    draw: int


@dataclass(frozen=True)
class Draw:
    """One prediction pass of a condition: the ``present`` mask ``[N, M]`` (store flags AND-ed in) and the noise."""

    present: np.ndarray
    noise: NoiseDraw | None = None


def noise_rng(cfg: RobustnessConfig, split: str, noise: NoiseDraw) -> np.random.Generator:
    """The generator of a noise draw (same for every arm)."""
    return condition_rng(cfg, split, _NOISE_STREAM, noise.modality, noise.level, noise.draw)


def plan_draws(modalities: Sequence[str], available: np.ndarray, cfg: RobustnessConfig,
               split: str) -> dict[str, list[Draw]]:
    """Every predicted condition of a split, name -> its draws, in evaluation order.

    Subsets (one draw each), then missing rates (``cfg.mask_seeds`` masks
    each), then noise per modality and SNR (``cfg.noise_seeds`` draws each).
    ``available`` ``[N, M]`` is the store's present flags of the split.

    Raises:
        ValueError: when two settings give the same condition name (e.g. a
            repeated missing rate), which would mix their results.
    """
    n, m = available.shape
    plan: dict[str, list[Draw]] = {}

    def add(name: str, draws: list[Draw]) -> None:
        if name in plan:
            raise ValueError(f"robustness: condition {name!r} appears twice; remove the repeated setting")
        plan[name] = draws

    for subset in subsets(modalities):
        mask = np.broadcast_to(np.array([x in subset for x in modalities]), (n, m))
        add(subset_condition(subset), [Draw(combine_available(mask, available))])
    for rate in cfg.missing_rates:
        draws = []
        for rep in range(cfg.mask_seeds):
            rng = condition_rng(cfg, split, _MASK_STREAM, int(round(rate * 1000)), rep)
            draws.append(Draw(combine_available(cpm_missing_mask(n, m, rate, rng), available, rng)))
        add(missing_condition(rate), draws)
    full = combine_available(np.ones((n, m), bool), available)
    for j, mod in enumerate(modalities):
        for level, snr in enumerate(cfg.snr_db):
            draws = [Draw(full, NoiseDraw(j, snr, level, rep)) for rep in range(cfg.noise_seeds)]
            add(noise_condition(mod, snr), draws)
    return plan

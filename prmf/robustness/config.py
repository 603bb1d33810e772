"""Settings of the robustness protocol: the optional ``robustness:`` block of the study config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

#: how the RMS of the noise's signal is taken: per sample, or over the split's samples of a modality
NOISE_SCOPES = ("sample", "modality")


@dataclass(frozen=True)
class RobustnessConfig:
    """Protocol settings (the optional ``robustness:`` block of the study config).

    Attributes:
        splits: sets to evaluate: test splits of the store (fold ensemble) and/or
            ``cv`` (each fold model on its own validation part).
        missing_rates: rates of dropped (sample, modality) entries.
        mask_seeds: random masks per missing rate.
        snr_db: signal-to-noise ratios (dB) of the feature-noise conditions.
        noise_seeds: noise draws per (modality, SNR).
        noise_scope: ``sample`` (RMS of each sample's features) or ``modality``
            (one RMS over the split's samples of that modality).
        ece_bins: equal-width confidence bins of the ECE.
        seed: base seed of all masks and noise.
        batch_size: inference batch size.
    """

    splits: tuple[str, ...] = ("test1", "cv")
    missing_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    mask_seeds: int = 3
    snr_db: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0, -5.0)
    noise_seeds: int = 2
    noise_scope: str = "sample"
    ece_bins: int = 15
    seed: int = 0
    batch_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("splits", "missing_rates", "snr_db"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "missing_rates", tuple(float(r) for r in self.missing_rates))
        object.__setattr__(self, "snr_db", tuple(float(s) for s in self.snr_db))
        if any(not 0.0 <= r < 1.0 for r in self.missing_rates):
            raise ValueError(f"robustness.missing_rates must lie in [0, 1), got {self.missing_rates}")
        if self.mask_seeds < 1 or self.noise_seeds < 1:
            raise ValueError("robustness.mask_seeds and robustness.noise_seeds must be >= 1")
        if self.noise_scope not in NOISE_SCOPES:
            raise ValueError(f"robustness.noise_scope must be one of {NOISE_SCOPES}, got {self.noise_scope!r}")
        if self.ece_bins < 1:
            raise ValueError("robustness.ece_bins must be >= 1")
        if not self.splits:
            raise ValueError("robustness.splits must name at least one split")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "RobustnessConfig":
        """From a config block; unknown keys are errors."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"robustness: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def coerce(cls, cfg: "RobustnessConfig | Mapping[str, Any] | None") -> "RobustnessConfig":
        """``cfg`` itself, or :meth:`from_dict` of a config block (``None``: the defaults)."""
        return cfg if isinstance(cfg, cls) else cls.from_dict(cfg)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

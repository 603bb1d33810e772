"""A synthetic, MER2023-shaped data set: the pipeline's embedded default.

**Synthetic — its numbers are not MER2023's.** It exists so the whole study
runs on any machine in minutes and so that uncertainty-aware fusion has
something real to learn.

Generative story, per sample ``i`` of class ``c``:

1. a latent emotion vector ``z_i = proto_c + 0.55 * e_i``  ``[K]`` (``e`` standard normal);
2. valence ``v_i = clip(mean_valence_c + 0.6 * (z_i @ a) + 0.5 * n_i, -5, 5)``;
3. each modality ``m`` sees ``z`` through its own view mask ``s_m`` ``[K]``
   (a modality sees some latent dimensions strongly, the rest faintly, so no
   single modality is enough) and its own two-layer nonlinear projection::

       x_m = tanh((z * s_m) @ A_m) @ B_m + sigma_m * q_im * eps      [D_m]

   with a per-modality noise level ``sigma_m`` (modalities differ in
   informativeness) and a per-sample quality factor ``q_im``: with
   probability ``bad_quality_prob`` one randomly chosen modality of the sample
   gets ``q = bad_quality_factor`` (very noisy), all others ``q = 1``.
4. the flaws of real MERBench folders: each modality is multiplied by its own
   scale (``scales``; on MER2023 hubert features are around 0.1 while LLM
   hidden states reach the hundreds), ``outlier_dims[m]`` fixed dimensions of
   a modality are multiplied by ``outlier_factor`` (the massive activations of
   LLM hidden states), and a fraction ``zero_row_prob[m]`` of samples get an
   all-zero row in modality ``m`` (MERBench's "no face detected" / "empty
   transcript" vector), only where another modality of the sample is present;
5. splits: ``train`` (cross-validation), ``test1`` (clean), ``test2``
   (MER-NOISE-like: audio and video noise multiplied by ``test2_noise_factor``
   and a fraction ``test2_missing_prob`` of samples with one modality missing,
   stored as an all-zero vector), ``test3`` (no valence labels: NaN).

As in a MERBench folder, absent entries are *only* zeros: the generator's
``missing`` mask is all False, and the store builder flags the zero rows
(:func:`prmf.data.zero_rows.flag_zero_rows`), exactly as for real features.

Sizes are MER2023's (3373 / 411 / 412 / 834) times ``scale``; class
proportions are MER2023's train proportions (871 / 822 / 689 / 383 / 462 / 146).
Everything is drawn from one ``numpy.random.Generator`` seeded with ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prmf.data.store import EMOTIONS, MODALITIES, FeatureStore

MER2023_SPLIT_SIZES: dict[str, int] = {"train": 3373, "test1": 411, "test2": 412, "test3": 834}
MER2023_TRAIN_CLASS_COUNTS: tuple[int, ...] = (871, 822, 689, 383, 462, 146)
#: mean valence per emotion, in EMOTIONS order (valence scale [-5, 5])
CLASS_VALENCE: tuple[float, ...] = (0.0, -2.8, 3.0, -3.2, -1.6, 1.4)


@dataclass
class SyntheticConfig:
    """Parameters of the generator (the ``dataset.synthetic`` config block)."""

    seed: int = 0
    scale: float = 0.3
    dims: dict[str, int] = field(default_factory=lambda: {"audio": 64, "text": 96, "video": 48})
    latent_dim: int = 16
    class_separation: float = 1.0
    noise: dict[str, float] = field(default_factory=lambda: {"audio": 1.4, "text": 1.8, "video": 1.8})
    view_strength: float = 0.15
    bad_quality_prob: float = 0.3
    bad_quality_factor: float = 4.0
    test2_noise_factor: float = 2.0
    test2_missing_prob: float = 0.2
    scales: dict[str, float] = field(default_factory=lambda: {"audio": 1.0, "text": 1.0, "video": 1.0})
    outlier_dims: dict[str, int] = field(default_factory=dict)
    outlier_factor: float = 20.0
    zero_row_prob: dict[str, float] = field(default_factory=dict)
    feature_names: dict[str, str] = field(
        default_factory=lambda: {m: f"synthetic-{m}-UTT" for m in MODALITIES}
    )

    @classmethod
    def from_dict(cls, d: dict | None) -> "SyntheticConfig":
        """Build from a config mapping; unknown keys raise ``ValueError``."""
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"dataset.synthetic: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def split_sizes(scale: float) -> dict[str, int]:
    """MER2023 split sizes times ``scale`` (at least 12 samples each)."""
    return {s: max(12, int(round(n * scale))) for s, n in MER2023_SPLIT_SIZES.items()}


def class_counts(n: int) -> np.ndarray:
    """``[6]`` counts summing to ``n`` in MER2023's train proportions (largest remainder)."""
    p = np.asarray(MER2023_TRAIN_CLASS_COUNTS, dtype=float)
    exact = p / p.sum() * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts


def generate(cfg: SyntheticConfig, dataset: str = "synthetic") -> FeatureStore:
    """Draw the whole data set; deterministic for a given ``cfg``."""
    rng = np.random.default_rng(cfg.seed)
    k, n_cls = cfg.latent_dim, len(EMOTIONS)
    mods = list(cfg.dims)
    # class prototypes: well separated directions in latent space
    protos = rng.standard_normal((n_cls, k)) * cfg.class_separation
    val_dir = rng.standard_normal(k) / np.sqrt(k)
    # each modality sees a different subset of latent dimensions strongly
    views, proj_a, proj_b = {}, {}, {}
    for j, m in enumerate(mods):
        strong = (np.arange(k) % len(mods)) != (j % len(mods))  # 2/3 of dims
        views[m] = np.where(strong, 1.0, cfg.view_strength)
        hid = max(16, cfg.dims[m] // 2)
        proj_a[m] = rng.standard_normal((k, hid)) * (1.5 / np.sqrt(k))
        proj_b[m] = rng.standard_normal((hid, cfg.dims[m])) / np.sqrt(hid)
    # per-modality scale, with a few fixed outlier dimensions (LLM-like massive activations)
    col_scale = {}
    for m in mods:
        col = np.full(cfg.dims[m], float(cfg.scales.get(m, 1.0)))
        n_out = min(int(cfg.outlier_dims.get(m, 0)), cfg.dims[m])
        if n_out:
            col[rng.choice(cfg.dims[m], size=n_out, replace=False)] *= cfg.outlier_factor
        col_scale[m] = col

    sizes = split_sizes(cfg.scale)
    parts: dict[str, list] = {key: [] for key in ("names", "labels", "valence", "split")}
    feats: dict[str, list] = {m: [] for m in mods}
    missing: dict[str, list] = {m: [] for m in mods}
    for split, n in sizes.items():
        labels = np.repeat(np.arange(n_cls), class_counts(n))
        labels = labels[rng.permutation(n)]
        z = protos[labels] + 0.55 * rng.standard_normal((n, k))
        valence = np.asarray(CLASS_VALENCE)[labels] + 0.6 * (z @ val_dir) + 0.5 * rng.standard_normal(n)
        valence = np.clip(valence, -5.0, 5.0).astype(np.float32)
        if split == "test3":
            valence[:] = np.nan
        quality = np.ones((n, len(mods)))
        bad = rng.random(n) < cfg.bad_quality_prob
        quality[bad, rng.integers(0, len(mods), size=n)[bad]] = cfg.bad_quality_factor
        absent = np.zeros((n, len(mods)), dtype=bool)
        if split == "test2":
            for j, m in enumerate(mods):
                if m in ("audio", "video"):
                    quality[:, j] *= cfg.test2_noise_factor
            drop = rng.random(n) < cfg.test2_missing_prob
            absent[drop, rng.integers(0, len(mods), size=n)[drop]] = True
        for j, m in enumerate(mods):  # extractor zero rows, never the last present modality
            p = float(cfg.zero_row_prob.get(m, 0.0))
            if p > 0:
                hit = rng.random(n) < p
                others_present = (~absent).sum(axis=1) - (~absent[:, j]) >= 1
                absent[hit & others_present, j] = True
        for j, m in enumerate(mods):
            clean = np.tanh((z * views[m]) @ proj_a[m]) @ proj_b[m]
            x = clean + cfg.noise[m] * quality[:, [j]] * rng.standard_normal(clean.shape)
            x = x * col_scale[m]
            x[absent[:, j]] = 0.0
            feats[m].append(x.astype(np.float32))
            missing[m].append(np.zeros(n, dtype=bool))  # zeros only, as MERBench writes them
        parts["names"].append(np.array([f"{split}_{i:05d}" for i in range(n)]))
        parts["labels"].append(labels.astype(np.int64))
        parts["valence"].append(valence)
        parts["split"].append(np.array([split] * n))

    return FeatureStore(
        names=np.concatenate(parts["names"]),
        labels=np.concatenate(parts["labels"]),
        valence=np.concatenate(parts["valence"]),
        split=np.concatenate(parts["split"]),
        features={m: np.concatenate(feats[m]) for m in mods},
        missing={m: np.concatenate(missing[m]) for m in mods},
        class_names=list(EMOTIONS),
        feature_names={m: cfg.feature_names.get(m, f"synthetic-{m}-UTT") for m in mods},
        source="synthetic",
        dataset=dataset,
    )

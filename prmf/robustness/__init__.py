"""Robustness evaluation of trained fold models: missing and degraded modalities.

Modules, one job each:

- :mod:`~prmf.robustness.config`: :class:`RobustnessConfig`, the protocol settings
- :mod:`~prmf.robustness.perturb`: CPM-Net missing masks and feature noise
- :mod:`~prmf.robustness.conditions`: condition names and the draws of each condition
- :mod:`~prmf.robustness.inference`: fold models, split populations, stacked prediction of the draws
- :mod:`~prmf.robustness.evaluate`: metrics of every condition, :func:`evaluate_robustness`
- :mod:`~prmf.robustness.io`: the long TSV

The metrics (ECE, AUROC, Spearman) live in :mod:`prmf.metrics`, the Markdown
table (:func:`prmf.tables.robustness_markdown`) beside the other tables, the
figures in :mod:`prmf.plots`.

Nothing is retrained: every condition is an inference pass of the fold models
that ``train_fold`` saved (``model.pt``), built once each.

Protocol (defaults in :class:`RobustnessConfig`)
------------------------------------------------
Splits. A test split (``test1`` by default) is predicted by the *fold
ensemble*: the mean of the fold models' logits (valence, fusion weights and
uncertainties averaged too), as :mod:`prmf.aggregate` does. ``cv`` predicts
each fold's own validation part with that fold's model and pools the
out-of-fold predictions (metrics over the pooled set).

Masking. An absent modality is masked exactly as modality dropout masks it:
its ``present`` entry is False and its input is zeroed
(:func:`prmf.train.predict` with an overriding ``present``). A condition's mask
is AND-ed with the store's own missing flags (e.g. MER2023's test2), so an
entry absent in the data stays absent.

1. Modality subsets (``subset:<mods>``): each of the ``2**M - 1`` non-empty
   subsets present (order: by size, then modality order; ``subset:audio+text+video``
   is the clean, complete condition). ``subset:mean_incomplete`` is the mean
   of a metric over the ``2**M - 2`` incomplete subsets.
2. Random missing rate (``missing:<rate>``, CPM-Net / GCNet convention): a
   fraction ``rate`` of the (sample, modality) entries is dropped at random,
   at least one modality kept per sample (:func:`~prmf.robustness.perturb.cpm_missing_mask`), for
   ``mask_seeds`` fixed masks per rate; values are means over the masks.
   With ``M`` modalities at most ``(M - 1) / M`` of the entries can be dropped
   (2/3 for M = 3), so a larger rate (0.7) is capped there (every sample
   keeps exactly one modality); ``missing_fraction`` reports the rate
   achieved. ``missing:mean`` is the mean over all rates (0.0 included).
3. Feature noise (``noise:<mod>:<snr>dB``): white Gaussian noise added to one
   modality's features at a signal-to-noise ratio ``snr`` (dB):
   ``std = rms / 10**(snr / 20)`` with ``rms`` the root mean square of the
   features of *each sample* (``noise_scope: sample``; ``modality`` uses one
   RMS over all samples of the split); padding frames of frame-level features
   stay zero. ``noise_seeds`` fixed noise draws per level, values are means
   over draws. ``noise:<mod>`` averages a metric over SNR levels,
   ``noise:mean`` over modalities and levels.
4. Diagnostics. ``ece`` (expected calibration error of the emotion
   probabilities, :func:`prmf.metrics.expected_calibration_error`) on the clean condition,
   for every arm. For arms whose model reports uncertainties (VAE encoders):
   ``weight:<mod>`` / ``uncertainty:<mod>`` = mean fusion weight / uncertainty
   of a modality over the samples where it is present, in every condition
   (``weight:<mod>`` also for the deterministic arms, whose weights are
   MERBench's raw attention weights or a uniform mean);
   ``spearman_uncertainty`` under ``noise:<mod>``: Spearman rank correlation
   between the noise level (clean < 20 dB < ... < -5 dB) and the mean
   uncertainty of the noised modality; ``auroc_uncertainty`` under
   ``noise:<mod>:<snr>dB``: AUROC of the noised modality's uncertainty for
   telling the noisy copy (positive) from the clean copy (negative) of the
   same samples (mean over draws; ``noise:<mod>`` has the mean over levels).

Every mask and noise draw comes from a seed made of ``seed``, the split, the
condition and the draw index only, so every arm sees the same masks and noise.

Output: a long TSV, columns ``arm, seed, split, condition, metric, value``;
metrics ``acc``, ``f1`` (weighted), ``val_mse`` (where valence is known), ``n``
and those above.
"""

from prmf.robustness.config import RobustnessConfig
from prmf.robustness.evaluate import evaluate_robustness
from prmf.robustness.io import read_robustness, write_robustness

__all__ = ["RobustnessConfig", "evaluate_robustness", "read_robustness", "write_robustness"]

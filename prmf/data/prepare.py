"""Build the feature store from the configured source (synthetic generator or MERBench folder)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from prmf.data.store import FeatureStore, write_store
from prmf.data.zero_rows import flag_zero_rows

log = logging.getLogger(__name__)


def build_store(dataset: Mapping[str, Any], workers: int = 4) -> FeatureStore:
    """The store described by the ``dataset`` config block (validated)."""
    source = dataset["source"]
    if source == "synthetic":
        from prmf.data.synthetic import SyntheticConfig, generate

        block = dict(dataset.get("synthetic") or {})
        feats = {m: n for m, n in (dataset.get("features") or {}).items()}
        if feats:
            block.setdefault("feature_names", feats)
        store = generate(SyntheticConfig.from_dict(block), dataset=dataset["name"])
        flagged = flag_zero_rows(store, dataset.get("zero_rows", "missing"))
        log.info("all-zero rows flagged absent per modality: %s", flagged)
    elif source == "merbench":
        from prmf.data.merbench import import_merbench

        mods = list(dataset.get("modalities") or ("audio", "text", "video"))
        store = import_merbench(
            dataset["root"],
            {m: dataset["features"][m] for m in mods},
            dataset=dataset["name"],
            frame_level={m: m in (dataset.get("frame_level") or []) for m in mods},
            max_frames=dataset.get("max_frames"),
            workers=workers,
            progress=True,
            zero_rows=dataset.get("zero_rows", "missing"),
        )
    else:
        raise ValueError(f"dataset.source: unknown source {source!r}; use 'synthetic' or 'merbench'")
    keep = list(dataset.get("modalities") or store.modalities)
    if keep != store.modalities:
        store.features = {m: store.features[m] for m in keep}
        store.missing = {m: store.missing[m] for m in keep}
        store.lengths = {m: v for m, v in store.lengths.items() if m in keep}
        store.feature_names = {m: store.feature_names[m] for m in keep}
    return store


def prepare_dataset(dataset: Mapping[str, Any], output: str | Path, workers: int = 4) -> str:
    """Build and atomically write the store; returns its content hash."""
    store = build_store(dataset, workers)
    digest = write_store(output, store)
    log.info("wrote %s (%d samples, dims %s)", output, len(store), store.dims())
    return digest

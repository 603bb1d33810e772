"""Study configuration: loading, schema validation, cross-checks, arm resolution.

The schema (``workflow/schemas/config.schema.yaml``) checks keys and types and
fills defaults; :func:`check_config` adds the checks a schema cannot express
(arm names that exist, heads that divide the hidden size, a root for MERBench
data). :func:`resolve_arm` gives one arm's complete parameter set: the
``training`` block overlaid with the arm's own keys. A training job receives
exactly this dict, so editing one arm reruns that arm only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = PACKAGE_ROOT / "workflow" / "schemas" / "config.schema.yaml"

#: export names of the seed study, so its display mapping applies
DEFAULT_EXPORT_NAMES = {"baseline": "attention", "robust_v1": "attention_robust", "exp4": "attention_robust_v2"}
#: keys of ``training`` that are job plumbing, not hyper-parameters of an arm
RUNTIME_KEYS = ("threads", "device", "cuda_graphs")


class ConfigError(ValueError):
    """A configuration problem; the message names the key and the fix."""


def validate_config(config: dict, schema: str | Path = SCHEMA) -> dict:
    """Validate ``config`` against the schema in place (filling defaults) and cross-check it."""
    from snakemake.utils import validate  # heavy import, only when needed

    validate(config, str(schema), set_default=True)
    check_config(config)
    return config


def load_config(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return validate_config(config)


def run_arms(config: dict) -> list[str]:
    """Arms this study trains (``run_arms``, default: all arms in config order)."""
    return list(config.get("run_arms") or config["arms"])


def check_config(config: dict) -> None:
    """Cross-field checks; raises :class:`ConfigError` naming the key."""
    arms = config["arms"]
    for name in config.get("run_arms") or []:
        if name not in arms:
            raise ConfigError(f"run_arms: arm '{name}' is not defined under 'arms' (defined: {sorted(arms)})")
    ds = config["dataset"]
    if ds["source"] == "merbench" and not ds.get("root"):
        raise ConfigError("dataset.root: required when dataset.source is 'merbench' (the MERBench folder "
                          "holding label-6way.npz and features/)")
    if ds["source"] == "merbench":
        missing = [m for m in ds["modalities"] if m not in ds.get("features", {})]
        if missing:
            raise ConfigError(f"dataset.features: no feature folder named for modality {missing}")
    if ds.get("frame_level") and ds["source"] != "merbench":
        raise ConfigError("dataset.frame_level: frame-level features need source 'merbench'")
    for name in run_arms(config):
        p = resolve_arm(config, name)
        if p["hidden_dim"] % p["num_attention_heads"]:
            raise ConfigError(
                f"arms.{name}: num_attention_heads={p['num_attention_heads']} does not divide "
                f"hidden_dim={p['hidden_dim']}"
            )
        if p["model"] == "attention" and (p.get("use_vae") or p.get("use_proxy_attention")):
            raise ConfigError(f"arms.{name}: model 'attention' has no VAE or proxy attention; use model 'prmf'")


def resolve_arm(config: dict, arm: str) -> dict[str, Any]:
    """Complete parameters of ``arm``: training defaults overlaid by the arm's keys.

    Switch defaults are explicit (``use_vae`` etc. False, ``fusion`` uncertainty,
    ``tau`` 1.0, loss weights 0) so that the dict fully describes the model.
    """
    if arm not in config["arms"]:
        raise ConfigError(f"arm '{arm}' is not defined under 'arms' (defined: {sorted(config['arms'])})")
    params: dict[str, Any] = {k: v for k, v in config.get("training", {}).items() if k not in RUNTIME_KEYS}
    params.update(
        use_vae=False, use_proxy_attention=False, use_modality_dropout=False, fusion="uncertainty",
        uncertainty="std", tau=1.0, kl_weight=0.0, recon_weight=0.0, cross_kl_weight=0.0,
    )
    params.update(config["arms"][arm])
    params.setdefault("display_name", arm)
    params.setdefault("export_name", DEFAULT_EXPORT_NAMES.get(arm, f"prmf_{arm}"))
    params["arm"] = arm
    return params


def runtime_settings(config: dict) -> dict[str, Any]:
    """Job plumbing shared by all arms (threads, device, CUDA graphs)."""
    t = config.get("training", {})
    return {"threads": t.get("threads", 1), "device": t.get("device", "auto"),
            "cuda_graphs": bool(t.get("cuda_graphs", True))}

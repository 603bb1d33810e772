"""Study configuration: loading, layering, schema validation, cross-checks, arm resolution.

A study may be one YAML file or several layered ones (``config/mer2023.yaml``
over ``config/config.yaml``): later files update earlier ones key by key
(:func:`merge_configs`, Snakemake's own rule for ``--configfile``). The schema
(``workflow/schemas/config.schema.yaml``) checks keys and types and fills
defaults; :func:`check_config` adds the checks a schema cannot express (arm
names that exist, heads that divide the hidden size, a root for MERBench
data). :func:`resolve_arm` gives one arm's complete parameter set: the
``training`` block overlaid with the keys of the arm's ``base`` arm (if any)
and then the arm's own keys. The schema is the one place a key gets its
default (the model switches and loss weights included, as ``training``
keys); nothing downstream (``build_model``, the loss, the training loop)
has defaults of its own. A training job receives exactly this dict, so
editing one arm reruns that arm only. :func:`training_arms` maps every run arm
to the arm whose folds it reads: arms whose training parameters are identical
(``robust_v1`` and ``exp1`` are the same model) are trained once.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = PACKAGE_ROOT / "workflow" / "schemas" / "config.schema.yaml"

#: keys of ``training`` that are job plumbing, not hyper-parameters of an arm
RUNTIME_KEYS = ("threads", "device", "cuda_graphs", "pack")
#: ``training.pack`` values: fold models per training job
PACK_MODES = ("auto", "none", "folds", "seeds")


class ConfigError(ValueError):
    """A configuration problem; the message names the key and the fix."""


def validate_config(config: dict, schema: str | Path = SCHEMA) -> dict:
    """Validate ``config`` against the schema in place (filling defaults) and cross-check it.

    Raises:
        ConfigError: one line naming the failing key path, the bad value and
            what is allowed (not Snakemake's dump of the whole schema).
    """
    from snakemake.utils import validate  # heavy import, only when needed

    try:
        validate(config, str(schema), set_default=True)
    except Exception as err:  # snakemake's WorkflowError, holding jsonschema's ValidationError
        cause = err.__cause__ or err.__context__
        if not _is_validation_error(cause):
            raise
        raise ConfigError(schema_error_line(cause)) from None
    check_config(config)
    return config


def _is_validation_error(err: BaseException | None) -> bool:
    from jsonschema.exceptions import ValidationError

    return isinstance(err, ValidationError)


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "config"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_error_line(error) -> str:
    """One line for a jsonschema ``ValidationError``: key path, bad value, what is allowed.

    Unknown keys get the allowed keys at that level (and the closest match);
    an ``enum`` its values; anything else jsonschema's own message for the
    failing key (``-3 is less than the minimum of 1``).
    """
    import difflib

    from jsonschema.exceptions import best_match

    if error.context:  # anyOf / oneOf: the most relevant sub-error
        error = best_match(error.context)
    where = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties") or {})
        unknown = [k for k in error.instance if k not in allowed]
        if unknown and allowed:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hints.append(f"{_key_path([*error.absolute_path, key])}" + (f" (did you mean '{close[0]}'?)"
                                                                              if close else ""))
            level = "top-level keys" if not error.absolute_path else f"keys under {where}"
            return f"config: unknown key {', '.join(hints)}; allowed {level}: {', '.join(allowed)}"
    if error.validator == "enum":
        return (f"config: {where} is {_short(error.instance)}; allowed values: "
                f"{', '.join(map(repr, error.validator_value))}")
    message = " ".join(str(error.message).split())
    if len(message) > 160:  # jsonschema quotes the whole value
        message = f"{_short(error.instance)} fails '{error.validator}': {_short(error.validator_value)}"
    return f"config: {where}: {message}"


def merge_configs(base: dict, overlay: dict) -> dict:
    """``base`` updated by ``overlay``: nested mappings merge key by key, anything else is replaced.

    The same rule as Snakemake's ``--configfile`` over a workflow's ``configfile:``.
    Returns a new dict; the inputs are not modified.
    """
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = value
    return out


def load_config(*paths: str | Path) -> dict:
    """Read, layer (left to right) and validate YAML config files."""
    if not paths:
        raise ValueError("load_config: give at least one config file")
    config: dict = {}
    for path in paths:
        with open(path) as fh:
            config = merge_configs(config, yaml.safe_load(fh) or {})
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
    for name, spec in arms.items():
        _arm_chain(config, name)  # unknown or circular `base`
        if "model" not in spec and "base" not in spec:
            raise ConfigError(f"arms.{name}: set 'model' (attention | prmf) or 'base' (another arm)")
    tables = config.get("tables") or {}
    ref = tables.get("reference_arm")
    if ref is not None and ref not in arms:
        raise ConfigError(f"tables.reference_arm: arm '{ref}' is not defined under 'arms' (defined: {sorted(arms)})")
    unknown = [a for a in tables.get("ablation_arms") or [] if a not in arms]
    if unknown:
        raise ConfigError(f"tables.ablation_arms: arm(s) {unknown} not defined under 'arms' "
                          f"(defined: {sorted(arms)})")
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


def _arm_chain(config: dict, arm: str) -> list[str]:
    """``arm`` and its ``base`` ancestors, root first; raises on unknown or circular bases."""
    arms = config["arms"]
    chain: list[str] = []
    name: str | None = arm
    while name is not None:
        if name not in arms:
            where = f"arms.{chain[-1]}.base" if chain else "arm"
            raise ConfigError(f"{where}: arm '{name}' is not defined under 'arms' (defined: {sorted(arms)})")
        if name in chain:
            raise ConfigError(f"arms.{arm}: circular 'base' chain {' -> '.join(chain + [name])}")
        chain.append(name)
        name = arms[name].get("base")
    return chain[::-1]


#: keys that name an arm in tables and exports, not how it is trained
NAMING_KEYS = ("display_name", "export_name", "arm", "base")


@functools.lru_cache(maxsize=None)
def _schema_training_defaults(schema: str) -> dict[str, Any]:
    with open(schema) as fh:
        props = yaml.safe_load(fh)["properties"]["training"]["properties"]
    return {key: spec["default"] for key, spec in props.items() if "default" in spec}


def training_defaults(schema: str | Path = SCHEMA) -> dict[str, Any]:
    """The schema's default of every ``training`` key (a fresh copy)."""
    return copy.deepcopy(_schema_training_defaults(str(schema)))


def _training(config: dict) -> dict[str, Any]:
    """``config["training"]`` with the schema's default for every key it leaves out (appended, as
    the schema's validation fills them; a validated config already has them all)."""
    training = dict(config.get("training") or {})
    for key, value in training_defaults().items():
        training.setdefault(key, value)
    return training


def resolve_arm(config: dict, arm: str) -> dict[str, Any]:
    """Complete parameters of ``arm``: ``training`` (over the schema's defaults), then its
    ``base`` arm's keys, then its own.

    Every hyper-parameter, model switch and loss weight has a value, so the
    dict fully describes the model and its training. Names (``display_name``,
    ``export_name``) are never inherited from a base; unset, they are the arm
    name and ``prmf_<arm>``.
    """
    if arm not in config["arms"]:
        raise ConfigError(f"arm '{arm}' is not defined under 'arms' (defined: {sorted(config['arms'])})")
    params: dict[str, Any] = {k: v for k, v in _training(config).items() if k not in RUNTIME_KEYS}
    for name in _arm_chain(config, arm):
        own = config["arms"][name]
        params.update({k: v for k, v in own.items() if name == arm or k not in NAMING_KEYS})
    params.pop("base", None)
    params.setdefault("display_name", arm)
    params.setdefault("export_name", f"prmf_{arm}")
    params["arm"] = arm
    return params


def require_keys(arm: Mapping[str, Any], keys: Sequence[str], user: str, allow_none: bool = False) -> None:
    """Raise a :class:`ValueError` naming every key of ``keys`` that ``arm`` does not set.

    A key set to ``None`` counts as missing unless ``allow_none`` (``early_stop``
    and ``grad_clip`` are ``None`` when off). ``user`` names who needs them.
    """
    missing = [k for k in keys if k not in arm or (not allow_none and arm[k] is None)]
    if missing:
        raise ValueError(
            f"arm {arm.get('arm', '')!r} does not set {', '.join(map(repr, missing))}: {user} needs a resolved "
            "arm (prmf.config.resolve_arm fills every key from the config's training block and the schema's defaults)"
        )


def cuda_visible(environ: Mapping[str, str] | None = None, driver_dir: str | Path = "/proc/driver/nvidia/gpus") -> bool:
    """Whether a CUDA device is visible to jobs started here, decided without importing torch.

    ``CUDA_VISIBLE_DEVICES`` set to ``""`` or ``-1`` hides every device; otherwise a
    device is visible when the NVIDIA driver lists a GPU under ``driver_dir``.
    """
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    folder = Path(driver_dir)
    return folder.is_dir() and any(folder.iterdir())


def training_uses_gpu(device: str, environ: Mapping[str, str] | None = None,
                      driver_dir: str | Path = "/proc/driver/nvidia/gpus") -> bool:
    """Whether training jobs with ``training.device`` ``device`` will run on a GPU.

    ``cpu`` -> False; ``cuda``/``cuda:N`` -> True; ``auto`` -> :func:`cuda_visible`.
    The workflow asks for ``resources: gpu=1`` only when this is True, so on a
    CPU-only machine ``--resources gpu=1`` no longer runs the folds one at a time.
    """
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    return cuda_visible(environ, driver_dir)


def resolve_pack(pack: str, uses_gpu: bool, *, arms: int, seeds: int, slots: int) -> str:
    """``training.pack`` as the workflow applies it; ``auto`` chooses the largest pack that keeps
    the machine busy.

    * training on a GPU -> ``seeds``: one job per arm; its seeds x folds run
      side by side on the device, where one fold leaves it mostly idle;
    * on a CPU with ``slots`` jobs at once (``--cores`` / ``training.threads``):
      ``seeds`` when there are at least as many trained ``arms`` as slots,
      else ``folds`` when ``arms x seeds`` fill them, else ``none``. A pack
      pays the process start, imports and store read once for all its folds.

    A cluster run is decided on the submitting host, whose ``--cores`` is
    usually 1: ``auto`` then packs an arm per job (set ``none`` for one fold
    per allocation). Measurements behind the choice: ``README.md``, *Speed*.
    """
    if pack not in PACK_MODES:
        raise ConfigError(f"training.pack must be one of {', '.join(PACK_MODES)}, got {pack!r}")
    if pack != "auto":
        return pack
    if uses_gpu or arms >= slots:
        return "seeds"
    if arms * seeds >= slots:
        return "folds"
    return "none"


def runtime_settings(config: dict) -> dict[str, Any]:
    """Job plumbing shared by all arms (threads, device, CUDA graphs, packing)."""
    t = _training(config)
    return {"threads": t["threads"], "device": t["device"], "cuda_graphs": bool(t["cuda_graphs"]),
            "pack": t.get("pack", "auto")}


#: keys that act only with the VAE, and only with modality dropout
VAE_KEYS = ("kl_weight", "recon_weight", "cross_kl_weight", "tau", "fusion", "uncertainty", "dropped_modality")
MODALITY_DROPOUT_KEYS = ("modality_dropout_max", "modality_dropout_unit", "warmup_epochs")


def inactive_keys(params: dict[str, Any]) -> frozenset[str]:
    """Keys of a resolved arm that its model family ignores: the VAE's keys (loss weights, ``tau``,
    ``fusion``, ``uncertainty``, ``dropped_modality``) without the VAE, the modality-dropout schedule
    without modality dropout. :func:`training_key` leaves them out; tuning never draws them."""
    out = set() if params.get("use_vae") else set(VAE_KEYS)
    if not params.get("use_modality_dropout"):
        out |= set(MODALITY_DROPOUT_KEYS)
    return frozenset(out)


def training_key(params: dict[str, Any]) -> str:
    """What defines an arm's training, as a canonical JSON string.

    Names are left out, and ``model: prmf`` with neither the VAE nor proxy
    attention is MERBench's ``attention`` model (the same modules, built in the
    same order), so ablation Exp1 and Robust v1 share a key. Keys that the
    model family ignores (the VAE's loss weights, ``tau``, ``fusion`` and
    ``uncertainty`` without the VAE; ``dropped_modality`` without the VAE) are
    left out too.
    """
    import json

    off = inactive_keys(params)
    key = {k: v for k, v in params.items() if k not in NAMING_KEYS and k not in off}
    if key.get("model") == "prmf" and not key.get("use_vae") and not key.get("use_proxy_attention"):
        key["model"] = "attention"
    return json.dumps(key, sort_keys=True, default=str)


def training_arms(config: dict, arms: list[str] | None = None) -> dict[str, str]:
    """Run arm -> the arm whose folds it reads: the first arm (in run order) with the same
    :func:`training_key`. An arm maps to itself when no earlier arm trains the same model."""
    arms = run_arms(config) if arms is None else arms
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for arm in arms:
        out[arm] = first.setdefault(training_key(resolve_arm(config, arm)), arm)
    return out

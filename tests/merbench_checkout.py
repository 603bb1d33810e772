"""Test helpers for ``prmf merbench install``: fake and real MERBench checkouts.

* :func:`write_fake_checkout` writes a tiny tree with exactly the files install
  touches, each holding the anchors of MERBench's real files (and just enough
  code that ``get_models`` / the argument parser run);
* :func:`tree_hashes` fingerprints a tree (sha256 and mode of every file);
* :func:`merbench_source`: the real checkout named by env ``MERBENCH_DIR``; running
  it on CPU from a temporary copy is :mod:`prmf.interop.merbench_run` (shared with
  ``benchmarks/bench_study.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: feature folders of tests/merbench_fixture.py (utterance level)
FEATURE_ARGS = ("--audio_feature", "chinese-hubert-large-UTT", "--text_feature", "Baichuan-13B-Base-UTT",
                "--video_feature", "clip-vit-large-patch14-UTT")

_FAKE_MODELS_INIT = '''"""fake MERBench toolkit/models/__init__.py (the anchors of the real one)"""
import torch

from .attention import Attention

class get_models(torch.nn.Module):
    def __init__(self, args):
        super(get_models, self).__init__()

        MODEL_MAP = {
            # comment as in MERBench
            'attention': Attention,
            'lmf': None,
        }
        self.model = MODEL_MAP[args.model](args)

    def forward(self, batch):
        return self.model(batch)
'''
_FAKE_ATTENTION = '''import torch

class Attention(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        self.grad_clip = args.grad_clip
'''
_FAKE_DATA_INIT = '''from torch.utils.data import Dataset

from .feat_data import Data_Feat

class get_datasets(Dataset):

    def __init__(self, args, names, labels):

        MODEL_DATASET_MAP = {
            'attention': Data_Feat,
            'lmf': Data_Feat,
        }
        self.dataset_class = MODEL_DATASET_MAP[args.model]'''  # no newline at the end, as MERBench's
_FAKE_FEAT_DATA = "class Data_Feat:\n    pass\n"
_FAKE_TUNE = '''tfn:
  hidden_dim: [64, 128]

attention:
  hidden_dim: [64, 128, 256]
  dropout: [0.2, 0.3, 0.4, 0.5]
  grad_clip: [-1.0]
  lr: [1e-3, 1e-4]
'''
_FAKE_MAIN = '''import argparse

if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--model', type=str, default=None, help='model name')
    parser.add_argument('--epochs', type=int, default=100, metavar='E', help='number of epochs')
    args = parser.parse_args()
    print(repr(vars(args)))
'''

#: relative path -> content of the fake checkout
FAKE_FILES = {
    "main-release.py": _FAKE_MAIN,
    "toolkit/models/__init__.py": _FAKE_MODELS_INIT,
    "toolkit/models/attention.py": _FAKE_ATTENTION,
    "toolkit/data/__init__.py": _FAKE_DATA_INIT,
    "toolkit/data/feat_data.py": _FAKE_FEAT_DATA,
    "toolkit/model-tune.yaml": _FAKE_TUNE,
}


def write_fake_checkout(root: Path) -> Path:
    """Write :data:`FAKE_FILES` under ``root`` (created) and return it."""
    root = Path(root)
    for rel, text in FAKE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return root


def tree_hashes(root: Path, skip_dirs: tuple[str, ...] = ("__pycache__",)) -> dict[str, tuple[str, int]]:
    """``relative path -> (sha256, mode)`` of every file below ``root`` (folders in ``skip_dirs`` left out)."""
    root = Path(root)
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() or any(part in skip_dirs for part in path.relative_to(root).parts):
            continue
        out[path.relative_to(root).as_posix()] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                  path.stat().st_mode)
    return out


# --------------------------------------------------------------------------- the real MERBench


def merbench_source() -> Path | None:
    """The MERBench folder named by the env var ``MERBENCH_DIR`` (None when unset)."""
    value = os.environ.get("MERBENCH_DIR")
    return Path(value) if value else None


from prmf.interop.merbench_run import (  # noqa: E402,F401 - re-exported for the tests
    copy_checkout,
    prepare_for_cpu,
    run_main_release,
    write_import_stubs,
)

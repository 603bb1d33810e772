"""Test helpers for ``prmf merbench install``: fake and real MERBench checkouts.

* :func:`write_fake_checkout` writes a tiny tree with exactly the files install
  touches, each holding the anchors of MERBench's real files (and just enough
  code that ``get_models`` / the argument parser run);
* :func:`tree_hashes` fingerprints a tree (sha256 and mode of every file);
* for the real checkout (env ``MERBENCH_DIR``): :func:`copy_checkout`,
  :func:`prepare_for_cpu` (drops MERBench's hard-coded CUDA calls, points its
  ``config.py`` at a test data folder), :func:`write_import_stubs` (a
  ``torchaudio`` stub: MERBench imports it but never uses it on the training
  path, and its wheels do not match our torch) and :func:`run_main_release`.

Everything is patched inside the temporary copy only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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


def copy_checkout(src: Path, dst: Path) -> Path:
    """Copy a MERBench folder (without caches, results and its large dataset folder)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "saved*", ".git", "dataset"))
    return dst


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise AssertionError(f"{path}: expected {old!r} (has MERBench changed?)")
    path.write_text(text.replace(old, new), encoding="utf-8")


def prepare_for_cpu(checkout: Path, data_root: Path) -> None:
    """Patch the copy: no ``.cuda()`` / ``torch.cuda.set_device`` in ``main-release.py``; MER2023 read
    from ``data_root`` (``label-6way.npz`` + ``features/``) via ``config.py``."""
    main = checkout / "main-release.py"
    _replace(main, "torch.cuda.set_device(args.gpu)", "pass  # test: CPU")
    _replace(main, ".cuda()", "")
    with open(checkout / "config.py", "a", encoding="utf-8") as fh:
        fh.write(
            "\n# test: MER2023 from a temporary folder\n"
            f"DATA_DIR['MER2023'] = {str(data_root)!r}\n"
            "PATH_TO_FEATURES['MER2023'] = os.path.join(DATA_DIR['MER2023'], 'features')\n"
            "PATH_TO_LABEL['MER2023'] = os.path.join(DATA_DIR['MER2023'], 'label-6way.npz')\n"
        )


def write_import_stubs(folder: Path) -> Path:
    """A ``torchaudio`` package that only fails when used; put ``folder`` on ``PYTHONPATH``."""
    pkg = Path(folder) / "torchaudio"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""test stub: MERBench imports torchaudio but does not use it when training on features"""\n'
        "def __getattr__(name):\n"
        "    raise RuntimeError(f'torchaudio.{name}: torchaudio is stubbed in this test')\n",
        encoding="utf-8",
    )
    return Path(folder)


def run_main_release(checkout: Path, args: list[str], stubs: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python main-release.py ARGS`` in ``checkout`` with ``stubs`` first on ``PYTHONPATH``, on CPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(stubs), *filter(None, [env.get("PYTHONPATH")])])
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "main-release.py", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=timeout)

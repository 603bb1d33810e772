"""Run MERBench's own training loop (``main-release.py``) on CPU from a temporary copy.

Used by the tests that check ``prmf merbench install`` against the real
MERBench and by ``benchmarks/bench_study.py`` (MERBench's loop side by side with
ours). MERBench hard-codes CUDA (``torch.cuda.set_device``, ``.cuda()``) and
imports ``torchaudio`` (unused when training on features, and its wheels must
match torch); :func:`prepare_for_cpu` patches those in the *copy* only and
:func:`write_import_stubs` provides a ``torchaudio`` that fails only when used.
MERBench's code is never copied into this repository: these functions edit a
user's checkout copied to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


class MerbenchChanged(RuntimeError):
    """A patch anchor is missing: the MERBench checkout differs from the one these patches know."""


def copy_checkout(src: Path, dst: Path) -> Path:
    """Copy a MERBench folder (without caches, results and its large dataset folder)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "saved*", ".git", "dataset"))
    return dst


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise MerbenchChanged(f"{path}: expected {old!r} (has MERBench changed?)")
    path.write_text(text.replace(old, new), encoding="utf-8")


def prepare_for_cpu(checkout: Path, data_root: Path) -> None:
    """Patch the copy: no ``.cuda()`` / ``torch.cuda.set_device`` in ``main-release.py`` (nor the
    ``.cuda()`` of its ``attention`` model's zero loss); MER2023 read
    from ``data_root`` (``label-6way.npz`` + ``features/``) via ``config.py``."""
    main = checkout / "main-release.py"
    _replace(main, "torch.cuda.set_device(args.gpu)", "pass  # prmf: CPU")
    _replace(main, ".cuda()", "")
    # MERBench's own attention model builds its zero interloss on the GPU
    _replace(checkout / "toolkit" / "models" / "attention.py", "torch.tensor(0).cuda()", "torch.tensor(0)")
    with open(checkout / "config.py", "a", encoding="utf-8") as fh:
        fh.write(
            "\n# prmf: MER2023 from a temporary folder\n"
            f"DATA_DIR['MER2023'] = {str(data_root)!r}\n"
            "PATH_TO_FEATURES['MER2023'] = os.path.join(DATA_DIR['MER2023'], 'features')\n"
            "PATH_TO_LABEL['MER2023'] = os.path.join(DATA_DIR['MER2023'], 'label-6way.npz')\n"
        )


def write_import_stubs(folder: Path) -> Path:
    """A ``torchaudio`` package that only fails when used; put ``folder`` on ``PYTHONPATH``."""
    pkg = Path(folder) / "torchaudio"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""prmf stub: MERBench imports torchaudio but does not use it when training on features"""\n'
        "def __getattr__(name):\n"
        "    raise RuntimeError(f'torchaudio.{name}: torchaudio is stubbed by prmf.interop.merbench_run')\n",
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

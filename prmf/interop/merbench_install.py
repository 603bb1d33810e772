"""Register the P-RMF models in a MERBench checkout, and take them out again.

MERBench (``zeroQiaoba/MERTools``, folder ``MERBench/``) trains a model named
by ``main-release.py --model NAME``: ``toolkit/models/__init__.py`` maps the
name to a class (``MODEL_MAP`` inside ``get_models``),
``toolkit/data/__init__.py`` maps it to a dataset class
(``MODEL_DATASET_MAP``) and ``toolkit/model-tune.yaml`` holds its
hyper-parameter grid (read when no ``--hyper_path`` is given). The author's
``setup_v2.py`` copied a model file into ``toolkit/models/`` and registered it.
:func:`install` registers the two models of the study instead, without
copying model code:

=====================  ==========================  =========================================
MERBench name          class (prmf)                prmf study arm (``config/config.yaml``)
=====================  ==========================  =========================================
``attention_robust``   ``AttentionRobust``         ``robust_v1``: Robust v1 (attention +
                                                   progressive modality dropout)
``attention_robust_v2``  ``AttentionRobustV2``     ``exp4``: full P-RMF; the ablation
                                                   switches as arguments
=====================  ==========================  =========================================

What :func:`install` changes in ``MERBENCH_DIR`` (paths relative to it):

* writes ``toolkit/models/attention_robust.py`` and
  ``toolkit/models/attention_robust_v2.py``: a few lines each that import the
  class from :mod:`prmf.interop.merbench_adapter`, so the installed prmf
  package is what MERBench runs (a fix in prmf reaches MERBench users; the
  checkout must run in a Python environment where prmf is installed);
* ``toolkit/models/__init__.py``: imports the two classes and adds the two
  names to ``MODEL_MAP``;
* ``toolkit/data/__init__.py``: adds the two names to ``MODEL_DATASET_MAP``
  (``Data_Feat``, the feature dataset of MERBench's ``attention``);
* ``toolkit/model-tune.yaml``: appends a grid for each name, the search space
  of MERBench's ``attention`` entry (hidden_dim, dropout, grad_clip, lr);
* ``main-release.py``: before ``args = parser.parse_args()``, one call of
  :func:`prmf.interop.merbench_adapter.add_merbench_arguments`, which adds the
  P-RMF switches (``--use_vae``, ``--kl_weight``, ...; default: the arm's value).

Every inserted block sits between marker comments
``# >>> prmf merbench install: TAG >>>`` and ``# <<< prmf merbench install: TAG <<<``;
every edited file is first copied to ``FILE.prmf-backup`` (content, mode and
mtime). :func:`install` is idempotent (a second run changes no byte) and
refuses, changing nothing, when the folder is not a MERBench checkout
(:class:`MerbenchCheckoutError`: which file, which anchor is missing) or when
its state conflicts (:class:`MerbenchStateError`: a name already registered
outside our blocks, e.g. by the author's ``setup_v2.py``; a file we would
write that is not ours; an edited file changed after the install).
:func:`uninstall` moves the backups back (so the checkout is byte for byte as
before), deletes the files it wrote (and their ``__pycache__`` entries) and
refuses when an edited file was changed after the install, unless ``force``.

No function here imports torch, prmf's models or MERBench.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from prmf.atomic import copy_file, write_bytes

#: MERBench model name -> (class in :mod:`prmf.interop.merbench_adapter`, prmf study arm)
MERBENCH_MODELS: dict[str, tuple[str, str]] = {
    "attention_robust": ("AttentionRobust", "robust_v1"),
    "attention_robust_v2": ("AttentionRobustV2", "exp4"),
}
_TITLES = {
    "attention_robust": "Robust v1: attention + progressive modality dropout",
    "attention_robust_v2": "P-RMF (full); ablation switches as arguments",
}

MARK = "prmf merbench install"
BACKUP_SUFFIX = ".prmf-backup"
_GENERATED_HEADER = f"# >>> {MARK}: generated file; `prmf merbench uninstall` deletes it <<<"
_BLOCK_RE = re.compile(
    rf"^[ \t]*# >>> {MARK}: (?P<tag>[^\r\n]*?) >>>[ \t]*\r?\n"
    rf".*?"
    rf"^[ \t]*# <<< {MARK}: (?P=tag) <<<[ \t]*(?:\r?\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
_BEGIN_RE = re.compile(rf"^[ \t]*# >>> {MARK}: ", re.MULTILINE)


class MerbenchInstallError(RuntimeError):
    """Base class: install / uninstall refused at ``path`` because of ``problem``; nothing was changed."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class MerbenchCheckoutError(MerbenchInstallError):
    """The folder is not a MERBench checkout this installer knows: a file or an anchor is missing."""


class MerbenchStateError(MerbenchInstallError):
    """The checkout's state conflicts with what install / uninstall would do."""


# --------------------------------------------------------------------------- what is changed


@dataclass(frozen=True)
class _Insertion:
    """One marked block: placed ``after`` / ``before`` the single line matching ``anchor``,
    or at the ``end`` of the file (then ``anchor`` must still match once: it proves the file is
    the one we know). ``body`` lines are indented like the anchor line (``end``: not at all)."""

    tag: str
    anchor: str
    what: str
    place: str
    body: tuple[str, ...]


@dataclass(frozen=True)
class _FileEdit:
    """The marked blocks of one edited file; ``taken``: (regex, what) pairs that must not match
    the file outside our blocks (a name registered by someone else)."""

    path: str
    insertions: tuple[_Insertion, ...]
    taken: tuple[tuple[str, str], ...]


_NAMES_RE = "(?:" + "|".join(re.escape(n) for n in sorted(MERBENCH_MODELS, key=len, reverse=True)) + ")"


def _edits() -> tuple[_FileEdit, ...]:
    """The edits of MERBench's files (anchors read from MERTools' ``MERBench/`` folder)."""
    models = tuple(MERBENCH_MODELS.items())
    return (
        _FileEdit(
            "toolkit/models/__init__.py",
            (
                _Insertion("model imports", r"^[ \t]*from \.attention import Attention[ \t]*$",
                           "the line `from .attention import Attention`", "after",
                           tuple(f"from .{name} import {cls}" for name, (cls, _) in models)),
                _Insertion("MODEL_MAP entries", r"^[ \t]*['\"]attention['\"][ \t]*:[ \t]*Attention[ \t]*,.*$",
                           "the MODEL_MAP entry `'attention': Attention,`", "after",
                           tuple(f"'{name}': {cls},  # {_TITLES[name]}" for name, (cls, _) in models)),
            ),
            ((rf"['\"]{_NAMES_RE}['\"]", "a MODEL_MAP entry for a P-RMF name"),
             (rf"from \.{_NAMES_RE} import", "an import of a P-RMF model module")),
        ),
        _FileEdit(
            "toolkit/data/__init__.py",
            (
                _Insertion("MODEL_DATASET_MAP entries",
                           r"^[ \t]*['\"]attention['\"][ \t]*:[ \t]*Data_Feat[ \t]*,.*$",
                           "the MODEL_DATASET_MAP entry `'attention': Data_Feat,`", "after",
                           tuple(f"'{name}': Data_Feat," for name in MERBENCH_MODELS)),
            ),
            ((rf"['\"]{_NAMES_RE}['\"]", "a MODEL_DATASET_MAP entry for a P-RMF name"),),
        ),
        _FileEdit(
            "toolkit/model-tune.yaml",
            (
                _Insertion("hyper-parameter grids", r"^attention:[ \t]*$",
                           "the top-level entry `attention:`", "end", _tune_yaml_body()),
            ),
            ((rf"^{_NAMES_RE}[ \t]*:", "a hyper-parameter entry for a P-RMF name"),),
        ),
        _FileEdit(
            "main-release.py",
            (
                _Insertion("P-RMF arguments", r"^[ \t]*args[ \t]*=[ \t]*parser\.parse_args\(\)[ \t]*$",
                           "the line `args = parser.parse_args()`", "before",
                           ("from prmf.interop.merbench_adapter import add_merbench_arguments",
                            "add_merbench_arguments(parser)  # --use_vae, --kl_weight, ...: P-RMF switches")),
            ),
            ((r"['\"]--use_vae['\"]", "a --use_vae argument"),),
        ),
    )


def _tune_yaml_body() -> tuple[str, ...]:
    """``model-tune.yaml`` grids: the search space of MERBench's ``attention`` entry."""
    lines: list[str] = []
    for name, (_, arm) in MERBENCH_MODELS.items():
        lines += [
            f"{name}:  # {_TITLES[name]}; prmf arm {arm}",
            "  hidden_dim: [64, 128, 256]",
            "  dropout: [0.2, 0.3, 0.4, 0.5]",
            "  grad_clip: [-1.0]",
            "  lr: [1e-3, 1e-4]",
        ]
    return tuple(lines)


def _generated_files() -> dict[str, str]:
    """Relative path -> content of the thin model modules (``\\n`` line ends)."""
    files = {}
    for name, (cls, arm) in MERBENCH_MODELS.items():
        files[f"toolkit/models/{name}.py"] = "\n".join([
            _GENERATED_HEADER,
            f'"""MERBench model ``{name}``: {_TITLES[name]}; the prmf study\'s arm ``{arm}``.',
            "",
            f"Only an import: the model is ``prmf.interop.merbench_adapter.{cls}`` of the",
            "installed prmf package, so an update of prmf reaches this checkout.",
            '"""',
            f"from prmf.interop.merbench_adapter import {cls}",
            "",
            f'__all__ = ["{cls}"]',
            "",
        ])
    return files


# --------------------------------------------------------------------------- text edits


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def strip_blocks(text: str) -> str:
    """``text`` without prmf's marked blocks (each removed with its marker lines)."""
    return _BLOCK_RE.sub("", text)


def has_blocks(text: str) -> bool:
    """Whether ``text`` holds a prmf begin marker."""
    return _BEGIN_RE.search(text) is not None


def _find_line(text: str, pattern: str, what: str, path: Path) -> tuple[int, int, str]:
    """``(start, end, line)`` of the single line matching ``pattern``; ``end`` excludes the newline."""
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    if not matches:
        raise MerbenchCheckoutError(path, f"{what} is missing (not a MERBench checkout, or a version whose "
                                          "layout this installer does not know)")
    if len(matches) > 1:
        raise MerbenchCheckoutError(path, f"{what} occurs {len(matches)} times; expected once")
    m = matches[0]
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.start())
    end = len(text) if end < 0 else end
    return start, end, text[start:end].rstrip("\r")


def _block(ins: _Insertion, indent: str, nl: str) -> str:
    lines = [f"# >>> {MARK}: {ins.tag} >>>", *ins.body, f"# <<< {MARK}: {ins.tag} <<<"]
    return "".join((indent + line if line else "") + nl for line in lines)


def _insert(text: str, ins: _Insertion, path: Path) -> str:
    """``text`` with the marked block of ``ins``."""
    nl = _newline(text)
    start, end, line = _find_line(text, ins.anchor, ins.what, path)
    if ins.place == "end":
        prefix = "" if not text or text.endswith("\n") else nl
        return text + prefix + _block(ins, "", nl)
    indent = re.match(r"[ \t]*", line).group(0)
    block = _block(ins, indent, nl)
    if ins.place == "before":
        return text[:start] + block + text[start:]
    if end == len(text):  # anchor on the last line, without a newline
        return text + nl + block.removesuffix(nl)
    return text[: end + 1] + block + text[end + 1:]


def render(original: str, edit: _FileEdit, path: Path) -> str:
    """The installed content of a file whose pristine content is ``original``.

    Raises :class:`MerbenchCheckoutError` for a missing anchor and
    :class:`MerbenchStateError` for a P-RMF name registered outside our blocks.
    """
    if has_blocks(original):
        raise MerbenchStateError(path, "already holds prmf's marked blocks but no backup "
                                       f"{path.name}{BACKUP_SUFFIX}: restore it (e.g. `git checkout -- "
                                       f"{edit.path}`) or run `prmf merbench uninstall` first")
    for pattern, what in edit.taken:
        if re.search(pattern, original, re.MULTILINE):
            raise MerbenchStateError(path, f"already has {what} outside prmf's blocks (registered by hand or "
                                           "by the author's setup_v2.py?); remove it before installing")
    text = original
    for ins in edit.insertions:
        text = _insert(text, ins, path)
    return text


# --------------------------------------------------------------------------- files


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise MerbenchCheckoutError(path, f"not UTF-8 text ({err})") from err


def _write(path: Path, text: str, like: Path | None = None) -> None:
    """Write ``text`` (UTF-8, line ends as given) atomically (:mod:`prmf.atomic`); mode copied from ``like``."""
    mode = stat.S_IMODE(like.stat().st_mode) if like is not None and like.exists() else 0o644
    write_bytes(path, text.encode("utf-8"), mode=mode)


def _backup(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _is_generated(text: str) -> bool:
    return text.startswith(_GENERATED_HEADER)


def _remove_pycache(module: Path) -> list[Path]:
    """Delete ``__pycache__/<stem>.*.pyc`` of a module file; returns what was deleted."""
    cache = module.parent / "__pycache__"
    gone = []
    for pyc in sorted(cache.glob(f"{module.stem}.*.pyc")) if cache.is_dir() else []:
        pyc.unlink()
        gone.append(pyc)
    return gone


def _checkout_root(merbench_dir: str | Path) -> Path:
    root = Path(merbench_dir).expanduser().resolve()
    if not root.is_dir():
        raise MerbenchCheckoutError(root, "no such folder")
    if not (root / "main-release.py").exists() and (root / "MERBench" / "main-release.py").exists():
        raise MerbenchCheckoutError(root, f"this is a MERTools checkout; pass its MERBench folder "
                                          f"({root / 'MERBench'})")
    return root


# --------------------------------------------------------------------------- reports


@dataclass
class InstallReport:
    """What :func:`install` did in ``merbench_dir`` (absolute paths)."""

    merbench_dir: Path
    written: list[Path] = field(default_factory=list)
    edited: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """False when everything was already installed (nothing was touched)."""
        return bool(self.written or self.edited)

    def summary(self) -> str:
        """A few lines for the command line."""
        rel = _relative(self.merbench_dir)
        if not self.changed:
            return f"P-RMF models already installed in {self.merbench_dir}; nothing changed."
        lines = [f"Installed the MERBench models {', '.join(MERBENCH_MODELS)} in {self.merbench_dir}:"]
        lines += [f"  wrote  {rel(p)}" for p in self.written]
        lines += [f"  edited {rel(p)} (backup {rel(_backup(p))})" for p in self.edited]
        lines.append("Train with: python main-release.py --model attention_robust_v2 ... "
                     "(undo: prmf merbench uninstall DIR)")
        return "\n".join(lines)


@dataclass
class UninstallReport:
    """What :func:`uninstall` did in ``merbench_dir`` (absolute paths)."""

    merbench_dir: Path
    restored: list[Path] = field(default_factory=list)
    stripped: list[Path] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.restored or self.stripped or self.deleted)

    def summary(self) -> str:
        rel = _relative(self.merbench_dir)
        if not self.changed:
            return f"No P-RMF installation found in {self.merbench_dir}; nothing changed."
        lines = [f"Removed the P-RMF models from {self.merbench_dir}:"]
        lines += [f"  restored {rel(p)} from its backup" for p in self.restored]
        lines += [f"  removed prmf's marked blocks from {rel(p)} (no backup found)" for p in self.stripped]
        lines += [f"  deleted  {rel(p)}" for p in self.deleted if p.suffix != ".pyc"]
        lines += [f"  kept     {rel(p)} (not written by prmf)" for p in self.kept]
        return "\n".join(lines)


def _relative(root: Path):
    def rel(path: Path) -> str:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            return str(path)
    return rel


# --------------------------------------------------------------------------- public API


def check_merbench_checkout(merbench_dir: str | Path) -> Path:
    """The checkout's absolute path, after checking that :func:`install` can edit it.

    Every file install touches must exist and hold its anchor (in its backup's
    content when already installed). Raises :class:`MerbenchCheckoutError`
    naming the file and what is missing.
    """
    root = _checkout_root(merbench_dir)
    if not (root / "toolkit" / "models").is_dir():
        raise MerbenchCheckoutError(root / "toolkit" / "models", "missing: not a MERBench checkout")
    for edit in _edits():
        path = root / edit.path
        if not path.is_file():
            raise MerbenchCheckoutError(path, "missing: not a MERBench checkout")
        source = _backup(path) if _backup(path).is_file() else path
        text = _read(source)
        for ins in edit.insertions:
            _find_line(text, ins.anchor, ins.what, path)
    return root


def install(merbench_dir: str | Path) -> InstallReport:
    """Register ``attention_robust`` and ``attention_robust_v2`` in a MERBench checkout.

    See the module docstring for what changes. Checks everything first and
    changes nothing when it refuses. Idempotent: on an installed checkout it
    returns a report with ``changed == False``.

    Raises:
        MerbenchCheckoutError: not a MERBench checkout (file or anchor missing).
        MerbenchStateError: a conflicting registration or file, or a file
            changed after a previous install.
    """
    root = check_merbench_checkout(merbench_dir)
    report = InstallReport(root)
    todo_edits: list[tuple[Path, str]] = []
    for edit in _edits():
        path = root / edit.path
        current = _read(path)
        backup = _backup(path)
        if backup.is_file():
            if current != render(_read(backup), edit, path):
                raise MerbenchStateError(path, f"changed since prmf installed into it (backup {backup.name}); "
                                               "run `prmf merbench uninstall --force` to restore the backup")
        else:
            todo_edits.append((path, render(current, edit, path)))
    todo_files: list[tuple[Path, str]] = []
    for rel, content in _generated_files().items():
        path = root / rel
        if path.exists():
            existing = _read(path)
            if existing == content:
                continue
            if not _is_generated(existing):
                raise MerbenchStateError(path, "exists and was not written by prmf (a model file copied by the "
                                               "author's setup_v2.py?); move it away before installing")
        todo_files.append((path, content))

    new_files = {path for path, _ in todo_files if not path.exists()}
    try:
        for path, text in todo_edits:
            copy_file(path, _backup(path))  # atomic: never a truncated backup that uninstall would restore
            report.backups.append(_backup(path))
            _write(path, text, like=path)
            report.edited.append(path)
        for path, content in todo_files:
            _write(path, content)
            report.written.append(path)
    except OSError:  # e.g. the disk filled up: undo this install, so that the checkout is as before
        for path in report.edited:
            os.replace(_backup(path), path)
        for backup in report.backups:
            backup.unlink(missing_ok=True)
        for path in report.written:
            if path in new_files:
                path.unlink(missing_ok=True)
        raise
    return report


def is_installed(merbench_dir: str | Path) -> bool:
    """Whether the checkout holds the complete, unmodified installation."""
    root = _checkout_root(merbench_dir)
    try:
        for edit in _edits():
            path, backup = root / edit.path, _backup(root / edit.path)
            if not (path.is_file() and backup.is_file()) or _read(path) != render(_read(backup), edit, path):
                return False
    except MerbenchInstallError:
        return False
    return all((root / rel).is_file() and _read(root / rel) == content
               for rel, content in _generated_files().items())


def uninstall(merbench_dir: str | Path, *, force: bool = False) -> UninstallReport:
    """Undo :func:`install`: restore every backup, delete the files it wrote.

    Byte for byte: each edited file is replaced by its backup (content, mode,
    mtime), so the checkout is exactly as before the install. An edited file
    without a backup but with prmf's marked blocks gets the blocks removed.
    Generated files are deleted (with their ``__pycache__`` entries) only when
    they carry prmf's header.

    Raises:
        MerbenchStateError: an edited file was changed after the install
            (restoring its backup would lose that change); ``force=True``
            restores it anyway.
        MerbenchCheckoutError: ``merbench_dir`` is not a folder.
    """
    root = _checkout_root(merbench_dir)
    report = UninstallReport(root)
    restores: list[Path] = []
    strips: list[tuple[Path, str]] = []
    for edit in _edits():
        path, backup = root / edit.path, _backup(root / edit.path)
        if backup.is_file():
            if path.is_file() and not force and _read(path) != _expected_or_none(_read(backup), edit, path):
                raise MerbenchStateError(path, f"changed since prmf installed into it; restoring {backup.name} "
                                               "would lose that change (force=True / --force restores it anyway)")
            restores.append(path)
        elif path.is_file() and has_blocks(current := _read(path)):
            strips.append((path, strip_blocks(current)))
    for path in restores:
        os.replace(_backup(path), path)
        report.restored.append(path)
    for path, text in strips:
        _write(path, text, like=path)
        report.stripped.append(path)
    for rel in _generated_files():
        path = root / rel
        if not path.exists():
            continue
        if _is_generated(_read(path)):
            path.unlink()
            report.deleted.append(path)
            report.deleted += _remove_pycache(path)
        else:
            report.kept.append(path)
    return report


def _expected_or_none(original: str, edit: _FileEdit, path: Path) -> str | None:
    try:
        return render(original, edit, path)
    except MerbenchInstallError:
        return None

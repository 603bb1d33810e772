"""Atomic file writes: a file at its final path is complete, or it is not there.

Every file prmf writes goes through this module. A writer never opens its
target: the content goes to a temporary file in the target's folder
(``.{name}.{random}.tmp``, so the rename never crosses a file system), is
flushed and ``fsync``-ed, and only then renamed over the target with
:func:`os.replace`. A failure at any point (disk full, quota, read-only file
system, permission, a crash) leaves the target as it was (absent, or the
previous complete file) and removes the temporary file.

API:

* :func:`write_bytes` / :func:`write_text` -- one file from bytes / text.
* :func:`write_files` -- several files, all or none: every temporary file is
  written first, then they are renamed one by one; if a rename fails, the
  targets already replaced are rolled back to their previous content (or
  removed when they did not exist before).
* :func:`atomic_path` -- a context manager yielding a temporary *path* for
  writers that need a file name; committed when the block exits without
  error. (Not used for HDF5: after a failed write h5py can print pages of
  ``__dealloc__`` tracebacks and then crash the interpreter, so the feature
  store is built in memory and written with :func:`write_bytes`.)
* :func:`copy_file` -- :func:`shutil.copy2` into a temporary file, then rename.
* :func:`ensure_free_space` -- refuse a large write up front when the folder
  has less free space than it needs.
* :class:`OutputError` -- what every function here raises when the write
  fails: an :class:`OSError` whose ``str()`` is one line naming the path, the
  cause and the fix, e.g. ``no space left on device writing results/x.h5:
  free space or point the output elsewhere``. :meth:`OutputError.line` puts a
  command-line option in place of "the output".

Libraries whose writers swallow the operating system's error (``torch.save``
reports a full disk as ``RuntimeError: unexpected pos``) serialize into memory
first and hand the bytes to :func:`write_bytes` (:func:`torch_bytes`,
:func:`npz_bytes`, :func:`figure_bytes`).
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "OutputError",
    "atomic_path",
    "copy_file",
    "ensure_free_space",
    "figure_bytes",
    "npz_bytes",
    "torch_bytes",
    "write_bytes",
    "write_files",
    "write_text",
]

#: extra free space :func:`ensure_free_space` asks for beyond the data itself (file-format overhead)
FREE_SPACE_MARGIN = 1 << 20
#: below this much free space, a writer's failure without an ``errno`` is taken to be a full disk
_FULL_BELOW = 1 << 20
_MAX_NAME = 255

#: errno -> (cause, fix); ``{where}`` is the option that named the path (default "the output")
_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free space or point {where} elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota or point {where} elsewhere"),
    errno.EROFS: ("read-only file system", "point {where} at a writable folder"),
    errno.EACCES: ("permission denied", "point {where} at a folder you can write to"),
    errno.EPERM: ("operation not permitted", "point {where} at a folder you can write to"),
    errno.EFBIG: ("file too large for this file system", "point {where} at another file system"),
    errno.EISDIR: ("target is a directory", "point {where} at a file name, not a folder"),
    errno.ENOTDIR: ("a parent of the target is not a folder", "point {where} at a path inside a folder"),
    errno.EIO: ("input/output error", "check the disk, or point {where} elsewhere"),
}


class OutputError(OSError):
    """Writing ``path`` failed; nothing new was left at ``path`` and no temporary file remains.

    ``errno`` is the operating system's code (``ENOSPC``, ``EDQUOT``, ``EROFS``,
    ``EACCES``, ...), ``path`` the target, ``detail`` an optional note (e.g.
    the space needed). ``str()`` is one line; :meth:`line` names the option.
    """

    def __init__(self, path: str | Path, code: int | None, detail: str = ""):
        self.path = Path(path)
        self.detail = detail
        cause, _ = self._cause_fix(code)
        super().__init__(code, cause, str(path))

    @staticmethod
    def _cause_fix(code: int | None) -> tuple[str, str]:
        if code in _CAUSES:
            return _CAUSES[code]
        text = os.strerror(code).lower() if code else "write failed"
        return text, "check the target folder, or point {where} elsewhere"

    def line(self, where: str = "the output") -> str:
        """``{cause} writing {path}[ ({detail})]: {fix}``, the fix naming ``where``."""
        cause, fix = self._cause_fix(self.errno)
        detail = f" ({self.detail})" if self.detail else ""
        return f"{cause} writing {self.path}{detail}: {fix.format(where=where)}"

    def __str__(self) -> str:
        return self.line()

    def __reduce__(self):  # picklable (e.g. across a process pool) with its own arguments
        return (type(self), (self.path, self.errno, self.detail))


def _output_error(path: Path, err: BaseException) -> OutputError:
    if isinstance(err, OutputError):
        return err
    code = getattr(err, "errno", None)
    if not code and _disk_full(path.parent):
        code = errno.ENOSPC
    return OutputError(path, code)


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def _size(nbytes: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes} bytes"  # pragma: no cover


def ensure_free_space(path: str | Path, nbytes: int, margin: int = FREE_SPACE_MARGIN) -> None:
    """Raise :class:`OutputError` (``ENOSPC``) unless ``path``'s folder has ``nbytes + margin`` free.

    The previous file at ``path`` is not counted as free: it stays until the
    new one is complete. A folder whose free space cannot be read passes.
    """
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    need = int(nbytes) + int(margin)
    if free < need:
        raise OutputError(path, errno.ENOSPC, f"needs about {_size(need)}, {_size(free)} free")


def _temp_path(target: Path, kind: str = "tmp") -> Path:
    stem = target.name
    room = _MAX_NAME - len(kind) - 12  # "." + "." + 8 hex + "." + kind
    if len(stem.encode()) > room:
        stem = stem.encode()[:room].decode(errors="ignore")
    return target.with_name(f".{stem}.{secrets.token_hex(4)}.{kind}")


def _new_temp(target: Path) -> Path:
    """Create an empty temporary file beside ``target`` (mode 0666 minus the umask) and return its path."""
    while True:
        tmp = _temp_path(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        os.close(fd)
        return tmp


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable; best effort (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mkdir(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _output_error(target, err) from err


def _write_temp(target: Path, data: bytes | memoryview) -> Path:
    tmp = _new_temp(target)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _commit(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each ``(tmp, target)``; on a failure put back every target already replaced.

    With more than one pair, each existing target is first hard-linked (or,
    where links are not supported, renamed) to a backup beside it, so a
    failed later rename can restore it. Raises :class:`OutputError` naming the
    target whose rename failed; the temporary files are always removed.
    """
    replaced: list[Path] = []
    backups: dict[Path, Path] = {}
    current = pairs[0][1] if pairs else Path(".")
    try:
        for tmp, target in pairs:
            current = target
            if len(pairs) > 1 and target.is_file():
                backup = _temp_path(target, "bak")
                try:
                    os.link(target, backup)
                except OSError:
                    os.replace(target, backup)
                backups[target] = backup
            os.replace(tmp, target)
            replaced.append(target)
    except BaseException as err:
        for target in reversed(replaced):  # roll back the renames already done
            try:
                if target in backups:
                    os.replace(backups[target], target)
                else:
                    target.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - nothing more can be done
                pass
        for target, backup in backups.items():  # the failed one, if its old file was moved aside
            if not target.exists() and backup.exists():
                os.replace(backup, target)
        if isinstance(err, OSError):
            raise _output_error(current, err) from err
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)
    for folder in {target.parent for _, target in pairs}:
        _fsync_dir(folder)


def write_files(contents: Mapping[str | Path, bytes | bytearray | memoryview | str], encoding: str = "utf-8",
                mode: int | None = None) -> list[Path]:
    """Write several files, all or none (text is encoded with ``encoding``); returns the paths.

    ``mode``: permission bits for every file (default: 0666 minus the umask).

    Raises:
        OutputError: naming the file that could not be written; no target
            changed and no temporary file is left.
    """
    items = [(Path(p), d.encode(encoding) if isinstance(d, str) else memoryview(d)) for p, d in contents.items()]
    pairs: list[tuple[Path, Path]] = []
    try:
        for target, data in items:
            _mkdir(target)
            try:
                pairs.append((_write_temp(target, data), target))
                if mode is not None:
                    os.chmod(pairs[-1][0], mode)
            except OSError as err:
                raise _output_error(target, err) from err
        _commit(pairs)
    finally:
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)
    return [target for target, _ in items]


def write_bytes(path: str | Path, data: bytes | bytearray | memoryview, mode: int | None = None) -> Path:
    """Write ``data`` (any bytes-like object, not copied) to ``path`` atomically; returns ``path``.

    Raises :class:`OutputError`.
    """
    return write_files({path: data}, mode=mode)[0]


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``. Raises :class:`OutputError`."""
    return write_files({path: text}, encoding=encoding)[0]


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically with its mode and times (:func:`shutil.copy2`); returns ``dst``.

    Raises:
        OutputError: ``dst`` could not be written (unchanged, no temporary file left).
        OSError: ``src`` cannot be read.
    """
    src, dst = Path(src), Path(dst)
    with open(src, "rb"):  # a missing source is the caller's error, not an output error
        pass
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
    return dst


@contextmanager
def atomic_path(path: str | Path, nbytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block exits cleanly, fsync it and rename it to ``path``.

    ``nbytes``: the size about to be written, checked against the free space
    first (:func:`ensure_free_space`). An ``OSError`` inside the block, or any
    other exception while the disk is full (writers such as h5py may report
    a failed write without an errno), becomes :class:`OutputError`; the
    temporary file is always removed.
    """
    target = Path(path)
    _mkdir(target)
    if nbytes is not None:
        ensure_free_space(target, nbytes)
    try:
        tmp = _new_temp(target)
    except OSError as err:
        raise _output_error(target, err) from err
    try:
        yield tmp
        _fsync_file(tmp)
        _commit([(tmp, target)])
    except OSError as err:
        raise _output_error(target, err) from err
    except Exception as err:
        if _disk_full(target.parent):
            raise OutputError(target, errno.ENOSPC) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- serializers


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory (write the result with :func:`write_bytes`)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def npz_bytes(arrays: Mapping[str, Any], compressed: bool = True) -> bytes:
    """An NPZ archive of ``arrays`` in memory (``np.savez_compressed`` / ``np.savez``)."""
    import numpy as np

    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def figure_bytes(fig: Any, fmt: str, **kwargs: Any) -> bytes:
    """``fig.savefig`` into memory in format ``fmt`` (``png``, ``svg``, ``pdf``...)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    return buf.getvalue()

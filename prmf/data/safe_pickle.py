"""Restricted unpickling of the object arrays inside ``.npz`` / ``.npy`` files.

MERBench keeps its labels in ``label-6way.npz``: every ``*_corpus`` member is a
0-d object array whose payload is a pickled ``dict``.  ``np.load(...,
allow_pickle=True)`` would run *any* code a crafted file carries, so we decode
those members ourselves:

* the ``.npy`` member is read straight from the zip archive (``zipfile``);
* its header is parsed with :mod:`numpy.lib.format` (magic, then the 1.0/2.0/3.0
  header) exactly as :func:`numpy.lib.format.read_array` does;
* for an object dtype the rest of the stream is a pickle, which is decoded by
  :class:`RestrictedUnpickler`, whose ``find_class`` admits only numpy's array
  reconstruction machinery, numpy dtypes / scalar types and a handful of plain
  builtin containers (plus ``_codecs.encode``, replaced by a latin-1-only stand-in,
  which protocol-2 pickles from numpy < 1.17 use to spell ``bytes``).  Anything
  else (``os.system``, ``builtins.eval``, a user class, ...) raises
  :class:`UnsafePickleError` *before* it can be called;
* non-object members are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import builtins
import importlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.lib.format as npformat

__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_npz_restricted",
    "read_npy_restricted",
    "restricted_loads",
]

_FIX = (
    "fix: only load label files from a trusted MERBench download; re-create the "
    "file with plain dicts of str/int/float (e.g. np.savez(path, train_corpus="
    "np.array(corpus_dict, dtype=object), ...)) if it was produced elsewhere"
)

# Numpy's array reconstruction machinery.  ``numpy.core`` is the pre-2.0
# spelling found in older pickles; it is mapped onto ``numpy._core`` when the
# running numpy has it (avoids numpy's DeprecationWarning for ``numpy.core``).
_NUMPY_MACHINERY = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of plain arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}

_NUMPY_SCALAR_TYPES = {
    "bool_", "bool",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "intc", "uintc", "intp", "uintp", "longlong", "ulonglong", "short", "ushort", "byte", "ubyte",
    "float16", "float32", "float64", "longdouble", "half", "single", "double",
    "complex64", "complex128", "clongdouble",
    "str_", "bytes_",
}  # fmt: skip

_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
             "int", "float", "complex", "bool"}  # fmt: skip


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles spell ``bytes`` as
    ``_codecs.encode(text, 'latin1')`` (numpy < 1.17 saved object arrays with
    protocol 2).  Only that use is admitted: str -> latin-1 bytes."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed as encode(str, 'latin1'), got encoding {encoding!r}"
        )
    return obj.encode("latin1", errors if errors == "strict" else "strict")


_SUBSTITUTES: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}

#: Every ``(module, name)`` pair the restricted unpickler resolves.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    _NUMPY_MACHINERY
    | set(_SUBSTITUTES)
    | {("numpy", n) for n in _NUMPY_SCALAR_TYPES}
    | {("builtins", n) for n in _BUILTINS}
    | {("__builtin__", n) for n in _BUILTINS}  # python-2 era pickles
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list.

    Attributes:
        source: the file (and member) the pickle came from.
        key: the npz member / corpus key, when known.
        module, name: the refused global.
    """

    def __init__(self, source: str, key: str | None, module: str, name: str):
        self.source, self.key, self.module, self.name = source, key, module, name
        where = f"{source}" + (f" (key '{key}')" if key else "")
        super().__init__(
            f"{where}: refused to unpickle global '{module}.{name}': only numpy array "
            f"reconstruction, numpy scalar types and builtin dict/list/tuple/str/int/float "
            f"are allowed, because a pickle can run arbitrary code ('{module}.{name}' is "
            f"not on the allow-list); {_FIX}"
        )


def _resolve_module(module: str) -> str:
    if module == "__builtin__":
        return "builtins"
    if module.startswith("numpy.core.") or module == "numpy.core":
        try:
            importlib.import_module("numpy._core")
        except ImportError:  # numpy < 2: numpy.core is the real thing
            return module
        return "numpy._core" + module[len("numpy.core") :]
    return module


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`.

    Dotted names (protocol 4 qualified names such as ``ndarray.__new__``) never
    match the allow-list, so attribute walking is refused as well.
    Persistent ids are refused by the base class (no ``persistent_load``).
    """

    def __init__(self, file: BinaryIO, *, source: str = "<pickle>", key: str | None = None, **kwargs: Any):
        kwargs.setdefault("encoding", "latin1")  # numpy's advice for py2 array pickles
        kwargs.setdefault("fix_imports", True)
        super().__init__(file, **kwargs)
        self.source, self.key = source, key

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(self.source, self.key, module, name)
        if (module, name) in _SUBSTITUTES:
            return _SUBSTITUTES[(module, name)]
        real = _resolve_module(module)
        if real == "builtins":
            return getattr(builtins, name)
        obj = getattr(importlib.import_module(real), name, None)
        if obj is None:  # e.g. numpy.bool on numpy < 2
            raise UnsafePickleError(self.source, self.key, module, name)
        return obj


def restricted_loads(data: bytes, *, source: str = "<pickle>", key: str | None = None) -> Any:
    """Unpickle ``data`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), source=source, key=key).load()


def _read_header(fp: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npformat.read_magic(fp)
    if version == (1, 0):
        return npformat.read_array_header_1_0(fp)
    if version == (2, 0):
        return npformat.read_array_header_2_0(fp)
    reader = getattr(npformat, "_read_array_header", None)
    if reader is None:  # numpy >= 2.x keeps it in the private implementation module
        from numpy.lib import _format_impl  # type: ignore[attr-defined]

        reader = _format_impl._read_array_header
    return reader(fp, version)


def read_npy_restricted(fp: BinaryIO, *, source: str = "<npy>", key: str | None = None) -> np.ndarray:
    """Read one ``.npy`` stream; object dtypes go through :class:`RestrictedUnpickler`.

    Mirrors :func:`numpy.lib.format.read_array`: after the header, an object
    array's data is a single pickle of the whole array.

    Raises:
        UnsafePickleError: the pickle references a global that is not allowed.
        ValueError: the stream is not a valid ``.npy`` / the pickle is not an array
            of the announced shape.
    """
    start = fp.tell()
    shape, fortran_order, dtype = _read_header(fp)
    if not dtype.hasobject:
        fp.seek(start)
        return npformat.read_array(fp, allow_pickle=False)
    try:
        array = RestrictedUnpickler(fp, source=source, key=key).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as err:
        where = f"{source}" + (f" (key '{key}')" if key else "")
        raise ValueError(f"{where}: corrupt pickled object array ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray) or tuple(array.shape) != tuple(shape):
        where = f"{source}" + (f" (key '{key}')" if key else "")
        raise ValueError(
            f"{where}: pickled payload is {type(array).__name__} "
            f"{getattr(array, 'shape', '')}, expected an array of shape {tuple(shape)}"
        )
    return array


def load_npz_restricted(path: str | Path) -> dict[str, np.ndarray]:
    """All members of an ``.npz`` archive without unrestricted unpickling.

    Non-object members are read by ``np.load(path, allow_pickle=False)``; object
    members are decoded from the raw zip member by :func:`read_npy_restricted`.

    Raises:
        UnsafePickleError, ValueError (not an npz / corrupt member), OSError.
    """
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive, found a plain .npy array")
    out: dict[str, np.ndarray] = {}
    with npz, zipfile.ZipFile(path) as zf:
        members = set(zf.namelist())
        for key in npz.files:
            member = key if key in members else key + ".npy"
            with zf.open(member) as raw:
                fp = io.BytesIO(raw.read())
            try:
                _, _, dtype = _read_header(fp)
            except ValueError as err:
                raise ValueError(f"{path} (key '{key}'): invalid .npy header ({err})") from err
            if dtype.hasobject:
                fp.seek(0)
                out[key] = read_npy_restricted(fp, source=str(path), key=key)
            else:
                try:
                    out[key] = npz[key]
                except (ValueError, EOFError, OSError) as err:
                    raise ValueError(f"{path} (key '{key}'): unreadable member ({err})") from err
    return out

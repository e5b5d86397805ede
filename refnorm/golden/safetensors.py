"""A small, strict reader and writer of the safetensors format (no dependency
on the ``safetensors`` package, never unpickles).

Layout of a file (all integers little-endian)::

    bytes [0, 8)          N, unsigned 64-bit: the length of the header
    bytes [8, 8+N)        the header: UTF-8 JSON object, padded with spaces to make 8+N a multiple of 8
    bytes [8+N, end)      the data buffer: every tensor's raw little-endian bytes, back to back

The header maps each tensor name to ``{"dtype", "shape", "data_offsets"}``
(offsets relative to the start of the data buffer) plus an optional
``"__metadata__"`` object of string -> string.

What we write is byte-deterministic: the header JSON has sorted keys and no
whitespace, and tensors are laid out in order of decreasing item size, then
name (the order the reference implementation uses), so that every tensor
starts at an offset that is a multiple of its item size from the start of the
file (the header block is a multiple of 8 bytes).  Readers must not rely on
the order: they find tensors through ``data_offsets``.

What we read is validated completely; any defect raises
:class:`GoldenFormatError` naming the file and the reason.  See
``spec/FORMAT.md`` for the byte-level description.

On the reader's side of :mod:`refnorm.golden`, after the dtype facts of
:mod:`refnorm.golden.dtypes` (the four dtypes and their codes).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from . import dtypes

__all__ = [
    "DTYPES",
    "GoldenFormatError",
    "dumps",
    "loads",
    "load_file",
    "read_header",
    "save_file",
]

#: safetensors dtype code -> numpy dtype (the only four a golden file may hold).
DTYPES: dict[str, np.dtype] = {dtypes.DTYPE_CODES[name]: dt for name, dt in dtypes.DTYPES.items()}
# little-endian unsigned view used to serialise each dtype (bfloat16 has no byte-order variants)
_RAW = {"F64": np.dtype("<u8"), "F32": np.dtype("<u4"), "F16": np.dtype("<u2"), "BF16": np.dtype("<u2")}
_NATIVE_UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16}

#: Largest header we accept (the reference implementation's limit).
MAX_HEADER_BYTES = 100_000_000
#: Tensor names: ASCII identifiers with dots (``x``, ``dweight``, ``y.scale``).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_METADATA = "__metadata__"
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class GoldenFormatError(ValueError):
    """A golden file or manifest is malformed, corrupt or inconsistent."""

    def __init__(self, source, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


# ----------------------------------------------------------------------------- writing


def _check_name(name) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name) or name == _METADATA:
        raise ValueError(f"invalid tensor name {name!r}: must match {NAME_RE.pattern} and not be {_METADATA}")


def _code(name: str, a: np.ndarray) -> str:
    dt = a.dtype.newbyteorder("=") if a.dtype.byteorder in "<>" else a.dtype
    for code, known in DTYPES.items():
        if dt == known:
            return code
    raise TypeError(f"tensor {name!r} has dtype {a.dtype}; golden files hold float64, float32, "
                    f"float16 and bfloat16 (ml_dtypes) only")


def _raw_bytes(a: np.ndarray, code: str) -> bytes:
    """The little-endian bytes of ``a`` in C order."""
    a = np.ascontiguousarray(a.astype(DTYPES[code], copy=False))  # native byte order
    return a.view(_NATIVE_UINT[a.dtype.itemsize]).astype(_RAW[code], copy=False).tobytes()


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise ``tensors`` (name -> array) and optional string ``metadata`` to bytes."""
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata must map str to str, got {k!r}: {v!r}")
    arrays = {}
    for name, a in tensors.items():
        _check_name(name)
        if isinstance(a, np.generic):
            a = np.asarray(a)
        if not isinstance(a, np.ndarray):
            raise TypeError(f"tensor {name!r} is a {type(a).__name__}, not a numpy array")
        arrays[name] = (a, _code(name, a))
    # decreasing item size, then name: every tensor is naturally aligned in the file
    order = sorted(arrays, key=lambda n: (-arrays[n][0].dtype.itemsize, n))
    header: dict = {}
    chunks = []
    offset = 0
    for name in order:
        a, code = arrays[name]
        raw = _raw_bytes(a, code)
        header[name] = {"dtype": code, "shape": [int(s) for s in a.shape],
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header[_METADATA] = dict(metadata)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same
    directory and ``os.replace``: readers see the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_file(tensors: Mapping[str, np.ndarray], path, metadata: Mapping[str, str] | None = None) -> bytes:
    """Write a safetensors file atomically; return the bytes written."""
    data = dumps(tensors, metadata)
    atomic_write_bytes(path, data)
    return data


# ----------------------------------------------------------------------------- reading


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _reject_constant(c):
    raise ValueError(f"non-standard JSON constant {c}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(data: bytes, source) -> tuple[dict, dict, int]:
    """Validate the header; return (entries, metadata, start of the data buffer)."""
    size = len(data)
    if size < 8:
        raise GoldenFormatError(source, f"file is {size} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise GoldenFormatError(source, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if n > size - 8:
        raise GoldenFormatError(source, f"header length {n} runs past the end of the file "
                                        f"({size} bytes; file truncated?)")
    if n < 2:
        raise GoldenFormatError(source, f"header length {n} is too small for a JSON object")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise GoldenFormatError(source, f"header is not valid UTF-8 ({e})") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as e:
        raise GoldenFormatError(source, f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise GoldenFormatError(source, f"header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop(_METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise GoldenFormatError(source, "__metadata__ must be an object mapping strings to strings")
    buffer_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if not NAME_RE.match(name):
            raise GoldenFormatError(source, f"invalid tensor name {name!r} (must match {NAME_RE.pattern})")
        if not isinstance(entry, dict):
            raise GoldenFormatError(source, f"tensor {name!r}: entry is not an object")
        if set(entry) != _ENTRY_KEYS:
            raise GoldenFormatError(source, f"tensor {name!r}: entry has keys {sorted(entry)}, "
                                            f"expected {sorted(_ENTRY_KEYS)}")
        code = entry["dtype"]
        if code not in DTYPES:
            raise GoldenFormatError(source, f"tensor {name!r}: unsupported dtype {code!r} "
                                            f"(golden files use {', '.join(DTYPES)})")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise GoldenFormatError(source, f"tensor {name!r}: shape {shape!r} is not a list of "
                                            f"non-negative integers")
        offs = entry["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise GoldenFormatError(source, f"tensor {name!r}: data_offsets {offs!r} is not "
                                            f"[begin, end] with 0 <= begin <= end")
        if offs[1] > buffer_len:
            raise GoldenFormatError(source, f"tensor {name!r}: data_offsets {offs} run past the end of "
                                            f"the {buffer_len}-byte data buffer (file truncated?)")
        want = math.prod(shape) * DTYPES[code].itemsize
        if offs[1] - offs[0] != want:
            raise GoldenFormatError(source, f"tensor {name!r}: {offs[1] - offs[0]} bytes for shape {shape} "
                                            f"of {code} (needs {want})")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos, prev = 0, None
    for begin, end, name in spans:
        if begin < pos:
            raise GoldenFormatError(source, f"tensor {name!r}: data_offsets [{begin}, {end}] overlap "
                                            f"tensor {prev!r}")
        if begin > pos:
            raise GoldenFormatError(source, f"tensor {name!r}: gap of {begin - pos} unused bytes before "
                                            f"data_offsets [{begin}, {end}]")
        pos, prev = end, name
    if pos != buffer_len:
        raise GoldenFormatError(source, f"{buffer_len - pos} trailing bytes after the last tensor "
                                        f"(data buffer is {buffer_len} bytes, tensors cover {pos})")
    return header, metadata, 8 + n


def _decode(data: bytes, start: int, entry: dict) -> np.ndarray:
    code = entry["dtype"]
    b, e = entry["data_offsets"]
    bits = np.frombuffer(data, dtype=_RAW[code], count=(e - b) // _RAW[code].itemsize, offset=start + b)
    bits = bits.astype(_NATIVE_UINT[_RAW[code].itemsize])  # a fresh, aligned, writable copy
    return bits.view(DTYPES[code]).reshape(entry["shape"])


def loads(data: bytes, source="<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes; return ``(tensors, metadata)``.  ``source``
    names the data in error messages."""
    header, metadata, start = _parse_header(data, source)
    return {name: _decode(data, start, header[name]) for name in sorted(header)}, metadata


def load_file(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and validate a safetensors file; return ``(tensors, metadata)``."""
    return loads(Path(path).read_bytes(), source=path)


def read_header(data_or_path) -> tuple[dict, dict]:
    """The validated header of a file (or of its bytes) without decoding the
    tensors: ``({name: {"dtype", "shape", "data_offsets"}}, metadata)``."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        data, source = bytes(data_or_path), "<bytes>"
    else:
        data, source = Path(data_or_path).read_bytes(), data_or_path
    header, metadata, _ = _parse_header(data, source)
    return header, metadata

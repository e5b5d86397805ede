"""Reading a golden corpus: :func:`load_cases`, :func:`load_case`, :class:`GoldenCase`.

The reader's side of :mod:`refnorm.golden`, apart from the generator: it
needs the corpus format (:mod:`refnorm.golden.safetensors`,
:mod:`refnorm.golden.manifest`), the comparison rule
(:mod:`refnorm.golden.comparison`) and the selection of cases
(:mod:`refnorm.golden.selection`), never the catalogue, the input recipes or
the tolerance model, so a backend's tests load and check cases without
importing them.  :mod:`refnorm.golden.corpus` (generate, verify) builds on
this module.

Every file is read whole and its SHA-256 checked against the manifest before
it is parsed; its tensors are checked against the manifest's list (names,
dtypes, shapes, roles).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from . import comparison
from .locations import corpus_dir
from .manifest import CORPUS_FIELDS, MANIFEST_NAME, SCALE_SUFFIX, load_manifest, resolve_case_file
from .safetensors import DTYPES, GoldenFormatError, loads
from .selection import parse, selected

__all__ = ["GoldenCase", "iter_entries", "load_case", "load_cases"]


def file_sha256(data: bytes) -> str:
    """The hex SHA-256 of a file's bytes, as the manifest records it."""
    return hashlib.sha256(data).hexdigest()


def check_header(entry: dict, tensors: dict[str, np.ndarray]) -> list[str]:
    """Why a file's tensors do not match its manifest entry (names, dtypes,
    shapes, float64 expected and scale tensors); empty when they do."""
    reasons = []
    want, have = entry["tensors"], tensors
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
        reasons.append(f"tensors {missing} listed in the manifest are not in the file")
    if extra:
        reasons.append(f"tensors {extra} in the file are not in the manifest")
    for name in sorted(set(want) & set(have)):
        t, a = want[name], have[name]
        code = next(c for c, dt in DTYPES.items() if a.dtype == dt)
        if code != t["dtype"] or list(a.shape) != t["shape"]:
            reasons.append(f"tensor {name!r} is {code}{list(a.shape)} in the file, "
                           f"{t['dtype']}{t['shape']} in the manifest")
        elif t["role"] in ("expected", "scale") and code != "F64":
            reasons.append(f"{t['role']} tensor {name!r} is {code}, must be F64")
    return reasons


def split_tensors(entry: dict, tensors: dict) -> tuple[dict, dict, dict]:
    """A file's tensors by role: (inputs, expected outputs, output -> scale tensor)."""
    roles = {n: t["role"] for n, t in entry["tensors"].items()}
    inputs = {n: a for n, a in tensors.items() if roles.get(n) == "input"}
    expected = {n: a for n, a in tensors.items() if roles.get(n) == "expected"}
    scales = {n[:-len(SCALE_SUFFIX)]: a for n, a in tensors.items() if roles.get(n) == "scale"}
    return inputs, expected, scales


@dataclass
class GoldenCase:
    """One golden case, read from the corpus.

    ``inputs`` are in the dtype under test; ``expected`` and ``scales`` are
    float64; ``tolerances`` maps each expected output to its tolerance dict;
    ``expect`` is the declared behaviour (``{"kind": "value"|"nan"|"error", ...}``).
    """

    id: str
    op: str
    tier: str
    dtype: str
    attrs: dict
    inputs: dict
    expected: dict
    scales: dict
    tolerances: dict
    expect: dict
    description: str
    shapes: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    seed: int | None = None
    file: Path | None = None
    spec: dict = field(default_factory=dict, repr=False)
    layout: dict = field(default_factory=dict)  # tensor -> memory layout (refnorm.golden.layouts)
    checks: dict = field(default_factory=dict)  # properties checked beyond the values (casespec.CHECKS)

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[1].rsplit("__", 1)[0]

    def repro(self) -> str:
        """A one-line Python snippet that loads this case."""
        return f"from refnorm.golden import load_case; case = load_case({self.id!r})"

    def assert_close(self, name: str, actual) -> None:
        """Raise ``AssertionError`` unless ``actual`` matches expected output
        ``name`` within its tolerance; the message names the op, the case, the
        output, the worst error as a multiple of the tolerance, its index and
        its size in ULPs of the case dtype."""
        if name not in self.expected:
            raise KeyError(f"{self.op} [{self.id}]: no expected output {name!r} "
                           f"(this case has {sorted(self.expected) or 'none: expect=' + json.dumps(self.expect)})")
        expected = self.expected[name]
        actual = np.asarray(actual)
        where = f"{self.op} [{self.id}] output {name!r}"
        if actual.shape != expected.shape:
            raise AssertionError(f"{where}: shape {actual.shape}, expected {expected.shape}\nrepro: {self.repro()}")
        tol = self.tolerances[name]
        cmp = comparison.compare(expected, actual, tol, self.scales.get(name), dtype=self.dtype)
        if not cmp.ok:
            idx = cmp.worst_index
            idx = tuple(int(i) for i in idx) if isinstance(idx, (tuple, list, np.ndarray)) else idx
            raise AssertionError(
                f"{where}: worst error {cmp.worst_ratio:.3g} x tolerance at index {idx} "
                f"({cmp.worst_ulps} ulp in {self.dtype}); {cmp.n_bad} of {expected.size} elements out of "
                f"tolerance (atol={tol['atol']:.3g}, rtol={tol['rtol']:.3g}, ulp={tol['ulp']}, "
                f"scale={tol['scale']})\n{cmp.message}\nrepro: {self.repro()}")


def _read_case(root: Path, entry: dict) -> GoldenCase:
    path = resolve_case_file(root, entry["file"], source=root / MANIFEST_NAME)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GoldenFormatError(path, f"file of case {entry['id']} is missing") from None
    sha = file_sha256(data)
    if sha != entry["sha256"]:
        raise GoldenFormatError(path, f"sha256 mismatch (file {sha}, manifest {entry['sha256']}): the file was "
                                      f"modified or corrupted; restore it or regenerate with `refnorm generate`")
    tensors, _ = loads(data, source=path)
    reasons = check_header(entry, tensors)
    if reasons:
        raise GoldenFormatError(path, "; ".join(reasons))
    inputs, expected, scales = split_tensors(entry, tensors)
    spec = {k: v for k, v in entry.items() if k not in CORPUS_FIELDS}
    return GoldenCase(id=entry["id"], op=entry["op"], tier=entry["tier"], dtype=entry["dtype"],
                      attrs=entry["attrs"], inputs=inputs, expected=expected, scales=scales,
                      tolerances=entry["tolerances"], expect=entry["expect"], description=entry["description"],
                      shapes=entry["shapes"], recipe=entry["recipe"], seed=entry["seed"], file=path, spec=spec,
                      layout=entry.get("layout", {}), checks=entry.get("checks", {}))


def load_cases(ops=None, dtypes=None, tiers=None, root=None) -> list[GoldenCase]:
    """The corpus's cases (sorted by id) matching the selection, as a list.

    ``ops``, ``dtypes`` and ``tiers`` are names or lists of names (``None``:
    all); ``root`` is the corpus directory (default:
    :func:`~refnorm.golden.locations.default_root`).  Every file is read and
    its SHA-256 checked against the manifest; a mismatch, or any other
    malformed file, raises :class:`GoldenFormatError` naming the file.  The
    whole committed corpus is about 23 MiB in memory.
    """
    root = corpus_dir(root)
    ops, dtypes, tiers = parse(ops, dtypes, tiers)
    manifest = load_manifest(root)
    return [_read_case(root, entry) for entry in manifest["cases"] if selected(entry, ops, dtypes, tiers)]


def load_case(case_id: str, root=None) -> GoldenCase:
    """The one case with id ``case_id``."""
    root = corpus_dir(root)
    for entry in load_manifest(root)["cases"]:
        if entry["id"] == case_id:
            return _read_case(root, entry)
    raise KeyError(f"no golden case {case_id!r} in {root}")


def iter_entries(root=None, *, ops=None, dtypes=None, tiers=None) -> Iterable[dict]:
    """The manifest entries matching the selection, without reading any file."""
    root = corpus_dir(root)
    ops, dtypes, tiers = parse(ops, dtypes, tiers)
    return [e for e in load_manifest(root)["cases"] if selected(e, ops, dtypes, tiers)]

"""The golden corpus on disk: generate it, verify it, load cases from it.

A corpus is a directory holding ``manifest.json`` and one safetensors file
per case, ``<op>/<name>__<dtype>.safetensors``, with the case's inputs (in the
dtype under test), its float64 expected outputs and, where the tolerance is
relative to a scale tensor, ``<output>.scale``.  Error cases hold inputs only.

* :func:`generate` builds every selected case of the catalogue into a fresh
  temporary directory next to the target and swaps it in by renaming, so an
  interrupted run leaves the old corpus intact.
* :func:`verify` re-hashes every file, checks it against the manifest and
  recomputes every expected value from the stored inputs, bit for bit.
* :func:`load_cases` yields :class:`GoldenCase` objects, refusing any file
  whose SHA-256 differs from the manifest.

The corpus directory defaults to :func:`~refnorm.golden.locations.default_root`
(the committed ``spec/golden`` in a checkout, the corpus shipped in an installed
package); the environment variable ``REFNORM_GOLDEN_DIR`` or a ``root=`` argument
overrides it.

The last link of the chain of :mod:`refnorm.golden`: it writes what
:mod:`refnorm.golden.build` builds from the cases of
:mod:`refnorm.golden.catalogue`, and verifies with the same modules and the
tolerance model.  Reading is :mod:`refnorm.golden.reader`'s (its names are
importable from here too), which imports none of them.  ``generate`` and
``verify`` reach the catalogue, the builder and the tolerance model through
their modules (``catalogue.catalogue``, ``build.build_case``,
``build.expected_from_inputs``, ``tolerance.tolerances``), so a test can put
a synthetic catalogue in their place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import build, catalogue, tolerance
from .casespec import OPTIONAL_FIELDS, CaseSpec
from .locations import ENV_VAR, corpus_dir, default_root
from .manifest import (
    CORPUS_FIELDS,
    MANIFEST_NAME,
    SCALE_SUFFIX,
    case_entry,
    corpus_files,
    load_manifest,
    make_manifest,
    resolve_case_file,
    write_manifest,
)
from .reader import (
    GoldenCase,
    check_header,
    file_sha256,
    iter_entries,
    load_case,
    load_cases,
    split_tensors,
)
from .safetensors import DTYPES, GoldenFormatError, current_umask, loads, save_file
from .selection import SelectionError, parse, selected

__all__ = [
    "ENV_VAR",
    "GenerateStats",
    "GoldenCase",
    "Problem",
    "SelectionError",
    "case_file",
    "default_root",
    "generate",
    "iter_entries",
    "load_case",
    "load_cases",
    "verify",
    "write_cases",
]


def _spec_fields(spec) -> dict:
    """The JSON form of a case spec: every field of the dataclass (an optional
    one, :data:`~refnorm.golden.casespec.OPTIONAL_FIELDS`, only when it is not empty)."""
    raw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
           if f.name not in OPTIONAL_FIELDS or getattr(spec, f.name)}
    clash = set(raw) & set(CORPUS_FIELDS)
    if clash:
        raise ValueError(f"case spec fields {sorted(clash)} clash with manifest fields")
    return _jsonable(raw, f"case {spec.id}: spec")


def _numpy_scalar(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _jsonable(obj, what: str):
    """``obj`` as plain JSON data (tuples -> lists, numpy scalars -> Python), or ValueError."""
    try:
        return json.loads(json.dumps(obj, sort_keys=True, allow_nan=False, default=_numpy_scalar))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable ({e})") from None


# ----------------------------------------------------------------------------- locations


def case_file(spec) -> str:
    """The relative POSIX path of a case's file: ``<op>/<name>__<dtype>.safetensors``."""
    return f"{spec.op}/{spec.name}__{spec.dtype}.safetensors"


# ----------------------------------------------------------------------------- generate


@dataclass
class GenerateStats:
    """What :func:`generate` wrote."""

    out_dir: Path
    cases: int = 0
    bytes: int = 0
    seconds: float = 0.0
    by_op: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.cases} cases, {self.bytes / 2**20:.2f} MiB, in {self.seconds:.1f} s -> {self.out_dir}")


def canonical_nan(a: np.ndarray) -> np.ndarray:
    """``a`` (float64) with every NaN replaced by the canonical quiet NaN
    0x7FF8000000000000.  IEEE 754 gives a NaN's sign and payload no meaning, and
    they depend on instruction selection (``inf - inf`` is a negative NaN on
    x86, an operand's NaN passes through), so expected and scale tensors store
    one NaN pattern and are compared with it."""
    a = np.asarray(a, dtype=np.float64)
    nan = np.isnan(a)
    if not nan.any():
        return a
    out = a.copy()
    out[nan] = np.float64(np.nan)  # numpy's nan is the canonical 0x7FF8000000000000
    return out


def _case_tensors(built) -> tuple[dict, dict]:
    """(name -> array to store, name -> {"dtype", "shape", "role"}) for a built case."""
    spec = built.spec
    arrays: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}

    def add(name, a, role):
        if name in arrays:
            raise ValueError(f"case {spec.id}: tensor name {name!r} used twice ({roles[name]} and {role})")
        arrays[name], roles[name] = a, role

    for name, a in built.inputs.items():
        add(name, np.asarray(a), "input")
    expected = dict(built.expected)
    if spec.expect.get("kind") == "error" and expected:
        raise ValueError(f"case {spec.id}: an error case must not carry expected values ({sorted(expected)})")
    for name, a in expected.items():
        a = np.asarray(a)
        if a.dtype != np.float64:
            raise TypeError(f"case {spec.id}: expected {name!r} is {a.dtype}, must be float64")
        add(name, canonical_nan(a), "expected")
    for name, a in built.scales.items():
        if name not in expected:
            raise ValueError(f"case {spec.id}: scale given for {name!r}, which is not an expected output")
        add(name + SCALE_SUFFIX, canonical_nan(a), "scale")
    meta = {}
    for name, a in arrays.items():
        code = next((c for c, dt in DTYPES.items() if a.dtype == dt), None)
        if code is None:
            raise TypeError(f"case {spec.id}: tensor {name!r} has dtype {a.dtype}")
        meta[name] = {"dtype": code, "shape": [int(s) for s in a.shape], "role": roles[name]}
    return arrays, meta


def _file_metadata(spec) -> dict[str, str]:
    return {"format": "refnorm-golden", "format_version": "1", "case": spec.id}


def _check_out_dir(out: Path) -> None:
    """Refuse to replace anything that is not a golden corpus."""
    if out.is_symlink():
        raise FileExistsError(f"{out} is a symlink; generate into its target directly")
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise FileExistsError(f"{out} is a non-empty directory without {MANIFEST_NAME}; refusing to replace "
                                  f"something that is not a golden corpus")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with renames (``out`` may not exist)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def generate(out_dir=None, *, ops=None, dtypes=None, tiers=None, include_large: bool = False,
             progress: Callable[[int, int], None] | None = None) -> GenerateStats:
    """Build the selected catalogue cases into ``out_dir`` (default:
    :func:`default_root`), replacing its previous content atomically.

    ``ops``, ``dtypes``, ``tiers`` select cases (lists of names, or
    comma-separated strings); ``progress(done, total)`` is called after
    each case.  Returns a :class:`GenerateStats`.
    """
    t0 = time.perf_counter()
    out = corpus_dir(out_dir).absolute()
    ops, dtypes, tiers = parse(ops, dtypes, tiers)
    _check_out_dir(out)
    specs = [s for s in catalogue.catalogue(include_large=include_large) if selected(s, ops, dtypes, tiers)]
    if not specs:
        raise SelectionError("no catalogue case matches the selection")
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = GenerateStats(out_dir=out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        entries, files = [], {}
        for i, spec in enumerate(specs):
            rel = case_file(spec)
            if rel != f"{spec.id}.safetensors":
                raise ValueError(f"case id {spec.id!r} is not '<op>/<name>__<dtype>' "
                                 f"({spec.op!r}, {spec.name!r}, {spec.dtype!r})")
            if rel in files:
                raise ValueError(f"cases {files[rel]!r} and {spec.id!r} map to the same file {rel!r}")
            files[rel] = spec.id
            built = build.build_case(spec)
            arrays, tensors = _case_tensors(built)
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = save_file(arrays, path, _file_metadata(spec))
            tols = _jsonable(dict(built.tolerances), f"case {spec.id}: tolerances")
            entries.append(case_entry(_spec_fields(spec), file=rel, sha256=file_sha256(data), tensors=tensors,
                                      tolerances=tols))
            stats.cases += 1
            stats.bytes += len(data)
            stats.by_op[spec.op] = stats.by_op.get(spec.op, 0) + 1
            if progress is not None:
                progress(i + 1, len(specs))
        write_manifest(tmp / MANIFEST_NAME, make_manifest(entries))
        stats.bytes += (tmp / MANIFEST_NAME).stat().st_size
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stats.seconds = time.perf_counter() - t0
    return stats


def write_cases(out_dir, built_cases) -> list[str]:
    """Add built cases (:func:`refnorm.golden.build.build_case`, or cases built
    from a user's tensors or drawn by ``refnorm fuzz``) to the corpus at
    ``out_dir``, creating it if needed; a case whose id is already there is
    replaced, every other case is kept.  Each file and then the manifest are
    written atomically (temporary file + rename).  Returns the case ids
    written."""
    out = Path(out_dir).absolute()
    _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = {c["id"]: c for c in load_manifest(out)["cases"]} if (out / MANIFEST_NAME).is_file() else {}
    ids = []
    for built in built_cases:
        spec = built.spec
        rel = case_file(spec)
        if rel != f"{spec.id}.safetensors":
            raise ValueError(f"case id {spec.id!r} is not '<op>/<name>__<dtype>' ({spec.op!r}, {spec.name!r}, "
                             f"{spec.dtype!r})")
        arrays, tensors = _case_tensors(built)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = save_file(arrays, path, _file_metadata(spec))
        tols = _jsonable(dict(built.tolerances), f"case {spec.id}: tolerances")
        entries[spec.id] = case_entry(_spec_fields(spec), file=rel, sha256=file_sha256(data), tensors=tensors,
                                      tolerances=tols)
        ids.append(spec.id)
    write_manifest(out / MANIFEST_NAME, make_manifest(list(entries.values())))
    return ids


# ----------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Problem:
    """One defect found by :func:`verify`: the file (relative to the corpus) and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def _bits_differ(a: np.ndarray, b: np.ndarray) -> str | None:
    """Why two float64 arrays are not bit-identical, or None."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {list(b.shape)} recomputed vs {list(a.shape)} stored"
    if a.dtype != np.float64 or b.dtype != np.float64:
        return f"dtype {b.dtype} recomputed vs {a.dtype} stored"
    ua, ub = a.view(np.uint64), b.view(np.uint64)
    bad = ua != ub
    if not bad.any():
        return None
    idx = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
    return (f"{int(bad.sum())} of {a.size} elements differ in their bits "
            f"(first at {tuple(int(i) for i in idx)}: stored {a[idx]!r}, recomputed {b[idx]!r})")


def _recheck_values(entry: dict, inputs: dict, expected: dict, scales: dict) -> list[str]:
    """Recompute expected values, tolerances and scales; report any difference."""
    spec = CaseSpec.from_fields(entry)
    try:
        again = build.expected_from_inputs(spec, {k: v.copy() for k, v in inputs.items()})
    except Exception as e:  # a corpus problem to report, not a crash of verify
        return [f"recomputing the expected values raised {type(e).__name__}: {e}"]
    reasons = []
    if set(again) != set(expected):
        reasons.append(f"recomputed outputs {sorted(again)} differ from stored {sorted(expected)}")
    for name in sorted(set(again) & set(expected)):
        why = _bits_differ(expected[name], canonical_nan(again[name]))
        if why:
            reasons.append(f"expected {name!r} is not reproduced bit for bit: {why}")
    if reasons:
        return reasons
    try:
        tols, scales_again = tolerance.tolerances(spec, inputs, expected)
    except Exception as e:
        return [f"recomputing the tolerances raised {type(e).__name__}: {e}"]
    tols = _jsonable(dict(tols), "recomputed tolerances")
    if tols != entry["tolerances"]:
        diff = sorted(k for k in set(tols) | set(entry["tolerances"])
                      if tols.get(k) != entry["tolerances"].get(k))
        reasons.append(f"tolerances of {diff} differ from what the tolerance model gives now")
    scales_again = scales_again or {}
    if set(scales_again) != set(scales):
        reasons.append(f"scale tensors for {sorted(scales_again)} recomputed vs {sorted(scales)} stored")
    for name in sorted(set(scales_again) & set(scales)):
        why = _bits_differ(scales[name], canonical_nan(scales_again[name]))
        if why:
            reasons.append(f"scale of {name!r} is not reproduced bit for bit: {why}")
    return reasons


def verify(root=None, *, recompute: bool = True, progress: Callable[[int, int], None] | None = None,
           ops=None, dtypes=None, tiers=None) -> list[Problem]:
    """Check a corpus; return its problems (empty when it is sound).

    Every file is re-hashed and parsed, its tensors are checked against the
    manifest (names, dtypes, shapes, roles), and, with ``recompute``, every
    expected value, tolerance and scale is recomputed from the stored inputs
    and compared bit for bit.  Files under ``root`` that the manifest does not
    list are reported too.  ``ops`` / ``dtypes`` / ``tiers`` restrict the check
    to the selected cases (then unlisted files are not looked for): a first
    run compiles only the kernels those cases need.
    """
    root = corpus_dir(root)
    ops, dtypes, tiers = parse(ops, dtypes, tiers)
    try:
        manifest = load_manifest(root)
    except GoldenFormatError as e:
        return [Problem(MANIFEST_NAME, e.reason)]
    problems: list[Problem] = []
    selection = ops is not None or dtypes is not None or tiers is not None
    cases = [c for c in manifest["cases"] if selected(c, ops, dtypes, tiers)]
    if selection and not cases:
        raise SelectionError(f"no case of {root} matches the selection")
    for i, entry in enumerate(cases):
        rel = entry["file"]
        path = resolve_case_file(root, rel)
        reasons = _verify_entry(entry, path, recompute)
        problems.extend(Problem(rel, f"[{entry['id']}] {r}") for r in reasons)
        if progress is not None:
            progress(i + 1, len(cases))
    if not selection:
        listed = {c["file"] for c in cases}
        problems.extend(Problem(rel, "file is not listed in the manifest")
                        for rel in corpus_files(root) if rel not in listed)
    return problems


def _verify_entry(entry: dict, path: Path, recompute: bool) -> list[str]:
    if not path.is_file():
        return ["file is missing"]
    data = path.read_bytes()
    sha = file_sha256(data)
    if sha != entry["sha256"]:
        return [f"sha256 mismatch: the file hashes to {sha}, the manifest says {entry['sha256']}"]
    try:
        tensors, _ = loads(data, source=path.name)
    except GoldenFormatError as e:
        return [f"malformed file: {e.reason}"]
    reasons = check_header(entry, tensors)
    if reasons or not recompute or entry["expect"].get("kind") == "error":
        return reasons
    return _recheck_values(entry, *split_tensors(entry, tensors))

"""The golden-corpus manifest: ``spec/golden/manifest.json``.

One JSON object describing the corpus and every case in it (see
``spec/FORMAT.md`` for the field-by-field schema).  Written
deterministically (sorted keys, ``indent=1``, trailing newline) and validated
completely on load: any defect raises :class:`ManifestError` naming the
manifest, the case and the field.

On the reader's side of :mod:`refnorm.golden`: the dtype names and codes come
from :mod:`refnorm.golden.dtypes`, the tiers and expected kinds from
:mod:`refnorm.golden.casespec`, the file format from
:mod:`refnorm.golden.safetensors`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePosixPath

from .._version import __version__
from .casespec import CHECKS, KINDS, TIERS
from .layouts import check_layout
from .dtypes import DTYPE_CODES, DTYPE_NAMES
from .safetensors import NAME_RE, GoldenFormatError, _no_duplicates, _reject_constant, atomic_write_bytes

__all__ = [
    "ACCURACY",
    "CORPUS_FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestError",
    "SCALE_SUFFIX",
    "case_entry",
    "dumps_manifest",
    "load_manifest",
    "make_manifest",
    "resolve_case_file",
    "validate_manifest",
    "write_manifest",
]

FORMAT = "refnorm-golden"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
GENERATOR = "refnorm.golden.corpus.generate"

#: The corpus-wide claim about the accuracy of the expected values.  It is an
#: argument about the float64 kernels (double-double statistics, compensated
#: reductions; see docs/numerics.md), *verified* -- not measured at generation
#: time -- by ``tests/ops/test_accuracy.py``, which compares the kernels with an
#: exact rational/mpmath oracle and imports ``bounds`` from here, so the claim
#: and the test cannot drift apart.  ``M`` is the sum of the magnitudes of an
#: output element's terms (``|weight*xhat| + |bias|`` for ``y``), ``u = 2**-53``.
ACCURACY: dict = {
    "reference_dtype": "float64",
    "expected_from": "the stored inputs (exactly upcast to float64), never the pre-rounding float64 draws",
    "claim": (
        "float64 expected values: mean, var and rstd within 0.5 ulp (+O(u^2)) of exact; every other "
        "output element within bounds[output] * u * M of exact, M the sum of the magnitudes of its "
        "terms; verified against an exact rational/mpmath oracle by tests/ops/test_accuracy.py "
        "(fixed conditioning cases, rows up to 1e5, and hypothesis-drawn inputs)"
    ),
    "bounds": {"mean": 0.5, "var": 0.5, "rstd": 0.5, "y": 3.0, "dx": 9.0, "dweight": 3.0, "dbias": 1.0},
}

ROLES = ("input", "expected", "scale")
#: The name of the scale tensor of expected output ``y`` is ``y`` + SCALE_SUFFIX.
SCALE_SUFFIX = ".scale"
#: The fields of a case entry that are not fields of its case spec (what :func:`case_entry` adds).
CORPUS_FIELDS = ("file", "sha256", "tensors", "tolerances")

# field -> accepted Python types (after json.loads) for each case entry
_CASE_FIELDS: dict[str, tuple] = {
    "id": (str,),
    "op": (str,),
    "tier": (str,),
    "dtype": (str,),
    "attrs": (dict,),
    "shapes": (dict,),
    "recipe": (dict,),
    "seed": (int,),
    "expect": (dict,),
    "description": (str,),
    "file": (str,),
    "sha256": (str,),
    "tensors": (dict,),
    "tolerances": (dict,),
}
# optional fields of a case entry (present only when not empty)
_OPTIONAL_CASE_FIELDS: dict[str, tuple] = {"layout": (dict,), "checks": (dict,)}
_TOP_FIELDS: dict[str, tuple] = {
    "format": (str,),
    "format_version": (int,),
    "refnorm_version": (str,),
    "generator": (str,),
    "accuracy": (dict,),
    "cases": (list,),
}


class ManifestError(GoldenFormatError):
    """The manifest is malformed or inconsistent."""


# ----------------------------------------------------------------------------- building


def case_entry(spec_fields: dict, *, file: str, sha256: str, tensors: dict, tolerances: dict) -> dict:
    """One ``cases[]`` entry: every field of the case spec, plus where its
    file is, its hash, its tensors and its per-output tolerances."""
    entry = dict(spec_fields)
    entry.update(file=file, sha256=sha256, tensors=tensors, tolerances=tolerances)
    return entry


def make_manifest(cases: list[dict], *, accuracy: dict | None = None, generator: str = GENERATOR) -> dict:
    """The whole manifest object, cases sorted by id."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "refnorm_version": __version__,
        "generator": generator,
        "accuracy": dict(ACCURACY if accuracy is None else accuracy),
        "cases": sorted(cases, key=lambda c: c["id"]),
    }


def dumps_manifest(manifest: dict) -> str:
    """Deterministic text: sorted keys, ``indent=1``, ASCII, trailing newline."""
    return json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def write_manifest(path, manifest: dict) -> None:
    """Validate and write ``manifest`` atomically (temp file + ``os.replace``)."""
    validate_manifest(manifest, source=path)
    atomic_write_bytes(path, dumps_manifest(manifest).encode("ascii"))


# ----------------------------------------------------------------------------- paths


def resolve_case_file(root, rel: str, source="manifest.json") -> Path:
    """The absolute path of a case file named by the manifest, refusing any
    ``file`` that is not a relative POSIX path inside ``root`` (absolute
    paths, backslashes, ``..`` components, or a symlink leading outside)."""
    problem = _path_problem(rel)
    if problem:
        raise ManifestError(source, f"file {rel!r} {problem}")
    root = Path(root)
    path = root.joinpath(*PurePosixPath(rel).parts)
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ManifestError(source, f"file {rel!r} resolves to {real}, outside the corpus directory "
                                    f"{real_root} (symlink?)")
    return path


def _path_problem(rel: str) -> str | None:
    if not rel:
        return "is empty"
    if "\\" in rel or "\x00" in rel:
        return "must be a POSIX path (no backslashes or NUL)"
    p = PurePosixPath(rel)
    if p.is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        return "is absolute; it must be relative to the corpus directory"
    if any(part in ("..", ".") for part in rel.split("/")) or "" in rel.split("/"):
        return "must be a normalised relative path (no '..', '.', or empty components)"
    return None


# ----------------------------------------------------------------------------- validation


def _type_name(types) -> str:
    return " or ".join({int: "integer", str: "string", dict: "object", list: "array", float: "number",
                        bool: "boolean"}.get(t, t.__name__) for t in types)


def _check_type(value, types, source, where) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ManifestError(source, f"{where} is {json.dumps(value)[:60]}, expected a {_type_name(types)}")


def _check_tolerance(tol, source, where) -> None:
    _check_type(tol, (dict,), source, where)
    for key in ("atol", "rtol", "ulp", "scale", "derivation"):
        if key not in tol:
            raise ManifestError(source, f"{where} lacks {key!r}")
    for key in ("atol", "rtol"):
        v = tol[key]
        _check_type(v, (int, float), source, f"{where}.{key}")
        if not (math.isfinite(v) and v >= 0):
            raise ManifestError(source, f"{where}.{key} = {v} must be finite and >= 0")
    if tol["ulp"] is not None:
        _check_type(tol["ulp"], (int,), source, f"{where}.ulp")
        if tol["ulp"] < 0:
            raise ManifestError(source, f"{where}.ulp = {tol['ulp']} must be >= 0")
    if tol["scale"] not in ("expected", "tensor"):
        raise ManifestError(source, f"{where}.scale = {tol['scale']!r}, expected 'expected' or 'tensor'")
    _check_type(tol["derivation"], (str,), source, f"{where}.derivation")


def _check_case(c, i: int, source) -> None:
    _check_type(c, (dict,), source, f"cases[{i}]")
    for key, types in _CASE_FIELDS.items():
        if key not in c:
            name = c.get("id", f"cases[{i}]") if isinstance(c.get("id"), str) else f"cases[{i}]"
            raise ManifestError(source, f"case {name}: missing field {key!r}")
    cid = c["id"]
    _check_type(cid, (str,), source, f"cases[{i}].id")
    where = f"case {cid}"
    for key, types in _CASE_FIELDS.items():
        _check_type(c[key], types, source, f"{where}: field {key!r}")
    if not cid.startswith(c["op"] + "/"):
        raise ManifestError(source, f"{where}: id does not start with its op {c['op']!r} + '/'")
    if c["tier"] not in TIERS:
        raise ManifestError(source, f"{where}: tier {c['tier']!r} not one of {', '.join(TIERS)}")
    if c["dtype"] not in DTYPE_NAMES:
        raise ManifestError(source, f"{where}: dtype {c['dtype']!r} not one of {', '.join(DTYPE_NAMES)}")
    kind = c["expect"].get("kind")
    if kind not in KINDS:
        raise ManifestError(source, f"{where}: expect.kind {kind!r} not one of {', '.join(KINDS)}")
    problem = _path_problem(c["file"])
    if problem:
        raise ManifestError(source, f"{where}: file {c['file']!r} {problem}")
    sha = c["sha256"]
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise ManifestError(source, f"{where}: sha256 {sha!r} is not 64 lowercase hex digits")
    roles = {}
    for name, t in c["tensors"].items():
        tw = f"{where}: tensors[{name!r}]"
        if not NAME_RE.match(name):
            raise ManifestError(source, f"{tw}: invalid tensor name")
        _check_type(t, (dict,), source, tw)
        for key in ("dtype", "shape", "role"):
            if key not in t:
                raise ManifestError(source, f"{tw} lacks {key!r}")
        if t["dtype"] not in DTYPE_CODES.values():
            raise ManifestError(source, f"{tw}.dtype {t['dtype']!r} not one of F64, F32, F16, BF16")
        shape = t["shape"]
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in shape):
            raise ManifestError(source, f"{tw}.shape {shape!r} is not a list of non-negative integers")
        if t["role"] not in ROLES:
            raise ManifestError(source, f"{tw}.role {t['role']!r} not one of {', '.join(ROLES)}")
        roles[name] = t["role"]
    for name, role in roles.items():
        if role == "scale":
            out = name[:-len(SCALE_SUFFIX)] if name.endswith(SCALE_SUFFIX) else None
            if out is None or roles.get(out) != "expected":
                raise ManifestError(source, f"{where}: scale tensor {name!r} is not '<expected output>.scale'")
    expected = {n for n, r in roles.items() if r == "expected"}
    if kind == "error" and expected:
        raise ManifestError(source, f"{where}: an error case holds expected tensors {sorted(expected)}")
    if set(c["tolerances"]) != expected:
        raise ManifestError(source, f"{where}: tolerances given for {sorted(c['tolerances'])} but the "
                                    f"expected outputs are {sorted(expected)}")
    for out, tol in c["tolerances"].items():
        _check_tolerance(tol, source, f"{where}: tolerances[{out!r}]")
        if tol["scale"] == "tensor" and roles.get(out + SCALE_SUFFIX) != "scale":
            raise ManifestError(source, f"{where}: tolerances[{out!r}] uses a scale tensor but the file has "
                                        f"no {out + SCALE_SUFFIX!r}")
    _check_optional(c, roles, source, where)


def _check_optional(c: dict, roles: dict, source, where: str) -> None:
    """The optional fields: ``layout`` (input tensor -> a valid layout of its
    rank) and ``checks`` (known properties with values of their type)."""
    for key, types in _OPTIONAL_CASE_FIELDS.items():
        if key in c:
            _check_type(c[key], types, source, f"{where}: field {key!r}")
    for name, lay in c.get("layout", {}).items():
        if roles.get(name) != "input":
            raise ManifestError(source, f"{where}: layout given for {name!r}, which is not an input tensor")
        try:
            check_layout(lay, len(c["tensors"][name]["shape"]), f"layout[{name!r}]")
        except ValueError as e:
            raise ManifestError(source, f"{where}: {e}") from None
    for key, value in c.get("checks", {}).items():
        if key not in CHECKS:
            raise ManifestError(source, f"{where}: checks has unknown property {key!r}; known: "
                                        f"{', '.join(CHECKS)}")
        t = CHECKS[key]
        if not isinstance(value, t) or (t is int and (isinstance(value, bool) or value < 2)):
            want = "an integer >= 2" if t is int else "true or false"
            raise ManifestError(source, f"{where}: checks.{key} = {json.dumps(value)}, expected {want}")


def validate_manifest(manifest, source="manifest.json") -> None:
    """Raise :class:`ManifestError` unless ``manifest`` is a well-formed manifest."""
    if not isinstance(manifest, dict):
        raise ManifestError(source, f"top level is a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != FORMAT:
        raise ManifestError(source, f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if "format_version" not in manifest:
        raise ManifestError(source, "missing field 'format_version'")
    fv = manifest["format_version"]
    if fv != FORMAT_VERSION or isinstance(fv, bool):
        raise ManifestError(source, f"unknown format_version {fv!r}; this refnorm reads version "
                                    f"{FORMAT_VERSION} (upgrade refnorm, or regenerate the corpus)")
    for key, types in _TOP_FIELDS.items():
        if key not in manifest:
            raise ManifestError(source, f"missing field {key!r}")
        _check_type(manifest[key], types, source, f"field {key!r}")
    seen_ids: set[str] = set()
    seen_files: dict[str, str] = {}
    for i, c in enumerate(manifest["cases"]):
        _check_case(c, i, source)
        if c["id"] in seen_ids:
            raise ManifestError(source, f"duplicate case id {c['id']!r}")
        seen_ids.add(c["id"])
        if c["file"] in seen_files:
            raise ManifestError(source, f"cases {seen_files[c['file']]!r} and {c['id']!r} share the file "
                                        f"{c['file']!r}")
        seen_files[c["file"]] = c["id"]


def load_manifest(root) -> dict:
    """Read and validate ``<root>/manifest.json`` (``root`` may also be the
    manifest's own path).  Every case's ``file`` is checked to stay inside
    the corpus directory."""
    root = Path(root)
    path = root if root.name == MANIFEST_NAME and not root.is_dir() else root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(path, "no golden corpus here (manifest.json missing); create one with "
                                  "`refnorm generate`")
    try:
        text = path.read_bytes().decode("utf-8")
        manifest = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(path, f"not valid JSON ({e})") from None
    validate_manifest(manifest, source=path)
    for c in manifest["cases"]:
        resolve_case_file(path.parent, c["file"], source=path)
    return manifest


def corpus_files(root) -> list[str]:
    """Every regular file or symlink under ``root`` except the manifest, as
    sorted relative POSIX paths."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            rel = (Path(dirpath) / fn).relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)

"""Your own tensors as a golden case: a production trace, checked like the catalogue.

The catalogue's cases draw their inputs from seeded recipes.  A bug seen in
production often needs *the* tensors that showed it: a batch whose mean sits
far from zero, a bfloat16 activation with a float32 weight, a row with an
infinity.  :func:`case_from_tensors` turns such tensors into a
:class:`~refnorm.golden.build.BuiltCase` exactly as the catalogue's cases are
built, except that the inputs are given instead of drawn:

* the **inputs** are stored as given (C-contiguous copies, each in its own
  dtype; the caller's arrays are never modified);
* the **expected outputs** are what refnorm computes from exactly those stored
  values, in float64 (:func:`refnorm.golden.build.expected_from_inputs`): the
  forward, the saved statistics and, for the tensors you add, the gradients
  (``dy``, and ``dh`` for a fused op), forward mode (``tx`` ...), second
  order (``ddx`` ...) and the running-statistics updates;
* the **tolerances** come from the same rounding-error model as every other
  case (:func:`refnorm.golden.tolerance.tolerances`): they are derived from
  the case dtype, the reduction lengths and the data itself (its
  conditioning, the magnitudes that make up each output), so a trace whose
  mean is a thousand standard deviations from zero gets the wider tolerance a
  correct float32 kernel needs there, and no more.

The case's dtype is the dtype of the op's normalized input (``x``, or
``weight`` for weight standardization); a parameter or running statistic
may have its own dtype (mixed precision: a bfloat16 ``x`` with a float32
``weight``), recorded in the case's recipe as
``{"kind": "given", "dtype": ...}``, and the cotangents are in the case dtype,
as in the catalogue.  Such a case is tier ``"statistical"`` (derived
tolerances; ``"exact"`` is for constructed inputs only) and expects values --
or NaN exactly where refnorm gives NaN, ``{"kind": "nan", "where": ...}``,
when the tensors make some output NaN.  An attribute left out is
recorded with the forward's default, so the case states its conventions.

Written with :func:`refnorm.golden.corpus.write_cases` (or ``refnorm case``),
the case lands in a corpus directory that ``refnorm verify`` checks (it
recomputes the expected values from the stored inputs) and
``refnorm check --backend SPEC --golden-dir DIR`` replays against any backend.

:func:`load_tensors` reads the tensors from a ``.safetensors`` file (no
pickle by construction) or an ``.npz`` archive (read with
``allow_pickle=False``: an object array is refused, never unpickled).

On the generator's side of :mod:`refnorm.golden`, after the builder
(:mod:`refnorm.golden.build`), whose :class:`BuiltCase` it returns.
"""

from __future__ import annotations

import inspect
import json
import re
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._registry import get, registry
from . import tolerance
from .build import BuiltCase, expected_from_inputs
from .calls import call_arguments, input_names
from .casespec import CaseSpec
from .catalogue import CONVENTION_MOMENTUM, catalogue, has_running_update
from .dtypes import DTYPE_NAMES, DTYPES
from .safetensors import load_file

__all__ = ["SUFFIXES", "TIER", "case_from_tensors", "describe_tensors", "load_tensors"]

#: The file types :func:`load_tensors` reads.
SUFFIXES = (".safetensors", ".npz")
#: The tier of a case made from given tensors: its tolerances are the model's, derived from the data.
TIER = "statistical"
#: What a case name may be (the case id is ``<op>/<name>__<dtype>``).
CASE_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
#: Attributes that are not arguments of the forward but configure the expected
#: running-statistics updates (:func:`refnorm.golden.catalogue.running_factors`).
RUNNING_ATTRS = ("num_batches_tracked", "running_stats")


# ----------------------------------------------------------------------------- reading tensors


def _dtype_name(dtype: np.dtype) -> str | None:
    """The golden name of a (native byte order) dtype, or None if refnorm does not support it."""
    return next((name for name, dt in DTYPES.items() if dtype == dt), None)


def _native(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def load_tensors(path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file or an ``.npz`` archive, by name.

    A ``.safetensors`` file is read and validated by refnorm's own reader
    (:func:`refnorm.golden.safetensors.load_file`: float64, float32, float16
    and bfloat16 tensors; anything else is refused naming the tensor).  An
    ``.npz`` archive (``np.savez(path, x=x, weight=w, ...)``) is read with
    ``allow_pickle=False``; an object array is refused without being
    unpickled, as is a tensor whose dtype is not float64, float32 or float16
    (numpy's format has no bfloat16: store bfloat16 tensors in safetensors,
    e.g. with ``safetensors.numpy.save_file`` or ``safetensors.torch.save_file``).
    Any other suffix, and a name that occurs twice, is a ValueError naming
    the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        tensors, _ = load_file(path)
        return tensors
    if suffix == ".npz":
        return _load_npz(path)
    raise ValueError(f"{path}: expected a {' or '.join(SUFFIXES)} file, got suffix {path.suffix!r}")


#: What numpy raises for a file or archive member it cannot read (besides OSError, which
#: is left alone: a missing file stays a FileNotFoundError).
_UNREADABLE = (ValueError, EOFError, zipfile.BadZipFile)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as e:  # e.g. "Cannot load file containing pickled data when allow_pickle=False"
        raise ValueError(f"{path}: not an .npz archive refnorm can read ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single .npy array, not an .npz archive of named tensors; "
                         f"write one with np.savez(path, x=x, weight=weight, ...)")
    with archive:
        members = archive.zip.namelist()
        odd = [m for m in members if not m.endswith(".npy")]
        if odd:
            raise ValueError(f"{path}: archive member {odd[0]!r} is not an .npy array")
        names = [m[:-len(".npy")] for m in members]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{path}: tensor name {twice[0]!r} occurs {names.count(twice[0])} times in the archive")
        tensors = {}
        for name in names:
            try:
                a = archive[name]
            except _UNREADABLE as e:
                if "allow_pickle" in str(e):  # "Object arrays cannot be loaded when allow_pickle=False"
                    raise ValueError(f"{path}: tensor {name!r} is an object array, refused: refnorm never "
                                     f"unpickles ({e})") from None
                raise ValueError(f"{path}: tensor {name!r} cannot be read ({type(e).__name__}: {e})") from None
            dt = _native(a.dtype)
            if _dtype_name(dt) is None:
                hint = (" (a bfloat16 array saved by numpy loses its type; store bfloat16 in a .safetensors file)"
                        if a.dtype.kind == "V" and a.dtype.itemsize == 2 else "")
                raise ValueError(f"{path}: tensor {name!r} has dtype {a.dtype}; a case holds floating-point "
                                 f"tensors of {', '.join(DTYPE_NAMES)}{hint}")
            tensors[name] = np.ascontiguousarray(a, dtype=dt)
    return tensors


def describe_tensors(inputs: dict) -> str:
    """``"x bfloat16 [4, 768], weight float32 [768]"``: each tensor's name, dtype and shape."""
    parts = []
    for name, a in inputs.items():
        dt = _dtype_name(_native(a.dtype)) or str(a.dtype)
        parts.append(f"{name} {dt} {list(a.shape)}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- what the op takes


@lru_cache(maxsize=None)
def _tensor_arguments(op: str) -> frozenset[str]:
    """The forward arguments of ``op`` that are tensors: the differentiable ones and
    those some catalogue case of the op stores as a tensor (``x``, ``weight``,
    ``running_mean`` ...; the others -- ``normalized_shape``, ``eps``,
    ``training`` ... -- are attributes)."""
    spec = get(op)
    params = set(spec.parameters)
    drawn = {n for s in catalogue(include_large=True) if s.op == op for n in s.shapes if n in params}
    return frozenset(drawn | set(spec.differentiable))


def _attribute_names(op: str) -> list[str]:
    """The attributes a case of ``op`` may set: the forward's non-tensor
    arguments (but a grouped input's dict, which is assembled from tensors),
    plus, for an op with running statistics, :data:`RUNNING_ATTRS`."""
    spec = get(op)
    names = [p for p in spec.parameters if p not in _tensor_arguments(op) and p not in spec.grouped_inputs]
    if spec.running_stats is not None:
        names += [a for a in RUNNING_ATTRS if a != "running_stats" or len(spec.running_conventions) > 1]
    return names


def _example_attrs(op: str) -> str:
    """The attrs of the op's first catalogue case, as JSON: an example for an error message."""
    cases = [s for s in catalogue() if s.op == op]
    case = next((s for s in cases if s.tier == TIER), cases[0] if cases else None)
    return "" if case is None else f" (e.g. {json.dumps(case.attrs)}, as in case {case.id})"


def _json_attrs(op: str, attrs) -> dict:
    """``attrs`` checked (a dict of JSON values, names the op takes) and as the
    manifest will store them: tuples as lists, numpy scalars as Python numbers,
    so that the values refnorm computes now are the ones ``refnorm verify``
    recomputes from the manifest."""
    attrs = {} if attrs is None else attrs
    if not isinstance(attrs, dict):
        raise TypeError(f"attrs must be a dict of the op's other arguments, got {type(attrs).__name__}")
    known = _attribute_names(op)
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise TypeError(f"attrs keys must be strings (argument names), got {key!r}")
        if key in _tensor_arguments(op) or key in get(op).grouped_inputs:
            raise ValueError(f"attrs[{key!r}]: {key!r} is a tensor argument of {op}(); give it with the "
                             f"tensors, not in attrs")
        if key not in known:
            raise ValueError(f"attrs[{key!r}]: {op} has no attribute {key!r}; its attributes are "
                             f"{', '.join(known)}")
        try:
            out[key] = json.loads(json.dumps(value, allow_nan=False, default=_numpy_scalar))
        except (TypeError, ValueError) as e:
            raise ValueError(f"attrs[{key!r}] = {value!r} is not a JSON value (a number, string, bool, None, "
                             f"list or dict of them, finite): {e}") from None
        if key == "normalized_shape" and isinstance(out[key], int) and not isinstance(out[key], bool):
            out[key] = [out[key]]  # the same shape; the call passes a list of dims as a tuple
    params = inspect.signature(get(op).forward).parameters
    missing = [p for p in known if p in params and p not in out and params[p].default is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"{op} needs the attribute{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"in attrs{_example_attrs(op)}")
    # A positional attribute left out is recorded with the forward's default (the call
    # passes it anyway), so that the case states its conventions: BatchNorm's momentum,
    # the eps.  Keyword-only ones stay out: a backend is called without them.
    for p in known:
        if p in params and p not in out and params[p].kind is not inspect.Parameter.KEYWORD_ONLY:
            try:
                out[p] = json.loads(json.dumps(params[p].default, allow_nan=False))
            except (TypeError, ValueError):  # a default JSON cannot state: the call passes it all the same
                pass
    return out


def _numpy_scalar(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _running_attrs(op: str, attrs: dict, spec_of) -> dict:
    """``attrs`` with the momentum of each non-PyTorch running-statistics
    convention, as the catalogue records it, when the case updates running
    statistics and the caller did not say (BatchNorm: ONNX 0.9, Flax 0.99)."""
    conventions = get(op).running_conventions[1:]
    if not conventions or not has_running_update(spec_of(attrs)):
        return attrs
    given = attrs.get("running_stats")
    if given is None:
        return dict(attrs, running_stats={c: {"momentum": CONVENTION_MOMENTUM[c]} for c in conventions})
    ok = isinstance(given, dict) and all(
        c in conventions and isinstance(v, dict) and set(v) == {"momentum"}
        and isinstance(v["momentum"], (int, float)) and not isinstance(v["momentum"], bool)
        and 0 <= v["momentum"] <= 1 for c, v in given.items())
    if not ok:
        raise ValueError(f"attrs['running_stats'] = {given!r}: expected {{convention: {{'momentum': m}}}} with "
                         f"conventions among {', '.join(conventions)} and 0 <= m <= 1 (m weights the old value)")
    return attrs


# ----------------------------------------------------------------------------- the case


def _checked_tensors(op: str, inputs) -> dict[str, np.ndarray]:
    """``inputs`` as C-contiguous native-byte-order copies, in the op's call order."""
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict of tensor name -> numpy array, got {type(inputs).__name__}")
    for name, a in inputs.items():
        if not isinstance(name, str):
            raise TypeError(f"inputs keys must be tensor names (str), got {name!r}")
        if not isinstance(a, np.ndarray):
            raise TypeError(f"inputs[{name!r}] is a {type(a).__name__}; expected a numpy array in the dtype to "
                            f"test (np.asarray(t), or t.numpy() for a framework tensor)")
        if _dtype_name(_native(a.dtype)) is None:
            raise TypeError(f"inputs[{name!r}] has dtype {a.dtype}; expected one of {', '.join(DTYPE_NAMES)}")
    order = input_names(op, inputs)  # ValueError naming a tensor the op does not take
    spec = get(op)
    attrs_named = [n for n in order if n in spec.parameters and n not in _tensor_arguments(op)]
    if attrs_named:
        raise ValueError(f"inputs {attrs_named}: attribute{'s' if len(attrs_named) > 1 else ''} of {op}(), "
                         f"not tensors; give {'them' if len(attrs_named) > 1 else 'it'} in attrs")
    if spec.primary not in inputs:
        raise ValueError(f"inputs: {op} needs the tensor {spec.primary!r} (the input it normalizes); got "
                         f"{', '.join(order) or 'none'}")
    return {n: np.array(inputs[n], dtype=_native(inputs[n].dtype), order="C", copy=True) for n in order}


def _nan_where(expected: dict) -> str:
    """Where the expected outputs are NaN, for ``expect["where"]``."""
    parts = []
    for name, a in expected.items():
        n = int(np.isnan(a).sum())
        if n:
            parts.append(f"{name}: {n} of {a.size}" if n < a.size else f"{name}: all {a.size}")
    return "NaN where refnorm gives NaN on these tensors (" + "; ".join(parts) + ")"


def case_from_tensors(op: str, inputs: dict, attrs: dict | None = None, *, name: str = "user",
                      description: str | None = None) -> BuiltCase:
    """A golden case of ``op`` made from the given tensors, ready to write with
    :func:`refnorm.golden.corpus.write_cases` and replay with ``refnorm check``.

    Parameters
    ----------
    op : a registered op (``"layer_norm"``, ``"batch_norm"``, ...).
    inputs : tensor name -> numpy array, named like the op's arguments
        (``x``, ``weight``, ``bias``, ``running_mean``, ``residual`` ...), its
        cotangents (``dy``; a fused op also ``dh``), tangents (``tx``,
        ``tweight`` ...: forward mode) and second-order cotangents (``ddx``
        ...).  Each tensor is float64, float32, float16 or bfloat16; the case
        dtype is that of the normalized input (``x``; ``weight`` for weight
        standardization), and the cotangents must share it.
    attrs : the op's other arguments, JSON values, e.g.
        ``{"normalized_shape": [768], "eps": 1e-5}``; an argument left out takes
        the forward's default (and is recorded with it), one without a default
        must be given.  For BatchNorm with running statistics
        and batch statistics, the momentum of the ONNX and Flax updates
        (``running_stats``) defaults to the catalogue's.
    name : the case name, letters, digits and ``_``: the id is ``<op>/<name>__<dtype>``.
    description : the case's description (default: its tensors, names, dtypes and shapes).

    Returns
    -------
    BuiltCase
        inputs (copies, C-contiguous, each in its own dtype), float64 expected
        outputs computed by refnorm from exactly those inputs, their
        tolerances and scale tensors from the tolerance model.  Tier
        ``"statistical"``, seed 0, each recipe ``{"kind": "given"}`` (plus the
        tensor's ``dtype`` where it differs from the case dtype); ``expect`` is
        ``{"kind": "value"}``, or ``{"kind": "nan", "where": ...}`` when some
        expected output holds a NaN.

    Raises
    ------
    ValueError, TypeError
        before any kernel runs, naming the argument: an unknown op, a bad
        name, attrs that are not JSON values or not attributes of the op, a
        missing attribute, a tensor the op does not take, a dtype refnorm does
        not support, a cotangent outside the case dtype.  Then refnorm's
        forward runs once on the tensors, so that shapes and attributes it
        refuses raise its own ValueError/TypeError.
    """
    if not isinstance(op, str) or op not in registry():
        raise ValueError(f"op {op!r} is not a refnorm op; known ops: {', '.join(registry())}")
    if not isinstance(name, str) or not CASE_NAME_RE.match(name):
        raise ValueError(f"name {name!r} must be letters, digits and '_' (it becomes the case id "
                         f"'{op}/<name>__<dtype>' and a file name)")
    if description is not None and not isinstance(description, str):
        raise TypeError(f"description must be a str or None, got {type(description).__name__}")
    spec_op = get(op)
    tensors = _checked_tensors(op, inputs)
    attrs = _json_attrs(op, attrs)
    dtype = _dtype_name(tensors[spec_op.primary].dtype)
    for c in spec_op.cotangents:
        if c in tensors and _dtype_name(tensors[c].dtype) != dtype:
            raise TypeError(f"inputs[{c!r}] is {_dtype_name(tensors[c].dtype)}, but a cotangent is in the case "
                            f"dtype, that of {spec_op.primary!r}: {dtype}")
    recipe = {}
    for n, a in tensors.items():
        own = _dtype_name(a.dtype)
        recipe[n] = {"kind": "given"} if own == dtype else {"kind": "given", "dtype": own}

    def spec_of(attrs, expect=None, description=""):
        return CaseSpec(id=f"{op}/{name}__{dtype}", op=op, name=name, tier=TIER, dtype=dtype, attrs=attrs,
                        shapes={n: [int(s) for s in a.shape] for n, a in tensors.items()}, recipe=recipe, seed=0,
                        expect=expect or {"kind": "value"}, description=description)

    attrs = _running_attrs(op, attrs, spec_of)
    # The forward once, on exactly what will be stored: shapes or attributes it
    # refuses raise refnorm's own error here, before anything else is computed.
    args, kwargs = call_arguments(op, tensors, attrs)
    with np.errstate(all="ignore"):
        spec_op.forward(*args, **kwargs)
    if description is None:
        description = f"user tensors: {describe_tensors(tensors)}"
    spec = spec_of(attrs, description=description)
    expected = expected_from_inputs(spec, tensors)
    if any(np.isnan(a).any() for a in expected.values()):
        spec = spec_of(attrs, {"kind": "nan", "where": _nan_where(expected)}, description)
    tols, scales = tolerance.tolerances(spec, tensors, expected)
    return BuiltCase(spec=spec, inputs=tensors, expected=expected, scales=scales, tolerances=tols)

"""The golden-case catalogue: ``spec/cases.toml`` expanded into cases.

``spec/cases.toml`` is the language-neutral catalogue (one table per case
family); this module expands each family over its dtypes into
:class:`~refnorm.golden.casespec.CaseSpec` records with ids
``<op>/<name>__<dtype>``, and says what a case means without building it:
the arguments of the refnorm call it makes (:func:`call`), whether it
updates running statistics, and the name
and shape of every expected output (:func:`output_shapes`).

Its place in the chain of :mod:`refnorm.golden`: after the case spec and the
input recipes (whose generator it records in every case), before the
tolerance model, which asks it about a case's outputs, and the building of
inputs and expected values (:mod:`refnorm.golden.build`).

Every fact about an op comes from its registry record
(:class:`refnorm.OpSpec`); no op is named here.  Expected outputs of a
value/NaN case (all float64):

``y`` (and every other forward output)  the forward (:attr:`OpSpec.outputs`)
the saved statistics                  :attr:`OpSpec.stats` (``mean``/``rstd``; RMSNorm
                                      ``rstd``; PN's proxy ``mean``/``rstd``; WS's
                                      ``mean``/``scale``; BLN's ``batch_mean`` ...;
                                      GN+ none), shaped by :attr:`OpSpec.layout`
``d<argument>``                       with the cotangents (``dy`` ...): the gradient of
                                      every differentiable argument given (``dx``,
                                      ``dweight``, ``dbias``, ``dproxy_shift``, ``dmix``,
                                      ``dgain`` ...; weight standardization's standardized
                                      argument is ``weight``, so its input gradient is
                                      ``dweight``)
``t<output>``                         with tangents ``t<argument>`` (``tx``, ``tweight`` ...; the
                                      others zero): forward mode, ``<op>_jvp`` (``ty``; a fused
                                      op also ``th``)
``d2<key>``                           with the cotangents ``dy`` ... and the second-order
                                      cotangents ``dd<argument>`` (of the gradients ``d<argument>``):
                                      the double backward, for every cotangent of the backward and
                                      every differentiable argument given (``d2dy``, ``d2x``,
                                      ``d2weight``, ``d2bias``; fused ``d2dh``, ``d2residual``)
``new_running_mean_<conv>`` / ``new_running_var_<conv>``
                                      with running statistics and batch statistics in use:
                                      the update of each of :attr:`OpSpec.running_conventions`
                                      (PyTorch with the case's momentum; BN also ONNX-14,
                                      momentum 0.9 on the old value, biased variance, and
                                      Flax, 0.99)

A case's tensors are named like the forward's arguments
(:func:`refnorm.golden.calls.input_names`); BLN inference reads its moving
statistics from the inputs ``moving_batch_mean``, ``moving_batch_var``,
``moving_feature_mean``, ``moving_feature_var`` (the ``moving_stats`` dict,
keys without ``moving_``: a grouped input).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from .._registry import get, grad_name, registry, second_grad_name, tangent_name
from . import recipes as R
from .calls import call_arguments, input_names
from .casespec import TIERS, CaseSpec
from .dtypes import DTYPE_NAMES
from .locations import catalogue_path

#: the momentum each non-PyTorch convention's running update uses (it weights the *old* value)
CONVENTION_MOMENTUM = {"onnx": 0.9, "flax": 0.99}
ONNX_MOMENTUM = CONVENTION_MOMENTUM["onnx"]
FLAX_MOMENTUM = CONVENTION_MOMENTUM["flax"]


# ----------------------------------------------------------------------------- loading


def cases_path() -> Path:
    """The catalogue file (``spec/cases.toml``; see :mod:`refnorm.golden.locations`)."""
    return catalogue_path()


def _resolve(value, dtype: str):
    """Per-dtype tables -> the dtype's entry; the string "none" -> None."""
    if isinstance(value, dict):
        if value and set(value) <= set(DTYPE_NAMES):
            if dtype not in value:
                raise ValueError(f"per-dtype value {value!r} has no entry for {dtype}")
            return _resolve(value[dtype], dtype)
        return {k: _resolve(v, dtype) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, dtype) for v in value]
    if value == "none":
        return None
    return value


def _expand(fam: dict, where: str) -> list[CaseSpec]:
    required = ("op", "name", "tier", "dtypes", "attrs", "shapes", "recipe", "seed", "expect", "description")
    missing = [k for k in required if k not in fam]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    unknown = set(fam) - set(required) - {"large"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if fam["tier"] not in TIERS:
        raise ValueError(f"{where}: tier {fam['tier']!r}")
    if fam["op"] not in registry():
        raise ValueError(f"{where}: unknown op {fam['op']!r}; known ops: {', '.join(registry())}")
    op = get(fam["op"])
    dtypes = list(DTYPE_NAMES) if fam["dtypes"] == "all" else list(fam["dtypes"])
    if not dtypes or any(d not in DTYPE_NAMES for d in dtypes):
        raise ValueError(f"{where}: dtypes {fam['dtypes']!r}")
    out = []
    for dt in dtypes:
        recipe = {"generator": R.GENERATOR}
        recipe.update(_resolve(fam["recipe"], dt))
        shapes = {k: [int(s) for s in v] for k, v in _resolve(fam["shapes"], dt).items()}
        if set(recipe) - {"generator"} != set(shapes):
            raise ValueError(f"{where}: recipe tensors {sorted(set(recipe) - {'generator'})} != shapes "
                             f"{sorted(shapes)}")
        attrs = _resolve(fam["attrs"], dt)
        if len(op.running_conventions) > 1 and _batch_stats(op, attrs) and "running_mean" in shapes:
            # The momentum each non-torch convention's expected running statistics
            # use (their momentum weights the *old* value), recorded with the case so
            # that a consumer never has to know refnorm's choice.
            attrs = dict(attrs, running_stats={c: {"momentum": CONVENTION_MOMENTUM[c]}
                                               for c in op.running_conventions[1:]})
        try:
            order = input_names(op.name, shapes)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for name in order:  # a tensor may be stored in its own dtype (float32 weights of a bfloat16 model)
            own = recipe[name].get("dtype", dt)
            if own not in DTYPE_NAMES:
                raise ValueError(f"{where}: tensor {name!r} has dtype {own!r}; known: {', '.join(DTYPE_NAMES)}")
            if own != dt and name in (op.primary, *op.cotangents):
                raise ValueError(f"{where}: {name!r} is in the case dtype ({dt}); only parameters and other "
                                 f"inputs may set their own dtype")
        out.append(CaseSpec(
            id=f"{fam['op']}/{fam['name']}__{dt}", op=fam["op"], name=fam["name"], tier=fam["tier"], dtype=dt,
            attrs=attrs, shapes={k: shapes[k] for k in order},
            recipe=recipe, seed=int(fam["seed"]), expect=_resolve(fam["expect"], dt),
            description=fam["description"], large=bool(fam.get("large", False))))
    return out


@lru_cache(maxsize=1)
def _all_cases() -> tuple[CaseSpec, ...]:
    with open(cases_path(), "rb") as f:
        doc = tomllib.load(f)
    specs = []
    for i, fam in enumerate(doc.get("case", [])):
        specs.extend(_expand(fam, f"cases.toml case #{i} ({fam.get('op')}/{fam.get('name')})"))
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate case ids: {dup}")
    return tuple(specs)


def catalogue(*, include_large: bool = False) -> list[CaseSpec]:
    """Every case, in catalogue order (file order, then dtype order); large
    cases only with ``include_large``."""
    return [s for s in _all_cases() if include_large or not s.large]


# ----------------------------------------------------------------------------- what a case means


def _batch_stats(op, attrs) -> bool:
    """Whether the op normalizes with batch statistics (not constant running ones)."""
    return op.batch_stats_flag is None or bool(attrs.get(op.batch_stats_flag))


def call(spec, inputs: dict) -> tuple[list, dict]:
    """The positional and keyword-only arguments of ``refnorm.<op>`` for this
    case (:func:`refnorm.golden.calls.call_arguments`, as the harness calls a backend)."""
    return call_arguments(spec.op, inputs, spec.attrs)


def primary_input(spec) -> str:
    """The name of the normalized input: ``x``, or ``weight`` for weight standardization."""
    return get(spec.op).primary


def resolved_eps(spec, inputs) -> float:
    """The eps the case's forward uses: its attr, or, when that is None, the
    op's default for the input dtype (:attr:`OpSpec.eps_default`: RMSNorm's ``eps=None``)."""
    eps = spec.attrs.get("eps")
    if eps is None:
        op = get(spec.op)
        if op.eps_default is None:
            raise ValueError(f"{spec.id}: eps is None and {spec.op} has no default eps")
        return op.eps_default(inputs[op.primary].dtype)
    return float(eps)


def running_factors(spec) -> dict[str, float]:
    """convention -> weight of the new batch statistic, for the running-stat outputs."""
    a = spec.attrs
    m = a.get("momentum")
    torch_f = 1.0 / (a["num_batches_tracked"] + 1) if m is None else float(m)
    out = {"torch": torch_f}
    for conv, rs in a.get("running_stats", {}).items():
        out[conv] = 1.0 - rs["momentum"]
    return out


def has_running_update(spec) -> bool:
    """The case checks ``<op>_running_stats``: it has running statistics and normalizes with batch statistics."""
    op = get(spec.op)
    return op.batch_stats_flag is not None and "running_mean" in spec.shapes and _batch_stats(op, spec.attrs)


def const_stats(spec) -> bool:
    """The case normalizes with its running statistics (constants for the backward)."""
    op = get(spec.op)
    return op.batch_stats_flag is not None and not _batch_stats(op, spec.attrs)


def layout(spec):
    """The case's :class:`refnorm.ops._layout.Layout` (from the op's own layout function)."""
    return get(spec.op).layout_of(spec.shapes, spec.attrs)


def output_shapes(spec) -> dict[str, list[int]]:
    """The shape of every expected output, from the spec alone (no building)."""
    if spec.expect.get("kind") == "error":
        return {}
    op = get(spec.op)
    sh = spec.shapes
    x = list(sh[op.primary])
    lay = layout(spec)
    out = {name: list(x) for name in op.outputs}
    for name in op.stats:
        out[name] = list(lay.stats[name])
    if any(c in sh for c in op.cotangents):
        for name in op.differentiable:
            if name in sh:
                out[grad_name(name)] = list(sh[name])
    if has_jvp(spec):
        for name in op.outputs:
            out[tangent_name(name)] = list(x)
    if has_second_order(spec):
        for c in op.cotangents:
            out[second_grad_name(c)] = list(x)
        for name in op.differentiable:
            if name in sh:
                out[second_grad_name(name)] = list(sh[name])
    if has_running_update(spec):
        for conv in running_factors(spec):
            out[f"new_running_mean_{conv}"] = list(sh["running_mean"])
            out[f"new_running_var_{conv}"] = list(sh["running_var"])
    return out


def has_jvp(spec) -> bool:
    """The case checks ``<op>_jvp``: it stores tangents."""
    op = get(spec.op)
    return op.jvp is not None and any(t in spec.shapes for t in op.tangent_inputs)


def has_second_order(spec) -> bool:
    """The case checks ``<op>_double_backward``: it stores second-order cotangents
    (and the backward's cotangents)."""
    op = get(spec.op)
    return (op.double_backward is not None and any(c in spec.shapes for c in op.second_cotangents)
            and any(c in spec.shapes for c in op.cotangents))

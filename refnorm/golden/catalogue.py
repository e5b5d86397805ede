"""The golden-case catalogue: ``spec/cases.toml`` expanded into cases.

``spec/cases.toml`` is the language-neutral catalogue (one table per case
family); this module expands each family over its dtypes into
:class:`~refnorm.golden.casespec.CaseSpec` records with ids
``<op>/<name>__<dtype>``, and says what a case means without building it:
the arguments of the refnorm call it makes (:func:`forward_args`,
:func:`forward_kwargs`), whether it updates running statistics, and the name
and shape of every expected output (:func:`output_shapes`).

Its place in the chain of :mod:`refnorm.golden`: after the case spec and the
input recipes (whose generator it records in every case), before the
tolerance model, which asks it about a case's outputs, and the building of
inputs and expected values (:mod:`refnorm.golden.build`).

Expected outputs of a value/NaN case (all float64):

``y``, ``mean``, ``rstd``            forward and the statistics used to normalize
                                   (``forward_with_stats``; RMSNorm: ``rstd`` only)
``dx``, ``dweight``, ``dbias``       backward from the stored ``dy`` (those that apply)
``new_running_mean_torch`` / ``new_running_var_torch``
                                   BN/IN training with running statistics: the
                                   PyTorch update with the case's momentum
``new_running_mean_onnx`` / ``_var_onnx``, ``..._flax``
                                   BN only: ONNX-14 (momentum 0.9 on the old value,
                                   biased variance) and Flax (0.99)

The seed layers (:data:`SEED_OPS`) store ``y``, the statistics of
:data:`STAT_OUTPUTS` (PN's proxy ``mean``/``rstd``; WS's ``mean``/``scale``; BLN's
``batch_mean``/``batch_rstd``/``feature_mean``/``feature_rstd``; GN+ saves none)
and, with ``dy``, the gradient ``d<name>`` of every differentiable argument
given (``dx``, ``dweight``, ``dbias``, ``dproxy_shift``, ``dproxy_scale``, ``dmix``,
``dgain``; weight standardization's standardized argument is ``weight``, so its
input gradient is ``dweight``).  BLN inference reads its moving statistics from
the inputs ``moving_batch_mean``, ``moving_batch_var``, ``moving_feature_mean``,
``moving_feature_var`` (the ``moving_stats`` dict, keys without ``moving_``).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from .._registry import SEED_OPS, registry
from ..ops.rms_norm import default_eps
from . import recipes as R
from .casespec import TIERS, CaseSpec
from .dtypes import DTYPE_NAMES
from .locations import catalogue_path

INPUT_ORDER = ("x", "weight", "gain", "bias", "proxy_shift", "proxy_scale", "mix", "running_mean", "running_var",
               "moving_batch_mean", "moving_batch_var", "moving_feature_mean", "moving_feature_var", "dy")
#: the saved statistics each seed layer's golden cases store (names as its ``<op>_stats`` returns them)
STAT_OUTPUTS = {"proxy_norm": ("mean", "rstd"), "gn_plus": (), "weight_standardization": ("mean", "scale"),
                "batch_layer_norm": ("batch_mean", "batch_rstd", "feature_mean", "feature_rstd")}
MOVING_PREFIX = "moving_"
ONNX_MOMENTUM = 0.9
FLAX_MOMENTUM = 0.99


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
        if fam["op"] == "batch_norm" and attrs.get("training") and "running_mean" in shapes:
            # The momentum each non-torch convention's expected running statistics
            # use (their momentum weights the *old* value), recorded with the case so
            # that a consumer never has to know refnorm's choice.
            attrs = dict(attrs, running_stats={"onnx": {"momentum": ONNX_MOMENTUM},
                                               "flax": {"momentum": FLAX_MOMENTUM}})
        out.append(CaseSpec(
            id=f"{fam['op']}/{fam['name']}__{dt}", op=fam["op"], name=fam["name"], tier=fam["tier"], dtype=dt,
            attrs=attrs, shapes={k: shapes[k] for k in INPUT_ORDER if k in shapes},
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


def forward_args(spec, inputs: dict) -> tuple:
    """The positional arguments of ``refnorm.<op>`` for this case."""
    a, g = spec.attrs, inputs.get
    op = spec.op
    if op == "batch_norm":
        return (inputs["x"], g("running_mean"), g("running_var"), g("weight"), g("bias"), a["training"],
                a["momentum"], a["eps"])
    if op == "layer_norm":
        return (inputs["x"], a["normalized_shape"], g("weight"), g("bias"), a["eps"])
    if op == "instance_norm":
        return (inputs["x"], g("running_mean"), g("running_var"), g("weight"), g("bias"), a["use_input_stats"],
                a["momentum"], a["eps"])
    if op == "group_norm":
        return (inputs["x"], a["num_groups"], g("weight"), g("bias"), a["eps"])
    if op == "rms_norm":
        return (inputs["x"], a["normalized_shape"], g("weight"), a["eps"])
    if op == "proxy_norm":
        return (inputs["x"], g("weight"), g("bias"), g("proxy_shift"), g("proxy_scale"), a["activation"], a["eps"],
                a["num_points"])
    if op == "gn_plus":
        return (inputs["x"], a["num_groups"], g("weight"), g("bias"), g("mix"), a["eps"], a["variant"],
                a["batch_stats"])
    if op == "weight_standardization":
        return (inputs["weight"], g("gain"), a["eps"], a["style"])
    if op == "batch_layer_norm":
        return (inputs["x"], g("weight"), g("bias"), a["batch_size"], a["eps"])
    raise ValueError(f"unknown op {op!r}")


#: keyword-only arguments a case may state in its attrs
_KEYWORD_ATTRS = {
    "weight_standardization": ("estimator", "eps_mode", "fan_in_scaling"),
    "batch_layer_norm": ("training", "flags", "feature_axis", "batch_stats", "weight_offset", "sqrt_d_scale"),
}


def forward_kwargs(spec, inputs: dict) -> dict:
    """The keyword-only arguments of ``refnorm.<op>`` for this case (empty for
    the standard ops): the attrs among them, and BLN's ``moving_stats`` dict
    assembled from the ``moving_*`` inputs (None when there are none)."""
    kw = {k: spec.attrs[k] for k in _KEYWORD_ATTRS.get(spec.op, ()) if k in spec.attrs}
    if spec.op == "batch_layer_norm":
        if "flags" in kw:
            kw["flags"] = tuple(kw["flags"])
        moving = {k[len(MOVING_PREFIX):]: v for k, v in inputs.items() if k.startswith(MOVING_PREFIX)}
        kw["moving_stats"] = moving or None
    return kw


def primary_input(spec) -> str:
    """The name of the normalized input: ``x``, or ``weight`` for weight standardization."""
    return "weight" if spec.op == "weight_standardization" else "x"


def resolved_eps(spec, inputs) -> float:
    """The case's eps: its attr, or RMSNorm's default for the dtype of ``x`` when that is None."""
    eps = spec.attrs.get("eps")
    if eps is None and spec.op == "rms_norm":
        return default_eps(inputs["x"].dtype)
    return float(eps)


def running_factors(spec) -> dict[str, float]:
    """convention -> weight of the new batch statistic, for the running-stat outputs."""
    a = spec.attrs
    m = a.get("momentum")
    torch_f = 1.0 / (a["num_batches_tracked"] + 1) if m is None else float(m)
    out = {"torch": torch_f}
    if spec.op == "batch_norm" and "running_stats" in a:
        out["onnx"] = 1.0 - a["running_stats"]["onnx"]["momentum"]
        out["flax"] = 1.0 - a["running_stats"]["flax"]["momentum"]
    return out


def has_running_update(spec) -> bool:
    if "running_mean" not in spec.shapes:
        return False
    return bool(spec.attrs.get("training")) if spec.op == "batch_norm" else (
        spec.op == "instance_norm" and bool(spec.attrs.get("use_input_stats")))


def output_shapes(spec) -> dict[str, list[int]]:
    """The shape of every expected output, from the spec alone (no building)."""
    if spec.expect.get("kind") == "error":
        return {}
    if spec.op in SEED_OPS:
        return _seed_output_shapes(spec)
    sh, a = spec.shapes, spec.attrs
    x = sh["x"]
    out = {"y": list(x)}
    if spec.op in ("layer_norm", "rms_norm"):
        lead = x[: len(x) - len(a["normalized_shape"])]
    elif spec.op == "group_norm":
        lead = [x[0], a["num_groups"]]
    elif spec.op == "instance_norm":
        lead = [x[0], x[1]] if a["use_input_stats"] else [x[1]]
    else:
        lead = [x[1]]
    if spec.op != "rms_norm":
        out["mean"] = list(lead)
    out["rstd"] = list(lead)
    if "dy" in sh:
        out["dx"] = list(x)
        if "weight" in sh:
            out["dweight"] = list(sh["weight"])
        if "bias" in sh:
            out["dbias"] = list(sh["bias"])
    if has_running_update(spec):
        for conv in running_factors(spec):
            out[f"new_running_mean_{conv}"] = [x[1]]
            out[f"new_running_var_{conv}"] = [x[1]]
    return out


def _seed_output_shapes(spec) -> dict[str, list[int]]:
    sh, a = spec.shapes, spec.attrs
    x = list(sh[primary_input(spec)])
    out = {"y": x}
    if spec.op == "proxy_norm":
        out["mean"] = out["rstd"] = [x[1]]
    elif spec.op == "weight_standardization":
        out["mean"] = out["scale"] = [x[0]]
    elif spec.op == "batch_layer_norm":
        fa = a.get("feature_axis", -1) % len(x)
        out["feature_mean"] = out["feature_rstd"] = [1 if i == fa else s for i, s in enumerate(x)]
        if a.get("batch_stats", "position") == "position":
            out["batch_mean"] = out["batch_rstd"] = [1] + x[1:]
        else:
            out["batch_mean"] = out["batch_rstd"] = [s if i == fa else 1 for i, s in enumerate(x)]
    if "dy" in sh:
        for name in registry()[spec.op].differentiable:
            if name in sh:
                out["d" + name] = list(sh[name])
    return out

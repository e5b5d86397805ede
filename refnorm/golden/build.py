"""Building a golden case: its inputs, float64 expected outputs, tolerances and scales.

The link of the package's chain after the tolerance model: a case spec of
:mod:`refnorm.golden.catalogue` is built into a :class:`BuiltCase` -- inputs
drawn by :mod:`refnorm.golden.recipes` in the dtype under test, the outputs
that refnorm computes from exactly those inputs (in float64; see the
catalogue's docstring for their names), and the tolerances and scale tensors
of :mod:`refnorm.golden.tolerance`.  :mod:`refnorm.golden.corpus` writes what
this module builds, and recomputes the expected values from stored inputs with
:func:`expected_from_inputs` to verify a corpus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._registry import SEED_OPS, registry
from ..ops.batch_norm import batch_norm_running_stats
from ..ops.instance_norm import instance_norm_running_stats
from . import recipes as R
from .casespec import CaseSpec
from .catalogue import INPUT_ORDER, STAT_OUTPUTS, forward_args, forward_kwargs, has_running_update, output_shapes
from .dtypes import DTYPES
from .tolerance import scale_tensor_outputs, tolerances

__all__ = ["PER_CASE_OVERHEAD", "BuiltCase", "build_case", "build_inputs", "estimated_nbytes", "expected_from_inputs"]


@dataclass
class BuiltCase:
    """A built case: inputs in ``spec.dtype``; expected outputs, and the scale
    tensors of the outputs whose tolerance uses one, in float64; output ->
    tolerance dict (empty for an error case)."""

    spec: CaseSpec
    inputs: dict
    expected: dict
    scales: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs and expected values


def build_inputs(spec: CaseSpec) -> dict[str, np.ndarray]:
    """The case's inputs in ``spec.dtype``, drawn by their recipes, in :data:`INPUT_ORDER`."""
    built: dict[str, np.ndarray] = {}
    # bias may depend on x and weight (cancel_bias): build in dependency order
    for name in ("x", "weight", "running_mean", "running_var", "bias", "dy") + tuple(
            n for n in INPUT_ORDER if n not in ("x", "weight", "running_mean", "running_var", "bias", "dy")):
        if name in spec.shapes:
            built[name] = R.make_tensor(name, spec.shapes[name], spec.recipe[name], spec.dtype, spec.seed,
                                        spec.op, spec.attrs, built)
    return {k: built[k] for k in INPUT_ORDER if k in built}


def expected_from_inputs(spec, inputs: dict) -> dict[str, np.ndarray]:
    """float64 expected outputs recomputed by refnorm from exactly ``inputs``."""
    if spec.expect.get("kind") == "error":
        return {}
    if spec.op in SEED_OPS:
        return _seed_expected(spec, inputs)
    op = registry()[spec.op]
    args = forward_args(spec, inputs)
    with np.errstate(all="ignore"):
        y, stats = op.forward_with_stats(*args)
        out = {"y": np.asarray(y, dtype=np.float64)}
        for k in ("mean", "rstd"):
            if k in stats:
                out[k] = np.asarray(stats[k], dtype=np.float64)
        if "dy" in inputs:
            g = op.backward(inputs["dy"], *args)
            out["dx"] = g["x"]
            if "weight" in g:
                out["dweight"] = g["weight"]
            if "bias" in g:
                out["dbias"] = g["bias"]
        if has_running_update(spec):
            x, rm, rv = inputs["x"], inputs["running_mean"], inputs["running_var"]
            a = spec.attrs
            if spec.op == "batch_norm":
                nm, nv = batch_norm_running_stats(x, rm, rv, a["momentum"],
                                                  num_batches_tracked=a.get("num_batches_tracked"), convention="torch")
                out["new_running_mean_torch"], out["new_running_var_torch"] = nm, nv
                for conv in ("onnx", "flax"):
                    mom = a["running_stats"][conv]["momentum"]
                    nm, nv = batch_norm_running_stats(x, rm, rv, mom, convention=conv)
                    out[f"new_running_mean_{conv}"], out[f"new_running_var_{conv}"] = nm, nv
            else:
                nm, nv = instance_norm_running_stats(x, rm, rv, a["momentum"])
                out["new_running_mean_torch"], out["new_running_var_torch"] = nm, nv
    return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in out.items()}


def _seed_expected(spec, inputs: dict) -> dict[str, np.ndarray]:
    """A seed layer's expected outputs: ``y``, its :data:`STAT_OUTPUTS`, and the
    gradient ``d<name>`` of every differentiable argument the backward returns."""
    op = registry()[spec.op]
    args, kwargs = forward_args(spec, inputs), forward_kwargs(spec, inputs)
    with np.errstate(all="ignore"):
        if op.forward_with_stats is None:
            y, stats = op.forward(*args, **kwargs), {}
        else:
            y, stats = op.forward_with_stats(*args, **kwargs)
        out = {"y": y}
        for k in STAT_OUTPUTS[spec.op]:
            out[k] = stats[k]
        if "dy" in inputs:
            g = op.backward(inputs["dy"], *args, **kwargs)
            for name in op.differentiable:
                if name in g:
                    out["d" + name] = g[name]
    # np.array, not ascontiguousarray: that one turns GN+'s 0-d mix gradient into shape (1,)
    return {k: np.array(v, dtype=np.float64, order="C") for k, v in out.items()}


def build_case(spec: CaseSpec) -> BuiltCase:
    """Inputs (in ``spec.dtype``), float64 expected outputs, tolerances, scales."""
    inputs = build_inputs(spec)
    expected = expected_from_inputs(spec, inputs)
    tols, scales = tolerances(spec, inputs, expected) if expected else ({}, {})
    return BuiltCase(spec=spec, inputs=inputs, expected=expected, scales=scales, tolerances=tols)


# ----------------------------------------------------------------------------- sizes


# safetensors header + manifest entry per case (JSON), generous
PER_CASE_OVERHEAD = 4096


def estimated_nbytes(spec) -> int:
    """Committed size of a case computed from its shapes: inputs in the dtype,
    expected outputs and their scale tensors in float64, plus overhead."""
    n = sum(math.prod(s) * DTYPES[spec.dtype].itemsize for s in spec.shapes.values())
    outs = output_shapes(spec)
    n += sum(math.prod(s) * 8 for s in outs.values())
    n += sum(math.prod(outs[o]) * 8 for o in scale_tensor_outputs(spec) if o in outs)
    return n + PER_CASE_OVERHEAD

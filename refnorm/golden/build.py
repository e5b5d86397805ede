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

from .._registry import get, grad_name, second_grad_name, tangent_name
from . import recipes as R
from .calls import jvp_tangents, second_order_cotangents
from .casespec import CaseSpec
from .catalogue import call, has_jvp, has_running_update, has_second_order, output_shapes, running_factors
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
    """The case's inputs in ``spec.dtype``, drawn by their recipes, in the case's order.

    A recipe that reads other tensors (``cancel_bias`` reads ``x`` and
    ``weight``) is drawn after every tensor that is drawn alone; each tensor has
    its own random stream, so the order changes no value."""
    built: dict[str, np.ndarray] = {}
    later = [n for n in spec.shapes if spec.recipe[n]["kind"] in R.DEPENDENT_KINDS]
    for name in [n for n in spec.shapes if n not in later] + later:
        dtype = spec.recipe[name].get("dtype", spec.dtype)  # a tensor may have its own dtype (mixed precision)
        built[name] = R.make_tensor(name, spec.shapes[name], spec.recipe[name], dtype, spec.seed,
                                    spec.op, spec.attrs, built)
    return {k: built[k] for k in spec.shapes}


def _outputs(op, result) -> dict:
    """The forward's result by output name (a tuple for an op with several outputs)."""
    if len(op.outputs) == 1:
        return {op.outputs[0]: result}
    return dict(zip(op.outputs, result, strict=True))


def expected_from_inputs(spec, inputs: dict) -> dict[str, np.ndarray]:
    """float64 expected outputs recomputed by refnorm from exactly ``inputs``:
    every forward output, the saved statistics of :attr:`OpSpec.stats`, the
    gradient ``d<name>`` of every argument the backward returns (given the
    cotangents), the tangent of every output (given tangents), the
    second-order gradients (given second-order cotangents), and the
    running-statistics updates of every convention."""
    if spec.expect.get("kind") == "error":
        return {}
    op = get(spec.op)
    args, kwargs = call(spec, inputs)
    with np.errstate(all="ignore"):
        if op.forward_with_stats is None:
            result, stats = op.forward(*args, **kwargs), {}
        else:
            result, stats = op.forward_with_stats(*args, **kwargs)
        out = _outputs(op, result)
        for k in op.stats:
            out[k] = stats[k]
        cot = [inputs.get(c) for c in op.cotangents]
        if any(c is not None for c in cot):
            g = op.backward(*cot, *args, **kwargs)
            unknown = sorted(set(g) - set(op.differentiable))
            if unknown:
                raise ValueError(f"{spec.id}: {op.name}_backward returned gradients of {unknown}, which are not "
                                 f"differentiable arguments {op.differentiable}")
            for name in op.differentiable:
                if name in g:
                    out[grad_name(name)] = g[name]
        if has_jvp(spec):
            touts = op.jvp(jvp_tangents(op.name, inputs), *args, **kwargs)[1]
            for name, t in _outputs(op, touts).items():
                out[tangent_name(name)] = t
        if has_second_order(spec):
            g2 = op.double_backward(second_order_cotangents(op.name, inputs), *cot, *args, **kwargs)
            for key, v in g2.items():
                out[second_grad_name(key)] = v
        if has_running_update(spec):
            a = spec.attrs
            for conv in running_factors(spec):
                kw = {"convention": conv}
                if conv == "torch":
                    momentum = a["momentum"]
                    if "num_batches_tracked" in a:
                        kw["num_batches_tracked"] = a["num_batches_tracked"]
                else:
                    momentum = a["running_stats"][conv]["momentum"]
                nm, nv = op.running_stats(inputs["x"], inputs["running_mean"], inputs["running_var"], momentum, **kw)
                out[f"new_running_mean_{conv}"], out[f"new_running_var_{conv}"] = nm, nv
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
    n = sum(math.prod(s) * DTYPES[spec.recipe.get(k, {}).get("dtype", spec.dtype)].itemsize
            for k, s in spec.shapes.items())
    outs = output_shapes(spec)
    n += sum(math.prod(s) * 8 for s in outs.values())
    n += sum(math.prod(outs[o]) * 8 for o in scale_tensor_outputs(spec) if o in outs)
    return n + PER_CASE_OVERHEAD

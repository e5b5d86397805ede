"""Every output and every gradient refnorm produces is stored and compared.

* For every committed case, the names refnorm's own functions return (mapped
  by the one rule, ``"d" + argument`` for gradients) are exactly the names the
  case stores for that function and the names the harness compares.
* For every case, function and stored output, a backend that is refnorm
  except for one wrong element of that one output fails, and the failure
  names that output.
* An op with two outputs and two cotangents (a fused residual-add LayerNorm,
  registered for the test only) goes through the generator and the harness
  the same way: both outputs and every gradient are built, stored in the
  expected set and compared; a wrong value in any of them fails.
"""

from __future__ import annotations

import dataclasses
import inspect
from types import MappingProxyType, SimpleNamespace

import numpy as np
import pytest

import refnorm
from refnorm import _registry
from refnorm._registry import grad_name
from refnorm.conformance import harness as H
from refnorm.golden import build as B
from refnorm.golden import catalogue as C
from refnorm.golden.casespec import CaseSpec
from refnorm.golden.reader import GoldenCase, load_cases

CASES = [c for c in load_cases() if c.expect.get("kind") != "error"]


def _refnorm_outputs(case, function):
    """What refnorm's own ``function`` returns for the case, by golden name."""
    return H.produce(refnorm, case, function)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refnorm_returns_exactly_what_is_stored_and_compared(case):
    spec = refnorm.registry()[case.op]
    for function in H.applicable_functions(case):
        got = set(_refnorm_outputs(case, function))
        compared = set(H.expected_outputs(case, function))
        if function == f"{case.op}_backward":
            stored = {k for k in case.expected if k in spec.grad_names()}
        elif function == f"{case.op}_stats":
            stored = {k for k in case.expected if k in spec.stats}
            got &= set(spec.stats)  # <op>_stats may return more (PN's var); the record says what is stored
        elif function == case.op:
            stored = {k for k in case.expected if k in spec.outputs}
        elif function == f"{case.op}_jvp":
            stored = {k for k in case.expected if k in spec.tangent_outputs}
        elif function == f"{case.op}_double_backward":
            stored = {k for k in case.expected if k in spec.second_grad_names()}
        else:
            stored = {k for k in case.expected if k.startswith("new_running_")}
        assert got == stored == compared, (function, got, stored, compared)
    if any(c in case.inputs for c in spec.cotangents):
        assert f"{case.op}_backward" in H.applicable_functions(case)


def _wrong(expected: np.ndarray, tol: dict, scale) -> np.ndarray:
    """``expected`` with one element made wrong beyond any tolerance."""
    a = np.array(expected, dtype=np.float64)
    fin = np.flatnonzero(np.isfinite(a.reshape(-1)))
    if fin.size:
        i = int(fin[0])
        s = abs(a.reshape(-1)[i]) if scale is None else abs(np.asarray(scale).reshape(-1)[i])
        a.reshape(-1)[i] += 1.0 + 4.0 * (tol["atol"] + tol["rtol"] * s + abs(a.reshape(-1)[i]))
    else:
        a.reshape(-1)[0] = 0.0  # NaN or an infinity expected: a finite value is wrong
    return a


def _backend_with_one_wrong(case, function, output, source=refnorm):
    """``source`` (refnorm), except that ``function`` returns ``output`` wrong in one element."""
    spec = refnorm.registry()[case.op]
    wrong = _wrong(case.expected[output], case.tolerances[output], case.scales.get(output))
    real = getattr(source, function)

    def fn(*args, **kwargs):
        res = real(*args, **kwargs)
        if function == f"{case.op}_backward":
            res = dict(res)
            res[output[1:]] = wrong  # "d" + argument
        elif function == f"{case.op}_stats":
            y, stats = res
            res = (y, dict(stats, **{output: wrong}))
        elif function == case.op:
            res = wrong if len(spec.outputs) == 1 else tuple(
                wrong if o == output else r for o, r in zip(spec.outputs, res))
        elif function == f"{case.op}_jvp":  # (outputs, tangent outputs): "t" + output
            outs, touts = res
            touts = wrong if len(spec.outputs) == 1 else tuple(
                wrong if "t" + o == output else t for o, t in zip(spec.outputs, touts))
            res = (outs, touts)
        elif function == f"{case.op}_double_backward":
            res = dict(res)
            res[output[2:]] = wrong  # "d2" + key
        else:
            raise AssertionError(function)
        return res

    return SimpleNamespace(**{function: fn})


PERTURBED = [(c, f, o) for c in CASES for f in H.applicable_functions(c) if not f.endswith("_running_stats")
             for o in H.expected_outputs(c, f) if np.size(c.expected[o])]


@pytest.mark.parametrize("case, function, output", PERTURBED, ids=[f"{c.id}::{f}::{o}" for c, f, o in PERTURBED])
def test_a_wrong_value_in_any_output_fails(case, function, output):
    oc = H.check_function(_backend_with_one_wrong(case, function, output), case, function)
    assert oc.status == "failed", (oc.status, oc.message)
    assert [m.output for m in oc.mismatches] == [output]


@pytest.mark.parametrize("case", [c for c in CASES if any(k.startswith("new_running_") for k in c.expected)][:8],
                         ids=lambda c: c.id)
def test_a_wrong_running_statistic_fails(case):
    fn_name = f"{case.op}_running_stats"
    for output in H.expected_outputs(case, fn_name):
        conv = output.rsplit("_", 1)[1]
        which = 0 if "_mean_" in output else 1
        wrong = _wrong(case.expected[output], case.tolerances[output], case.scales.get(output))

        def fn(*args, convention="torch", _w=wrong, _c=conv, _i=which, **kwargs):
            res = list(getattr(refnorm, fn_name)(*args, convention=convention, **kwargs))
            if convention == _c:
                res[_i] = _w
            return tuple(res)

        oc = H.check_function(SimpleNamespace(**{fn_name: fn}), case, fn_name)
        assert oc.status == "failed" and [m.output for m in oc.mismatches] == [output], oc.message


def test_a_backward_that_drops_a_gradient_fails_as_missing():
    case = next(c for c in CASES if c.op == "layer_norm" and "dweight" in c.expected)

    def layer_norm_backward(*args, **kwargs):
        g = refnorm.layer_norm_backward(*args, **kwargs)
        del g["weight"]
        return g

    oc = H.check_function(SimpleNamespace(layer_norm_backward=layer_norm_backward), case, "layer_norm_backward")
    assert oc.status == "failed" and [m.output for m in oc.mismatches] == ["dweight"]
    assert "missing" in oc.mismatches[0].note


# ----------------------------------------------------------------------------- an op with two outputs


def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
    """h = x + residual; y = layer_norm(h): two outputs (y, h)."""
    h = np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
    return refnorm.layer_norm(h, normalized_shape, weight, bias, eps), h


def add_layer_norm_stats(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
    y, h = add_layer_norm(x, residual, normalized_shape, weight, bias, eps)
    _, stats = refnorm.layer_norm_stats(h, normalized_shape, weight, bias, eps)
    return (y, h), stats


def add_layer_norm_backward(dy, dh, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
    h = np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
    g = refnorm.layer_norm_backward(dy, h, normalized_shape, weight, bias, eps) if dy is not None else {
        "x": np.zeros_like(h)}
    dh_total = g["x"] + (0.0 if dh is None else np.asarray(dh, dtype=np.float64))
    out = {"x": dh_total, "residual": dh_total.copy()}
    out.update({k: v for k, v in g.items() if k != "x"})
    return out


def add_layer_norm_jvp(tangents, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Forward mode of the test op: the real fused op's (h is not rounded here: float64 inputs)."""
    return refnorm.add_layer_norm_jvp(tangents, x, residual, normalized_shape, weight, bias, eps)


def _reference(x, residual, normalized_shape, weight, bias, eps):
    return refnorm.registry()["layer_norm"].reference(x + residual, normalized_shape, weight, bias, eps)


_reference.__signature__ = inspect.signature(add_layer_norm)


def _layout(x_shape, normalized_shape):
    return refnorm.registry()["layer_norm"].layout(x_shape, normalized_shape)


@pytest.fixture
def fused(monkeypatch):
    """The registry with a two-output op added (for this test only)."""
    spec = dataclasses.replace(
        refnorm.registry()["layer_norm"], name="add_layer_norm", forward=add_layer_norm,
        backward=add_layer_norm_backward, reference=_reference, forward_with_stats=add_layer_norm_stats,
        differentiable=("x", "residual", "weight", "bias"), layout=_layout, outputs=("y", "h"), weight_offset=None,
        jvp=add_layer_norm_jvp, double_backward=None)
    reg = dict(refnorm.registry(), add_layer_norm=spec)
    monkeypatch.setattr(_registry, "_REGISTRY", MappingProxyType(reg))
    return spec


def _fused_case(spec_obj):
    shapes = {"x": [3, 8], "residual": [3, 8], "weight": [8], "bias": [8], "dy": [3, 8], "dh": [3, 8]}
    recipe = {"generator": "test"}
    recipe.update({k: {"kind": "normal", "loc": 0.5, "scale": 1.0} for k in shapes})
    return CaseSpec(id="add_layer_norm/t__float32", op="add_layer_norm", name="t", tier="basic", dtype="float32",
                    attrs={"normalized_shape": [8], "eps": 1e-5}, shapes=shapes, recipe=recipe, seed=7,
                    expect={"kind": "value"}, description="two outputs", large=False)


def test_a_two_output_op_is_built_stored_and_compared(fused):
    cs = _fused_case(fused)
    assert list(C.output_shapes(cs)) == ["y", "h", "mean", "rstd", "dx", "dresidual", "dweight", "dbias"]
    inputs = B.build_inputs(cs)
    expected = B.expected_from_inputs(cs, inputs)
    assert list(expected) == list(C.output_shapes(cs))
    h = inputs["x"].astype(np.float64) + inputs["residual"].astype(np.float64)
    np.testing.assert_array_equal(expected["h"], h)
    # dresidual carries dh as well as the normalization's gradient
    g = refnorm.layer_norm_backward(inputs["dy"], h, [8], inputs["weight"], inputs["bias"], 1e-5)
    np.testing.assert_array_equal(expected["dresidual"], g["x"] + inputs["dh"].astype(np.float64))
    tols = {k: {"atol": 0.0, "rtol": 1e-6, "ulp": None, "scale": "expected", "derivation": "test"} for k in expected}
    case = GoldenCase(id=cs.id, op=cs.op, tier=cs.tier, dtype=cs.dtype, attrs=cs.attrs, inputs=inputs,
                      expected=expected, scales={}, tolerances=tols, expect=cs.expect, description=cs.description)
    fns = H.applicable_functions(case)
    assert fns == ["add_layer_norm", "add_layer_norm_backward", "add_layer_norm_stats"]
    this = SimpleNamespace(add_layer_norm=add_layer_norm, add_layer_norm_backward=add_layer_norm_backward,
                           add_layer_norm_stats=add_layer_norm_stats)
    for fn in fns:
        oc = H.check_function(this, case, fn)
        assert oc.status == "passed", (fn, oc.message)
        assert set(oc.outputs) == set(H.expected_outputs(case, fn))
    assert H.expected_outputs(case, "add_layer_norm") == ["y", "h"]
    assert H.expected_outputs(case, "add_layer_norm_backward") == ["dx", "dresidual", "dweight", "dbias"]
    for fn in ("add_layer_norm", "add_layer_norm_backward", "add_layer_norm_stats"):
        for output in H.expected_outputs(case, fn):
            oc = H.check_function(_backend_with_one_wrong(case, fn, output, this), case, fn)
            assert oc.status == "failed" and [m.output for m in oc.mismatches] == [output], (fn, output)
    # a forward returning one value where two are due fails with a message, not a crash
    oc = H.check_function(SimpleNamespace(add_layer_norm=lambda *a, **k: add_layer_norm(*a, **k)[0]), case,
                          "add_layer_norm")
    assert oc.status == "failed" and "must return a tuple of 2 outputs" in oc.message
    # the backward receives both cotangents, in output order, before the forward's arguments
    seen = {}

    def spy(dy, dh, *args, **kwargs):
        seen["dy"], seen["dh"] = dy, dh
        return add_layer_norm_backward(dy, dh, *args, **kwargs)

    H.check_function(SimpleNamespace(add_layer_norm_backward=spy), case, "add_layer_norm_backward")
    # (each call receives its own copies of the case's tensors, bitwise equal)
    assert np.array_equal(seen["dy"], inputs["dy"]) and np.array_equal(seen["dh"], inputs["dh"])
    assert seen["dy"] is not inputs["dy"] and seen["dh"] is not inputs["dh"]
    assert grad_name("residual") == "dresidual"

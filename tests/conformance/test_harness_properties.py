"""The harness's properties besides the values: layouts, inputs unchanged, floating outputs, fresh copies."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

import refnorm
from refnorm.conformance import harness as H
from refnorm.golden import load_case
from refnorm.golden.layouts import strided_view

CASE = "layer_norm/d10007_weight__float64"


def _case(**changes):
    return dataclasses.replace(load_case(CASE), **changes)


def test_a_case_layout_reaches_the_backend():
    seen = {}

    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        seen["x"], seen["weight"] = x, weight
        return refnorm.layer_norm(x, normalized_shape, weight, bias, eps)

    case = _case(layout={"x": {"order": [1, 0], "offset": 3}, "weight": {"flip": [0]}})
    oc = H.check_function(SimpleNamespace(layer_norm=layer_norm), case, "layer_norm")
    assert oc.status == "passed", oc.message
    assert seen["x"].strides == strided_view(case.inputs["x"], case.layout["x"]).strides
    assert seen["x"].base is not None and seen["weight"].strides[0] < 0
    assert np.array_equal(seen["x"], case.inputs["x"]) and np.array_equal(seen["weight"], case.inputs["weight"])


def _writes_into_x(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    y = refnorm.layer_norm(x, normalized_shape, weight, bias, eps)
    x[0, 5] = 0.0
    return y


def test_inputs_unchanged_is_checked_when_the_case_asks():
    backend = SimpleNamespace(layer_norm=_writes_into_x)
    case = _case()
    assert H.check_function(backend, case, "layer_norm").status == "passed"  # values right, not asked
    assert np.array_equal(case.inputs["x"], load_case(CASE).inputs["x"])  # the call got a copy
    oc = H.check_function(backend, _case(checks={"inputs_unchanged": True}), "layer_norm")
    assert oc.status == "failed"
    assert oc.message.startswith("input modified in place: x changed at 1 of 10007 elements (first at (0, 5)")


def test_outputs_must_be_floating_point():
    backend = SimpleNamespace(layer_norm=lambda *a, **k: refnorm.layer_norm(*a, **k).astype(np.int64))
    oc = H.check_function(backend, _case(), "layer_norm")
    assert oc.status == "failed" and "is not a floating-point dtype" in oc.message


def test_case_checks_turn_on_repeat():
    calls = []

    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        calls.append(1)
        return refnorm.layer_norm(x, normalized_shape, weight, bias, eps) * (1 + 1e-16 * len(calls))

    oc = H.check_function(SimpleNamespace(layer_norm=layer_norm), _case(checks={"repeat": 3}), "layer_norm")
    assert len(calls) >= 2 and oc.status == "failed" and oc.message.startswith("nondeterministic")

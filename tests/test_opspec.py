"""The registry record (:class:`refnorm.OpSpec`) is the one place an op's facts live.

* A record with a missing or inconsistent piece is refused when it is made,
  with a message naming the piece.
* Each op's ``layout`` (the shapes the catalogue, the tolerance model and the
  recipes read) agrees with what the op itself computes: on every battery
  case of tests/ops/cases/<op>.py the statistics ``<op>_stats`` returns have
  the layout's shapes, and the canonical view holds the input.
* An op whose tolerance route is ``running_error`` without an error-bound
  program is refused.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import numpy as np
import pytest

import refnorm
from refnorm import _registry
from refnorm.golden import error_bounds as EB
from refnorm.golden import tolerance as TM

from ._util import op_cases

LN = refnorm.registry()["layer_norm"]




def test_gradient_names_follow_one_rule():
    for spec in refnorm.registry().values():
        assert spec.grad_names() == tuple("d" + a for a in spec.differentiable)
        assert spec.cotangents == tuple("d" + o for o in spec.outputs)
        assert spec.primary == spec.differentiable[0]
        assert spec.tangent_inputs == tuple("t" + a for a in spec.differentiable)
        assert spec.tangent_outputs == tuple("t" + o for o in spec.outputs)
        assert spec.second_cotangents == tuple("dd" + a for a in spec.differentiable)
        assert spec.second_grad_names() == tuple("d2" + k for k in spec.cotangents + spec.differentiable)


# (changes to layer_norm's record, the piece the error must name)
BROKEN = [
    ({"forward": None}, "forward must be a function"),
    ({"layout": None}, "layout must be a function"),
    ({"backward": refnorm.rms_norm_backward}, "backward must be the public function layer_norm_backward()"),
    ({"forward_with_stats": None}, "need forward_with_stats"),
    ({"differentiable": ("x", "gamma")}, "differentiable"),
    ({"differentiable": ()}, "differentiable"),
    ({"outputs": ("y", "y")}, "outputs must be distinct"),
    ({"outputs": ("y", "h")}, "backward must take ('dy', 'dh'"),
    ({"outputs": ("x",)}, "both one of the forward arguments and one of the outputs"),
    ({"stats": ("mean", "y")}, "both one of the outputs and one of the stats"),
    ({"weight_offset": "gamma_offset"}, "weight_offset 'gamma_offset' is not a forward argument"),
    ({"tolerance": "guessed"}, "tolerance route must be one of"),
    ({"batch_stats_flag": "training"}, "batch_stats_flag 'training' is not a forward argument"),
    ({"running_conventions": ("onnx",)}, "running_conventions must start with 'torch'"),
    ({"grouped_inputs": {"moving_stats": "moving_"}}, "grouped input 'moving_stats'"),
    ({"layout": lambda x_shape, num_groups: None}, "layout must take the primary input's shape"),
    ({"reference": refnorm.registry()["rms_norm"].reference}, "reference must take the forward's arguments"),
    ({"jvp": refnorm.rms_norm_jvp}, "jvp must be the public function layer_norm_jvp()"),
    ({"jvp": None}, "jvp is missing: every op has forward mode, layer_norm_jvp()"),
    ({"double_backward": refnorm.layer_norm_backward},
     "double_backward must be the public function layer_norm_double_backward()"),
    ({"stats": ("mean", "tx")}, "both one of the stats and one of the tangents"),
    ({"stats": ("mean", "d2x")}, "both one of the stats and one of the second-order gradients"),
]


@pytest.mark.parametrize("change, piece", BROKEN, ids=[p for _, p in BROKEN])
def test_a_record_with_a_missing_piece_is_refused_naming_it(change, piece):
    with pytest.raises((TypeError, ValueError), match=piece.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(LN, **change)


def test_the_unchanged_record_is_accepted():
    assert dataclasses.replace(LN) == LN


def test_a_running_error_op_without_a_program_is_refused(monkeypatch):
    fake = dataclasses.replace(LN, tolerance="running_error")
    monkeypatch.setattr(_registry, "_REGISTRY", MappingProxyType({"layer_norm": fake}))
    with pytest.raises(LookupError, match="'layer_norm' has tolerance route 'running_error'.*no program"):
        TM._check_programs()
    monkeypatch.setattr(EB, "PROGRAMS", dict(EB.PROGRAMS, layer_norm=EB.PROGRAMS["proxy_norm"]))
    with pytest.raises(LookupError, match="no formula"):
        TM._check_programs()


CASES = [(op, cid, kw) for op in refnorm.registry() for cid, kw in op_cases(op)]


@pytest.mark.parametrize("op, cid, kw", CASES, ids=[f"{op}-{cid}" for op, cid, _ in CASES])
def test_layout_agrees_with_what_the_op_computes(op, cid, kw):
    spec = refnorm.registry()[op]
    x = np.asarray(kw[spec.primary])
    lay = spec.layout_of({spec.primary: x.shape}, kw)
    assert lay.shape == x.shape
    assert set(lay.stats) == set(spec.stats)
    if lay.view is not None:
        assert math.prod(lay.view) == x.size
        A, B, S = lay.view
        P, Q, T = lay.affine
        assert S == Q * T or (S == 0 and T == 0) or x.size == 0
        sets = lay.to_sets(x)
        assert sets.shape == (B, A * S)
        np.testing.assert_array_equal(lay.from_sets(sets), x)
    for name in ("weight", "bias"):
        if kw.get(name) is not None and name != spec.primary and name in spec.differentiable:
            assert lay.param_shape == np.shape(kw[name]), name
            assert lay.param_view(np.asarray(kw[name], dtype=np.float64)).shape == x.shape
            assert lay.param_sum(np.ones(x.shape)).shape == np.shape(kw[name])
    if spec.forward_with_stats is not None:
        _, stats = spec.forward_with_stats(**kw)
        for name in spec.stats:
            assert np.shape(stats[name]) == lay.stats[name], name


def test_param_view_and_sum_follow_the_affine_rule():
    """Element (a, b, s) of the canonical view uses w[(b % P) * Q + s // T]:
    the layout's broadcast and sums agree with that rule for every standard op."""
    rng = np.random.default_rng(3)
    shapes = {"batch_norm": ((3, 4, 5), {}), "instance_norm": ((3, 4, 5), {}),
              "group_norm": ((3, 6, 5), {"num_groups": 2}), "layer_norm": ((3, 4, 5), {"normalized_shape": [4, 5]}),
              "rms_norm": ((3, 4, 5), {"normalized_shape": [5]})}
    for op, (shape, attrs) in shapes.items():
        lay = refnorm.registry()[op].layout_of({"x": shape}, attrs)
        A, B, S = lay.view
        P, Q, T = lay.affine
        w = rng.standard_normal(lay.param_shape)
        idx = np.array([[[(b % P) * Q + s // T for s in range(S)] for b in range(B)] for _ in range(A)])
        want = w.reshape(-1)[idx].reshape(shape)
        np.testing.assert_array_equal(lay.param_view(w), want, err_msg=op)
        a = rng.standard_normal(shape)
        sums = np.zeros(w.size)
        np.add.at(sums, idx.reshape(-1), a.reshape(-1))
        np.testing.assert_allclose(lay.param_sum(a).reshape(-1), sums, rtol=1e-12, err_msg=op)


def test_layout_arguments_are_forward_arguments_read_from_attrs():
    spec = refnorm.registry()["group_norm"]
    assert spec.layout_of({"x": (2, 6, 3)}, {"num_groups": 3, "eps": 1e-5}).stats["mean"] == (2, 3)
    spec = refnorm.registry()["instance_norm"]
    assert spec.layout_of({"x": (2, 6, 3)}, {"use_input_stats": False}).stats["rstd"] == (6,)
    assert spec.layout_of({"x": (2, 6, 3)}, {}).stats["rstd"] == (2, 6)

"""The battery every registered op goes through, driven by the registry.

For each op and each case of tests/_util.op_cases:
  * the Numba forward equals the autograd.numpy reference;
  * the hand-derived backward equals autograd's VJP of the reference, and
    central finite differences of the forward, for a random cotangent;
  * no input is modified.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
from autograd import grad

import refnorm
from refnorm._registry import protocol_parameters

from ._util import assert_close, gradient_scale, op_cases, random_dy, reference_kwargs

OPS = list(refnorm.registry())
CASES = [(op, cid, kw) for op in OPS for cid, kw in op_cases(op)]
IDS = [f"{op}-{cid}" for op, cid, _ in CASES]


STANDARD_OPS = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "rms_norm")
SEED_OPS = ("proxy_norm", "gn_plus", "weight_standardization", "batch_layer_norm")


def test_registry_is_explicit_and_complete():
    reg = refnorm.registry()
    assert list(reg) == list(STANDARD_OPS + SEED_OPS)
    for name, spec in reg.items():
        assert spec.forward is getattr(refnorm, name)
        assert spec.backward is getattr(refnorm, f"{name}_backward")
        fwd = list(protocol_parameters(spec.forward))
        bwd = list(protocol_parameters(spec.backward))
        assert list(spec.parameters) == fwd
        for fn in (spec.forward, spec.backward):  # refnorm's own extra: a keyword-only out=None, last
            params = inspect.signature(fn).parameters
            if name in STANDARD_OPS:
                out = params["out"]
                assert list(params)[-1] == "out" and out.kind is inspect.Parameter.KEYWORD_ONLY, fn.__name__
                assert out.default is None, fn.__name__
            else:
                assert "out" not in params, fn.__name__
        ref = list(inspect.signature(spec.reference).parameters)
        assert bwd == ["dy"] + fwd, f"{name}_backward must take (dy, <forward args>)"
        assert ref == fwd, f"reference.{name} must have the forward's signature"
        # the first differentiable argument is the normalized input: the forward's
        # first parameter (x; weight standardization standardizes its weight)
        assert spec.differentiable[0] == fwd[0] == ("weight" if name == "weight_standardization" else "x")
        assert set(spec.differentiable) <= set(fwd)
        if spec.forward_with_stats is not None:
            assert list(inspect.signature(spec.forward_with_stats).parameters) == fwd
        else:
            assert name == "gn_plus", f"{name} saves statistics: register its <op>_stats"


def _differentiable_given(spec, kw):
    return [a for a in spec.differentiable if kw.get(a) is not None]


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_forward_matches_reference(op, cid, kw):
    spec = refnorm.registry()[op]
    y = spec.forward(**kw)
    y_ref = spec.reference(**reference_kwargs(op, kw))
    assert y.dtype == np.float64
    assert_close(y, y_ref, "kernel_vs_reference", op=op, case=cid, array="y",
                 repro=f"refnorm.{op}(**op_cases({op!r})[{cid!r}])")


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_backward_matches_autograd(op, cid, kw):
    spec = refnorm.registry()[op]
    y = spec.forward(**kw)
    dy = random_dy(y.shape, seed=1)
    got = spec.backward(dy, **kw)
    names = _differentiable_given(spec, kw)
    assert sorted(got) == sorted(names), f"{op}[{cid}]: backward returned {sorted(got)}, expected {sorted(names)}"
    rkw = reference_kwargs(op, kw)
    for name in names:
        def loss(v, name=name):
            return np.sum(spec.reference(**{**rkw, name: v}) * dy)

        want = grad(loss)(np.asarray(rkw[name], dtype=np.float64))
        assert got[name].shape == np.shape(kw[name])
        assert_close(got[name], want, "backward_vs_autograd", op=op, case=cid, array=f"d{name}",
                     repro=f"refnorm.{op}_backward(dy, **kw)[{name!r}]", scale=gradient_scale(spec, kw, dy, name))


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_backward_matches_finite_differences(op, cid, kw):
    spec = refnorm.registry()[op]
    y = spec.forward(**kw)
    dy = random_dy(y.shape, seed=2)
    got = spec.backward(dy, **kw)
    h = 1e-5
    for name in _differentiable_given(spec, kw):
        base = np.array(kw[name], dtype=np.float64)
        fd = np.empty_like(base)
        for i in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[i] += h
            minus[i] -= h
            fp = spec.forward(**{**kw, name: plus})
            fm = spec.forward(**{**kw, name: minus})
            fd[i] = np.sum((fp - fm) * dy) / (2 * h)
        assert_close(got[name], fd, "backward_vs_fd", op=op, case=cid, array=f"d{name}",
                     scale=gradient_scale(spec, kw, dy, name))


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_inputs_are_not_modified(op, cid, kw):
    spec = refnorm.registry()[op]
    before = copy.deepcopy(kw)
    y = spec.forward(**kw)
    spec.backward(random_dy(y.shape), **kw)
    if spec.running_stats is not None and kw.get("running_mean") is not None:
        if op == "batch_norm" and kw["training"]:
            spec.running_stats(kw["x"], kw["running_mean"], kw["running_var"], 0.1)
    if op == "batch_layer_norm":  # the moving-statistics update, from one batch's statistics as the sums
        sums = refnorm.batch_layer_norm_batch_stats(kw["x"], feature_axis=kw.get("feature_axis", -1),
                                                    batch_stats=kw.get("batch_stats", "position"))
        frozen = copy.deepcopy(sums)
        spec.running_stats(sums, 1, 2)
        assert all(np.array_equal(sums[k], frozen[k]) for k in sums), f"{op}[{cid}]: sums were modified"
    for k, v in kw.items():
        arrays = v.items() if isinstance(v, dict) else [(None, v)]  # BLN's moving_stats is a dict of arrays
        for sub, a in arrays:
            if isinstance(a, np.ndarray):
                b = before[k] if sub is None else before[k][sub]
                assert np.array_equal(a, b) and a.dtype == b.dtype, f"{op}[{cid}]: {k}{'' if sub is None else [sub]} was modified"

"""The battery every registered op goes through, driven by the registry.

For each op and each case of its ``battery(rng)`` in tests/ops/cases/<op>.py:
  * the Numba forward equals the autograd.numpy reference;
  * the hand-derived backward equals autograd's VJP of the reference, and
    central finite differences of the forward, for a random cotangent;
  * no input is modified (nor by the op's running-statistics update).
A registered op without those cases fails
:func:`test_every_registered_op_has_battery_cases`, naming what to add; a
failing case prints a command that reruns it.
"""

from __future__ import annotations

import copy
import inspect
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from autograd import grad

import refnorm
from refnorm._registry import STANDARD_OPS, protocol_parameters

from ._util import assert_close, gradient_scale, op_cases, random_dy, reference_kwargs, repro
from .ops import cases

OPS = list(refnorm.registry())
CASES = [(op, cid, kw) for op in OPS for cid, kw in op_cases(op)]
IDS = [f"{op}-{cid}" for op, cid, _ in CASES]


def test_registry_is_explicit_and_complete():
    reg = refnorm.registry()
    assert list(reg)[:len(STANDARD_OPS)] == list(STANDARD_OPS), "the five standard ops come first, in this order"
    unregistered = sorted(set(cases.ops()) - set(reg))
    assert not unregistered, (f"tests/ops/cases/ has modules for ops the registry does not have: {unregistered} "
                              "(register them in refnorm/_registry.py, or remove the modules)")
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
        assert bwd == list(spec.cotangents) + fwd, f"{name}_backward must take ({', '.join(spec.cotangents)}, <forward args>)"
        assert ref == fwd, f"reference.{name} must have the forward's signature"
        # the first differentiable argument is the normalized input: the forward's
        # first parameter (x; weight standardization standardizes its weight)
        primary = {"weight_standardization": "weight", "weight_norm": "v"}.get(name, "x")
        assert spec.differentiable[0] == fwd[0] == primary
        assert set(spec.differentiable) <= set(fwd)
        if spec.forward_with_stats is not None:
            assert list(inspect.signature(spec.forward_with_stats).parameters) == fwd
        else:
            assert spec.stats == (), f"{name} saves statistics: register its <op>_stats"  # GN+, DyT: none


def test_every_registered_op_has_battery_cases():
    cases.assert_complete("battery")


def _differentiable_given(spec, kw):
    return [a for a in spec.differentiable if kw.get(a) is not None]


def _backward_expr(op, name, seed):
    """The gradient the backward tests check, as a repro expression (:func:`tests._util.repro`)."""
    if len(refnorm.registry()[op].outputs) == 1:
        return f"refnorm.{op}_backward(random_dy(y.shape, seed={seed}), **kw)[{name!r}]"
    return (f"refnorm.{op}_backward(*[random_dy(o.shape, seed={seed} + k) for k, o in enumerate(y)], "
            f"**kw)[{name!r}]")


def _outputs(spec, result) -> tuple:
    """The forward's outputs as a tuple (one for ``y``; a fused op returns several)."""
    if len(spec.outputs) == 1:
        return (result,)
    assert isinstance(result, tuple) and len(result) == len(spec.outputs), (spec.name, type(result))
    return result


def _cotangents(spec, result, seed) -> list:
    """One random cotangent per output (``dy``, ``dh`` ...), never ones."""
    return [random_dy(np.shape(o), seed=seed + k) for k, o in enumerate(_outputs(spec, result))]


def _pairing(spec, result, dys):
    """sum over the outputs of <output, its cotangent>: the loss whose gradient the backward is."""
    return sum(np.sum(o * d) for o, d in zip(_outputs(spec, result), dys))


def test_repro_reruns_the_case():
    """The repro a failure prints is one shell command that, run from the
    repository root, recomputes that case's y and gradient bit for bit."""
    op, cid, kw = next(c for c in CASES if c[0] == "layer_norm" and c[2]["bias"] is not None)
    assert "(" in cid and "," in cid  # a case id that needs quoting
    expr = f"float(y.sum()).hex(), float({_backward_expr(op, 'x', seed=1)}.sum()).hex()"
    cmd = repro(op, cid, expr)
    argv = shlex.split(cmd)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3, cmd
    out = subprocess.run([sys.executable, "-c", argv[2]], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{cmd}\n{out.stderr}"
    y = refnorm.layer_norm(**kw)
    dx = refnorm.layer_norm_backward(random_dy(y.shape, seed=1), **kw)["x"]
    assert out.stdout.split() == [float(y.sum()).hex(), float(dx.sum()).hex()], cmd


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_forward_matches_reference(op, cid, kw):
    spec = refnorm.registry()[op]
    got = _outputs(spec, spec.forward(**kw))
    want = _outputs(spec, spec.reference(**reference_kwargs(op, kw)))
    for name, y, y_ref in zip(spec.outputs, got, want):
        assert y.dtype == np.float64, name
        assert_close(y, y_ref, "kernel_vs_reference", op=op, case=cid, array=name, repro=repro(op, cid))


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_backward_matches_autograd(op, cid, kw):
    spec = refnorm.registry()[op]
    y = spec.forward(**kw)
    dys = _cotangents(spec, y, seed=1)
    dy = dys[0]
    got = spec.backward(*dys, **kw)
    names = _differentiable_given(spec, kw)
    assert sorted(got) == sorted(names), f"{op}[{cid}]: backward returned {sorted(got)}, expected {sorted(names)}"
    rkw = reference_kwargs(op, kw)
    for name in names:
        def loss(v, name=name):
            return _pairing(spec, spec.reference(**{**rkw, name: v}), dys)

        want = grad(loss)(np.asarray(rkw[name], dtype=np.float64))
        assert got[name].shape == np.shape(kw[name])
        assert_close(got[name], want, "backward_vs_autograd", op=op, case=cid, array=f"d{name}",
                     repro=repro(op, cid, _backward_expr(op, name, seed=1)), scale=gradient_scale(spec, kw, dy, name))


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_backward_matches_finite_differences(op, cid, kw):
    spec = refnorm.registry()[op]
    hook = cases.get(op, "finite_differences_apply")
    if hook is not None and not hook(kw):
        pytest.skip(f"{op}[{cid}]: {hook.__doc__}")
    y = spec.forward(**kw)
    dys = _cotangents(spec, y, seed=2)
    dy = dys[0]
    got = spec.backward(*dys, **kw)
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
            fd[i] = sum(np.sum((a - b) * d) for a, b, d in zip(_outputs(spec, fp), _outputs(spec, fm), dys)) / (2 * h)
        assert_close(got[name], fd, "backward_vs_fd", op=op, case=cid, array=f"d{name}",
                     repro=repro(op, cid, _backward_expr(op, name, seed=2)), scale=gradient_scale(spec, kw, dy, name))


@pytest.mark.parametrize("op,cid,kw", CASES, ids=IDS)
def test_inputs_are_not_modified(op, cid, kw):
    spec = refnorm.registry()[op]
    before = copy.deepcopy(kw)
    y = spec.forward(**kw)
    spec.backward(*_cotangents(spec, y, seed=0), **kw)
    if spec.running_stats is not None:
        args = cases.get(op, "running_stats_args")(kw)
        if args is not None:
            frozen = copy.deepcopy(args)
            spec.running_stats(*args)
            _assert_unmodified(op, cid, dict(enumerate(args)), dict(enumerate(frozen)), "running-statistics argument ")
    _assert_unmodified(op, cid, kw, before)


def _assert_unmodified(op, cid, args, before, what=""):
    for k, v in args.items():
        arrays = v.items() if isinstance(v, dict) else [(None, v)]  # BLN's moving_stats is a dict of arrays
        for sub, a in arrays:
            if isinstance(a, np.ndarray):
                b = before[k] if sub is None else before[k][sub]
                assert np.array_equal(a, b) and a.dtype == b.dtype, \
                    f"{op}[{cid}]: {what}{k}{'' if sub is None else [sub]} was modified"

"""Forward mode and second order of every registered op, against autograd and
finite differences, driven by the registry and the battery of
tests/ops/cases/<op>.py (plus, per op, the battery's first affine case with
``weight=None`` and the bias kept, and one with ``eps=0``).

For each case, with non-uniform random tangents and cotangents (never ones):

* ``<op>_jvp``: ``y`` has the forward's bits; ``ty`` equals autograd's forward
  mode of the autograd.numpy reference (``make_jvp``), central differences of
  refnorm's own forward along the tangent, and the transpose of refnorm's
  backward: ``<c, ty> = sum_k <backward(c)[k], t_k>``;
* ``<op>_double_backward`` (where the op has one): each result equals
  autograd's reverse-over-reverse of the reference (the gradient of
  ``<cotangents, grad of <dy, reference>>``) and central differences of
  refnorm's own backward, element by element.

The closed forms of the upstream bugs and the kernels' own properties
(threads, bad input) are in tests/ops/test_second_order.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from autograd import grad, make_jvp
from autograd.differential_operators import make_jvp_reversemode
from autograd import numpy as anp

import refnorm

from .._util import assert_close, gradient_scale, op_cases, reference_kwargs
from . import cases

OPS = [name for name, spec in refnorm.registry().items() if spec.jvp is not None]
SECOND = [name for name, spec in refnorm.registry().items() if spec.double_backward is not None]


def _extra_cases(op):
    """The battery's first case with a weight and a bias, with ``weight=None``
    (the path torch's double backward crashes on; where the op allows it) and
    with ``eps=0`` (the standard ops)."""
    out = []
    spec = refnorm.registry()[op]
    for cid, kw in op_cases(op):
        if kw.get("weight") is not None and kw.get("bias") is not None:
            try:  # only where the op takes weight=None (PN and GN+ require a weight)
                spec.forward(**{**kw, "weight": None})
                out.append((cid + "-weight-None", {**kw, "weight": None}))
            except (TypeError, ValueError):
                pass
            if "eps" in spec.parameters and spec.eps_default is None and spec.name not in refnorm._registry.SEED_OPS:
                out.append((cid + "-eps0", {**kw, "eps": 0.0}))
            break
    return out


def _cases(ops):
    return [(op, cid, kw) for op in ops for cid, kw in op_cases(op) + _extra_cases(op)]


JVP_CASES = _cases(OPS)
SECOND_CASES = _cases(SECOND)


def _given(spec, kw):
    return [a for a in spec.differentiable if kw.get(a) is not None]


def _outputs(spec, result):
    return (result,) if len(spec.outputs) == 1 else tuple(result)


def _rng(op, cid, salt):
    return np.random.default_rng([sum(map(ord, op + cid)), salt])


def _directions(spec, kw, rng, scale=1.0):
    """Random non-uniform directions for every given differentiable argument."""
    return {a: scale * rng.standard_normal(np.shape(kw[a])) for a in _given(spec, kw)}


def _flat(spec, kw, names):
    return np.concatenate([np.asarray(kw[a], dtype=np.float64).ravel() for a in names]) if names else np.zeros(0)


def _unflat(spec, kw, names, v):
    out, i = {}, 0
    for a in names:
        n = int(np.prod(np.shape(kw[a])))
        out[a] = v[i:i + n].reshape(np.shape(kw[a]))
        i += n
    return out


def _ref_outputs(spec, rkw, names, v):
    """The reference's outputs, flattened and concatenated, as a function of
    the flat vector ``v`` of the differentiable arguments ``names``."""
    i, args = 0, dict(rkw)
    for a in names:
        n = int(np.prod(np.shape(rkw[a])))
        args[a] = anp.reshape(v[i:i + n], np.shape(rkw[a]))
        i += n
    outs = _outputs(spec, spec.reference(**args))
    return anp.concatenate([anp.ravel(o) for o in outs])


def _scale(spec, kw, *arrays):
    """The magnitude of the terms (as the backward tests' gradient scale, for
    the largest of the given directions)."""
    m = max([float(np.max(np.abs(a))) for a in arrays if np.size(a)] + [1.0])
    return gradient_scale(spec, kw, np.full(np.shape(kw[spec.primary]), m), spec.primary)


@pytest.mark.parametrize("op,cid,kw", JVP_CASES, ids=[f"{o}-{c}" for o, c, _ in JVP_CASES])
def test_jvp(op, cid, kw):
    spec = refnorm.registry()[op]
    rng = _rng(op, cid, 1)
    t = _directions(spec, kw, rng)
    outs, touts = spec.jvp(t, **kw)
    outs, touts = _outputs(spec, outs), _outputs(spec, touts)
    for name, a, b in zip(spec.outputs, outs, _outputs(spec, spec.forward(**kw))):
        assert np.array_equal(a, b, equal_nan=True), f"{op}[{cid}]: the JVP's {name} is not the forward's"
    for name, ty in zip(spec.outputs, touts):
        assert ty.dtype == np.float64 and ty.shape == outs[0].shape, name
    got = np.concatenate([o.ravel() for o in touts])
    names = _given(spec, kw)
    scale = _scale(spec, kw, *t.values())
    # (1) autograd's forward mode of the definition
    rkw = reference_kwargs(op, kw)
    fn = lambda v: _ref_outputs(spec, rkw, names, v)  # noqa: E731
    try:
        _, want = make_jvp(fn)(_flat(spec, rkw, names))(_flat(spec, t, names))
    except NotImplementedError:  # a primitive without a forward-mode rule (PN's GELU: normal_cdf): reverse mode
        want = make_jvp_reversemode(fn)(_flat(spec, rkw, names))(_flat(spec, t, names))
    assert_close(got, want, "jvp_vs_autograd", op=op, case=cid, array="t" + "/t".join(spec.outputs), scale=scale)
    # (2) central differences of refnorm's own forward along t
    fd_ok = cases.get(op, "finite_differences_apply")
    if fd_ok is None or fd_ok(kw):
        h = 1e-6
        plus = {**kw, **{a: np.asarray(kw[a], dtype=np.float64) + h * t[a] for a in names}}
        minus = {**kw, **{a: np.asarray(kw[a], dtype=np.float64) - h * t[a] for a in names}}
        fd = np.concatenate([(p - m).ravel() / (2 * h) for p, m in zip(_outputs(spec, spec.forward(**plus)),
                                                                      _outputs(spec, spec.forward(**minus)))])
        assert_close(got, fd, "jvp_vs_fd", op=op, case=cid, array="t" + "/t".join(spec.outputs), scale=scale)
    # (3) the JVP is the transpose of refnorm's own VJP
    cots = [rng.standard_normal(o.shape) for o in outs]
    grads = spec.backward(*cots, **kw)
    lhs = sum(float(np.sum(c * ty)) for c, ty in zip(cots, touts))
    rhs = sum(float(np.sum(grads[a] * t[a])) for a in names)
    assert abs(lhs - rhs) <= 1e-11 * max(abs(lhs), abs(rhs), scale * max(1.0, float(np.sqrt(got.size)))), \
        f"{op}[{cid}]: <c, ty> = {lhs!r} but sum <backward(c), t> = {rhs!r}"


def _second_inputs(spec, kw, op, cid):
    rng = _rng(op, cid, 2)
    outs = _outputs(spec, spec.forward(**kw))
    dys = [rng.standard_normal(o.shape) for o in outs]
    cot = _directions(spec, kw, rng)
    return dys, cot


def _pairing(spec, grads, cot):
    return sum(float(np.sum(np.asarray(grads[k]) * cot[k])) for k in cot)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")  # eval mode, no weight: dL/dx = 0
@pytest.mark.parametrize("op,cid,kw", SECOND_CASES, ids=[f"{o}-{c}" for o, c, _ in SECOND_CASES])
def test_double_backward(op, cid, kw):
    spec = refnorm.registry()[op]
    dys, cot = _second_inputs(spec, kw, op, cid)
    got = spec.double_backward(cot, *dys, **kw)
    names = _given(spec, kw)
    want_keys = list(spec.cotangents) + names
    assert sorted(got) == sorted(want_keys), f"{op}[{cid}]: keys {sorted(got)}, expected {sorted(want_keys)}"
    scale = _scale(spec, kw, *dys, *cot.values()) * max(1.0, _rstd_max(spec, kw))
    # (1) autograd, reverse over reverse: L(dys, v) = <cot, grad_v <dys, reference(v)>>
    rkw = reference_kwargs(op, kw)
    v0 = _flat(spec, rkw, names)
    c_flat = _flat(spec, cot, names)

    def L(dflat, v):
        inner = grad(lambda w: anp.sum(_ref_outputs(spec, rkw, names, w) * dflat))(v)
        return anp.sum(inner * c_flat)

    dflat = np.concatenate([d.ravel() for d in dys])
    g_d = grad(L, 0)(dflat, v0)
    g_v = grad(L, 1)(dflat, v0)
    i = 0
    for k, d in zip(spec.cotangents, dys):
        assert_close(got[k], g_d[i:i + d.size].reshape(d.shape), "second_vs_autograd", op=op, case=cid,
                     array="d2" + k, scale=scale)
        i += d.size
    for a, want in _unflat(spec, rkw, names, g_v).items():
        assert_close(got[a], want, "second_vs_autograd", op=op, case=cid, array="d2" + a, scale=scale)
    # (2) central differences of refnorm's own backward, element by element
    fd_ok = cases.get(op, "finite_differences_apply")
    if fd_ok is not None and not fd_ok(kw):
        return
    h = 1e-5

    def loss(dys_, kw_):
        return _pairing(spec, spec.backward(*dys_, **kw_), cot)

    for j, d in enumerate(dys):  # L is linear in dy: one difference per element is exact up to rounding
        fd = np.empty(d.shape)
        for idx in np.ndindex(d.shape):
            p, m = [x.copy() for x in dys], [x.copy() for x in dys]
            p[j][idx] += h
            m[j][idx] -= h
            fd[idx] = (loss(p, kw) - loss(m, kw)) / (2 * h)
        assert_close(got[spec.cotangents[j]], fd, "second_vs_fd", op=op, case=cid,
                     array="d2" + spec.cotangents[j], scale=scale)
    for a in names:
        base = np.array(kw[a], dtype=np.float64)
        fd = np.empty(base.shape)
        for idx in np.ndindex(base.shape):
            p, m = base.copy(), base.copy()
            p[idx] += h
            m[idx] -= h
            fd[idx] = (loss(dys, {**kw, a: p}) - loss(dys, {**kw, a: m})) / (2 * h)
        assert_close(got[a], fd, "second_vs_fd", op=op, case=cid, array="d2" + a, scale=scale)


def _rstd_max(spec, kw):
    if spec.forward_with_stats is None:
        return 1.0
    _, st = spec.forward_with_stats(**kw)
    r = [float(np.nanmax(np.abs(v))) for k, v in st.items() if "rstd" in k and np.size(v)]
    return max(r + [1.0])


def test_every_op_has_both():
    """Forward mode and second order for every op (the seed layers' derive cleanly too)."""
    reg = refnorm.registry()
    assert OPS == list(reg), f"ops without <op>_jvp: {sorted(set(reg) - set(OPS))}"
    assert SECOND == list(reg), f"ops without <op>_double_backward: {sorted(set(reg) - set(SECOND))}"
    for name, spec in reg.items():
        assert getattr(refnorm, f"{name}_jvp") is spec.jvp
        assert getattr(refnorm, f"{name}_double_backward") is spec.double_backward

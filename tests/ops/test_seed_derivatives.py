"""Forward mode (``<op>_jvp``) and second order (``<op>_double_backward``) of the four
seed research layers: proxy_norm, gn_plus, weight_standardization, batch_layer_norm.

For every layer and a spread of its options, with random non-uniform tangents and
cotangents (never ones), float64:

* the JVP against autograd's forward mode on the reference (``make_jvp``; GELU's
  ``normal_cdf`` primitive has only a VJP, so PN-GELU uses ``make_jvp_reversemode``)
  and against central differences of refnorm's own forward along the tangent;
* the double backward against autograd's reverse-over-reverse of the reference
  (the gradient of ``sum_k <c_k, vjp(dy)_k>`` w.r.t. dy and every argument) and
  against central differences of refnorm's own backward along random directions;
* the transpose identity ``<c, J t> == <J^T c, t>`` between the JVP and the backward;
* ``y`` of the JVP bit-identical to the forward, no mutation, the same bits for any
  number of threads; the degenerate sets each layer defines; the bad directions
  (unknown key, a direction for an argument that is None, a wrong shape) refused
  before any kernel runs.
"""

from __future__ import annotations

import copy
import itertools
import re

import autograd.numpy as anp
import numba
import numpy as np
import pytest
from autograd import grad, make_jvp
from autograd.differential_operators import make_jvp_reversemode

from refnorm.ops import batch_layer_norm as BLN
from refnorm.ops import gn_plus as GP
from refnorm.ops import proxy_norm as PN
from refnorm.ops import weight_standardization as WS
from refnorm.reference.batch_layer_norm import batch_layer_norm as bln_ref
from refnorm.reference.gn_plus import gn_plus as gp_ref
from refnorm.reference.proxy_norm import proxy_norm as pn_ref
from refnorm.reference.weight_standardization import weight_standardization as ws_ref

from .._tolerances import tol
from .._util import assert_close, noncentred, random_affine


# --------------------------------------------------------------------------------- the layers, uniformly

class Layer:
    """One layer seen as functions of a dict of its differentiable arguments
    ``args`` (None entries: not given) and keyword options ``kw``."""

    def __init__(self, name, names, fwd, bwd, jvp, dbw, ref, call=None):
        self.name, self.names = name, names
        self._fwd, self._bwd, self._jvp, self._dbw, self._ref = fwd, bwd, jvp, dbw, ref
        self._call = call or (lambda args, kw: ((), {**args, **kw}))

    def given(self, args):
        return [n for n in self.names if args.get(n) is not None]

    def fwd(self, args, kw):
        a, k = self._call(args, kw)
        return self._fwd(*a, **k)

    def bwd(self, dy, args, kw):
        a, k = self._call(args, kw)
        return self._bwd(dy, *a, **k)

    def jvp(self, t, args, kw):
        a, k = self._call(args, kw)
        return self._jvp(t, *a, **k)

    def dbw(self, c, dy, args, kw):
        a, k = self._call(args, kw)
        return self._dbw(c, dy, *a, **k)

    def ref(self, args, kw):
        a, k = self._call(args, kw)
        return self._ref(*a, **k)


LAYERS = {
    "proxy_norm": Layer("proxy_norm", ("x", "weight", "bias", "proxy_shift", "proxy_scale"), PN.proxy_norm,
                        PN.proxy_norm_backward, PN.proxy_norm_jvp, PN.proxy_norm_double_backward, pn_ref),
    "gn_plus": Layer("gn_plus", ("x", "weight", "bias", "mix"), GP.gn_plus, GP.gn_plus_backward, GP.gn_plus_jvp,
                     GP.gn_plus_double_backward, gp_ref),
    "weight_standardization": Layer(
        "weight_standardization", ("weight", "gain"), WS.weight_standardization, WS.weight_standardization_backward,
        WS.weight_standardization_jvp, WS.weight_standardization_double_backward, ws_ref),
    "batch_layer_norm": Layer("batch_layer_norm", ("x", "weight", "bias"), BLN.batch_layer_norm,
                              BLN.batch_layer_norm_backward, BLN.batch_layer_norm_jvp,
                              BLN.batch_layer_norm_double_backward, bln_ref),
}


def _directions(rng, args, names):
    """Random non-uniform directions for every given argument (shaped like it)."""
    return {n: rng.standard_normal(np.shape(args[n])) for n in names}


def _flat(layer, args, kw):
    """The reference as a function of one flat vector of the given differentiable arguments."""
    names = layer.given(args)
    shapes = [np.shape(args[n]) for n in names]
    sizes = [int(np.prod(s)) for s in shapes]

    def f(v):
        parts, o = {}, 0
        for n, s, k in zip(names, shapes, sizes):
            parts[n] = anp.reshape(v[o:o + k], s)
            o += k
        return layer.ref({**args, **parts}, kw)

    def flatten(d):
        return np.concatenate([np.ravel(np.asarray(d[n], dtype=np.float64)) for n in names])

    def unflatten(v):
        out, o = {}, 0
        for n, s, k in zip(names, shapes, sizes):
            out[n] = np.reshape(v[o:o + k], s)
            o += k
        return out

    return f, flatten, unflatten


def _dot(a, b):
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


def _abs_dot(a, b):
    return float(np.sum(np.abs(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64))))


def check_all(layer, args, kw, case, seed=0, reverse_jvp=False, fd=True, scale=0.0):
    """Every check of the module docstring for one case.  ``reverse_jvp``: the
    reference has a primitive without a forward-mode rule.  ``scale``: a
    magnitude floor for outputs that cancel (relative tolerances are norm-wise)."""
    rng = np.random.default_rng(seed)
    names = layer.given(args)
    before = copy.deepcopy((args, kw))
    T = _directions(rng, args, names)
    y, ty = layer.jvp(T, args, kw)
    y0 = layer.fwd(args, kw)
    assert np.array_equal(y, y0, equal_nan=True), f"{case}: y of the JVP is not the forward's bits"
    assert ty.dtype == np.float64 and ty.shape == y0.shape
    f, flatten, unflatten = _flat(layer, args, kw)
    v0 = flatten(args)
    if reverse_jvp:
        want_ty = make_jvp_reversemode(f)(v0)(flatten(T))
    else:
        want_ty = make_jvp(f)(v0)(flatten(T))[1]
    assert_close(ty, want_ty, "jvp_vs_autograd", op=layer.name, case=case, array="ty", scale=scale)
    if fd:
        h = 1e-6
        fp = layer.fwd({**args, **{n: args[n] + h * T[n] for n in names}}, kw)
        fm = layer.fwd({**args, **{n: args[n] - h * T[n] for n in names}}, kw)
        assert_close(ty, (fp - fm) / (2 * h), "jvp_vs_fd", op=layer.name, case=case, array="ty", scale=scale)
    # the transpose identity: <c, J t> = <J^T c, t>
    cy = rng.standard_normal(y0.shape)
    g = layer.bwd(cy, args, kw)
    lhs, rhs = _dot(cy, ty), sum(_dot(g[n], T[n]) for n in names)
    mag = _abs_dot(cy, ty) + sum(_abs_dot(g[n], T[n]) for n in names) + scale * float(np.sum(np.abs(cy)))
    assert abs(lhs - rhs) <= tol("jvp_vs_autograd") * mag, f"{case}: <c, Jt> = {lhs!r}, <J^T c, t> = {rhs!r}"

    # second order
    dy = rng.standard_normal(y0.shape)
    Cc = _directions(rng, args, names)
    got = layer.dbw(Cc, dy, args, kw)
    assert list(got) == ["dy"] + names, f"{case}: keys {list(got)}"
    for n in names:
        assert got[n].dtype == np.float64 and got[n].shape == np.shape(args[n]), n
    cflat = flatten(Cc)

    def G(d, v):
        return anp.sum(grad(lambda u: anp.sum(f(u) * d))(v) * cflat)

    want_dy = grad(G, 0)(dy, v0)
    want = unflatten(grad(G, 1)(dy, v0))
    assert_close(got["dy"], want_dy, "second_vs_autograd", op=layer.name, case=case, array="ddy", scale=scale)
    allmax = max([float(np.max(np.abs(w))) for w in want.values()] + [scale])
    for n in names:
        assert_close(got[n], want[n], "second_vs_autograd", op=layer.name, case=case, array=f"dd{n}",
                     scale=1e-3 * allmax)
    if fd:
        def L(a, d=dy):
            b = layer.bwd(d, a, kw)
            return sum(_dot(Cc[n], b[n]) for n in names)

        h = 1e-5
        for n in names:
            e = rng.standard_normal(np.shape(args[n]))
            num = (L({**args, n: args[n] + h * e}) - L({**args, n: args[n] - h * e})) / (2 * h)
            mag = _abs_dot(got[n], e) + 1e-3 * allmax * float(np.sum(np.abs(e)))
            assert abs(_dot(got[n], e) - num) <= tol("second_vs_fd") * mag, \
                f"{case}: <dd{n}, e> = {_dot(got[n], e)!r}, central differences {num!r}"
        e = rng.standard_normal(y0.shape)  # L is linear in dy
        num = (L(args, dy + e) - L(args, dy - e)) / 2
        assert abs(_dot(got["dy"], e) - num) <= tol("second_vs_fd") * _abs_dot(got["dy"], e)
    after = (args, kw)
    for n in names:
        assert np.array_equal(after[0][n], before[0][n]), f"{case}: {n} modified"
    return got


# --------------------------------------------------------------------------------- weight standardization

WS_OPTIONS = [dict(style="deepmind"), dict(style="timm"), dict(style="qiao"), dict(style="qiao", estimator="biased"),
              dict(style="deepmind", estimator="unbiased"), dict(style="timm", fan_in_scaling=False),
              dict(style="qiao", eps_mode="variance", eps=1e-3), dict(style="deepmind", eps_mode="std"),
              dict(style="timm", eps_mode="floor", eps=0.5)]
WS_CASES = [(s, o, g) for s, o, g in zip(itertools.cycle([(5, 3, 3, 2), (4, 7), (3, 2, 1, 1)]),
                                          WS_OPTIONS * 2, [True] * len(WS_OPTIONS) + [False] * len(WS_OPTIONS))]


def _ws_args(shape, gain, seed):
    rng = np.random.default_rng(seed)
    return {"weight": noncentred(rng, shape, loc=-0.3, scale=0.5),
            "gain": random_affine(rng, (shape[0],))[0] if gain else None}


def _ws_scale(args, opt):
    """The magnitude of the terms of ``ty`` for standard-normal tangents:
    ``|gain| (r |twc| + |wc| |tr|)``, about ``10 |gain| r`` (``|twc|`` up to ~3 and
    ``|wc tr| <= 2 r |twc|``).  A channel of two entries with the unbiased
    estimator has ``W_hat = +-1/sqrt 2`` whatever W is: its tangent cancels to ~0
    from terms of that size."""
    _, st = WS.weight_standardization_stats(args["weight"], args["gain"], **opt)
    g = 1.0 if args["gain"] is None else float(np.max(np.abs(args["gain"])))
    return 10.0 * g * float(np.max(st["scale"]))


@pytest.mark.parametrize("shape,opt,gain", WS_CASES, ids=lambda v: str(v))
def test_weight_standardization(shape, opt, gain):
    args = _ws_args(shape, gain, 1)
    check_all(LAYERS["weight_standardization"], args, opt, f"{shape}-{opt}-gain{gain}", scale=_ws_scale(args, opt))


def test_weight_standardization_floor_active_and_exact_tie():
    """Floor active: no tangent through the variance.  Exact tie (row [-1, 1, -1, 1],
    N var = 4 = eps): the first order is split 0.5/0.5 and the second carries the
    indicator squared, as autograd's forward mode and reverse-over-reverse of ``maximum``."""
    layer = LAYERS["weight_standardization"]
    rng = np.random.default_rng(3)
    w = 0.1 + 1e-4 * rng.standard_normal((3, 2, 2, 2))
    args = {"weight": w, "gain": random_affine(rng, (3,))[0]}
    check_all(layer, args, {}, "floor-active", fd=False)
    t = {"weight": rng.standard_normal(w.shape)}
    _, ty = layer.jvp(t, args, {})
    tc = t["weight"] - t["weight"].mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(ty, tc * args["gain"][:, None, None, None] / np.sqrt(1e-4), rtol=1e-12)
    w = np.stack([np.array([-1.0, 1.0, -1.0, 1.0]), noncentred(rng, 4)])
    check_all(layer, {"weight": w, "gain": np.array([1.3, 0.7])}, dict(eps=4.0), "tie", fd=False)


@pytest.mark.parametrize("opt", [dict(style="deepmind"), dict(style="timm"), dict(style="qiao")], ids=str)
def test_weight_standardization_constant_channel(opt):
    """A constant channel (row 0): W_hat = 0 and its tangent is gain * r * (tW - mean tW),
    the exact derivative (``std`` mode: r = 1/eps; autograd's sqrt'(0) gives NaN there).
    Second order: ``<dy, W_hat>`` is odd in ``W - W0`` there, so its W-W block is 0 and
    only the gain cross-term ``r cg (dy - mean dy)`` is left.  (The reference's
    ``np.mean`` leaves ``wc ~ 1e-16`` on that row, which timm's ``kv ~ r^3 s`` amplifies
    to ~1e-8: autograd is compared on the other row only.)"""
    layer = LAYERS["weight_standardization"]
    w = np.stack([np.full((2, 3), 0.7), np.arange(6.0).reshape(2, 3)])
    args = {"weight": w, "gain": np.array([1.5, -0.5])}
    rng = np.random.default_rng(4)
    t = {"weight": rng.standard_normal(w.shape), "gain": rng.standard_normal(2)}
    _, ty = layer.jvp(t, args, opt)
    _, st = WS.weight_standardization_stats(w, args["gain"], **opt)
    r = st["scale"][0]
    tc = t["weight"][0] - t["weight"][0].mean()
    np.testing.assert_allclose(ty[0], 1.5 * r * tc, rtol=1e-13)
    c = {"weight": rng.standard_normal(w.shape), "gain": rng.standard_normal(2)}
    dy = rng.standard_normal(w.shape)
    got = layer.dbw(c, dy, args, opt)
    np.testing.assert_allclose(got["weight"][0], r * c["gain"][0] * (dy[0] - dy[0].mean()), rtol=1e-13)
    np.testing.assert_allclose(got["dy"][0], 1.5 * r * (c["weight"][0] - c["weight"][0].mean()), rtol=1e-13)
    if opt["style"] != "qiao":
        _, tya = make_jvp(lambda v: ws_ref(v, args["gain"], **opt))(w)(t["weight"])
        _, tyg = make_jvp(lambda v: ws_ref(w, v, **opt))(args["gain"])(t["gain"])
        assert_close(ty, tya + tyg, "jvp_vs_autograd", op="weight_standardization", case=f"const-{opt}", array="ty")
        f, flatten, unflatten = _flat(layer, args, opt)
        cflat = flatten(c)
        want = unflatten(grad(lambda v: anp.sum(grad(lambda u: anp.sum(f(u) * dy))(v) * cflat))(flatten(args)))
        assert_close(got["weight"][1], want["weight"][1], "second_vs_autograd", op="weight_standardization",
                     case=f"const-{opt}", array="ddweight[1]")
        assert_close(got["gain"], want["gain"], "second_vs_autograd", op="weight_standardization",
                     case=f"const-{opt}", array="ddgain")


def test_weight_standardization_single_entry_channels():
    """fan_in = 1 (biased): every channel is constant, W_hat = 0, and so is its tangent."""
    layer = LAYERS["weight_standardization"]
    args = {"weight": np.array([[0.3], [-1.2], [2.0]]), "gain": np.array([1.0, 2.0, -0.5])}
    rng = np.random.default_rng(5)
    y, ty = layer.jvp({"weight": rng.standard_normal((3, 1)), "gain": rng.standard_normal(3)}, args, {})
    assert np.all(y == 0.0) and np.all(ty == 0.0)


# --------------------------------------------------------------------------------- batch layer norm

def _bln_args(shape, fa, mode, seed, weight=True, bias=True):
    rng = np.random.default_rng(seed)
    x = noncentred(rng, shape)
    w, b = random_affine(rng, (shape[fa],))
    st = BLN.batch_layer_norm_batch_stats(x + 0.2 * rng.standard_normal(shape), feature_axis=fa, batch_stats=mode)
    moving = {k: v + (0.1 if k.endswith("var") else 0.05) for k, v in st.items()}
    return {"x": x, "weight": w if weight else None, "bias": b if bias else None}, moving


BLN_GEOMS = [((5, 4), -1), ((3, 4, 5), -1), ((3, 4, 2, 3), 1), ((1, 5), -1), ((4, 1), -1)]


@pytest.mark.parametrize("shape,fa", BLN_GEOMS, ids=str)
@pytest.mark.parametrize("mode", ["position", "channel"])
def test_batch_layer_norm_training(shape, fa, mode):
    layer = LAYERS["batch_layer_norm"]
    args, _ = _bln_args(shape, fa, mode, 2)
    base = dict(feature_axis=fa, batch_stats=mode)
    check_all(layer, args, base, f"{shape}-{fa}-{mode}")
    check_all(layer, {**args, "weight": None}, dict(base, batch_size=1), "no-weight-B1", seed=1)
    check_all(layer, {**args, "bias": None}, dict(base, sqrt_d_scale=False, weight_offset=0.0, eps=1e-2),
              "no-bias", seed=2)


@pytest.mark.parametrize("shape,fa,mode", [((5, 4), -1, "position"), ((3, 4, 2, 3), 1, "channel")], ids=str)
@pytest.mark.parametrize("flags", [(True, True, False, False), (True, True, True, True),
                                   (False, False, False, False), (True, False, False, True),
                                   (False, True, True, False)], ids=lambda f: "".join("TF"[not v] for v in f))
def test_batch_layer_norm_inference(shape, fa, mode, flags):
    """Eval mode: statistic k from moving_stats when flags[k]; moving statistics are constants."""
    layer = LAYERS["batch_layer_norm"]
    args, moving = _bln_args(shape, fa, mode, 3)
    before = copy.deepcopy(moving)
    kw = dict(batch_size=8, training=False, moving_stats=moving, flags=flags, feature_axis=fa, batch_stats=mode)
    check_all(layer, args, kw, f"{shape}-{mode}-{flags}", fd=shape == (5, 4))
    assert all(np.array_equal(moving[k], before[k]) for k in moving), "moving_stats modified"


def test_batch_layer_norm_all_moving_is_affine():
    """Every flag set: y is affine in x, so its second order w.r.t. x is 0 and only
    the x-gamma cross terms remain."""
    layer = LAYERS["batch_layer_norm"]
    args, moving = _bln_args((4, 3), -1, "position", 4)
    kw = dict(training=False, moving_stats=moving, flags=(True,) * 4)
    rng = np.random.default_rng(6)
    got = layer.dbw({"x": rng.standard_normal((4, 3))}, rng.standard_normal((4, 3)), args, kw)
    assert np.all(got["x"] == 0.0) and np.all(got["bias"] == 0.0)


# --------------------------------------------------------------------------------- GN+

GP_SHAPES = [((3, 6, 5), 3, np.array([1.0])), ((4, 4, 2, 3), 2, np.array(-0.4)), ((5, 6, 2), 2, np.array([0.3]))]
GP_CASES = [(s, G, m, v, b) for (s, G, m), v, b in itertools.product(GP_SHAPES, GP.VARIANTS, GP.BATCH_STATS)]


def _gp_args(shape, mix, seed):
    rng = np.random.default_rng(seed)
    w, b = random_affine(rng, (shape[1],))
    return {"x": noncentred(rng, shape), "weight": w, "bias": b, "mix": mix}


@pytest.mark.parametrize("shape,G,mix,variant,bs", GP_CASES,
                         ids=[f"{s}-G{G}-{v}-{b}" for s, G, _, v, b in GP_CASES])
def test_gn_plus(shape, G, mix, variant, bs):
    kw = dict(num_groups=G, variant=variant, batch_stats=bs)
    check_all(LAYERS["gn_plus"], _gp_args(shape, mix, sum(shape)), kw, f"{shape}-G{G}-{variant}-{bs}",
              fd=shape[0] == 3)


def test_gn_plus_constant_group_is_the_limit():
    """A constant GN set: GN(x) = 0 there and its tangent is the limit dtc/eps of the
    first-order map (autograd's sqrt'(0) gives NaN).  mix = 40 leaves the GN branch
    alone (1 - sigmoid(40) = 4e-18), so ty = gamma * ta on that set."""
    layer = LAYERS["gn_plus"]
    rng = np.random.default_rng(7)
    args = _gp_args((3, 4, 5), np.array([40.0]), 8)
    args["x"][1, :2] = 0.25  # sample 1, group 0 (2 groups of 2 channels)
    t = _directions(rng, args, layer.names)
    t["mix"] = np.zeros(1)
    kw = dict(num_groups=2, variant="parallel")
    _, ty = layer.jvp(t, args, kw)
    tc = t["x"][1, :2] - t["x"][1, :2].mean()
    want = args["weight"][:2, None] * tc / 1e-5 + t["bias"][:2, None]  # z = 0 there: no tgamma term
    np.testing.assert_allclose(ty[1, :2], want, rtol=1e-10, atol=1e-12 * np.max(np.abs(want)))
    got = layer.dbw(_directions(rng, args, layer.names), rng.standard_normal(args["x"].shape), args, kw)
    assert all(np.all(np.isfinite(v)) for v in got.values())


# --------------------------------------------------------------------------------- proxy norm

PN_CASES = [(s, a, k, e) for s in ((2, 3, 5), (3, 2, 2, 3)) for a in ("relu", "silu", "gelu")
            for k, e in ((200, 0.03), (7, 0.5))]
PN_CASES += [((1, 1, 1), a, 7, 0.5) for a in ("relu", "swish", "gelu")]
PN_CASES += [((3, 2, 4), a, 1, 0.1) for a in ("silu", "gelu")]  # K = 1: q = [0], v = 0


def _pn_args(shape, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    return {"x": noncentred(rng, shape, loc=0.4, scale=1.1), "weight": 1.0 + 0.5 * rng.standard_normal(C),
            "bias": 0.3 * rng.standard_normal(C), "proxy_shift": 0.3 * rng.standard_normal(C),
            "proxy_scale": 0.3 * rng.standard_normal(C)}


@pytest.mark.parametrize("shape,act,nk,eps", PN_CASES, ids=[f"{s}-{a}-K{k}" for s, a, k, _ in PN_CASES])
def test_proxy_norm(shape, act, nk, eps):
    args = _pn_args(shape, sum(shape) + nk)
    check_all(LAYERS["proxy_norm"], args, dict(activation=act, eps=eps, num_points=nk), f"{shape}-{act}-K{nk}",
              reverse_jvp=act == "gelu", fd=shape == (2, 3, 5))


def test_proxy_norm_second_derivatives_of_the_activations():
    """``_act2`` is the derivative of ``_act``'s slope (central differences), 0 in the tails."""
    u = np.linspace(-6.0, 6.0, 49) + 0.0123
    h = 1e-6
    for name, code in (("relu", 0), ("silu", 1), ("gelu", 2)):
        for v in u:
            fd = (PN._act(v + h, code)[1] - PN._act(v - h, code)[1]) / (2 * h)
            assert abs(PN._act2(v, code) - fd) <= 1e-7 * max(1.0, abs(fd)), (name, v)
        assert PN._act2(1e300, code) == 0.0 and PN._act2(-1e300, code) == 0.0, name
    assert np.isnan(PN._act2(np.nan, 0))


# --------------------------------------------------------------------------------- across layers

def _small_case(name):
    if name == "proxy_norm":
        return _pn_args((2, 3, 4), 11), dict(activation="silu", num_points=9)
    if name == "gn_plus":
        return _gp_args((3, 4, 5), np.array([0.5]), 12), dict(num_groups=2)
    if name == "weight_standardization":
        return _ws_args((4, 3, 2), True, 13), {}
    return _bln_args((3, 4, 5), -1, "position", 14)[0], {}


@pytest.mark.parametrize("name", list(LAYERS))
def test_missing_keys_are_zero_directions(name):
    layer = LAYERS[name]
    args, kw = _small_case(name)
    rng = np.random.default_rng(15)
    names = layer.given(args)
    full = _directions(rng, args, names)
    dy = rng.standard_normal(layer.fwd(args, kw).shape)
    for keep in names:
        part = {keep: full[keep]}
        zeros = {n: (full[n] if n == keep else np.zeros(np.shape(args[n]))) for n in names}
        assert np.array_equal(layer.jvp(part, args, kw)[1], layer.jvp(zeros, args, kw)[1])
        a, b = layer.dbw(part, dy, args, kw), layer.dbw(zeros, dy, args, kw)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    y, ty = layer.jvp({}, args, kw)
    assert np.all(ty == 0.0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_thread_count_does_not_change_bits(name):
    layer = LAYERS[name]
    args, kw = _small_case(name)
    rng = np.random.default_rng(16)
    t = _directions(rng, args, layer.given(args))
    dy = rng.standard_normal(layer.fwd(args, kw).shape)
    before = numba.get_num_threads()
    try:
        runs = []
        for k in sorted({1, before}):
            numba.set_num_threads(k)
            runs.append((layer.jvp(t, args, kw)[1], layer.dbw(t, dy, args, kw)))
    finally:
        numba.set_num_threads(before)
    a, b = runs[0], runs[-1]
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


# --------------------------------------------------------------------------------- bad directions

#: the first helper of each module that runs a kernel: bad directions must be refused before it
FIRST_KERNEL = {"proxy_norm": (PN, "_proxy_stats"), "gn_plus": (GP, "_forward_branches"),
                "weight_standardization": (WS, "_stats"), "batch_layer_norm": (BLN, "_all_stats")}


def _bad_directions(name, args):
    """(directions, the text the ValueError must contain)."""
    first = LAYERS[name].given(args)[0]
    out = [({"nonsense": np.zeros(1)}, "'nonsense'"),
           ({first: np.zeros(np.shape(args[first]) + (2,))}, f"[{first!r}]")]
    if name == "weight_standardization":
        out.append(({"gain": np.zeros(np.shape(args["weight"])[0])}, "gain"))  # gain is None below
    if name == "batch_layer_norm":
        out.append(({"weight": np.zeros(np.shape(args["x"])[-1])}, "weight"))  # weight is None below
    return out


@pytest.mark.parametrize("name", list(LAYERS))
def test_bad_directions_are_refused_before_any_kernel(name, monkeypatch):
    layer = LAYERS[name]
    args, kw = _small_case(name)
    if name == "weight_standardization":
        args = {**args, "gain": None}
    if name == "batch_layer_norm":
        args = {**args, "weight": None}
    dy = np.random.default_rng(17).standard_normal(layer.fwd(args, kw).shape)
    mod, attr = FIRST_KERNEL[name]

    def boom(*a, **k):
        raise AssertionError("a kernel ran before the directions were checked")

    monkeypatch.setattr(mod, attr, boom)
    for bad, text in _bad_directions(name, args):
        with pytest.raises(ValueError, match="tangents" + ".*" + re.escape(text)):
            layer.jvp(bad, args, kw)
        with pytest.raises(ValueError, match="cotangents" + ".*" + re.escape(text)):
            layer.dbw(bad, dy, args, kw)
    with pytest.raises(TypeError, match="tangents must be a dict"):
        layer.jvp([1.0], args, kw)
    with pytest.raises(ValueError, match="dy must have the shape"):
        layer.dbw({}, dy[:1], args, kw)


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_bad_forward_argument_gets_the_forwards_message(name):
    """The op's own checks run first: a wrong-shape parameter together with a bad
    direction reports the parameter, as the forward does."""
    layer = LAYERS[name]
    args, kw = _small_case(name)
    pname = "gain" if name == "weight_standardization" else "weight"
    bad = {**args, pname: np.zeros(7)}
    with pytest.raises(ValueError) as forward:
        layer.fwd(bad, kw)
    with pytest.raises(ValueError) as jvp:
        layer.jvp({"nonsense": 1.0}, bad, kw)
    assert str(jvp.value) == str(forward.value)

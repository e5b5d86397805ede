"""Proxy Normalization (PN-Act): the proxy quantiles against 50-digit mpmath,
the authors' initial cache, kernel vs reference, hand backward vs autograd vs
central differences (every activation), a PyTorch float64 transcription of
the Graphcore code (torch.erfinv quantiles, torch autograd), invariants, the
ReLU kink convention, NaN locality, exact dtype upcast, no mutation.  Its bad
inputs are in tests/ops/cases/proxy_norm.py (run by tests/ops/test_errors.py)."""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import pytest
from autograd import grad

from refnorm.ops.proxy_norm import proxy_norm, proxy_norm_backward, proxy_norm_stats, proxy_quantiles
from refnorm.reference.proxy_norm import proxy_norm as ref

from .._tolerances import tol
from .._util import assert_close, noncentred, random_dy

OP = "proxy_norm"
PARAMS = ("weight", "bias", "proxy_shift", "proxy_scale")
ACTS = ("relu", "silu", "swish", "gelu")
U = 2.0 ** -53


def _params(rng, C):
    """Random, non-uniform PN-Act parameters around their init (1, 0, 0, 0)."""
    return {"weight": 1.0 + 0.5 * rng.standard_normal(C), "bias": 0.3 * rng.standard_normal(C),
            "proxy_shift": 0.3 * rng.standard_normal(C), "proxy_scale": 0.3 * rng.standard_normal(C)}


def _case(shape, seed):
    rng = np.random.default_rng(seed)
    # PN-Act's input is a normalized pre-activation, but nothing assumes it:
    # half the cases are non-centred so a missing mean term cannot hide.
    x = noncentred(rng, shape, loc=0.4, scale=1.1) if seed % 2 else noncentred(rng, shape)
    return {"x": x, **_params(rng, shape[1])}


def _grad_scale(args, dy, kw):
    """Magnitude of the terms of a parameter gradient (they can cancel):
    ``s * sum|dy| * max(1, |gamma|) * max(1, |x|, |Y|)``."""
    _, st = proxy_norm_stats(**args, **kw)
    ymax = 3.0 * (1.0 + np.max(np.abs(args["proxy_scale"]))) + np.max(np.abs(args["proxy_shift"]))
    big = max(1.0, float(np.max(np.abs(args["x"]))) if args["x"].size else 1.0, ymax)
    return float(np.max(st["rstd"])) * float(np.sum(np.abs(dy))) * max(1.0, float(np.max(np.abs(args["weight"])))) * big


SHAPES = [(2, 3, 5), (3, 2, 2, 3), (5, 3), (1, 1, 1), (2, 4, 1, 3)]
CASES = [(shape, act, nk, eps) for shape in SHAPES for act in ACTS for nk, eps in ((200, 0.03), (7, 0.5))]
CASES += [((3, 2, 4), act, 1, 0.1) for act in ("relu", "gelu")]  # K = 1: q = [0], v = 0
IDS = [f"{s}-{a}-K{k}-eps{e}" for s, a, k, e in CASES]


# --- the quantiles ------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3, 7, 40, 200, 201, 1000])
def test_quantiles_match_mpmath(K):
    """q_k = sqrt(2) erfinv(2(k - 1/2)/K - 1) to within 8 u relative of the
    50-digit value (the conditioning of p -> q plus erfc's few-ulp error)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    q = proxy_quantiles(K)
    assert q.dtype == np.float64 and q.shape == (K,)
    for k in range(1, K + 1):
        exact = mp.sqrt(2) * mp.erfinv(mp.mpf(2 * k - 1) / K - 1)
        if exact == 0:
            assert q[k - 1] == 0.0
            continue
        rel = abs(float((mp.mpf(q[k - 1]) - exact) / exact))
        assert rel <= 8 * U, f"q_{k} (K={K}) = {q[k - 1]!r}, exact {mp.nstr(exact, 20)}: {rel / U:.1f} u"


def test_quantiles_structure():
    """Ascending, exactly antisymmetric; the moments of the authors' K = 200 points
    (biased variance 0.993596, range +-2.807034); a fresh array each call."""
    for K in (1, 2, 5, 200, 201):
        q = proxy_quantiles(K)
        assert np.all(np.diff(q) > 0)
        assert np.array_equal(q, -q[::-1])
    q = proxy_quantiles(200)
    assert abs(np.mean(q)) <= 1e-15
    assert abs(np.var(q) - 0.993596) < 5e-7 and abs(q[-1] - 2.807034) < 5e-7
    q[0] = 123.0
    assert proxy_quantiles(200)[0] != 123.0, "proxy_quantiles must return a new array"


@pytest.mark.parametrize("act,m,v,s", [("relu", 0.39845117, 0.33803477, 1.64837330),
                                       ("swish", 0.20604837, 0.31000364, 1.71497667)])
def test_initial_cache_matches_spec(act, m, v, s):
    """The authors' initial cache (K = 200, eps = 0.03, parameters at init),
    given to 8 decimals on docs/ops/proxy_norm.md#pn-initial-values: refnorm's
    statistics agree to 1e-7."""
    C = 3
    x = np.random.default_rng(0).standard_normal((2, C, 4))
    _, st = proxy_norm_stats(x, np.ones(C), np.zeros(C), np.zeros(C), np.zeros(C), act)
    for key, want in (("mean", m), ("var", v), ("rstd", s)):
        assert np.all(np.abs(st[key] - want) <= 1e-7), f"{act} {key}: {st[key]} vs SPEC {want}"
    # The statistics are functions of the parameters only: the data does not matter.
    _, st2 = proxy_norm_stats(100.0 * x, np.ones(C), np.zeros(C), np.zeros(C), np.zeros(C), act)
    assert all(np.array_equal(st[k], st2[k]) for k in st)


# --- the battery --------------------------------------------------------------

@pytest.mark.parametrize("shape,act,nk,eps", CASES, ids=IDS)
def test_forward_matches_reference(shape, act, nk, eps):
    args = _case(shape, sum(shape))
    kw = dict(activation=act, eps=eps, num_points=nk)
    y = proxy_norm(**args, **kw)
    assert y.dtype == np.float64 and y.shape == shape
    assert_close(y, ref(**args, **kw), "kernel_vs_reference", op=OP, case=f"{shape}-{act}-K{nk}", array="y")


@pytest.mark.parametrize("shape,act,nk,eps", CASES, ids=IDS)
def test_backward_matches_autograd(shape, act, nk, eps):
    args = _case(shape, sum(shape) + 1)
    kw = dict(activation=act, eps=eps, num_points=nk)
    dy = random_dy(shape, seed=1)
    got = proxy_norm_backward(dy, **args, **kw)
    assert sorted(got) == sorted(("x",) + PARAMS)
    for name, value in args.items():
        def loss(v, name=name):
            return np.sum(ref(**{**args, name: v}, **kw) * dy)

        want = grad(loss)(value)
        assert got[name].shape == value.shape and got[name].dtype == np.float64
        assert_close(got[name], want, "backward_vs_autograd", op=OP, case=f"{shape}-{act}-K{nk}",
                     array=f"d{name}", scale=0.0 if name == "x" else _grad_scale(args, dy, kw),
                     repro=f"proxy_norm_backward(dy, **_case({shape}, {sum(shape) + 1}), activation={act!r})")


@pytest.mark.parametrize("shape,act,nk,eps", CASES, ids=IDS)
def test_backward_matches_finite_differences(shape, act, nk, eps):
    args = _case(shape, sum(shape) + 2)
    kw = dict(activation=act, eps=eps, num_points=nk)
    dy = random_dy(shape, seed=2)
    got = proxy_norm_backward(dy, **args, **kw)
    h = 1e-5
    for name, value in args.items():
        fd = np.empty_like(value)
        for i in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[i] += h
            minus[i] -= h
            fd[i] = np.sum((proxy_norm(**{**args, name: plus}, **kw) - proxy_norm(**{**args, name: minus}, **kw))
                           * dy) / (2 * h)
        assert_close(got[name], fd, "backward_vs_fd", op=OP, case=f"{shape}-{act}-K{nk}", array=f"d{name}",
                     scale=0.0 if name == "x" else _grad_scale(args, dy, kw))


# --- PyTorch transcription of the Graphcore code --------------------------------

@pytest.mark.parametrize("act", ["relu", "swish", "gelu"])
def test_matches_torch_transcription(act):
    """``get_rand`` + ``proxy_fw`` written in torch float64 (quantiles from
    torch.erfinv, statistics torch.mean / biased var), differentiated by torch
    autograd: an implementation independent of refnorm's quantiles and kernels."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    phi = {"relu": torch.relu, "swish": F.silu, "gelu": lambda t: F.gelu(t, approximate="none")}[act]
    shape = (3, 4, 2, 3)
    args = _case(shape, 11)
    dy = random_dy(shape, seed=3)
    K = 200
    rand = 2.0 * (torch.arange(K, dtype=torch.float64) + 0.5) / K - 1.0
    q = np.sqrt(2.0) * torch.erfinv(rand)  # get_rand
    assert_close(proxy_quantiles(K), q.numpy(), "vs_torch_float64", op=OP, case=act, array="q")
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in args.items()}
    x, w, b, ps, pscale = (leaves[k] for k in ("x",) + PARAMS)
    cb = (1, -1, 1, 1)
    z = phi(x * w.view(cb) + b.view(cb))
    Y = ps[:, None] + (1.0 + pscale)[:, None] * q[None, :]  # (C, K)
    P = phi(w[:, None] * Y + b[:, None])
    m = P.mean(dim=1)
    v = P.var(dim=1, unbiased=False)
    yt = (z - m.view(cb)) / torch.sqrt(v.view(cb) + 0.03)
    yt.backward(torch.tensor(dy))
    assert_close(proxy_norm(**args, activation=act), yt.detach().numpy(), "vs_torch_float64", op=OP, case=act,
                 array="y")
    got = proxy_norm_backward(dy, **args, activation=act)
    for name, leaf in leaves.items():
        assert_close(got[name], leaf.grad.numpy(), "vs_torch_float64", op=OP, case=act, array=f"d{name}",
                     scale=0.0 if name == "x" else _grad_scale(args, dy, dict(activation=act)))


# --- invariants and conventions ------------------------------------------------

@pytest.mark.parametrize("act", ["relu", "silu", "gelu"])
def test_proxy_points_are_normalized_exactly(act):
    """Fed its own proxy samples (x[k, c] = Y_ck, N = K), PN-Act returns values
    with mean 0 and biased variance v/(v + eps) per channel: the defining
    property of the proxy statistics."""
    rng = np.random.default_rng(5)
    C, K, eps = 3, 50, 0.03
    p = _params(rng, C)
    q = proxy_quantiles(K)
    x = p["proxy_shift"][None, :] + (1.0 + p["proxy_scale"])[None, :] * q[:, None]  # (K, C)
    y, st = proxy_norm_stats(x, **p, activation=act, eps=eps, num_points=K)
    assert np.max(np.abs(np.mean(y, axis=0))) <= tol("invariant")
    assert_close(np.var(y, axis=0), st["var"] / (st["var"] + eps), "invariant", op=OP, case=act, array="var(y)")
    assert_close(st["rstd"], 1.0 / np.sqrt(st["var"] + eps), "invariant", op=OP, case=act, array="rstd")


def test_relu_kink_derivative_is_zero():
    """At u = weight*x + bias == 0 exactly, ReLU's derivative is taken as 0, in
    the kernel and in the reference (``where(u <= 0, 0, u)``: autograd of
    ``np.maximum(u, 0)`` would give 1/2 there).  The kink is hit both in the
    data (x = 0, bias = 0) and among the proxy points (odd K puts q = 0 in the
    middle; with proxy_shift = bias = 0 that point has u_k = 0)."""
    rng = np.random.default_rng(6)
    C = 3
    x = rng.standard_normal((2, C, 5))
    x[:, :, 2] = 0.0
    p = {"weight": 1.0 + 0.3 * rng.standard_normal(C), "bias": np.zeros(C), "proxy_shift": np.zeros(C),
         "proxy_scale": 0.2 * rng.standard_normal(C)}
    kw = dict(activation="relu", num_points=9)
    dy = random_dy(x.shape, seed=4)
    got = proxy_norm_backward(dy, x, **p, **kw)
    assert np.array_equal(got["x"][:, :, 2], np.zeros((2, C)))
    args = {"x": x, **p}
    for name in args:
        want = grad(lambda v, name=name: np.sum(ref(**{**args, name: v}, **kw) * dy))(args[name])
        assert_close(got[name], want, "backward_vs_autograd", op=OP, case="relu-kink", array=f"d{name}",
                     scale=0.0 if name == "x" else _grad_scale(args, dy, kw))


def test_zero_weight_channel_has_zero_proxy_variance():
    """weight_c = 0: every proxy point is phi(bias_c), v = 0 exactly, s = eps^-1/2,
    y = 0; gradients are finite and match autograd."""
    rng = np.random.default_rng(7)
    args = _case((3, 2, 4), 7)
    args["weight"][1] = 0.0
    args["bias"][1] = 0.7
    for act in ("relu", "silu", "gelu"):
        y, st = proxy_norm_stats(**args, activation=act)
        assert st["var"][1] == 0.0 and st["rstd"][1] == 1.0 / np.sqrt(0.03)
        assert np.array_equal(y[:, 1], np.zeros_like(y[:, 1]))
        dy = rng.standard_normal(y.shape)
        got = proxy_norm_backward(dy, **args, activation=act)
        for name in args:
            want = grad(lambda v, name=name: np.sum(ref(**{**args, name: v}, activation=act) * dy))(args[name])
            assert_close(got[name], want, "backward_vs_autograd", op=OP, case=f"zero-weight-{act}",
                         array=f"d{name}", scale=0.0 if name == "x" else _grad_scale(args, dy, {"activation": act}))


@pytest.mark.parametrize("act", ["relu", "silu", "gelu"])
def test_nan_is_local(act):
    """A NaN in x only poisons its own output and dx entry (the statistics do
    not depend on x); in the backward it reaches its channel's parameter
    gradients (through sum G (phi(u) - m)), and no other channel."""
    args = _case((3, 4, 5), 3)
    args["x"][1, 2, 3] = np.nan
    y = proxy_norm(**args, activation=act)
    bad = np.zeros(y.shape, bool)
    bad[1, 2, 3] = True
    assert np.array_equal(np.isnan(y), bad)
    g = proxy_norm_backward(random_dy(y.shape), **args, activation=act)
    assert np.array_equal(np.isnan(g["x"]), bad)
    for name in PARAMS:
        assert np.array_equal(np.isnan(g[name]), np.arange(4) == 2), name


def test_empty_batch():
    """N = 0: an empty output; parameter gradients are exactly 0."""
    args = _case((0, 3, 2), 1)
    assert proxy_norm(**args).shape == (0, 3, 2)
    g = proxy_norm_backward(np.zeros((0, 3, 2)), **args)
    assert all(np.array_equal(g[k], np.zeros(3)) for k in PARAMS)


def test_swish_is_silu():
    args = _case((2, 3, 4), 2)
    dy = random_dy((2, 3, 4))
    assert np.array_equal(proxy_norm(**args, activation="swish"), proxy_norm(**args, activation="silu"))
    a = proxy_norm_backward(dy, **args, activation="swish")
    b = proxy_norm_backward(dy, **args, activation="silu")
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_dtype_upcast_is_exact(dtype):
    """Half/single inputs are upcast exactly: the result equals the float64
    computation on the upcast values, bit for bit."""
    args = {k: v.astype(dtype) for k, v in _case((2, 3, 4), 4).items()}
    args64 = {k: v.astype(np.float64) for k, v in args.items()}
    dy = random_dy((2, 3, 4)).astype(dtype)
    y = proxy_norm(**args, activation="gelu")
    assert y.dtype == np.float64 and np.array_equal(y, proxy_norm(**args64, activation="gelu"))
    g = proxy_norm_backward(dy, **args, activation="gelu")
    g64 = proxy_norm_backward(dy.astype(np.float64), **args64, activation="gelu")
    assert all(g[k].dtype == np.float64 and np.array_equal(g[k], g64[k]) for k in g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_are_not_modified(dtype):
    args = {k: v.astype(dtype) for k, v in _case((2, 3, 4), 5).items()}
    args["x"] = np.asfortranarray(args["x"])  # a non-contiguous layout as well
    dy = random_dy((2, 3, 4)).astype(dtype)
    before = copy.deepcopy(args)
    dy0 = dy.copy()
    for act in ("relu", "gelu"):
        proxy_norm(**args, activation=act)
        proxy_norm_backward(dy, **args, activation=act)
    for k, v in args.items():
        assert np.array_equal(v, before[k]) and v.dtype == before[k].dtype, k
    assert np.array_equal(dy, dy0)

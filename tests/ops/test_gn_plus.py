"""GN+: kernel vs reference, hand backward vs autograd vs central differences
for every variant and batch-statistics mode, a PyTorch float64 transcription of
the authors' modules (``t.std()`` unbiased, eps on the std; torch autograd),
invariants (shift invariance, dx summing to zero over the sets that centre it),
constant input (the differentiable limit that autograd misses), NaN locality,
exact dtype upcast, no mutation.  Its bad inputs are in tests/ops/cases/gn_plus.py
(run by tests/ops/test_errors.py)."""

from __future__ import annotations

import copy
import itertools

import ml_dtypes
import numpy as np
import pytest
from autograd import grad

from refnorm.ops.gn_plus import gn_plus, gn_plus_backward
from refnorm.reference.gn_plus import batch_branch, group_branch
from refnorm.reference.gn_plus import gn_plus as ref

from .._tolerances import tol
from .._util import assert_close, noncentred, random_affine, random_dy

OP = "gn_plus"
VARIANTS = ("gn_first", "bn_first", "parallel")
MODES = ("position", "channel")

# (shape, G, mix).  Every GN set has >= 3 elements: with 2 elements GN's output
# is +-(1/sqrt 2) * s/(s + eps) whatever x is, so a following BN0 (gn_first)
# normalizes nearly constant data and the problem itself is ill-conditioned
# (~1e-11 relative between any two float64 evaluations).
SHAPES = [((3, 6, 5), 3, np.array([1.0])), ((4, 4, 2, 3), 2, np.array(-0.4)), ((3, 6), 2, np.array([0.3])),
          ((2, 4, 3), 2, np.array(1.0)), ((5, 3, 1, 2), 1, np.array([2.0])), ((3, 3, 4), 3, np.array(-1.5))]
CASES = [(s, G, m, v, b) for (s, G, m), v, b in itertools.product(SHAPES, VARIANTS, MODES)]
IDS = [f"{s}-G{G}-{v}-{b}" for s, G, _, v, b in CASES]


def _case(shape, seed):
    rng = np.random.default_rng(seed)
    w, b = random_affine(rng, (shape[1],))
    return noncentred(rng, shape), w, b


def _branches(x, G, eps, variant, bs):
    if variant == "gn_first":
        a = group_branch(x, G, eps)
        return a, batch_branch(a, eps, bs)
    if variant == "bn_first":
        b = batch_branch(x, eps, bs)
        return group_branch(b, G, eps), b
    return group_branch(x, G, eps), batch_branch(x, eps, bs)


def _scales(x, G, w, mix, dy, variant, bs, eps=1e-5):
    """Magnitudes of the terms each gradient is summed from (they can cancel):
    dx ~ |dy| |w| / std (std of the sets of x and of the intermediate);
    dweight ~ sum |dy| |z|; dmix ~ lam (1 - lam) sum |w dy| (|a| + |b|)."""
    a, b = _branches(x, G, eps, variant, bs)
    N, C = x.shape[:2]
    sets = [x.reshape(N, G, -1), a.reshape(N, G, -1), b.reshape(N, G, -1)]
    stds = [np.std(s, axis=2, ddof=1) for s in sets]
    for t in (x, a, b):
        tt = t.reshape(N, C, -1)
        stds.append(np.std(tt, axis=0, ddof=1) if bs == "position" else np.std(np.moveaxis(tt, 1, 0).reshape(C, -1),
                                                                                 axis=1, ddof=1))
    inv = 1.0 / min(float(np.min(s)) for s in stds)
    lam = 1.0 / (1.0 + np.exp(-float(np.reshape(mix, ()))))
    wb = np.reshape(w, (1, C) + (1,) * (x.ndim - 2))
    return {"x": float(np.max(np.abs(dy))) * max(1.0, float(np.max(np.abs(w)))) * inv,
            "weight": float(np.sum(np.abs(dy)) * max(np.max(np.abs(a)), np.max(np.abs(b)))),
            "bias": float(np.sum(np.abs(dy))),
            "mix": float(lam * (1 - lam) * np.sum(np.abs(wb * dy) * (np.abs(a) + np.abs(b))))}


# --- the battery --------------------------------------------------------------

@pytest.mark.parametrize("shape,G,mix,variant,bs", CASES, ids=IDS)
def test_forward_matches_reference(shape, G, mix, variant, bs):
    x, w, b = _case(shape, sum(shape))
    kw = dict(variant=variant, batch_stats=bs)
    y = gn_plus(x, G, w, b, mix, **kw)
    assert y.dtype == np.float64 and y.shape == shape
    assert_close(y, ref(x, G, w, b, mix, **kw), "kernel_vs_reference", op=OP, case=f"{shape}-{variant}-{bs}",
                 array="y")


@pytest.mark.parametrize("shape,G,mix,variant,bs", CASES, ids=IDS)
def test_backward_matches_autograd(shape, G, mix, variant, bs):
    x, w, b = _case(shape, sum(shape) + 1)
    kw = dict(variant=variant, batch_stats=bs)
    dy = random_dy(shape, seed=1)
    got = gn_plus_backward(dy, x, G, w, b, mix, **kw)
    assert sorted(got) == ["bias", "mix", "weight", "x"]
    args = {"x": x, "weight": w, "bias": b, "mix": mix}
    sc = _scales(x, G, w, mix, dy, variant, bs)
    for name, value in args.items():
        def loss(v, name=name):
            return np.sum(ref(**{**args, name: v}, num_groups=G, **kw) * dy)

        want = grad(loss)(value)
        assert got[name].shape == np.shape(value) and got[name].dtype == np.float64
        assert_close(got[name], want, "backward_vs_autograd", op=OP, case=f"{shape}-G{G}-{variant}-{bs}",
                     array=f"d{name}", scale=sc[name],
                     repro=f"gn_plus_backward(dy, *_case({shape}, {sum(shape) + 1}), variant={variant!r}, "
                           f"batch_stats={bs!r})")


@pytest.mark.parametrize("shape,G,mix,variant,bs", CASES, ids=IDS)
def test_backward_matches_finite_differences(shape, G, mix, variant, bs):
    x, w, b = _case(shape, sum(shape) + 2)
    kw = dict(variant=variant, batch_stats=bs)
    dy = random_dy(shape, seed=2)
    got = gn_plus_backward(dy, x, G, w, b, mix, **kw)
    args = {"x": x, "weight": w, "bias": b, "mix": mix}
    sc = _scales(x, G, w, mix, dy, variant, bs)
    h = 1e-5
    for name, value in args.items():
        value = np.asarray(value, dtype=np.float64)
        fd = np.empty_like(value)
        for i in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[i] += h
            minus[i] -= h
            fp = gn_plus(**{**args, name: plus}, num_groups=G, **kw)
            fm = gn_plus(**{**args, name: minus}, num_groups=G, **kw)
            fd[i] = np.sum((fp - fm) * dy) / (2 * h)
        assert_close(got[name], fd, "backward_vs_fd", op=OP, case=f"{shape}-G{G}-{variant}-{bs}", array=f"d{name}",
                     scale=sc[name])


# --- PyTorch transcription of the authors' modules ------------------------------

def _torch_gn_plus(torch, x, G, w, b, mix, eps, variant, bs):
    """``GroupNorm2d`` and the batch branch of ``normalization_layer.py`` as
    coded (view (N, G, -1); ``.std()`` unbiased; ``/(std + eps)``)."""
    N, C = x.shape[:2]

    def gn(t):
        tv = t.reshape(N, G, -1)
        mean = tv.mean(-1, keepdim=True)
        std = tv.std(-1, keepdim=True)
        return ((tv - mean) / (std + eps)).reshape(t.shape)

    def bn0(t):
        dims = (0,) if bs == "position" else (0,) + tuple(range(2, t.dim()))
        mean = t.mean(dim=dims, keepdim=True)
        std = t.std(dim=dims, keepdim=True)
        return (t - mean) / (std + eps)

    if variant == "gn_first":
        a = gn(x)
        bb = bn0(a)
    elif variant == "bn_first":
        bb = bn0(x)
        a = gn(bb)
    else:
        a, bb = gn(x), bn0(x)
    lam = torch.sigmoid(mix)
    shp = (1, C) + (1,) * (x.dim() - 2)
    return (lam * a + (1 - lam) * bb) * w.view(shp) + b.view(shp)


@pytest.mark.parametrize("variant,bs", list(itertools.product(VARIANTS, MODES)))
@pytest.mark.parametrize("shape,G", [((4, 6, 3, 2), 3), ((3, 8, 5), 2)])
def test_matches_torch_transcription(shape, G, variant, bs):
    torch = pytest.importorskip("torch")
    x, w, b = _case(shape, 21)
    mix = np.array([1.0])  # the authors' init: lam = sigmoid(1) = 0.7310586
    dy = random_dy(shape, seed=3)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {"x": x, "weight": w, "bias": b, "mix": mix}.items()}
    yt = _torch_gn_plus(torch, leaves["x"], G, leaves["weight"], leaves["bias"], leaves["mix"], 1e-5, variant, bs)
    yt.backward(torch.tensor(dy))
    case = f"{shape}-{variant}-{bs}"
    assert_close(gn_plus(x, G, w, b, mix, variant=variant, batch_stats=bs), yt.detach().numpy(), "vs_torch_float64",
                 op=OP, case=case, array="y")
    got = gn_plus_backward(dy, x, G, w, b, mix, variant=variant, batch_stats=bs)
    sc = _scales(x, G, w, mix, dy, variant, bs)
    for name, leaf in leaves.items():
        assert_close(got[name], leaf.grad.numpy(), "vs_torch_float64", op=OP, case=case, array=f"d{name}",
                     scale=sc[name])


# --- invariants ------------------------------------------------------------------

def _shift(rng, x, G, kind):
    N, C = x.shape[:2]
    if kind == "gn_set":  # one constant per (n, g)
        c = rng.standard_normal((N, G, 1))
        return (x.reshape(N, G, -1) + c).reshape(x.shape)
    if kind == "position":  # one constant per (c, *spatial), the same for every n
        return x + rng.standard_normal((1,) + x.shape[1:])
    if kind == "channel":
        return x + rng.standard_normal((1, C) + (1,) * (x.ndim - 2))
    return x + rng.standard_normal()  # "global"


@pytest.mark.parametrize("variant,bs", list(itertools.product(VARIANTS, MODES)))
def test_shift_invariance_and_dx_sums_to_zero(variant, bs):
    """The first normalization removes a shift of its own reduction sets, so y
    is unchanged by it and dx sums to zero over each of those sets:
    gn_first over each (n, g); bn_first over each BN0 set; parallel (both
    branches read x) only a global shift and the total sum."""
    rng = np.random.default_rng(8)
    shape, G = (4, 6, 2, 3), 3
    x, w, b = _case(shape, 9)
    mix = np.array([0.6])
    kw = dict(variant=variant, batch_stats=bs)
    kind = {"gn_first": "gn_set", "bn_first": bs, "parallel": "global"}[variant]
    y = gn_plus(x, G, w, b, mix, **kw)
    assert_close(gn_plus(_shift(rng, x, G, kind), G, w, b, mix, **kw), y, "invariant", op=OP,
                 case=f"{variant}-{bs}-shift-{kind}", array="y")
    dx = gn_plus_backward(random_dy(shape, 5), x, G, w, b, mix, **kw)["x"]
    N, C = shape[:2]
    if kind == "gn_set":
        sums, mag = dx.reshape(N, G, -1).sum(axis=2), np.abs(dx).reshape(N, G, -1).sum(axis=2)
    elif kind == "position":
        sums, mag = dx.sum(axis=0), np.abs(dx).sum(axis=0)
    elif kind == "channel":
        sums, mag = dx.sum(axis=(0, 2, 3)), np.abs(dx).sum(axis=(0, 2, 3))
    else:
        sums, mag = dx.sum(), np.abs(dx).sum()
    assert np.all(np.abs(sums) <= tol("invariant") * np.max(mag)), f"{variant}-{bs}: dx sums {sums}"


def _limit_backward(g, x_shape, G, bs, eps):
    """N^T(g) = (g - mean_set(g))/eps, the eps-on-std backward at a constant set."""
    N, C = x_shape[:2]

    def gnT(t):
        tv = t.reshape(N, G, -1)
        return ((tv - tv.mean(axis=2, keepdims=True)) / eps).reshape(x_shape)

    def bnT(t):
        axis = (0,) if bs == "position" else (0,) + tuple(range(2, len(x_shape)))
        return (t - t.mean(axis=axis, keepdims=True)) / eps

    return gnT, bnT


@pytest.mark.parametrize("variant,bs", list(itertools.product(VARIANTS, MODES)))
def test_constant_input(variant, bs):
    """x = c: both branches are exactly 0, so y == bias bit for bit and
    dweight = dmix = 0 exactly.  The layer is still differentiable there
    (a = dt/eps + O(|dt|^2) for an eps-on-std normalization), and the hand
    backward returns that limit -- autograd of the reference returns NaN
    (sqrt'(0) = inf).  Checked against the closed form and against central
    differences with h << eps (truncation O(h/eps) = 2e-7; local tolerance 1e-5)."""
    shape, G, eps = (3, 4, 5), 2, 0.5
    _, w, b = _case(shape, 10)
    mix = np.array([0.8])
    kw = dict(eps=eps, variant=variant, batch_stats=bs)
    x = np.full(shape, 0.1)
    y = gn_plus(x, G, w, b, mix, **kw)
    assert np.array_equal(y, np.broadcast_to(b[None, :, None], shape))
    dy = random_dy(shape, 6)
    got = gn_plus_backward(dy, x, G, w, b, mix, **kw)
    assert np.array_equal(got["weight"], np.zeros(4)) and np.array_equal(got["mix"], np.zeros(1))
    lam = 1.0 / (1.0 + np.exp(-0.8))
    h = w[None, :, None] * dy
    gnT, bnT = _limit_backward(None, shape, G, bs, eps)
    want = {"parallel": lambda: gnT(lam * h) + bnT((1 - lam) * h),
            "gn_first": lambda: gnT(lam * h + bnT((1 - lam) * h)),
            "bn_first": lambda: bnT((1 - lam) * h + gnT(lam * h))}[variant]()
    assert_close(got["x"], want, "invariant", op=OP, case=f"constant-{variant}-{bs}", array="dx")
    step = 1e-7
    fd = np.empty(shape)
    for i in np.ndindex(shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += step
        minus[i] -= step
        fd[i] = np.sum((gn_plus(plus, G, w, b, mix, **kw) - gn_plus(minus, G, w, b, mix, **kw)) * dy) / (2 * step)
    err = np.max(np.abs(fd - got["x"])) / np.max(np.abs(got["x"]))
    assert err <= 1e-5, f"constant-{variant}-{bs}: dx vs central differences {err:.2e}"


def _nan_mask(m, G, variant, bs):
    """Where a NaN reaches: each normalization spreads it over its reduction sets."""
    N = m.shape[0]

    def gn(t):
        return np.broadcast_to(t.reshape(N, G, -1).any(axis=2, keepdims=True), t.reshape(N, G, -1).shape
                               ).reshape(t.shape)

    def bn(t):
        axis = (0,) if bs == "position" else (0,) + tuple(range(2, t.ndim))
        return np.broadcast_to(t.any(axis=axis, keepdims=True), t.shape)

    if variant == "gn_first":
        ma = gn(m)
        return ma | bn(ma)
    if variant == "bn_first":
        mb = bn(m)
        return gn(mb) | mb
    return gn(m) | bn(m)


@pytest.mark.parametrize("variant,bs", list(itertools.product(VARIANTS, MODES)))
def test_nan_is_local(variant, bs):
    """A NaN in x reaches exactly the elements whose reduction sets (through
    the variant's composition) contain it, and nothing else."""
    shape, G = (3, 6, 2, 2), 3
    x, w, b = _case(shape, 12)
    x[1, 2, 0, 1] = np.nan
    y = gn_plus(x, G, w, b, np.array([0.5]), variant=variant, batch_stats=bs)
    want = _nan_mask(np.isnan(x), G, variant, bs)
    assert np.array_equal(np.isnan(y), want)
    assert 0 < want.sum() < want.size


def test_mix_shapes_and_sigmoid():
    """mix may be (1,), 0-d or a Python float; dmix takes its shape.  Huge
    |mix| saturates the gate (lam = 0 or 1 exactly) without overflow."""
    x, w, b = _case((3, 4, 3), 13)
    dy = random_dy(x.shape, 7)
    y1 = gn_plus(x, 2, w, b, np.array([1.0]))
    assert np.array_equal(y1, gn_plus(x, 2, w, b, np.array(1.0)))
    assert np.array_equal(y1, gn_plus(x, 2, w, b, 1.0))
    assert gn_plus_backward(dy, x, 2, w, b, np.array([1.0]))["mix"].shape == (1,)
    assert gn_plus_backward(dy, x, 2, w, b, np.array(1.0))["mix"].shape == ()
    assert gn_plus_backward(dy, x, 2, w, b, 1.0)["mix"].shape == ()
    for big in (-1e4, 1e4):
        g = gn_plus_backward(dy, x, 2, w, b, np.array([big]), variant="parallel")
        assert np.all(np.isfinite(g["x"])) and g["mix"][0] == 0.0
    gn_only = gn_plus(x, 2, w, b, np.array([1e4]), variant="parallel")
    want = group_branch(x, 2, 1e-5) * w[None, :, None] + b[None, :, None]
    assert_close(gn_only, want, "kernel_vs_reference", op=OP, case="lam=1", array="y")


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_dtype_upcast_is_exact(dtype):
    x, w, b = (v.astype(dtype) for v in _case((3, 4, 3), 14))
    mix = np.array([0.3], dtype=dtype)
    dy = random_dy(x.shape).astype(dtype)
    f64 = [v.astype(np.float64) for v in (x, w, b, mix)]
    for variant in VARIANTS:
        y = gn_plus(x, 2, w, b, mix, variant=variant)
        assert y.dtype == np.float64 and np.array_equal(y, gn_plus(f64[0], 2, *f64[1:], variant=variant))
        g = gn_plus_backward(dy, x, 2, w, b, mix, variant=variant)
        g64 = gn_plus_backward(dy.astype(np.float64), f64[0], 2, *f64[1:], variant=variant)
        assert all(g[k].dtype == np.float64 and np.array_equal(g[k], g64[k]) for k in g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_are_not_modified(dtype):
    x, w, b = (v.astype(dtype) for v in _case((3, 4, 3), 15))
    mix = np.array([0.3], dtype=dtype)
    dy = random_dy(x.shape).astype(dtype)
    args = dict(x=x, weight=w, bias=b, mix=mix, dy=dy)
    before = copy.deepcopy(args)
    for variant, bs in itertools.product(VARIANTS, MODES):
        gn_plus(x, 2, w, b, mix, variant=variant, batch_stats=bs)
        gn_plus_backward(dy, x, 2, w, b, mix, variant=variant, batch_stats=bs)
    for k, v in args.items():
        assert np.array_equal(v, before[k]) and v.dtype == before[k].dtype, k


# --- accuracy on a large offset ------------------------------------------------------

def _mp_gn_plus(x, G, w, b, mix, eps, variant, bs):
    """The forward in 50-digit mpmath (object arrays), as the reference spells it."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    N, C = x.shape[:2]
    f = np.vectorize(mp.mpf, otypes=[object])

    def norm(t, axis):
        n = int(np.prod([t.shape[a] for a in axis]))
        mean = t.sum(axis=axis, keepdims=True) / n
        tc = t - mean
        std = np.vectorize(mp.sqrt, otypes=[object])((tc * tc).sum(axis=axis, keepdims=True) / (n - 1))
        return tc / (std + eps)

    def gn(t):
        return norm(t.reshape(N, G, -1), (2,)).reshape(t.shape)

    def bn(t):
        return norm(t, (0,) if bs == "position" else (0,) + tuple(range(2, t.ndim)))

    xe = f(x)
    if variant == "gn_first":
        a = gn(xe)
        bb = bn(a)
    elif variant == "bn_first":
        bb = bn(xe)
        a = gn(bb)
    else:
        a, bb = gn(xe), bn(xe)
    lam = 1 / (1 + mp.exp(-mp.mpf(float(np.reshape(mix, ())))))
    shp = (1, C) + (1,) * (x.ndim - 2)
    y = (lam * a + (1 - lam) * bb) * f(w).reshape(shp) + f(b).reshape(shp)
    return np.vectorize(float, otypes=[np.float64])(y)


@pytest.mark.parametrize("variant,bs", list(itertools.product(VARIANTS, MODES)))
def test_large_offset_is_accurate(variant, bs):
    """x = 1e4 + 0.5 z: the double-double means keep the kernel within 8 u
    (measured: <= 2.4 u) of the 50-digit value, where a plain float64
    evaluation (the autograd.numpy reference) is off by 5e3-4e4 u."""
    rng = np.random.default_rng(16)
    shape, G = (3, 4, 5), 2
    x = 1e4 + 0.5 * rng.standard_normal(shape)
    w, b = random_affine(rng, (4,))
    mix = np.array([0.4])
    exact = _mp_gn_plus(x, G, w, b, mix, 1e-5, variant, bs)
    got = gn_plus(x, G, w, b, mix, variant=variant, batch_stats=bs)
    err = np.max(np.abs(got - exact)) / np.max(np.abs(exact))
    assert err <= 8 * 2.0 ** -53, f"{variant}-{bs}: kernel vs 50-digit value {err:.2e}"

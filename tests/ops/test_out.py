"""Preallocated outputs and the fast kernels behind them.

1. ``refnorm.<op>(..., out=)`` and ``refnorm.<op>_backward(..., out=)`` (the
   five standard ops; every battery case of every registered op that takes
   ``out=``, and a fixed set below) write the very bits of the call without
   ``out`` into the caller's array, return it, and refuse a wrong ``out`` (kind, dtype, shape, layout,
   read-only, overlapping an input) with a TypeError / ValueError raised
   before any kernel runs.
2. The lane kernels of ``refnorm/ops/_lanes.py`` and ``_runs.py`` (eight
   reduction sets or positions per vector, transposed tiles, fused passes,
   streaming stores) give the bits of the one-set-at-a-time kernels of
   ``refnorm/ops/_sets.py``, the readable form (``_moments_sets``,
   ``_forward_sets``, ``backward_input``, ``_affine_sets``) -- and the affine
   sums equal a plain Python Sum2 in row order.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import refnorm
from refnorm._registry import STANDARD_OPS
from refnorm.ops import _kernels, _lanes, _sets
from refnorm.ops._dd import two_sum

from .._util import noncentred, op_cases, random_affine, random_dy

RNG = np.random.default_rng(7)


def _case(x, op, *args):
    """(x, forward(x, out), forward(x), backward(dy, x, out), backward(dy, x)) of ``refnorm.<op>`` with ``args``."""
    fwd, bwd = getattr(refnorm, op), getattr(refnorm, f"{op}_backward")
    return (x, lambda x, o: fwd(x, *args, out=o), lambda x: fwd(x, *args),
            lambda dy, x, o: bwd(dy, x, *args, out=o), lambda dy, x: bwd(dy, x, *args))


def _cases():
    """id -> (x, forward(x, out), forward(x), backward(dy, x, out), backward(dy, x))."""
    x2 = noncentred(RNG, (37, 24))
    w24, b24 = random_affine(RNG, (24,))
    x3 = noncentred(RNG, (5, 6, 7))
    w67, b67 = random_affine(RNG, (6, 7))
    x4 = noncentred(RNG, (4, 12, 5, 3))
    w12, b12 = random_affine(RNG, (12,))
    rm, rv = RNG.standard_normal(12), 0.5 + np.abs(RNG.standard_normal(12))
    return {
        "layer_norm": _case(x2, "layer_norm", 24, w24, b24),
        "layer_norm-2d-no-affine": _case(x3, "layer_norm", (6, 7)),
        "layer_norm-2d": _case(x3, "layer_norm", (6, 7), w67, b67),
        "rms_norm": _case(x2, "rms_norm", 24, w24),
        "batch_norm-train": _case(x4, "batch_norm", None, None, w12, b12, True),
        "batch_norm-eval": _case(x4, "batch_norm", rm, rv, w12, b12),
        "group_norm": _case(x4, "group_norm", 4, w12, b12),
        "instance_norm": _case(x4, "instance_norm", None, None, w12, b12),
        "instance_norm-running": _case(x4, "instance_norm", rm, rv, w12, b12, False),
    }


CASES = _cases()


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint64), b.view(np.uint64))


@pytest.mark.parametrize("cid", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_out_is_the_forward(cid, dtype):
    x, fwd_out, fwd, _, _ = CASES[cid]
    x = x.astype(dtype)
    out = np.full(x.shape, np.nan)
    y = fwd_out(x, out)
    assert y is out, f"{cid}: the out= variant must return out itself"
    assert _same_bits(out, fwd(x)), f"{cid}: out= changed the bits of y"


@pytest.mark.parametrize("cid", list(CASES))
def test_backward_out_is_the_backward(cid):
    x, _, _, bwd_out, bwd = CASES[cid]
    dy = random_dy(x.shape, seed=3)
    out = np.full(x.shape, np.nan)
    got = bwd_out(dy, x, out)
    ref = bwd(dy, x)
    assert got["x"] is out, f"{cid}: the returned dx must be out itself"
    assert list(got) == list(ref)
    for k in ref:
        assert _same_bits(got[k], ref[k]), f"{cid}: out= changed the bits of d{k}"


def _takes_out(fn) -> bool:
    p = inspect.signature(fn).parameters.get("out")
    return p is not None and p.kind is inspect.Parameter.KEYWORD_ONLY


#: every battery case (tests/ops/cases/<op>.py) of every registered op whose
#: forward takes out=: an op added with out= is checked without an edit here
BATTERY = [(op, cid, kw) for op, spec in refnorm.registry().items() if _takes_out(spec.forward)
           for cid, kw in op_cases(op)]


def test_forward_and_backward_take_out_together():
    assert {"batch_norm", "layer_norm", "instance_norm", "group_norm", "rms_norm"} <= {op for op, _, _ in BATTERY}
    for op, spec in refnorm.registry().items():
        assert _takes_out(spec.forward) == _takes_out(spec.backward), op
        assert not _takes_out(spec.forward) or op in STANDARD_OPS, f"{op}: only the standard ops take out="


@pytest.mark.parametrize("op, cid, kw", BATTERY, ids=[f"{op}-{cid}" for op, cid, _ in BATTERY])
def test_out_is_the_call_without_out_on_every_battery_case(op, cid, kw):
    spec = refnorm.registry()[op]
    x = np.asarray(kw[spec.primary])
    y = spec.forward(**kw)
    out = np.full(x.shape, np.nan)
    assert spec.forward(**kw, out=out) is out and _same_bits(out, y), f"{op}[{cid}]: forward out="
    dy = random_dy(x.shape, seed=5)
    ref = spec.backward(dy, **kw)
    out = np.full(x.shape, np.nan)
    got = spec.backward(dy, **kw, out=out)
    assert got[spec.primary] is out and list(got) == list(ref), f"{op}[{cid}]: backward out="
    for k in ref:
        assert _same_bits(got[k], ref[k]), f"{op}[{cid}]: backward out= changed d{k}"


def test_out_is_reused_across_calls():
    x, fwd_out, fwd, _, _ = CASES["layer_norm"]
    out = np.empty_like(x)
    for scale in (1.0, -3.0):
        assert _same_bits(fwd_out(scale * x, out), fwd(scale * x))


# ----------------------------------------------------------------------------- validation


@pytest.fixture
def no_kernels(monkeypatch):
    """Every kernel entry point becomes a tripwire: validation must come first."""
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before out= was validated")

    for name in ("moments", "forward", "normalize", "backward_sets", "backward_input", "backward_affine",
                 "rstd_of_var", "divide_m2"):
        monkeypatch.setattr(_kernels, name, tripwire)


X = CASES["layer_norm"][0]
W, B = random_affine(np.random.default_rng(1), (24,))


def _ln(out, x=X, w=W, b=B):
    return refnorm.layer_norm(x, 24, w, b, out=out)


def _ln_bwd(out, dy, x=X):
    return refnorm.layer_norm_backward(dy, x, 24, W, B, out=out)


BAD = [
    ("list", lambda: _ln(np.zeros(X.shape).tolist()), TypeError, "out must be a numpy.ndarray"),
    ("none-kind", lambda: _ln(3.0), TypeError, "out must be a numpy.ndarray"),
    ("float32", lambda: _ln(np.zeros(X.shape, np.float32)), TypeError, "dtype float64"),
    ("int", lambda: _ln(np.zeros(X.shape, np.int64)), TypeError, "dtype float64"),
    ("shape", lambda: _ln(np.zeros((37, 25))), ValueError, r"shape of the result \(37, 24\)"),
    ("shape-flat", lambda: _ln(np.zeros(37 * 24)), ValueError, "shape of the result"),
    ("fortran", lambda: _ln(np.zeros(X.shape, order="F")), ValueError, "C-contiguous"),
    ("strided", lambda: _ln(np.zeros((37, 48))[:, ::2]), ValueError, "C-contiguous"),
    ("read-only", lambda: _ln(np.lib.stride_tricks.as_strided(np.zeros(X.shape), writeable=False)), ValueError,
     "writeable"),
    ("alias-x", lambda: _ln_alias_x(), ValueError, "share memory with the input x"),
    ("alias-weight", lambda: _ln_alias_weight(), ValueError, "share memory with the input weight"),
    ("alias-dy", lambda: _ln_bwd_alias_dy(), ValueError, "share memory with the input dy"),
    ("alias-x-backward", lambda: _ln_bwd_alias_x(), ValueError, "share memory with the input x"),
    ("alias-running-mean", lambda: _bn_alias_running_mean(), ValueError, "share memory with the input running_mean"),
]


def _ln_alias_x():
    x = X.copy()
    return _ln(x, x=x)  # in place: refused


def _ln_alias_weight():
    buf = np.zeros(37 * 24 + 24)
    out = buf[: 37 * 24].reshape(37, 24)
    return _ln(out, w=buf[37 * 24 - 1: 37 * 24 + 23])  # one element in common


def _ln_bwd_alias_dy():
    dy = random_dy(X.shape)
    return _ln_bwd(dy, dy)


def _ln_bwd_alias_x():
    x = X.copy()
    return refnorm.layer_norm_backward(random_dy(X.shape), x, 24, W, B, out=x)


def _bn_alias_running_mean():
    x = CASES["batch_norm-eval"][0]
    buf = np.zeros(x.size + 12)
    out = buf[: x.size].reshape(x.shape)
    return refnorm.batch_norm(x, buf[x.size - 12: x.size], np.ones(12), out=out)


@pytest.mark.parametrize("cid,call,exc,match", BAD, ids=[c[0] for c in BAD])
def test_bad_out_is_refused_before_any_kernel(no_kernels, cid, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_out_is_keyword_only():
    with pytest.raises(TypeError):
        refnorm.layer_norm(X, 24, W, B, 1e-5, np.empty_like(X))
    with pytest.raises(TypeError):
        refnorm.layer_norm_backward(random_dy(X.shape), X, 24, W, B, 1e-5, np.empty_like(X))


def test_argument_errors_still_come_first():
    """A bad argument of the op is reported as before, whatever out is."""
    with pytest.raises(ValueError, match="trailing dimensions of x"):
        refnorm.layer_norm(X, (23,), out=np.empty(3))
    with pytest.raises(ValueError, match="num_groups must divide"):
        refnorm.group_norm(CASES["group_norm"][0], 5, out=np.empty(3))


def test_failed_validation_leaves_out_untouched(no_kernels):
    out = np.full((37, 25), 7.0)
    with pytest.raises(ValueError):
        _ln(out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("cid", list(CASES))
def test_out_none_allocates_as_without_out(cid):
    x, fwd_out, fwd, bwd_out, bwd = CASES[cid]
    y = fwd_out(x, None)
    assert not np.shares_memory(y, x) and _same_bits(y, fwd(x))
    dy = random_dy(x.shape, seed=5)
    got, ref = bwd_out(dy, x, None), bwd(dy, x)
    assert list(got) == list(ref) and all(_same_bits(got[k], ref[k]) for k in ref)


# ----------------------------------------------------------------------------- lanes == one set at a time


def _bits_equal(a, b):
    """Same bits, all NaNs counted equal (IEEE 754 leaves the NaN returned by
    an operation on two NaNs to the implementation)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    return a.shape == b.shape and np.array_equal(na, nb) and np.array_equal(a[~na].view(np.uint64),
                                                                            b[~nb].view(np.uint64))


def _view_data(rng, shape, kind):
    x = -2.3 + 0.5 * rng.standard_normal(shape)
    if kind == "offset":
        x = 1e4 + 1e-2 * rng.standard_normal(shape)
    elif kind == "nonfinite" and x.size > 3:
        flat = x.reshape(-1)
        flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
    return x


# (A, B, S, P, Q): batch_norm-like, layer_norm-like, group_norm-like, instance_norm-like and odd sizes
VIEWS = [(3, 8, 20, 8, 1), (1, 19, 37, 1, 37), (1, 24, 30, 4, 3), (1, 40, 9, 10, 1), (2, 9, 1, 9, 1),
         (1, 8, 8200, 1, 8200), (5, 3, 70, 3, 1), (1, 17, 64, 17, 4), (1, 12, 6, 3, 6)]


def _stats(x3):
    """An empty statistics array (rows mean, mean_lo, m2, m2_lo, rstd, rstd_lo) for the sets of x3."""
    return _kernels.empty_stats(x3.shape[1])


#: the rows of a statistics array, by name
ROWS = {name: getattr(_sets, name.upper()) for name in ("mean", "mean_lo", "m2", "m2_lo", "rstd", "rstd_lo")}


@pytest.mark.parametrize("view", VIEWS, ids=[str(v) for v in VIEWS])
@pytest.mark.parametrize("kind", ["plain", "offset", "nonfinite"])
@pytest.mark.parametrize("center", [True, False])
def test_lane_moments_equal_one_set_at_a_time(view, kind, center):
    A, B, S, _, _ = view
    x3 = _view_data(np.random.default_rng(abs(hash((view, kind))) % 2**32), (A, B, S), kind)
    lanes, sets = _stats(x3), _stats(x3)
    _lanes._moments_lanes(x3, center, 1e-5, lanes)
    _sets._moments_sets(x3, center, 1e-5, sets)
    for name, row in ROWS.items():
        assert _bits_equal(lanes[row], sets[row]), f"moments {view} {kind}: {name} differs"


@pytest.mark.parametrize("view", VIEWS, ids=[str(v) for v in VIEWS])
@pytest.mark.parametrize("kind", ["plain", "offset", "nonfinite"])
@pytest.mark.parametrize("mode", [_kernels.MODE_BATCH_STATS, _kernels.MODE_RMS, _kernels.MODE_CONST_STATS])
def test_lane_backward_equals_one_set_at_a_time(view, kind, mode):
    A, B, S, P, Q = view
    T = S // Q
    rng = np.random.default_rng(abs(hash((view, kind, mode))) % 2**32)
    x3 = _view_data(rng, (A, B, S), kind)
    dy3 = rng.standard_normal(x3.shape)
    w = 1.0 + 0.5 * rng.standard_normal(P * Q)
    st = _stats(x3)
    _sets._moments_sets(x3, mode != _kernels.MODE_RMS, 1e-5, st)
    ref = np.empty_like(x3)
    _sets.backward_input(dy3, x3, st, w, P, Q, T, mode, ref)
    for stream in (False, True):
        got = np.empty_like(x3)
        none = np.empty(0)
        _kernels.backward_sets(dy3, x3, False, True, 0.0, st, w, P, Q, T, mode, got, none, none, stream)
        assert _bits_equal(got, ref), f"backward {view} {kind} mode {mode} stream {stream}: dx differs"
    if mode == _kernels.MODE_CONST_STATS:
        return
    # statistics computed inside the kernel (fresh), with the affine sums fused where the ops fuse them
    fused = P >= _kernels.LANES // 2 and (A == 1 or B == P) and not (T == 1 and P == 1)
    stats_fresh = _stats(x3)
    got = np.empty_like(x3)
    dw = np.zeros(P * Q if fused else 0)
    db = np.zeros(P * Q if fused else 0)
    _kernels.backward_sets(dy3, x3, True, mode != _kernels.MODE_RMS, 1e-5, stats_fresh, w, P, Q, T, mode, got,
                           dw, db, False)
    assert _bits_equal(got, ref), f"fresh backward {view} {kind}: dx differs"
    for name, row in ROWS.items():
        assert _bits_equal(stats_fresh[row], st[row]), f"fresh backward {view} {kind}: {name} differs"
    if fused:
        rdw, rdb = _affine_reference(dy3, x3, st, P, Q, T)
        assert _bits_equal(dw, rdw) and _bits_equal(db, rdb), f"fused affine {view} {kind} differs"


def _affine_reference(dy3, x3, st, P, Q, T):
    """dweight, dbias as plain Python Sum2 in ascending (a, b, s), per parameter."""
    A, B, S = x3.shape
    acc = np.zeros((P * Q, 4))
    for a in range(A):
        for b in range(B):
            for s in range(S):
                k = (b % P) * Q + s // T
                dyv = dy3[a, b, s]
                xhat = _sets._xhat(x3[a, b, s], st[_sets.MEAN, b], st[_sets.MEAN_LO, b], st[_sets.RSTD, b],
                                   st[_sets.RSTD_LO, b])
                acc[k, 0], e = two_sum(acc[k, 0], dyv * xhat)
                acc[k, 1] += e
                acc[k, 2], e = two_sum(acc[k, 2], dyv)
                acc[k, 3] += e
    return acc[:, 0] + acc[:, 1], acc[:, 2] + acc[:, 3]


@pytest.mark.parametrize("view", [v for v in VIEWS if v[0] * v[1] * v[2] <= 2000], ids=str)
@pytest.mark.parametrize("threads", [1, 3])
def test_affine_sums_are_python_sum2_in_row_order(view, threads):
    A, B, S, P, Q = view
    T = S // Q
    rng = np.random.default_rng(5)
    x3 = _view_data(rng, (A, B, S), "offset")
    dy3 = rng.standard_normal(x3.shape)
    st = _stats(x3)
    _sets._moments_sets(x3, True, 1e-5, st)
    block = _kernels.affine_block(Q, T, threads)
    acc = np.zeros((4, P * Q))
    _kernels.backward_affine(dy3, x3, st, P, Q, T, acc, block)
    dw, db = np.empty(P * Q), np.empty(P * Q)
    _kernels.affine_result(acc, dw, db)
    rdw, rdb = _affine_reference(dy3, x3, st, P, Q, T)
    assert _bits_equal(dw, rdw) and _bits_equal(db, rdb), f"backward_affine {view} differs from Python Sum2"
    # the readable form, one term at a time, for any T (the ops use it for T != 1)
    acc_sets = np.zeros((4, P * Q))
    _sets._affine_sets(dy3, x3, st, P, Q, T, acc_sets, block)
    assert _bits_equal(acc_sets, acc), f"_affine_sets {view} differs from backward_affine"


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("band_rows", [1, 3, 8, 13])
def test_banded_backward_has_the_bits_of_one_pass(monkeypatch, op, band_rows):
    """The LayerNorm/RMSNorm backward runs in bands of rows when the arrays
    exceed a cache budget (the affine sums carry over between bands): the
    bits must not depend on the band size, including bands that do not divide
    the rows and single-row bands."""
    from refnorm.ops import _normalize

    rng = np.random.default_rng(17)
    x = noncentred(rng, (2, 29, 24))
    dy = rng.standard_normal(x.shape)
    w, b = random_affine(rng, (24,))
    args = (dy, x, 24, w, b) if op == "layer_norm" else (dy, x, 24, w)
    fn = getattr(refnorm, f"{op}_backward")
    monkeypatch.setattr(_normalize, "AFFINE_BAND_BYTES", 2**62)
    assert _normalize._affine_band_sets(x.reshape(1, 58, 24), 1, 1, True) == 0
    whole = fn(*args)
    monkeypatch.setattr(_normalize, "AFFINE_BAND_BYTES", band_rows * 2 * 8 * 24)
    assert _normalize._affine_band_sets(x.reshape(1, 58, 24), 1, 1, True) == band_rows
    banded = fn(*args)
    assert list(banded) == list(whole)
    for k in whole:
        assert _bits_equal(banded[k], whole[k]), f"{op} d{k} depends on the band size {band_rows}"


@pytest.mark.parametrize("view", VIEWS, ids=[str(v) for v in VIEWS])
@pytest.mark.parametrize("stream", [False, True])
def test_fused_forward_equals_moments_then_forward(view, stream):
    A, B, S, P, Q = view
    T = S // Q
    rng = np.random.default_rng(11)
    x3 = _view_data(rng, (A, B, S), "nonfinite")
    w, b = 1.0 + 0.5 * rng.standard_normal(P * Q), 0.3 * rng.standard_normal(P * Q)
    st = _stats(x3)
    _sets._moments_sets(x3, True, 1e-5, st)
    ref = np.empty_like(x3)
    for a in range(A):  # the scalar forward, element by element
        for bb in range(B):
            for s in range(S):
                k = (bb % P) * Q + s // T
                xhat = _sets._xhat(x3[a, bb, s], st[_sets.MEAN, bb], st[_sets.MEAN_LO, bb], st[_sets.RSTD, bb],
                                   st[_sets.RSTD_LO, bb])
                ref[a, bb, s] = w[k] * xhat + b[k]
    got = np.empty_like(x3)
    st_fused = _stats(x3)
    _kernels.normalize(x3, True, 1e-5, w, b, P, Q, T, got, st_fused, stream)
    assert _bits_equal(got, ref)
    for name, row in ROWS.items():
        assert _bits_equal(st_fused[row], st[row]), f"normalize {view}: {name} differs from the moments"
    got2 = np.empty_like(x3)
    _kernels.forward(x3, st, w, b, P, Q, T, got2, stream)
    assert _bits_equal(got2, ref)
    got3 = np.empty_like(x3)  # the readable form, one set at a time
    _sets._forward_sets(x3, st, w, b, P, Q, T, got3)
    assert _bits_equal(got3, ref)

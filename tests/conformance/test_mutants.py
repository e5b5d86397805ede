"""The mutants: each loads, speaks the protocol, and is visibly wrong on its DEMO_INPUT.

The FUZZ_ONLY mutants get direct tests of their property bugs on inputs just
past (and at) their limits: a reduction set of more than 2**16 elements, more
than 65535 sets, a strided view, a float64 input that must stay unchanged."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import refnorm
from refnorm._registry import protocol_parameters
from refnorm.conformance.backends import numpy32
from refnorm.conformance.mutants import FUZZ_ONLY, MUTANTS, _demo, load_mutant
from refnorm.golden.layouts import strided_view

from ._protocol import flatten, ref

# every registered op's protocol functions (a mutant of any layer is checked the same way)
PROTOCOL_FUNCTIONS = tuple(
    fn.__name__ for spec in refnorm.registry().values()
    for fn in (spec.forward, spec.backward, spec.forward_with_stats, spec.running_stats) if fn is not None)
# "far more than float32 rounding": float32 outputs are within ~1e-7 of refnorm (norm-wise).
FAR = 1e-4
ONLY_BY_PROPERTY = {"racy_reduction", "batch_variant"}
# Mutants whose returned values are right: the bug shows in the arguments, which they overwrite.
WRITES_INPUTS = {"inplace_float64"}


def _worst(got, want):
    """Largest norm-wise relative difference over the outputs; inf where NaN-ness differs."""
    worst = 0.0
    for k, w in want.items():
        g = got[k]
        if not np.array_equal(np.isnan(g), np.isnan(w)) or not np.array_equal(np.isinf(g), np.isinf(w)):
            return float("inf")
        ok = np.isfinite(w)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(g[ok] - w[ok])) / max(np.max(np.abs(w[ok])), 1e-300)))
    return worst


def test_at_least_twenty_mutants():
    assert len(MUTANTS) >= 20
    assert ONLY_BY_PROPERTY <= set(MUTANTS) and FUZZ_ONLY <= set(MUTANTS) and WRITES_INPUTS <= FUZZ_ONLY
    assert not ONLY_BY_PROPERTY & FUZZ_ONLY


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_loads_and_speaks_the_protocol(name):
    m = load_mutant(name)
    assert m.BACKEND_INFO["name"] == name and m.BACKEND_INFO["description"]
    assert m.__doc__ and "Affects" in m.__doc__
    exposed = [f for f in PROTOCOL_FUNCTIONS if callable(getattr(m, f, None))]
    assert exposed
    for f in exposed:
        assert list(inspect.signature(getattr(m, f)).parameters) == list(protocol_parameters(ref(f))), f


@pytest.mark.parametrize("name", sorted(set(MUTANTS) - ONLY_BY_PROPERTY - WRITES_INPUTS))
def test_mutant_differs_on_its_demo_input(name):
    m = load_mutant(name)
    d = m.DEMO_INPUT
    with np.errstate(all="ignore"):
        got = flatten(getattr(m, d["function"])(*d["args"], **d["kwargs"]))
        want = flatten(ref(d["function"])(*d["args"], **d["kwargs"]))
    worst = _worst(got, want)
    assert worst > FAR, f"{name}: {d['function']} differs from refnorm by only {worst:.3g}"


def test_numpy32_passes_every_demo_input():
    """The control: the unmutated base agrees with refnorm on every mutant's DEMO_INPUT."""
    for name in sorted(set(MUTANTS) - ONLY_BY_PROPERTY):
        d = load_mutant(name).DEMO_INPUT
        if not hasattr(numpy32, d["function"]):  # a layer numpy32 does not offer: refnorm itself is the control
            continue
        with np.errstate(all="ignore"):
            got = flatten(getattr(numpy32, d["function"])(*d["args"], **d["kwargs"]))
            want = flatten(ref(d["function"])(*d["args"], **d["kwargs"]))
        x = np.asarray(d["args"][1] if d["function"].endswith("_backward") else d["args"][0])
        # output rounding (float16 / bfloat16 / float32), amplified by the conditioning
        # kappa = |mean| / std of the data (E1: a float32 mean is off by ~u * |mean|)
        tol = {"float16": 2e-3, "bfloat16": 8e-3}.get(x.dtype.name, 1e-5)
        xf = x.astype(np.float64)
        with np.errstate(all="ignore"):
            kappa = np.nanmax(np.abs(np.nanmean(xf, axis=-1)) / np.nanstd(xf, axis=-1))
        if np.isfinite(kappa):
            tol = max(tol, 8 * 2.0 ** -24 * kappa)
        assert _worst(got, want) <= tol, name


def test_racy_reduction_differs_between_calls():
    m = load_mutant("racy_reduction")
    d = m.DEMO_INPUT
    x = d["args"][0]
    assert x.dtype == np.float32 and x.size >= 100_000
    # A race shows with some probability per call (here about 2 in 3 calls differ
    # from the first); 20 calls all identical would have probability ~1e-10.
    a = np.asarray(m.layer_norm(*d["args"]))
    assert any(not np.array_equal(a, np.asarray(m.layer_norm(*d["args"]))) for _ in range(19)), \
        "20 calls gave identical bits"
    exact = refnorm.layer_norm(*d["args"])
    assert _worst({"y": a.astype(np.float64)}, {"y": exact}) < 1e-5  # each run is accurate


def test_batch_variant_row_depends_on_batch():
    m = load_mutant("batch_variant")
    x, ns = m.DEMO_INPUT["args"]
    full = np.asarray(m.layer_norm(x, ns))
    alone = np.asarray(m.layer_norm(x[:1], ns))
    assert np.array_equal(np.asarray(m.layer_norm(x, ns)), full)  # deterministic
    assert not np.array_equal(alone[0], full[0]), "row 0 alone == row 0 in the batch"
    assert _worst({"y": alone.astype(np.float64)}, {"y": refnorm.layer_norm(x[:1], ns)}) < 1e-5


def test_numpy32_is_deterministic_and_batch_invariant():
    for name in ("racy_reduction", "batch_variant"):
        x, ns = load_mutant(name).DEMO_INPUT["args"][:2]
        full = np.asarray(numpy32.layer_norm(x, ns))
        assert np.array_equal(full, np.asarray(numpy32.layer_norm(x, ns)))
        assert np.array_equal(np.asarray(numpy32.layer_norm(x[:1], ns))[0], full[0])


# ----------------------------------------------------------------------------- the FUZZ_ONLY mutants

BLOCK = 2 ** 16      # set_size_block_limit: elements of a set one block reads
GRID = 2 ** 16 - 1   # grid_limit_sets: blocks in one grid dimension


def _bitwise(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _same(got, want) -> bool:
    """Every output identical, bit for bit (NaN included)."""
    got, want = flatten(got), flatten(want)
    return got.keys() == want.keys() and all(_bitwise(got[k], want[k]) for k in want)


def _far(got, want) -> bool:
    """Far more than float32 rounding apart (or NaN where the other is not)."""
    return _worst(flatten(got), flatten(want)) > FAR


@pytest.mark.parametrize("n", [BLOCK, BLOCK + 1])
def test_set_size_block_limit_leaves_out_the_elements_past_the_first_block(n):
    """A row whose last element is an outlier: at 2**16 elements one block holds
    the set and the mutant is numpy32 bit for bit; one element more and the
    outlier is missing from every statistic (forward, backward, RMSNorm)."""
    m = load_mutant("set_size_block_limit")
    x, dy, ns = _demo.noncentred((1, n)), _demo.cotangent((1, n)), (n,)
    x[0, -1] = 1000.0
    calls = {"y": lambda b: b.layer_norm(x, ns), "dx": lambda b: b.layer_norm_backward(dy, x, ns),
             "rms": lambda b: b.rms_norm(x, ns)}
    for name, call in calls.items():
        assert _same(call(m), call(numpy32)) if n == BLOCK else _far(call(m), call(refnorm)), name
    if n > BLOCK:  # the divisor stays the full n: the mean is the first block's sum over n
        mean = m.layer_norm_stats(x, ns)[1]["mean"]
        np.testing.assert_allclose(mean, x[:, :BLOCK].astype(np.float64).sum() / n, rtol=1e-5)


@pytest.mark.parametrize("rows", [GRID, GRID + 2])
def test_grid_limit_sets_gives_set_r_the_statistics_of_set_r_mod_65535(rows):
    """Up to 65535 sets the mutant is numpy32 bit for bit; set 65535 + i is
    normalized with the mean and rstd of set i (forward, stats, backward)."""
    m = load_mutant("grid_limit_sets")
    x, dy, ns = _demo.noncentred((rows, 2)), _demo.cotangent((rows, 2)), (2,)
    y, stats = m.layer_norm_stats(x, ns)
    y0, stats0 = numpy32.layer_norm_stats(x, ns)
    dx, dx0 = m.layer_norm_backward(dy, x, ns)["x"], numpy32.layer_norm_backward(dy, x, ns)["x"]
    assert _bitwise(y[:GRID], y0[:GRID]) and _bitwise(dx[:GRID], dx0[:GRID])
    if rows > GRID:
        for k in ("mean", "rstd"):
            assert _bitwise(stats[k][GRID:], stats0[k][: rows - GRID]), k
        assert _far(y[GRID:], y0[GRID:]) and _far(dx[GRID:], dx0[GRID:])
        xi = _demo.noncentred((1, rows, 2))  # InstanceNorm: one set per (sample, channel)
        assert _far(m.instance_norm(xi)[:, GRID:], numpy32.instance_norm(xi)[:, GRID:])
        assert _bitwise(m.instance_norm(xi)[:, :GRID], numpy32.instance_norm(xi)[:, :GRID])


# name: (shape, layout) -- strided views as refnorm.golden.layouts builds them (the fuzz cases' layouts)
STRIDED = {
    "transposed": ((6, 16), {"order": [1, 0]}),
    "fortran_3d": ((3, 4, 16), {"order": [2, 1, 0]}),
    "column_step": ((6, 16), {"step": [1, 2]}),
    "row_step": ((6, 16), {"step": [2, 1]}),
    "negative_stride": ((6, 16), {"flip": [0]}),
    "transposed_at_offset": ((6, 16), {"order": [1, 0], "offset": 5}),
}


@pytest.mark.parametrize("layout", sorted(STRIDED))
def test_strides_ignored_is_wrong_on_a_strided_view(layout):
    """x, dy or the weight passed as a strided view: read as if C-contiguous,
    wrong (or NaN: past the buffer); the same values passed contiguous: right."""
    m = load_mutant("strides_ignored")
    shape, lay = STRIDED[layout]
    x, dy, ns = _demo.noncentred(shape), _demo.cotangent(shape), shape[-1:]
    xv, dyv = strided_view(x, lay), strided_view(dy, lay)
    assert not xv.flags.c_contiguous and _bitwise(xv, x)
    assert _far(m.layer_norm(xv, ns), refnorm.layer_norm(x, ns))
    assert _far(m.layer_norm_backward(dy, xv, ns), refnorm.layer_norm_backward(dy, x, ns))
    assert _far(m.layer_norm_backward(dyv, x, ns), refnorm.layer_norm_backward(dy, x, ns))
    assert _bitwise(m.layer_norm(x, ns), numpy32.layer_norm(x, ns))
    w = _demo.affine(ns)[0]
    wv = strided_view(w, {"step": [3]})
    assert _far(m.layer_norm(x, ns, wv), refnorm.layer_norm(x, ns, w))


def test_strides_ignored_demo_input_is_a_strided_view():
    """Its DEMO_INPUT differs (test above) because of the layout alone: the same values, contiguous, are right."""
    m = load_mutant("strides_ignored")
    x, rest = m.DEMO_INPUT["args"][0], m.DEMO_INPUT["args"][1:]
    assert not x.flags.c_contiguous
    assert _far(m.layer_norm(x, *rest), refnorm.layer_norm(x, *rest))
    assert _same(m.layer_norm(np.ascontiguousarray(x), *rest), numpy32.layer_norm(np.ascontiguousarray(x), *rest))


def test_strides_ignored_batch_norm_channels_last_with_offset():
    """pytorch#174345's input: a channels-last x at a storage offset; at the
    offset alone (still C-contiguous) the mutant is right, bit for bit."""
    m = load_mutant("strides_ignored")
    x = _demo.noncentred((2, 3, 4, 5))
    args = (None, None, None, None, True)
    channels_last = strided_view(x, {"order": [0, 2, 3, 1], "offset": 7})
    assert _far(m.batch_norm(channels_last, *args), refnorm.batch_norm(x, *args))
    offset_only = strided_view(x, {"offset": 7})
    assert offset_only.flags.c_contiguous and offset_only.base is not None
    assert _bitwise(m.batch_norm(offset_only, *args), numpy32.batch_norm(x, *args))
    dy = _demo.cotangent(x.shape)
    assert _same(m.batch_norm_backward(dy, offset_only, *args), numpy32.batch_norm_backward(dy, x, *args))


def test_read_as_contiguous_reads_memory_order_and_never_past_the_owner():
    from refnorm.conformance.mutants.strides_ignored import read_as_contiguous

    a = np.arange(12.0).reshape(3, 4)
    assert read_as_contiguous(a) is a and read_as_contiguous(a[1:]) is not None and read_as_contiguous(0.5) == 0.5
    assert _bitwise(read_as_contiguous(a.T), np.arange(12.0).reshape(4, 3))  # the buffer in memory order
    assert _bitwise(read_as_contiguous(np.asfortranarray(a)), a.T.reshape(3, 4))
    assert _bitwise(read_as_contiguous(a[:, ::2]), np.arange(6.0).reshape(3, 2))
    assert _bitwise(read_as_contiguous(a[1:, 1::2]), [[5.0, 6.0], [7.0, 8.0]])  # from the data pointer on
    past = [8.0, 9.0, 10.0, 11.0] + [np.nan] * 8  # a[::-1] starts at the last row: 8 elements lie past the end
    assert _bitwise(read_as_contiguous(a[::-1]), np.reshape(past, (3, 4)))
    assert _bitwise(read_as_contiguous(a[::-1, ::-1]), np.reshape([11.0] + [np.nan] * 11, (3, 4)))


# op: (shape, forward, backward); the forward is <op>_stats, so the statistics are compared too
INPLACE_OPS = {
    "layer_norm": ((4, 16), lambda b, x: b.layer_norm_stats(x, (16,)),
                   lambda b, dy, x: b.layer_norm_backward(dy, x, (16,))),
    "rms_norm": ((4, 16), lambda b, x: b.rms_norm_stats(x, (16,)), lambda b, dy, x: b.rms_norm_backward(dy, x, (16,))),
    "group_norm": ((2, 6, 5), lambda b, x: b.group_norm_stats(x, 2), lambda b, dy, x: b.group_norm_backward(dy, x, 2)),
    "batch_norm": ((4, 3, 5), lambda b, x: b.batch_norm_stats(x, None, None, training=True),
                   lambda b, dy, x: b.batch_norm_backward(dy, x, None, None, training=True)),
    "instance_norm": ((2, 3, 5), lambda b, x: b.instance_norm_stats(x),
                      lambda b, dy, x: b.instance_norm_backward(dy, x)),
}


@pytest.mark.parametrize("op", sorted(INPLACE_OPS))
def test_inplace_float64_overwrites_a_float64_x_and_returns_right_values(op):
    """Forward and backward: a C-contiguous float64 x comes back holding x-hat,
    every returned value equals numpy32's bit for bit; a float32 x (and the
    float64 x numpy32 is given) is left alone."""
    m = load_mutant("inplace_float64")
    shape, forward, backward = INPLACE_OPS[op]
    dy = _demo.cotangent(shape, dtype=np.float64)
    for dtype in (np.float64, np.float32):
        x = _demo.noncentred(shape, dtype=dtype)
        for name, call in (("forward", lambda b, a: forward(b, a)), ("backward", lambda b, a: backward(b, dy, a))):
            passed, control = x.copy(), x.copy()
            assert _same(call(m, passed), call(numpy32, control)), (dtype, name)
            assert _bitwise(control, x), "numpy32 wrote into its input"
            if dtype == np.float64:
                assert np.count_nonzero(passed != x) > x.size // 2, (name, "x not overwritten")
                if op == "layer_norm":  # x-hat exactly
                    stats = numpy32.layer_norm_stats(x, (16,))[1]
                    assert _bitwise(passed, (x - stats["mean"][:, None]) * stats["rstd"][:, None])
            else:
                assert _bitwise(passed, x), (name, "float32 x changed")


def test_inplace_float64_demo_input_is_overwritten():
    m = load_mutant("inplace_float64")
    d = m.DEMO_INPUT
    x, rest = d["args"][0], d["args"][1:]
    assert x.dtype == np.float64 and x.flags.c_contiguous
    passed = x.copy()
    got = m.layer_norm(passed, *rest, **d["kwargs"])
    assert not _bitwise(passed, x)  # the bug: the caller's x now holds x-hat
    assert _bitwise(got, numpy32.layer_norm(x, *rest, **d["kwargs"]))  # ... and the result is right
    assert _worst(flatten(got), flatten(refnorm.layer_norm(x, *rest, **d["kwargs"]))) < 1e-12


def test_inplace_float64_leaves_fused_add_inputs_and_strided_copies_alone():
    """The fused adds normalize their own sum h (x, residual and the returned h
    stay right).  A strided float64 x is written exactly when the reshape to
    the canonical view is a view: a channels-last x is (H and W merge into one
    axis), a Fortran-ordered one must be copied and is not."""
    m = load_mutant("inplace_float64")
    x, r = _demo.noncentred((4, 16), dtype=np.float64), _demo.cotangent((4, 16), dtype=np.float64)
    xa, ra = x.copy(), r.copy()
    (y, h), _ = m.add_rms_norm_stats(xa, ra, (16,))
    (y0, h0), _ = numpy32.add_rms_norm_stats(x, r, (16,))
    assert _bitwise(xa, x) and _bitwise(ra, r) and _bitwise(y, y0) and _bitwise(h, h0)
    xc = _demo.noncentred((2, 3, 4, 5), dtype=np.float64)
    args = (None, None, None, None, True)
    views = {}
    for name, order in (("channels_last", [0, 2, 3, 1]), ("fortran", [3, 2, 1, 0])):
        views[name] = strided_view(xc, {"order": order})
        want = numpy32.batch_norm(strided_view(xc, {"order": order}), *args)
        assert _same(m.batch_norm(views[name], *args), want), name
    assert not _bitwise(views["channels_last"], xc) and _bitwise(views["fortran"], xc)

"""The backward from saved statistics: ``<op>_backward(..., stats=<op>_stats(...)[1])``.

1. Same bits as the backward without ``stats`` on every case the golden corpus
   has for the standard ops and the variants (every dtype, NaN/Inf case, eval
   mode and running statistics, ``offset``, residual dtype), called as the
   conformance harness calls a backend, as stored and with ``x``-shaped inputs
   in a strided memory layout; on every battery case of ``tests/ops/cases``;
   and with ``out=``.
2. A bad ``stats`` is refused with a TypeError / ValueError naming ``stats``
   before any kernel runs; neither ``stats`` nor any input is modified.
3. ``stats`` is refnorm's own keyword (keyword-only, default None), not part of
   the protocol; the dict ``<op>_stats`` returns still has exactly the
   protocol's keys.
"""

from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest

import refnorm
from refnorm._registry import STANDARD_OPS, VARIANT_OPS, protocol_parameters
from refnorm.conformance.harness import call_inputs
from refnorm.golden import load_cases
from refnorm.golden.calls import call_arguments
from refnorm.golden.layouts import strided_view
from refnorm.ops import _kernels
from refnorm.ops._saved import SavedStats

from .._util import noncentred, op_cases, random_affine, random_dy

OPS = list(STANDARD_OPS) + list(VARIANT_OPS)
CORPUS = [c for c in load_cases(ops=OPS) if c.expect.get("kind") != "error"
          and any(k in c.inputs for k in refnorm.registry()[c.op].cotangents)]


def _bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    return a.shape, a.reshape(-1).view(np.uint64).tobytes()


def _assert_same(got, want, what):
    assert list(got) == list(want), f"{what}: keys {list(got)} != {list(want)}"
    for k in want:
        assert _bits(got[k]) == _bits(want[k]), f"{what}: d{k} differs (bits) with stats="


def _snapshot(values):
    return [(type(v).__name__, _bits(v)) if isinstance(v, np.ndarray) else repr(v) for v in values]


def _stats_snapshot(st):
    return (list(st), [_bits(v) for v in st.values()], _bits(st._data), st._key, st._sample)


def test_the_corpus_has_the_cases():
    ops = {c.op for c in CORPUS}
    assert ops == set(OPS), f"no corpus case with a backward for {set(OPS) - ops}"
    assert {c.dtype for c in CORPUS} == {"float64", "float32", "float16", "bfloat16"}
    assert len(CORPUS) >= 400


def _strided(case):
    """The case's inputs, those shaped like x (x, residual, dy, dh) in a strided
    view: axes reversed in memory, every second element of the last axis, a
    storage offset (the values bit for bit those of the case)."""
    inputs = call_inputs(case)
    shape = np.shape(inputs["x"])
    nd = len(shape)
    lay = {"order": list(range(nd))[::-1], "step": [1] * (nd - 1) + [2], "offset": 3}
    return {k: strided_view(np.ascontiguousarray(v), lay) if isinstance(v, np.ndarray) and v.shape == shape and nd
            else v for k, v in inputs.items()}


@pytest.mark.parametrize("layout", ["as-stored", "strided"])
@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_saved_stats_backward_has_the_bits_of_the_backward_on_the_corpus(case, layout):
    spec = refnorm.registry()[case.op]
    inputs = call_inputs(case) if layout == "as-stored" else _strided(case)
    args, kwargs = call_arguments(case.op, inputs, case.attrs)
    cot = [inputs.get(c) for c in spec.cotangents]
    with np.errstate(all="ignore"):
        _, st = spec.forward_with_stats(*args, **kwargs)
        assert type(st) is SavedStats and list(st) == list(spec.stats)
        before = _stats_snapshot(st)
        want = spec.backward(*cot, *args, **kwargs)
        inputs_before = _snapshot(cot + list(args) + list(kwargs.values()))
        got = spec.backward(*cot, *args, **kwargs, stats=st)
        _assert_same(got, want, case.id)
        if case.op in STANDARD_OPS:
            out = np.full(np.shape(inputs["x"]), np.nan)
            got = spec.backward(*cot, *args, **kwargs, stats=st, out=out)
            assert got["x"] is out
            _assert_same(got, want, case.id + " out=")
    assert _stats_snapshot(st) == before, f"{case.id}: the backward modified stats"
    assert _snapshot(cot + list(args) + list(kwargs.values())) == inputs_before, f"{case.id}: an input was modified"


BATTERY = [(op, cid, kw) for op in OPS for cid, kw in op_cases(op)]


def _cotangents(spec, kw):
    shape = np.shape(kw[spec.primary])
    return [random_dy(shape, seed=3 + i) for i in range(len(spec.cotangents))]


@pytest.mark.parametrize("op, cid, kw", BATTERY, ids=[f"{op}-{cid}" for op, cid, _ in BATTERY])
def test_saved_stats_backward_has_the_bits_of_the_backward_on_the_battery(op, cid, kw):
    spec = refnorm.registry()[op]
    cot = _cotangents(spec, kw)
    _, st = spec.forward_with_stats(**kw)
    _assert_same(spec.backward(*cot, **kw, stats=st), spec.backward(*cot, **kw), f"{op}[{cid}]")


def test_a_copy_or_pickle_of_the_stats_works_and_a_plain_dict_does_not():
    x, dy = noncentred(np.random.default_rng(1), (6, 10)), random_dy((6, 10))
    _, st = refnorm.layer_norm_stats(x, 10)
    want = refnorm.layer_norm_backward(dy, x, 10)
    for other in (copy.copy(st), copy.deepcopy(st), pickle.loads(pickle.dumps(st))):
        assert type(other) is SavedStats
        _assert_same(refnorm.layer_norm_backward(dy, x, 10, stats=other), want, "copy")
    with pytest.raises(TypeError, match=r"stats must be the statistics dict returned by layer_norm_stats.*plain dict"):
        refnorm.layer_norm_backward(dy, x, 10, stats=dict(st))


# ----------------------------------------------------------------------------- refusals


@pytest.fixture
def no_kernels(monkeypatch):
    """Every kernel entry point becomes a tripwire: stats must be checked first."""
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before stats was validated")

    for name in ("moments", "forward", "normalize", "backward_sets", "backward_input", "backward_affine",
                 "rstd_of_var", "divide_m2"):
        monkeypatch.setattr(_kernels, name, tripwire)


RNG = np.random.default_rng(5)
X2 = noncentred(RNG, (7, 12))
DY2 = random_dy(X2.shape, seed=2)
X4 = noncentred(RNG, (3, 8, 4, 5))
DY4 = random_dy(X4.shape, seed=4)
W8, B8 = random_affine(RNG, (8,))
RM, RV = RNG.standard_normal(8), 0.5 + np.abs(RNG.standard_normal(8))
LN = refnorm.layer_norm_stats(X2, 12)[1]
RMS = refnorm.rms_norm_stats(X2, 12)[1]
BN = refnorm.ops.batch_norm.batch_norm_stats(X4, None, None, W8, B8, True)[1]
BN_EVAL = refnorm.ops.batch_norm.batch_norm_stats(X4, RM, RV, W8, B8, False)[1]
GN8 = refnorm.ops.group_norm.group_norm_stats(X4, 8)[1]
IN = refnorm.ops.instance_norm.instance_norm_stats(X4)[1]


def _changed(st, key, value):
    other = copy.copy(st)
    other[key] = value
    return other


ARN = refnorm.add_rms_norm_stats(X2, X2, 12)[1]


def _bn_bwd(stats, x=X4, training=True, rm=None, rv=None, eps=1e-5):
    return refnorm.batch_norm_backward(DY4[: len(x)], x, rm, rv, W8, B8, training, eps=eps, stats=stats)


BAD = [
    ("plain-dict", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=dict(LN)), TypeError,
     r"stats must be the statistics dict returned by layer_norm_stats"),
    ("number", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=1.0), TypeError,
     r"stats must be None or the statistics dict returned by layer_norm_stats .*got float"),
    ("tuple", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=(LN["mean"], LN["rstd"])), TypeError,
     "got tuple"),
    ("other-op-keys", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=RMS), ValueError,
     r"stats must have the keys \['mean', 'rstd'\]"),
    ("extra-key", lambda: refnorm.rms_norm_backward(DY2, X2, 12, stats=_changed(RMS, "mean", RMS["rstd"])),
     ValueError, r"stats must have the keys \['rstd'\]"),
    ("float32", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=_changed(LN, "rstd",
                                                                                 LN["rstd"].astype(np.float32))),
     TypeError, r'stats\["rstd"\] must be a float64 numpy.ndarray'),
    ("list", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=_changed(LN, "mean", list(LN["mean"]))),
     TypeError, r'stats\["mean"\] must be a float64 numpy.ndarray, got list'),
    ("shape", lambda: refnorm.layer_norm_backward(DY2[:5], X2[:5], 12, stats=LN), ValueError,
     r'stats\["mean"\] must have shape \(5,\) for this call, got shape \(7,\)'),
    ("eps", lambda: refnorm.layer_norm_backward(DY2, X2, 12, eps=1e-3, stats=LN), ValueError,
     r"stats were saved with eps=1e-05, this call has eps=0.001"),
    ("values", lambda: refnorm.layer_norm_backward(DY2, X2 + 1.0, 12, stats=LN), ValueError,
     "stats do not belong to this call: the values of the input differ"),
    ("changed-mean", lambda: refnorm.layer_norm_backward(DY2, X2, 12, stats=_changed(LN, "mean", LN["mean"] + 0.0
                                                                                      + 1e-3)),
     ValueError, r'stats\["mean"\] was changed after layer_norm_stats returned it'),
    ("bn-training-stats-in-eval", lambda: _bn_bwd(BN, training=False, rm=RM, rv=RV), ValueError,
     r"stats hold batch statistics, but this call normalizes with running statistics"),
    ("bn-eval-stats-in-training", lambda: _bn_bwd(BN_EVAL), ValueError,
     r"stats hold running statistics \(constants\), but this call normalizes with batch statistics"),
    ("bn-eval-other-running", lambda: _bn_bwd(BN_EVAL, training=False, rm=RM + 1.0, rv=RV), ValueError,
     "the values of running_mean/running_var differ"),
    ("bn-other-batch", lambda: _bn_bwd(BN, x=X4[:2], ), ValueError, "stats were saved for an input viewed as"),
    ("gn-as-in", lambda: refnorm.instance_norm_backward(DY4, X4, stats=GN8), ValueError,
     "stats were saved by group_norm_stats, not instance_norm_stats"),
    ("in-shape", lambda: refnorm.instance_norm_backward(DY4[:1], X4[:1], stats=IN), ValueError,
     r'stats\["mean"\] must have shape \(1, 8\)'),
    ("aln-plain", lambda: refnorm.add_layer_norm_backward(DY2, None, X2, X2, 12, stats=dict(LN)), TypeError,
     "returned by add_layer_norm_stats"),
    ("arn-residual-dtype", lambda: refnorm.add_rms_norm_backward(
        DY2, None, X2, X2, 12, residual_dtype="float32", stats=ARN), ValueError, "stats were saved with eps="),
]


@pytest.mark.parametrize("cid, call, exc, match", BAD, ids=[b[0] for b in BAD])
def test_bad_stats_are_refused_before_any_kernel(no_kernels, cid, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_refusal_leaves_out_and_stats_untouched(no_kernels):
    out = np.full(X2.shape, 7.0)
    before = _stats_snapshot(LN)
    with pytest.raises(ValueError):
        refnorm.layer_norm_backward(DY2, X2 + 1.0, 12, stats=LN, out=out)
    assert (out == 7.0).all() and _stats_snapshot(LN) == before


def test_eval_and_running_stats_are_the_constants():
    """batch_norm eval / instance_norm with running statistics: stats are
    running_mean and 1/sqrt(running_var + eps), the constants the backward uses."""
    assert _bits(BN_EVAL["mean"]) == _bits(RM)
    np.testing.assert_allclose(BN_EVAL["rstd"], 1 / np.sqrt(RV + 1e-5), rtol=1e-15)
    want = refnorm.batch_norm_backward(DY4, X4, RM, RV, W8, B8, False)
    _assert_same(_bn_bwd(BN_EVAL, training=False, rm=RM, rv=RV), want, "bn eval")
    st = refnorm.ops.instance_norm.instance_norm_stats(X4, RM, RV, W8, B8, False)[1]
    assert st["mean"].shape == (8,)
    _assert_same(refnorm.instance_norm_backward(DY4, X4, RM, RV, W8, B8, False, stats=st),
                 refnorm.instance_norm_backward(DY4, X4, RM, RV, W8, B8, False), "in running")


# ----------------------------------------------------------------------------- the API


@pytest.mark.parametrize("op", OPS)
def test_stats_is_refnorms_own_keyword(op):
    spec = refnorm.registry()[op]
    params = inspect.signature(spec.backward).parameters
    p = params["stats"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None
    names = list(params)
    assert names[-1] == ("out" if op in STANDARD_OPS else "stats")
    assert "stats" not in protocol_parameters(spec.backward)
    assert "stats" not in inspect.signature(spec.forward).parameters
    assert "stats" not in inspect.signature(spec.forward_with_stats).parameters


def test_stats_dict_has_the_protocol_keys_only():
    assert list(LN) == ["mean", "rstd"] and list(RMS) == ["rstd"]
    assert isinstance(LN, dict) and dict(LN).keys() == {"mean", "rstd"}
    assert LN.fingerprint == {"op": "layer_norm", "mode": "batch statistics", "shape": (1, 7, 12), "eps": 1e-5}


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("band_rows", [1, 3, 8, 13])
def test_banded_saved_stats_backward_has_the_bits_of_one_pass(monkeypatch, op, band_rows):
    """With saved statistics the LayerNorm/RMSNorm backward also runs in bands
    of rows (the affine sums carrying over): the bits do not depend on the band."""
    from refnorm.ops import _normalize

    rng = np.random.default_rng(17)
    x = noncentred(rng, (2, 29, 24))
    dy = rng.standard_normal(x.shape)
    w, b = random_affine(rng, (24,))
    args = (x, 24, w, b) if op == "layer_norm" else (x, 24, w)
    _, st = getattr(refnorm, f"{op}_stats")(*args)
    fn = getattr(refnorm, f"{op}_backward")
    monkeypatch.setattr(_normalize, "AFFINE_BAND_BYTES", 2**62)
    whole = fn(dy, *args)
    monkeypatch.setattr(_normalize, "AFFINE_BAND_BYTES", band_rows * 2 * 8 * 24)
    calls = []
    real = _kernels.backward_affine
    monkeypatch.setattr(_kernels, "backward_affine", lambda *a: calls.append(1) or real(*a))
    _assert_same(fn(dy, *args, stats=st), whole, f"{op} band {band_rows}")
    assert len(calls) == -(-58 // band_rows), "the saved-statistics backward runs in bands"

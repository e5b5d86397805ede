"""The mutants: each loads, speaks the protocol, and is visibly wrong on its DEMO_INPUT."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import refnorm
from refnorm._registry import protocol_parameters
from refnorm.conformance.mutants import MUTANTS, load_mutant

from ._protocol import flatten, ref

PROTOCOL_FUNCTIONS = (
    "batch_norm", "batch_norm_backward", "batch_norm_stats", "batch_norm_running_stats",
    "layer_norm", "layer_norm_backward", "layer_norm_stats",
    "instance_norm", "instance_norm_backward", "instance_norm_stats", "instance_norm_running_stats",
    "group_norm", "group_norm_backward", "group_norm_stats",
    "rms_norm", "rms_norm_backward", "rms_norm_stats",
)
# "far more than float32 rounding": float32 outputs are within ~1e-7 of refnorm (norm-wise).
FAR = 1e-4
ONLY_BY_PROPERTY = {"racy_reduction", "batch_variant"}


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
    assert ONLY_BY_PROPERTY <= set(MUTANTS)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_loads_and_speaks_the_protocol(name):
    m = load_mutant(name)
    assert m.BACKEND_INFO["name"] == name and m.BACKEND_INFO["description"]
    assert m.__doc__ and "Affects" in m.__doc__
    exposed = [f for f in PROTOCOL_FUNCTIONS if callable(getattr(m, f, None))]
    assert exposed
    for f in exposed:
        assert list(inspect.signature(getattr(m, f)).parameters) == list(protocol_parameters(ref(f))), f


@pytest.mark.parametrize("name", sorted(set(MUTANTS) - ONLY_BY_PROPERTY))
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
    from refnorm.conformance.backends import numpy32

    for name in sorted(set(MUTANTS) - ONLY_BY_PROPERTY):
        d = load_mutant(name).DEMO_INPUT
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
    from refnorm.conformance.backends import numpy32

    for name in ("racy_reduction", "batch_variant"):
        x, ns = load_mutant(name).DEMO_INPUT["args"][:2]
        full = np.asarray(numpy32.layer_norm(x, ns))
        assert np.array_equal(full, np.asarray(numpy32.layer_norm(x, ns)))
        assert np.array_equal(np.asarray(numpy32.layer_norm(x[:1], ns))[0], full[0])

"""layer_norm's own tests; its inputs for the cross-cutting tests are in
tests/ops/cases/layer_norm.py."""

from __future__ import annotations

import numpy as np

import refnorm


def test_large_offset_rows_are_accurate_in_float64():
    """E1: rows of 1e4 + 0.01 z.  x - 1e4 is exact (Sterbenz), and LayerNorm is
    shift-invariant, so NumPy's plain float64 LayerNorm of x - 1e4 (a
    well-conditioned problem) is an independent near-exact reference.  A
    float64 kernel with plain sums is ~1e-11 off here; refnorm must be at the
    level of the well-conditioned computation."""
    rng = np.random.default_rng(2)
    x = 1e4 + 1e-2 * rng.standard_normal((8, 4096))
    xs = x - 1e4
    mu = xs.mean(axis=1, keepdims=True)
    ref = (xs - mu) / np.sqrt(((xs - mu) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    y = refnorm.layer_norm(x, (4096,))
    assert np.max(np.abs(y - ref)) < 1e-14 * np.max(np.abs(ref))
    _, st = refnorm.registry()["layer_norm"].forward_with_stats(x, (4096,))
    np.testing.assert_allclose(st["mean"], 1e4 + mu[:, 0], rtol=2e-16, atol=0)

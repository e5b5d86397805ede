"""group_norm's own tests; its inputs for the cross-cutting tests are in
tests/ops/cases/group_norm.py."""

from __future__ import annotations

import numpy as np

import refnorm

from .._util import noncentred, random_affine


def test_group_norm_equivalences():
    """E22: GN(G=C) == IN; GN(G=1, no affine) == LN over (C, *spatial); per-channel affine."""
    rng = np.random.default_rng(7)
    x = noncentred(rng, (3, 6, 4, 5))
    w, b = random_affine(rng, (6,))
    assert np.array_equal(refnorm.group_norm(x, 6, w, b), refnorm.instance_norm(x, weight=w, bias=b))
    assert np.array_equal(refnorm.group_norm(x, 1), refnorm.layer_norm(x, (6, 4, 5)))

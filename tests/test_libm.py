"""The corpus's transcendental functions are the C library's, element by element."""

import math
import pathlib
import re

import numpy as np

import refnorm
from refnorm import _libm


def test_exp_is_math_exp_bit_for_bit():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0, 20, 500), [0.0, -0.0, 709.0, -745.0, np.inf, -np.inf, np.nan]])
    got = _libm.exp(v)
    want = np.array([math.exp(t) if not math.isinf(t) or t < 0 else math.inf for t in v.tolist()])
    assert got.dtype == np.float64 and got.shape == v.shape
    assert np.array_equal(got.view(np.uint64)[:-1], want.view(np.uint64)[:-1])
    assert np.isnan(got[-1])


def test_exp_keeps_shapes_and_empty_arrays():
    assert _libm.exp(np.zeros((0, 3))).shape == (0, 3)
    assert _libm.exp(np.zeros((2, 3))).shape == (2, 3)


def test_the_golden_package_uses_no_simd_dispatched_transcendental():
    """NumPy's exp/log/tanh/... differ in the last bit between CPU kinds (AVX-512 vs
    AVX2); the corpus must regenerate bit for bit anywhere, so the golden package
    goes through refnorm._libm instead."""
    golden = pathlib.Path(refnorm.__file__).parent / "golden"
    pattern = re.compile(r"\bnp\.(exp|expm1|exp2|log|log1p|log2|log10|tanh|sinh|cosh|sin|cos|tan|arctan|"
                         r"power|logaddexp|cbrt)\(")
    hits = [f"{p.name}:{i}" for p in sorted(golden.glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []

"""Shared test helpers: case generation for every registered op, and an
assertion whose message names the op, the case, the array, the worst error,
its index and a one-line repro."""

from __future__ import annotations

import numpy as np

import refnorm
from refnorm.ops.rms_norm import default_eps

from ._tolerances import TOLERANCES


def noncentred(rng, shape, loc=-2.3, scale=0.5):
    """Non-centred data: a backward that forgets the mean term fails on it."""
    return loc + scale * rng.standard_normal(shape)


def random_affine(rng, shape):
    """Random, non-uniform weight: with uniform weight a dx bug can hide."""
    return 1.0 + 0.5 * rng.standard_normal(shape), 0.3 * rng.standard_normal(shape)


def op_cases(op: str):
    """(case_id, kwargs) pairs covering the op's argument space on small,
    odd-sized, well-conditioned data with random weight/bias and running stats."""
    rng = np.random.default_rng(sum(map(ord, op)))  # a fixed seed per op
    out = []
    if op == "batch_norm":
        for shape in [(5, 3), (4, 3, 7), (2, 3, 3, 5), (2, 2, 3, 2, 3), (1, 3, 2)]:
            C = shape[1]
            for training in (True, False):
                for affine in (True, False):
                    w, b = random_affine(rng, (C,))
                    rm = 0.3 * rng.standard_normal(C) - 2.0
                    rv = 0.2 + rng.random(C)
                    kw = dict(x=noncentred(rng, shape), running_mean=rm, running_var=rv,
                              weight=w if affine else None, bias=b if affine else None,
                              training=training, momentum=0.1, eps=1e-5)
                    out.append((f"{shape}-train{training}-affine{affine}", kw))
        w, b = random_affine(rng, (3,))
        out.append(("train-no-running", dict(x=noncentred(rng, (6, 3, 2)), running_mean=None, running_var=None,
                                             weight=w, bias=b, training=True, momentum=0.1, eps=1e-3)))
        out.append(("weight-only", dict(x=noncentred(rng, (6, 3)), running_mean=None, running_var=None,
                                        weight=w, bias=None, training=True, momentum=0.1, eps=1e-5)))
    elif op == "layer_norm":
        for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (6,)), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5)),
                          ((5,), (5,)), ((3, 1), (1,)), ((2, 3, 1), (3, 1))]:
            for affine in ("both", "weight", "none"):
                w, b = random_affine(rng, ns)
                kw = dict(x=noncentred(rng, shape), normalized_shape=ns,
                          weight=None if affine == "none" else w, bias=b if affine == "both" else None,
                          eps=1e-5)
                out.append((f"{shape}-{ns}-{affine}", kw))
    elif op == "instance_norm":
        for shape in [(2, 3, 5), (3, 2, 3, 4), (1, 2, 2, 3, 2)]:
            C = shape[1]
            for uis in (True, False):
                for affine in (True, False):
                    w, b = random_affine(rng, (C,))
                    stats = uis is False or rng.random() < 0.5
                    kw = dict(x=noncentred(rng, shape),
                              running_mean=(0.3 * rng.standard_normal(C) - 2.0) if stats else None,
                              running_var=(0.2 + rng.random(C)) if stats else None,
                              weight=w if affine else None, bias=b if affine else None,
                              use_input_stats=uis, momentum=0.1, eps=1e-5)
                    out.append((f"{shape}-uis{uis}-affine{affine}", kw))
    elif op == "group_norm":
        for shape, G in [((2, 6, 5), 1), ((2, 6, 5), 6), ((2, 6, 5), 3), ((3, 4, 3, 3), 2), ((2, 6), 2),
                         ((1, 4, 2, 3, 2), 4), ((2, 3, 1), 3)]:
            C = shape[1]
            for affine in (True, False):
                w, b = random_affine(rng, (C,))
                kw = dict(x=noncentred(rng, shape), num_groups=G, weight=w if affine else None,
                          bias=b if affine else None, eps=1e-5)
                out.append((f"{shape}-G{G}-affine{affine}", kw))
    elif op == "rms_norm":
        for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5)), ((5,), (5,)),
                          ((3, 1), (1,))]:
            for affine in (True, False):
                w, _ = random_affine(rng, ns)
                for eps in (1e-6, None):
                    kw = dict(x=noncentred(rng, shape), normalized_shape=ns, weight=w if affine else None,
                              eps=eps)
                    out.append((f"{shape}-{ns}-affine{affine}-eps{eps}", kw))
    else:  # pragma: no cover - a registered op without cases must fail loudly
        raise AssertionError(f"tests/_util.op_cases has no cases for registered op {op!r}")
    return out


def reference_kwargs(op: str, kw: dict) -> dict:
    """The reference receives a resolved eps (RMSNorm's eps=None)."""
    kw = dict(kw)
    if op == "rms_norm" and kw.get("eps") is None:
        kw["eps"] = default_eps(np.asarray(kw["x"]).dtype)
    return kw


def random_dy(shape, seed=0):
    """A random cotangent: never ones_like (that makes dx vanish for BN/LN)."""
    return np.random.default_rng(seed).standard_normal(shape)


def gradient_scale(spec, kw, dy) -> float:
    """An upper magnitude of the terms of every gradient:
    ``max|dy| * max|weight| * max(rstd) * max(1, max|xhat|)`` and ``max|dy| * max|xhat|``."""
    _, stats = spec.forward_with_stats(**kw)
    rstd = float(np.nanmax(np.abs(stats["rstd"]))) if np.size(stats["rstd"]) else 1.0
    w = kw.get("weight")
    wmax = 1.0 if w is None else float(np.max(np.abs(w)))
    x = np.asarray(kw["x"], dtype=np.float64)
    xhat = float(np.max(np.abs(x))) * rstd + 1.0 if x.size else 1.0
    dmax = float(np.max(np.abs(dy))) if np.size(dy) else 0.0
    return dmax * max(wmax * rstd * xhat, xhat) * max(1, x.size)


def assert_close(actual, expected, tol_name: str, *, op: str, case: str, array: str, repro: str = "",
                 scale: float = 0.0):
    """Norm-wise relative check ``max|a - e| <= tol * max(max|e|, scale, tiny)``.

    ``scale`` is the magnitude of the terms the expected value is computed
    from, for outputs that can cancel to far below their terms (dx of a
    two-element set is ~eps/var times its terms)."""
    tol = TOLERANCES[tol_name][0]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{op}[{case}] {array}: shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return
    both_nan = np.isnan(actual) & np.isnan(expected)
    err = np.where(both_nan, 0.0, np.abs(actual - expected))
    scale = max(float(np.nanmax(np.abs(expected))), scale, np.finfo(np.float64).tiny)
    worst = int(np.nanargmax(err)) if np.any(np.isfinite(err)) else 0
    rel = float(err.reshape(-1)[worst]) / scale
    if not (np.all(np.isfinite(err) | both_nan) and rel <= tol):
        idx = np.unravel_index(worst, expected.shape)
        raise AssertionError(
            f"{op}[{case}] {array}: worst error {err.reshape(-1)[worst]:.3e} = {rel:.3e} x max|expected| "
            f"at index {idx} (got {actual[idx]!r}, expected {expected[idx]!r}); tolerance {tol:.1e} "
            f"({TOLERANCES[tol_name][1]}){'; repro: ' + repro if repro else ''}")


__all__ = ["assert_close", "gradient_scale", "noncentred", "op_cases", "random_affine", "random_dy", "reference_kwargs", "refnorm"]

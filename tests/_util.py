"""Shared test helpers: data generators the case modules build on, the
registry battery's cases and per-op hooks looked up in tests/ops/cases/<op>.py
(:func:`op_cases`, :func:`reference_kwargs`, :func:`gradient_scale`), a
runnable repro of a battery case, and an assertion whose message names the op,
the case, the array, the worst error, its index and that repro."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import refnorm

from ._tolerances import TOLERANCES
from .ops import cases


def noncentred(rng, shape, loc=-2.3, scale=0.5):
    """Non-centred data: a backward that forgets the mean term fails on it."""
    return loc + scale * rng.standard_normal(shape)


def random_affine(rng, shape):
    """Random, non-uniform weight: with uniform weight a dx bug can hide."""
    return 1.0 + 0.5 * rng.standard_normal(shape), 0.3 * rng.standard_normal(shape)


def op_cases(op: str):
    """(case_id, kwargs) pairs of the registry battery for ``op``: ``battery(rng)``
    of tests/ops/cases/<op>.py, with a fixed seed per op ([] when there is none:
    tests/test_registry.py's completeness test says what is missing)."""
    battery = cases.get(op, "battery")
    return [] if battery is None else battery(np.random.default_rng(sum(map(ord, op))))


def case(op: str, cid: str) -> dict:
    """The kwargs of the battery case ``cid`` of ``op`` (for repros)."""
    found = dict(op_cases(op))
    if cid not in found:
        raise KeyError(f"{op} has no battery case {cid!r}; its cases: {', '.join(found)}")
    return found[cid]


def repro(op: str, cid: str, expr: str = "") -> str:
    """A command that reruns battery case ``cid`` of ``op`` from the repository root:
    the forward ``y``, then ``expr`` (it may use ``kw``, ``y``, ``dy = random_dy(y.shape, seed)``
    and ``refnorm``) is printed."""
    code = (f"import refnorm; from tests._util import case, random_dy; kw = case({op!r}, {cid!r}); "
            f"y = refnorm.{op}(**kw); print({expr or 'y'})")
    assert not set('"$`\\') & set(code), f"{op}[{cid}]: the repro cannot be quoted for a shell"
    return f'python -c "{code}"'


def reference_kwargs(op: str, kw: dict) -> dict:
    """The arguments the reference receives: the case module's
    ``reference_kwargs`` hook (RMSNorm resolves eps=None), else kw itself."""
    hook = cases.get(op, "reference_kwargs")
    return dict(kw) if hook is None else hook(kw)


def random_dy(shape, seed=0):
    """A random cotangent: never ones_like (that makes dx vanish for BN/LN)."""
    return np.random.default_rng(seed).standard_normal(shape)


def gradient_scale(spec, kw, dy, name: str = "x") -> float:
    """An upper magnitude of the terms the gradient of argument ``name`` is summed
    from (they can cancel far below that): the case module's ``gradient_scale``
    hook (the research layers, per argument), else :func:`standard_gradient_scale`."""
    hook = cases.get(spec.name, "gradient_scale")
    if hook is not None:
        return hook(spec, kw, np.asarray(dy, dtype=np.float64), name)
    return standard_gradient_scale(spec, kw, dy)


def standard_gradient_scale(spec, kw, dy) -> float:
    """The standard ops, every argument: ``max|dy| * max|weight| * max(rstd) *
    max(1, max|xhat|)`` and ``max|dy| * max|xhat|``, times the number of terms."""
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


__all__ = ["assert_close", "case", "gradient_scale", "noncentred", "op_cases", "random_affine", "random_dy",
           "reference_kwargs", "refnorm", "repro", "standard_gradient_scale", "corpus_subset"]


def corpus_subset(src, ids, dest):
    """A corpus directory ``dest`` holding the cases ``ids`` of the corpus ``src``
    (their files copied, the manifest restricted to them); returns ``dest``."""
    src, dest = Path(src), Path(dest)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest["cases"] = [c for c in manifest["cases"] if c["id"] in ids]
    for c in manifest["cases"]:
        (dest / c["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / c["file"], dest / c["file"])
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return dest

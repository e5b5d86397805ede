"""The built-in backends: loading, agreement with refnorm in every dtype, no input mutation."""

from __future__ import annotations

import inspect

import ml_dtypes
import numpy as np
import pytest

import refnorm
from refnorm._registry import protocol_parameters
from refnorm.conformance.backends import BUILTIN, load_backend

from ._protocol import flatten, ref

# Backend vs refnorm, norm-wise relative (max |err| / max |ref|): float64 ~ n*u; a half
# dtype = output rounding of that dtype (u = 2**-8 bf16, 2**-11 fp16, 2**-24 fp32) times a
# few units, more for gradients, which go through two roundings of intermediate results.
TOL = {"float64": 1e-12, "float32": 2e-6, "float16": 4e-3, "bfloat16": 3e-2}
DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _cases(dt, rng):
    """(function, args, kwargs) on small random, non-centred data, random weight and dy."""
    cast = lambda a: None if a is None else np.asarray(a).astype(dt)  # noqa: E731
    x = cast(-2.3 + 0.5 * rng.standard_normal((3, 6, 5)))
    x4 = cast(1.5 + 0.7 * rng.standard_normal((2, 6, 3, 2)))
    w5, b5 = cast(1 + 0.5 * rng.standard_normal(5)), cast(0.3 * rng.standard_normal(5))
    w6, b6 = cast(1 + 0.5 * rng.standard_normal(6)), cast(0.3 * rng.standard_normal(6))
    rm, rv = cast(rng.standard_normal(6)), cast(0.5 + rng.random(6))
    dy, dy4 = cast(rng.standard_normal(x.shape)), cast(rng.standard_normal(x4.shape))
    fwd = [
        ("layer_norm", (x, (5,), w5, b5), {}, dy),
        ("layer_norm", (x, (6, 5)), {"eps": 1e-3}, dy),
        ("rms_norm", (x, (5,), w5), {}, dy),
        ("rms_norm", (x4, (3, 2)), {"eps": 1e-4}, dy4),
        ("group_norm", (x4, 3, w6, b6), {}, dy4),
        ("group_norm", (x, 2), {}, dy),
        ("batch_norm", (x4, rm, rv, w6, b6, True), {}, dy4),
        ("batch_norm", (x4, rm, rv, w6, b6, False), {}, dy4),
        ("batch_norm", (x, None, None, w6, None, True), {}, dy),
        ("instance_norm", (x4, None, None, w6, b6, True), {}, dy4),
        ("instance_norm", (x4, rm, rv, w6, None, False), {}, dy4),
    ]
    out = []
    for name, args, kw, d in fwd:
        out.append((name, args, kw))
        out.append((f"{name}_backward", (d,) + args, kw))
        out.append((f"{name}_stats", args, kw))
    for conv, m in (("torch", 0.1), ("torch", None), ("onnx", 0.9), ("flax", 0.99)):
        out.append(("batch_norm_running_stats", (x4, rm, rv, m), {"num_batches_tracked": 4, "convention": conv}))
    out.append(("instance_norm_running_stats", (x4, rm, rv, 0.2), {}))
    return out


def _snapshot(args):
    return [None if not isinstance(a, np.ndarray) else (a.dtype, a.tobytes()) for a in args]


def _agree(backend, dtype_name, seed=0):
    rng = np.random.default_rng(seed)
    checked = 0
    for name, args, kw in _cases(DTYPES[dtype_name], rng):
        fn = getattr(backend, name, None)
        if fn is None:
            continue
        before = _snapshot(args)
        try:
            got = flatten(fn(*args, **kw))
        except NotImplementedError:
            continue
        assert _snapshot(args) == before, f"{backend.__name__}.{name} mutated an input"
        want = flatten(ref(name)(*args, **kw))
        assert set(want) <= set(got), f"{name}: missing outputs {set(want) - set(got)}"
        for k, w in want.items():
            g = got[k]
            assert g.shape == w.shape, f"{name}[{k}]: shape {g.shape} != {w.shape}"
            scale = max(float(np.max(np.abs(w))), 1e-30) if w.size else 1.0
            err = float(np.max(np.abs(g - w))) / scale if w.size else 0.0
            tol = TOL[dtype_name]
            if dtype_name in ("float16", "bfloat16") and name.endswith("_stats"):
                tol = TOL[dtype_name]  # torch saves half-type statistics in the input dtype
            assert err <= tol, (f"{backend.__name__}.{name}({dtype_name})[{k}]: rel err {err:.3g} > {tol:.3g}; "
                                f"args shapes {[np.shape(a) for a in args]} kw {kw}")
        checked += 1
    return checked


# ----------------------------------------------------------------------------- load_backend
def test_load_builtin_by_name():
    assert load_backend("refnorm") is refnorm
    nb = load_backend("numpy32")
    assert nb.BACKEND_INFO["name"] == "numpy32"
    assert set(BUILTIN) == {"refnorm", "torch", "jax", "numpy32", "torch-fwfw", "keras", "keras-jax",
                            "onnx", "onnx-function", "onnxruntime"}


def test_load_by_module_path():
    mod = load_backend("refnorm.conformance.backends.numpy32")
    assert mod is load_backend("numpy32")


def test_load_mutant_spec():
    mod = load_backend("mutant:dbias_mean")
    assert mod.BACKEND_INFO["name"] == "dbias_mean"


def test_load_by_file_path(tmp_path):
    p = tmp_path / "my_backend.py"
    p.write_text("BACKEND_INFO = {'name': 'mine', 'description': 'test'}\n"
                 "import refnorm\nlayer_norm = refnorm.layer_norm\n")
    a = load_backend(str(p))
    b = load_backend(str(p))
    assert a.BACKEND_INFO["name"] == "mine" and a is not b and a.__name__ != b.__name__
    assert callable(a.layer_norm)


@pytest.mark.parametrize("spec", ["no_such_backend", "refnorm.no.such.module", "/no/such/file.py", ""])
def test_load_errors(spec):
    with pytest.raises(ValueError):
        load_backend(spec)


def test_load_unknown_mutant():
    with pytest.raises(ValueError, match="unknown mutant"):
        load_backend("mutant:nope")


def test_missing_extra_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("No module named 'jax'")
        return real_import(name, *a, **k)

    import sys

    monkeypatch.delitem(sys.modules, "refnorm.conformance.backends.jax", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install jax flax"):
        load_backend("jax")


# ----------------------------------------------------------------------------- agreement
def _signature_matches(backend):
    for name in dir(backend):
        mine = getattr(refnorm, name, None) if not name.endswith("_stats") else ref(name)
        fn = getattr(backend, name)
        if mine is None or not callable(fn) or name.startswith("_") or not callable(mine):
            continue
        if name in ("OpSpec", "registry"):
            continue
        assert list(inspect.signature(fn).parameters) == list(protocol_parameters(mine)), name


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_numpy32_agrees(dtype_name):
    backend = load_backend("numpy32")
    assert _agree(backend, dtype_name) >= 35


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_torch_agrees(dtype_name):
    pytest.importorskip("torch")
    backend = load_backend("torch")
    assert _agree(backend, dtype_name) >= 25


@pytest.mark.parametrize("dtype_name", ["float64", "bfloat16"])  # each jax call compiles: keep it short
def test_jax_agrees(dtype_name):
    pytest.importorskip("jax", reason="jax is not installed")
    pytest.importorskip("flax", reason="flax is not installed (the jax backend needs flax.linen)")
    backend = load_backend("jax")
    assert _agree(backend, dtype_name) >= 35


@pytest.mark.parametrize("name", ["numpy32", "torch", "jax", "torch-fwfw"])
def test_signatures(name):
    if name == "torch":
        pytest.importorskip("torch")
    if name == "jax":
        pytest.importorskip("jax")
        pytest.importorskip("flax")
    backend = load_backend(name)
    assert backend.BACKEND_INFO["name"] == name
    _signature_matches(backend)


def test_torch_unsupported_convention_is_not_implemented():
    pytest.importorskip("torch")
    backend = load_backend("torch")
    x = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(NotImplementedError):
        backend.batch_norm_running_stats(x, np.zeros(3), np.ones(3), 0.9, convention="onnx")

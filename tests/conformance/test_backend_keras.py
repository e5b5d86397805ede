"""The Keras 3 backends ``keras`` (numpy backend) and ``keras-jax`` (jax backend).

Keras picks its backend once per process, so everything that imports Keras runs in a
subprocess (``python -m refnorm.cli check ... --json``, or a probe script); this pytest
process never imports Keras.  Three parts:

* the bounded CI subset of each backend, with the shipped xfail file: 0 failed, 0 xpassed;
* the findings of docs/findings/keras.md, each pinned so that the test fails when Keras
  changes the behaviour (the expected values are refnorm's, computed in the probe);
* the install hint when Keras is missing, and the one-backend-per-process error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refnorm.conformance import backends
from refnorm.conformance.backends import BUILTIN, BackendLoadError, load_backend

REPO = Path(__file__).resolve().parents[2]

# the CI subsets (the full runs: refnorm check --backend keras / --backend keras-jax)
SUBSETS = {
    "keras": ["--ops", "layer_norm", "batch_norm", "group_norm", "--dtypes", "float64", "float32"],
    "keras-jax": ["--ops", "rms_norm", "--dtypes", "float32"],  # ~30 s: jax compiles every op for every shape
}
MIN_PASSED = {"keras": 150, "keras-jax": 30}


def _have(*modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_keras = pytest.mark.skipif(not _have("keras"), reason="keras is not installed (pip install 'refnorm[keras]')")
needs_keras_jax = pytest.mark.skipif(not _have("keras", "jax"), reason="keras and jax are not installed")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("KERAS_BACKEND", None)  # the backends set it themselves
    return env


def _run(args, tmp_path, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------- the CI subsets
@pytest.mark.parametrize("name", [pytest.param("keras", marks=needs_keras),
                                  pytest.param("keras-jax", marks=needs_keras_jax)])
def test_ci_subset_with_shipped_xfails(name, tmp_path):
    out = tmp_path / "report.json"
    proc = _run(["-m", "refnorm.cli", "check", "--backend", name, *SUBSETS[name], "--json", str(out), "--quiet"],
                tmp_path)
    assert out.exists(), proc.stderr[-2000:]
    report = json.loads(out.read_text())
    counts = report["counts"]
    unexpected = [f"{o['case_id']}::{o['function']}: {o['message'][:200]}" for o in report["outcomes"]
                  if o["status"] in ("failed", "xpassed")]
    assert counts["failed"] == 0 and counts["xpassed"] == 0, unexpected
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert counts["passed"] >= MIN_PASSED[name] and counts["xfailed"] >= 1, counts


# ----------------------------------------------------------------------------- the findings
PROBE = textwrap.dedent('''
    import json, os, sys, warnings
    backend = sys.argv[1]
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    import numpy as np, keras, refnorm

    rng = np.random.default_rng(0)
    out = {}
    # one-pass variance: x = 1e4 + 1e-2 z in float32
    x = (1e4 + 1e-2 * rng.standard_normal((4, 1024))).astype(np.float32)
    y = np.asarray(keras.layers.LayerNormalization(epsilon=1e-5)(x), np.float64)
    ref = refnorm.layer_norm(x, (1024,), eps=1e-5).astype(np.float64)
    out["ln_nan"] = int(np.isnan(y).sum())
    out["ln_err"] = float(np.nanmax(np.abs(y - ref)))
    _, var = keras.ops.moments(keras.ops.convert_to_tensor(x), axes=[1])
    _, st = refnorm.layer_norm_stats(x, (1024,), eps=0.0)
    out["var_rel_err"] = float(np.max(np.abs(np.asarray(var, np.float64) * st["rstd"] ** 2 - 1)))
    xb = (1e4 + 1e-2 * rng.standard_normal((64, 4))).astype(np.float32)
    bn = keras.layers.BatchNormalization(axis=1, momentum=0.99, epsilon=1e-5)
    bn(xb, training=True)
    _, rv = refnorm.batch_norm_running_stats(xb, np.zeros(4), np.ones(4), 0.99, convention="flax")
    out["moving_var_rel_err"] = float(np.max(np.abs(np.asarray(bn.moving_variance.value, np.float64) / rv - 1)))
    # float64 layers compute in float32
    x64, w64, b64 = rng.standard_normal((8, 768)), rng.standard_normal(768), rng.standard_normal(768)
    layers = {}
    for dt in ("float64", "float32"):
        layer = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dt)
        layer.build(x64.shape)
        layer.gamma.assign(w64.astype(dt))
        layer.beta.assign(b64.astype(dt))
        layers[dt] = np.asarray(layer(x64.astype(dt)))
    r64 = refnorm.layer_norm(x64, (768,), w64, b64, 1e-5)
    out["f64_dtype"] = str(layers["float64"].dtype)
    out["f64_rel_err"] = float(np.max(np.abs(layers["float64"] - r64) / np.maximum(np.abs(r64), 1)))
    out["f64_is_f32"] = bool(np.array_equal(layers["float64"], layers["float32"].astype(np.float64)))
    # LayerNormalization(rms_scaling=True) divides x by the centred standard deviation
    xr = (1.0 + rng.standard_normal((8, 64))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yr = np.asarray(keras.layers.LayerNormalization(epsilon=1e-6, rms_scaling=True)(xr), np.float64)
    rms = refnorm.rms_norm(xr, (64,), eps=1e-6).astype(np.float64)
    _, lst = refnorm.layer_norm_stats(xr, (64,), eps=1e-6)
    out["rms_scaling_vs_rms_norm"] = float(np.max(np.abs(yr - rms) / np.abs(rms)))
    out["rms_scaling_vs_x_rstd"] = float(np.max(np.abs(yr - xr * lst["rstd"][:, None]) / np.abs(yr)))
    print(json.dumps(out))
''')


def _probe(backend, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = _run([str(script), backend], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def numpy_probe(tmp_path_factory):
    if not _have("keras"):
        pytest.skip("keras is not installed")
    return _probe("numpy", tmp_path_factory.mktemp("probe_numpy"))


@pytest.fixture(scope="module")
def jax_probe(tmp_path_factory):
    if not _have("keras", "jax"):
        pytest.skip("keras and jax are not installed")
    return _probe("jax", tmp_path_factory.mktemp("probe_jax"))


def test_numpy_one_pass_moments(numpy_probe):
    """K1: Keras's numpy moments (E[x^2] - E[x]^2 in float32) on mean 1e4, std 1e-2 data:
    NaN outputs, a variance off by orders of magnitude, wrong moving variances."""
    assert numpy_probe["ln_nan"] > 0
    assert numpy_probe["var_rel_err"] > 1.0
    assert numpy_probe["moving_var_rel_err"] > 0.1


def test_jax_moments_are_two_pass(jax_probe):
    """The jax backend's moments (jnp.var, two-pass) on the same data: no NaN; what is left is the
    float32 rounding of a mean 1e6 standard deviations from 0 (~0.1 in y)."""
    assert jax_probe["ln_nan"] == 0 and jax_probe["ln_err"] < 0.25
    assert jax_probe["var_rel_err"] < 1e-2 and jax_probe["moving_var_rel_err"] < 1e-6


@pytest.mark.parametrize("probe", ["numpy_probe", "jax_probe"])
def test_float64_layer_computes_in_float32(probe, request):
    """K2: a float64 LayerNormalization returns float64 arrays holding exactly the float32 layer's values."""
    result = request.getfixturevalue(probe)
    assert result["f64_dtype"] == "float64"
    assert result["f64_is_f32"]
    assert 1e-9 < result["f64_rel_err"] < 1e-5  # float32 rounding, not float64's 1e-16, and not a wrong formula


@pytest.mark.parametrize("probe", ["numpy_probe", "jax_probe"])
def test_rms_scaling_is_not_rms_norm(probe, request):
    """K5: LayerNormalization(rms_scaling=True) is x / sqrt(var(x) + eps) * gamma, not RMSNorm."""
    result = request.getfixturevalue(probe)
    assert result["rms_scaling_vs_x_rstd"] < 1e-5
    assert result["rms_scaling_vs_rms_norm"] > 0.05


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name, missing", [("keras", ["keras"]), ("keras-jax", ["keras"]), ("keras-jax", ["jax"])])
def test_missing_framework_names_the_extra(monkeypatch, name, missing):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    for pkg in missing:
        monkeypatch.setitem(sys.modules, pkg, None)  # "import <pkg>" raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, BUILTIN[name], raising=False)
    with pytest.raises(BackendLoadError) as info:
        load_backend(name)
    msg = str(info.value)
    where = Path(backends.__file__).parent / f"{BUILTIN[name].rsplit('.', 1)[1]}.py"
    assert msg.startswith(f"cannot load backend {name!r} from {where}: ") and "\n" not in msg
    assert "install it with: pip install 'refnorm[keras]'" in msg and "keras==3.15.1" in msg
    assert "KERAS_BACKEND" not in os.environ  # a failed import leaves the environment as it was


@needs_keras_jax
def test_one_keras_backend_per_process(tmp_path):
    script = tmp_path / "both.py"
    script.write_text(textwrap.dedent('''
        from refnorm.conformance.backends import BackendLoadError, load_backend
        assert load_backend("keras").BACKEND_INFO["name"] == "keras"
        try:
            load_backend("keras-jax")
        except BackendLoadError as exc:
            print(exc)
    '''))
    proc = _run([str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip()
    assert line.startswith("cannot load backend 'keras-jax'") and "\n" not in line
    assert "keras is already imported with backend 'numpy' in this process" in line
    assert "--backend keras-jax" in line


def test_signatures_without_importing_keras():
    """The protocol functions' signatures, read from the source (importing would import Keras)."""
    import ast

    import refnorm
    from refnorm._registry import protocol_parameters

    folder = Path(backends.__file__).parent
    seen = 0
    for fname in ("_keras.py", "keras_numpy.py", "keras_jax.py"):
        tree = ast.parse((folder / fname).read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                mine = getattr(refnorm, node.name, None)
                if mine is None or not callable(mine):
                    continue
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                assert names == list(protocol_parameters(mine)), (fname, node.name)
                seen += 1
    assert seen >= 30

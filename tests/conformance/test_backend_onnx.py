"""The ONNX backends (onnx, onnx-function, onnxruntime): a bounded CI subset of the corpus with the
shipped xfail files, a test pinning each finding of docs/findings/onnx.md (each fails once the
framework changes its behaviour, so the finding and its xfail rules can be revisited), and the
install hint when the packages are missing.  The full runs are one command each:
``refnorm check --backend onnx`` (``onnx-function``, ``onnxruntime``)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

import refnorm
from refnorm._registry import protocol_parameters
from refnorm.conformance import backends
from refnorm.conformance.backends import BUILTIN, BackendLoadError, load_backend
from refnorm.conformance.cli_check import default_xfails
from refnorm.conformance.harness import check, read_xfails

from ._protocol import ref

onnx = pytest.importorskip("onnx")
oh = pytest.importorskip("onnx.helper")
from onnx import TensorProto as TP  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

# ----------------------------------------------------------------------------- the CI subset
SUBSETS = {
    "onnx": dict(ops=["layer_norm", "batch_norm", "local_response_norm"], dtypes=["float32", "float64"]),
    "onnx-function": dict(ops=["layer_norm", "group_norm"], dtypes=["float32", "float64"]),
    "onnxruntime": dict(ops=["layer_norm", "batch_norm", "add_layer_norm"], dtypes=["float32", "float64"]),
}


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_shipped_xfails_on_a_subset(name):
    if name == "onnxruntime":
        pytest.importorskip("onnxruntime")
    report = check(load_backend(name), xfails=read_xfails(default_xfails(name)), **SUBSETS[name])
    assert report.ok, [f"{o.case_id}::{o.function}: {o.message}" for o in report.unexpected]
    counts = report.counts()
    assert counts["passed"] >= 30 and counts["xfailed"] >= 1, counts


@pytest.mark.parametrize("name", ["onnx", "onnx-function", "onnxruntime"])
def test_signatures_and_info(name):
    if name == "onnxruntime":
        pytest.importorskip("onnxruntime")
    backend = load_backend(name)
    assert backend.BACKEND_INFO["name"] == name
    fns = [n for n in dir(backend) if not n.startswith("_") and callable(getattr(backend, n))
           and (hasattr(refnorm, n) or n.endswith("_stats"))]
    assert "layer_norm" in fns and not any(n.endswith("_backward") for n in fns)
    for n in fns:
        assert list(inspect.signature(getattr(backend, n)).parameters) == list(protocol_parameters(ref(n))), n


# ----------------------------------------------------------------------------- helpers
def _model(op, inputs, outputs, opset, **attrs):
    """A one-node float64 model: ``inputs`` name -> shape, ``outputs`` name -> shape."""
    node = oh.make_node(op, list(inputs), list(outputs), **attrs)
    graph = oh.make_graph([node], op, [oh.make_tensor_value_info(n, TP.DOUBLE, s) for n, s in inputs.items()],
                          [oh.make_tensor_value_info(n, TP.DOUBLE, s) for n, s in outputs.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _bn_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = 2.0 + rng.standard_normal((4, 3, 5))
    return x, {"X": x, "s": np.ones(3), "b": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)}


# ----------------------------------------------------------------------------- the findings
def test_bn9_one_output_normalizes_with_the_updated_running_statistics():
    """BatchNormalization-9 with one output is test mode (the output count selects the mode), so Y
    must use input_mean/input_var; onnx 1.23.2 normalizes with momentum-updated statistics (PR #8442)."""
    x, feeds = _bn_inputs()
    model = _model("BatchNormalization", {k: v.shape for k, v in feeds.items()}, {"Y": x.shape}, 9,
                   epsilon=1e-5, momentum=0.9)
    y = ReferenceEvaluator(model).run(None, feeds)[0]
    want = refnorm.batch_norm(x, np.zeros(3), np.ones(3), None, None, False, 0.1, 1e-5)  # test mode
    assert np.abs(y - want).max() > 0.1
    # what it computes: the ONNX-convention update of the running statistics (momentum and epsilon are
    # float32 attributes), then test mode with the updated statistics
    m, eps = float(np.float32(0.9)), float(np.float32(1e-5))
    upd_mean = m * 0.0 + (1 - m) * x.mean((0, 2))
    upd_var = m * 1.0 + (1 - m) * x.var((0, 2))
    np.testing.assert_allclose(y, refnorm.batch_norm(x, upd_mean, upd_var, None, None, False, 0.1, eps),
                               rtol=1e-12, atol=1e-12)


def test_bn7_one_output_crashes():
    x, feeds = _bn_inputs()
    model = _model("BatchNormalization", {k: v.shape for k, v in feeds.items()}, {"Y": x.shape}, 7,
                   epsilon=1e-5, momentum=0.9)
    with pytest.raises(TypeError, match="is a tuple"):
        ReferenceEvaluator(model).run(None, feeds)


def test_float_attributes_are_float32():
    """A float64 BatchNorm in eval mode is refnorm's with eps rounded to float32, not with eps = 1e-5."""
    x, _ = _bn_inputs(1)
    rm, rv = np.full(3, 2.0), np.full(3, 1e-4)
    y = load_backend("onnx").batch_norm(x, rm, rv, None, None, False, 0.1, 1e-5)
    rounded = refnorm.batch_norm(x, rm, rv, None, None, False, 0.1, float(np.float32(1e-5)))
    exact = refnorm.batch_norm(x, rm, rv, None, None, False, 0.1, 1e-5)
    assert np.abs(y - rounded).max() <= 4 * np.finfo(np.float64).eps * np.abs(rounded).max()
    assert np.abs(y - exact).max() > 1e-10 * np.abs(exact).max()


def _ill_conditioned(dtype):
    z = np.random.default_rng(2).standard_normal((4, 4096))
    return (1000.0 + 0.01 * z).astype(dtype)


def test_function_body_one_pass_variance():
    """LayerNormalization-17's function body (Var = E[x^2] - E[x]^2 in the float32 stash) on rows with
    mean 1000 and std 0.01: NaN or O(1) errors, where the kernel path stays within 1e-2."""
    x = _ill_conditioned(np.float32)
    want = refnorm.layer_norm(x, (4096,))
    body = load_backend("onnx-function").layer_norm(x, (4096,))
    kernel = load_backend("onnx").layer_norm(x, (4096,))
    err_body = np.abs(np.nan_to_num(body.astype(np.float64), nan=np.inf) - want).max()
    assert err_body > 0.5
    assert np.abs(kernel - want).max() < 1e-2


def test_function_body_float64_is_computed_in_float32():
    x = np.random.default_rng(3).standard_normal((8, 64)) + 3.0
    want = refnorm.layer_norm(x, (64,))
    body = load_backend("onnx-function").layer_norm(x, (64,))
    kernel = load_backend("onnx").layer_norm(x, (64,))
    assert body.dtype == np.float64
    assert 1e-8 < np.abs(body - want).max() < 1e-5  # float32 accuracy
    assert np.abs(kernel - want).max() < 1e-11  # the kernel path is float64


def test_reference_kernels_ignore_the_float32_stash_for_float16():
    """RMSNormalization([[256, 256]]) with eps = 0: 256^2 overflows float16; with stash_type=1 the
    result is 1 (onnx PR #8439 describes the same overflow)."""
    x = np.full((1, 2), 256.0, np.float16)
    y = load_backend("onnx").rms_norm(x, (2,), None, 0.0)
    assert refnorm.rms_norm(x, (2,), None, 0.0).tolist() == [[1.0, 1.0]]
    assert y.tolist() == [[0.0, 0.0]]


def test_lrn_reference_loops_over_the_batch():
    """op_lrn.py iterates over x.shape[0]: with N = 1 only channel 0 is normalized (onnx/onnx#7805)."""
    x = np.random.default_rng(4).standard_normal((1, 5, 2, 2)) * 10
    y = load_backend("onnx").local_response_norm(x, 3, 3.0, 0.75, 2.0)
    want = refnorm.local_response_norm(x, 3, 3.0, 0.75, 2.0)
    np.testing.assert_allclose(y[:, 0], want[:, 0], rtol=1e-12)  # alpha / size = 1: exact in float32
    np.testing.assert_allclose(y[:, 1:], x[:, 1:] / 2.0 ** 0.75, rtol=1e-12)  # square_sum left at 0
    assert np.abs(y[:, 1:] - want[:, 1:]).max() > 1.0


def test_ort_layer_norm_float64_statistics_are_float32():
    pytest.importorskip("onnxruntime")
    x = np.random.default_rng(5).standard_normal((3, 16))
    y, st = load_backend("onnxruntime").layer_norm_stats(x, (16,))
    assert y.dtype == np.float64 and st["mean"].dtype == np.float32 and st["rstd"].dtype == np.float32


def test_ort_group_norm_runs_the_function_body():
    """ORT 1.32 has no CPU GroupNormalization-21 kernel: its result is the function body's (float32 stash,
    one-pass), bit for bit the same as the reference evaluator's expansion up to float32 rounding."""
    pytest.importorskip("onnxruntime")
    x = _ill_conditioned(np.float64).reshape(2, 4, 2048)[:, :, :64].copy()
    want = refnorm.group_norm(x, 2)
    ort_y = load_backend("onnxruntime").group_norm(x, 2)
    body = load_backend("onnx-function").group_norm(x, 2)
    assert np.abs(np.nan_to_num(ort_y, nan=np.inf) - want).max() > 1e-3
    assert np.abs(np.nan_to_num(body, nan=np.inf) - want).max() > 1e-3


def test_not_implemented_is_not_a_failure():
    backend = load_backend("onnx")
    x = np.random.default_rng(6).standard_normal((2, 4, 3, 3))
    with pytest.raises(NotImplementedError, match="even size"):
        backend.local_response_norm(x, 4)
    with pytest.raises(NotImplementedError, match="'torch'"):
        backend.batch_norm_running_stats(x, np.zeros(4), np.ones(4), 0.1, convention="torch")
    with pytest.raises(NotImplementedError, match="no function body"):
        load_backend("onnx-function")._ops.batch_norm(x, np.zeros(4), np.ones(4))


def test_running_stats_onnx_and_flax_conventions():
    x = np.random.default_rng(7).standard_normal((6, 3, 4))
    backend = load_backend("onnx")
    for conv, m in (("onnx", 0.5), ("flax", 0.75)):  # momenta exact in float32: no attribute rounding
        got = backend.batch_norm_running_stats(x, np.zeros(3), np.ones(3), m, convention=conv)
        want = refnorm.batch_norm_running_stats(x, np.zeros(3), np.ones(3), m, convention=conv)
        np.testing.assert_allclose(got, want, rtol=1e-14)


# ----------------------------------------------------------------------------- install hint
@pytest.mark.parametrize("name, missing", [("onnx", "onnx"), ("onnx-function", "onnx"),
                                           ("onnxruntime", "onnxruntime")])
def test_missing_package_names_the_extra(monkeypatch, name, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # "import <missing>" raises ModuleNotFoundError
    for mod in (BUILTIN[name], "refnorm.conformance.backends._onnx"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    with pytest.raises(BackendLoadError) as info:
        load_backend(name)
    msg = str(info.value)
    where = Path(backends.__file__).parent / (BUILTIN[name].rsplit(".", 1)[1] + ".py")
    assert msg.startswith(f"cannot load backend {name!r} from {where}: ") and "\n" not in msg
    assert "install it with: pip install 'refnorm[onnx]'" in msg

"""Bad input gets a clear ValueError/TypeError naming the argument, raised
before any kernel runs (every kernel is replaced by a tripwire here)."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm
from refnorm.ops import _kernels

X4 = np.random.default_rng(0).standard_normal((2, 6, 3, 3))
X2 = np.random.default_rng(1).standard_normal((4, 5))
C6 = np.ones(6)


@pytest.fixture(autouse=True)
def kernels_must_not_run(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before the arguments were validated")

    for name in ("moments", "forward", "backward_input", "backward_affine", "rstd_of_var", "divide_m2"):
        monkeypatch.setattr(_kernels, name, tripwire)


CASES = [
    # (id, callable, exception type, substring of the message)
    ("gn-groups-not-dividing", lambda: refnorm.group_norm(X4, 4), ValueError, "num_groups must divide"),
    ("gn-groups-zero", lambda: refnorm.group_norm(X4, 0), ValueError, "num_groups must be >= 1"),
    ("gn-groups-float", lambda: refnorm.group_norm(X4, 2.0), TypeError, "num_groups must be an int"),
    ("gn-weight-shape", lambda: refnorm.group_norm(X4, 2, np.ones(3)), ValueError, "weight must have shape (6,)"),
    ("gn-bias-shape", lambda: refnorm.group_norm(X4, 2, C6, np.ones((6, 1))), ValueError, "bias must have shape"),
    ("gn-1d", lambda: refnorm.group_norm(np.ones(6), 2), ValueError, "x must have at least 2 dimensions"),
    ("ln-shape-mismatch", lambda: refnorm.layer_norm(X2, (4,)), ValueError, "trailing dimensions of x"),
    ("ln-shape-too-long", lambda: refnorm.layer_norm(X2, (3, 4, 5)), ValueError, "trailing dimensions"),
    ("ln-shape-empty", lambda: refnorm.layer_norm(X2, ()), ValueError, "at least one dimension"),
    ("ln-shape-type", lambda: refnorm.layer_norm(X2, "5"), TypeError, "normalized_shape must be"),
    ("ln-shape-float", lambda: refnorm.layer_norm(X2, (5.0,)), TypeError, "normalized_shape must be"),
    ("ln-weight-shape", lambda: refnorm.layer_norm(X2, (5,), np.ones(4)), ValueError, "weight must have shape (5,)"),
    ("ln-0d", lambda: refnorm.layer_norm(np.float64(1.0), (1,)), ValueError, "at least 1 dimensions"),
    ("rms-weight-shape", lambda: refnorm.rms_norm(X2, 5, np.ones((1, 5))), ValueError, "weight must have shape"),
    ("rms-eps-str", lambda: refnorm.rms_norm(X2, 5, eps="1e-6"), TypeError, "eps must be a real number"),
    ("bn-train-one-value", lambda: refnorm.batch_norm(np.ones((1, 3)), None, None, training=True), ValueError,
     "more than 1 value per channel"),
    ("bn-train-one-value-4d", lambda: refnorm.batch_norm(np.ones((1, 3, 1, 1)), None, None, training=True),
     ValueError, "more than 1 value per channel"),
    ("bn-eval-no-running", lambda: refnorm.batch_norm(X4, None, None), ValueError,
     "running_mean and running_var are required when training=False"),
    ("bn-running-one-only", lambda: refnorm.batch_norm(X4, C6, None, training=True), ValueError, "together"),
    ("bn-running-shape", lambda: refnorm.batch_norm(X4, np.ones(5), np.ones(5)), ValueError,
     "running_mean must have shape (6,)"),
    ("bn-1d", lambda: refnorm.batch_norm(np.ones(6), C6, C6), ValueError, "at least 2 dimensions"),
    ("bn-training-int", lambda: refnorm.batch_norm(X4, C6, C6, training=1), TypeError, "training must be a bool"),
    ("bn-eps-nan", lambda: refnorm.batch_norm(X4, C6, C6, eps=float("nan")), ValueError, "eps must not be NaN"),
    ("bn-rs-momentum-none", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None), ValueError,
     "num_batches_tracked is required"),
    ("bn-rs-convention", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, convention="keras"), ValueError,
     "convention must be one of"),
    ("bn-rs-none-onnx", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None, convention="onnx"), ValueError,
     "only in convention='torch'"),
    ("bn-rs-one-value", lambda: refnorm.batch_norm_running_stats(np.ones((1, 6)), C6, C6), ValueError,
     "more than 1 value per channel"),
    ("bn-rs-nbt-negative", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None, num_batches_tracked=-1),
     ValueError, "num_batches_tracked must be >= 0"),
    ("in-hw1", lambda: refnorm.instance_norm(np.ones((2, 3, 1))), ValueError, "more than 1 spatial element"),
    ("in-2d", lambda: refnorm.instance_norm(np.ones((2, 3))), ValueError, "more than 1 spatial element"),
    ("in-eval-no-running", lambda: refnorm.instance_norm(X4, use_input_stats=False), ValueError,
     "required when use_input_stats=False"),
    ("in-weight-shape", lambda: refnorm.instance_norm(X4, weight=np.ones(2)), ValueError, "weight must have shape"),
    ("in-rs-onnx", lambda: refnorm.instance_norm_running_stats(X4, C6, C6, convention="onnx"), ValueError,
     "only convention='torch'"),
    ("x-int", lambda: refnorm.layer_norm(np.ones((2, 3), dtype=np.int64), 3), TypeError,
     "x must have a real floating dtype"),
    ("x-complex", lambda: refnorm.rms_norm(np.ones((2, 3), dtype=complex), 3), TypeError, "real floating dtype"),
    ("x-object", lambda: refnorm.group_norm(np.array([[1.0, None]], dtype=object), 1), TypeError,
     "real floating dtype"),
    ("x-bool", lambda: refnorm.batch_norm(np.ones((2, 3), bool), None, None, training=True), TypeError,
     "real floating dtype"),
    ("x-none", lambda: refnorm.layer_norm(None, 3), TypeError, "x must be an array"),
    ("x-longdouble", lambda: refnorm.layer_norm(np.ones((2, 3), np.longdouble), 3), TypeError,
     "real floating dtype"),
    ("weight-int", lambda: refnorm.layer_norm(X2, 5, np.ones(5, int)), TypeError, "weight must have a real floating"),
    ("dy-shape", lambda: refnorm.layer_norm_backward(np.ones((4, 4)), X2, 5), ValueError,
     "dy must have the shape of the forward output (4, 5)"),
    ("dy-int", lambda: refnorm.group_norm_backward(np.ones(X4.shape, int), X4, 2), TypeError,
     "dy must have a real floating dtype"),
    ("dy-broadcastable", lambda: refnorm.batch_norm_backward(np.ones((1, 6, 3, 3)), X4, C6, C6), ValueError,
     "dy must have the shape"),
]


@pytest.mark.parametrize("cid,call,exc,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(cid, call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value), f"{cid}: message {str(info.value)!r} does not say {match!r}"


def test_every_public_function_has_error_coverage():
    """Each public forward/backward/running-stats function appears in CASES."""
    import inspect

    src = inspect.getsource(inspect.getmodule(test_bad_input_is_refused_clearly))
    for name in refnorm.__all__:
        if name in ("OpSpec", "__version__", "registry"):
            continue
        if name.endswith("_backward") or name.endswith("_running_stats"):
            assert f"refnorm.{name}(" in src or name in ("rms_norm_backward", "instance_norm_backward"), name
        else:
            assert f"refnorm.{name}(" in src, name

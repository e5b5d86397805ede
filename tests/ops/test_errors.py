"""Bad input gets a clear ValueError/TypeError naming the argument, raised
before any kernel runs (every kernel is replaced by a tripwire here)."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm
import refnorm.ops.batch_layer_norm as _bln
import refnorm.ops.gn_plus as _gnp
import refnorm.ops.proxy_norm as _pn
import refnorm.ops.weight_standardization as _ws
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
    # the seed layers' own kernels
    for mod, names in ((_pn, ("_proxy_points", "_forward", "_backward")),
                       (_gnp, ("_std_eps", "_normalize", "_norm_backward", "_mix_forward", "_mix_backward")),
                       (_ws, ("_scale", "_backward")), (_bln, ("_forward", "_branch_dx", "_affine"))):
        for name in names:
            monkeypatch.setattr(mod, name, tripwire)


C3 = np.ones(3)
X3 = np.random.default_rng(2).standard_normal((2, 3, 4))
W4 = np.random.default_rng(3).standard_normal((4, 3, 3, 3))
BS = {"batch_mean": np.zeros((1, 5)), "batch_var": np.ones((1, 5)), "feature_mean": np.zeros((4, 1)),
      "feature_var": np.ones((4, 1))}


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
    # --- the <op>_stats variants validate exactly as their forwards ---
    ("bn-stats-eval-no-running", lambda: refnorm.batch_norm_stats(X4, None, None), ValueError,
     "running_mean and running_var are required when training=False"),
    ("gn-stats-groups", lambda: refnorm.group_norm_stats(X4, 4), ValueError, "num_groups must divide"),
    ("in-stats-hw1", lambda: refnorm.instance_norm_stats(np.ones((2, 3, 1))), ValueError,
     "more than 1 spatial element"),
    ("ln-stats-shape", lambda: refnorm.layer_norm_stats(X2, (4,)), ValueError, "trailing dimensions of x"),
    ("rms-stats-eps", lambda: refnorm.rms_norm_stats(X2, 5, eps="1e-6"), TypeError, "eps must be a real number"),
    # --- the seed layers (their own test files hold the full lists) ---
    ("pn-activation", lambda: refnorm.proxy_norm(X3, C3, C3, C3, C3, "tanh"), ValueError,
     "activation must be one of"),
    ("pn-shift-shape", lambda: refnorm.proxy_norm(X3, C3, C3, np.ones(2), C3), ValueError,
     "proxy_shift must have shape (3,)"),
    ("pn-scale-none", lambda: refnorm.proxy_norm(X3, C3, C3, C3, None), TypeError, "proxy_scale must be an array"),
    ("pn-eps-negative", lambda: refnorm.proxy_norm(X3, C3, C3, C3, C3, eps=-1.0), ValueError, "eps must be >= 0"),
    ("pn-bwd-dy", lambda: refnorm.proxy_norm_backward(np.ones((2, 3)), X3, C3, C3, C3, C3), ValueError,
     "dy must have the shape"),
    ("pn-stats-k0", lambda: refnorm.proxy_norm_stats(X3, C3, C3, C3, C3, num_points=0), ValueError,
     "num_points must be >= 1"),
    ("pn-quantiles-float", lambda: refnorm.proxy_quantiles(2.5), TypeError, "num_points must be an int"),
    ("gnp-batch-of-one", lambda: refnorm.gn_plus(X4[:1], 2, C6, C6, np.ones(1)), ValueError,
     "needs a batch of N >= 2"),
    ("gnp-groups", lambda: refnorm.gn_plus(X4, 4, C6, C6, np.ones(1)), ValueError, "num_groups must divide"),
    ("gnp-variant", lambda: refnorm.gn_plus(X4, 2, C6, C6, np.ones(1), variant="bn"), ValueError,
     "variant must be one of"),
    ("gnp-batch-stats", lambda: refnorm.gn_plus(X4, 2, C6, C6, np.ones(1), batch_stats=0), TypeError,
     "batch_stats must be a str"),
    ("gnp-weight-none", lambda: refnorm.gn_plus(X4, 2, None, C6, np.ones(1)), TypeError, "weight must be an array"),
    ("gnp-bwd-mix-shape", lambda: refnorm.gn_plus_backward(np.ones(X4.shape), X4, 2, C6, C6, np.ones(2)),
     ValueError, "mix must have shape (1,) or ()"),
    ("ws-1d", lambda: refnorm.weight_standardization(np.ones(5)), ValueError,
     "weight must have at least 2 dimensions"),
    ("ws-style", lambda: refnorm.weight_standardization(W4, style="bit"), ValueError, "style must be one of"),
    ("ws-eps-negative", lambda: refnorm.weight_standardization(W4, eps=-1e-4), ValueError, "eps must be >= 0"),
    ("ws-unbiased-fan-in-1", lambda: refnorm.weight_standardization(np.ones((3, 1)), style="qiao"), ValueError,
     "needs fan_in"),
    ("ws-bwd-gain-shape", lambda: refnorm.weight_standardization_backward(np.ones(W4.shape), W4, np.ones(3)),
     ValueError, "gain must have shape (4,)"),
    ("ws-stats-estimator", lambda: refnorm.weight_standardization_stats(W4, estimator="welford"), ValueError,
     "estimator must be"),
    ("gain-unknown", lambda: refnorm.nonlinearity_gain("rellu"), ValueError, "name must be one of"),
    ("gain-source", lambda: refnorm.nonlinearity_gain("relu", "timm"), ValueError, "source must be"),
    ("gain-analytic-log-softmax", lambda: refnorm.analytic_gain("log_softmax"), ValueError, "no analytic gain"),
    ("bln-feature-axis-0", lambda: refnorm.batch_layer_norm(X2, None, None, feature_axis=0), ValueError,
     "feature_axis must not be the batch axis 0"),
    ("bln-infer-no-moving", lambda: refnorm.batch_layer_norm(X2, None, None, training=False), ValueError,
     "moving_stats is required"),
    ("bln-moving-shape", lambda: refnorm.batch_layer_norm(X2, None, None, training=False,
                                                          moving_stats={**BS, "batch_mean": np.zeros(5)}),
     ValueError, "moving_stats['batch_mean'] must have shape (1, 5)"),
    ("bln-flags", lambda: refnorm.batch_layer_norm(X2, None, None, flags=(True, True)), TypeError,
     "flags must be a tuple of 4 bools"),
    ("bln-weight-shape", lambda: refnorm.batch_layer_norm(X2, np.ones(4), None), ValueError,
     "weight must have shape (5,)"),
    ("bln-bwd-dy", lambda: refnorm.batch_layer_norm_backward(np.ones((5, 4)), X2, None, None), ValueError,
     "dy must have the shape"),
    ("bln-stats-batch-size", lambda: refnorm.batch_layer_norm_stats(X2, None, None, batch_size=0), ValueError,
     "batch_size must be >= 1"),
    ("bln-batch-stats-mode", lambda: refnorm.batch_layer_norm_batch_stats(X2, batch_stats="instance"), ValueError,
     "batch_stats must be 'position' or 'channel'"),
    ("bln-moving-steps", lambda: refnorm.batch_layer_norm_moving_stats(BS, 0, 8), ValueError,
     "steps must be >= 1"),
    ("bln-moving-batch-size", lambda: refnorm.batch_layer_norm_moving_stats(BS, 3, 1), ValueError,
     "batch_size must be >= 2"),
    ("bln-moving-keys", lambda: refnorm.batch_layer_norm_moving_stats({"batch_mean": 0.0}, 3, 8), ValueError,
     "sums must have exactly the keys"),
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

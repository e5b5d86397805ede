"""Bad input gets a clear ValueError/TypeError naming the argument, raised
before any kernel runs (every kernel is replaced by a tripwire here).

The cases: every registered op's ERRORS (tests/ops/cases/<op>.py, which also
lists the op's own kernels for the tripwire), and, here, the validation every
op shares (x, weight and dy dtypes and shapes) and the functions of no op (the
nonlinearity gains).  An op without cases fails
:func:`test_every_registered_op_has_error_cases`; a public function no case
calls fails :func:`test_every_public_function_has_error_coverage`."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm
from refnorm.ops import _derivatives, _kernels

from . import cases
from .cases import C6, X2, X4

#: the kernel entry points every op shares (refnorm/ops/_kernels.py)
SHARED_KERNELS = [(_kernels, ("moments", "forward", "normalize", "backward_sets", "backward_input", "backward_affine",
                              "rstd_of_var", "divide_m2")),
                  (_derivatives, ("jvp_sets", "double_backward_sets", "param_sums"))]


def _tripwire(*args, **kwargs):
    raise AssertionError("a kernel ran before the arguments were validated")


@pytest.fixture(autouse=True)
def kernels_must_not_run(monkeypatch):
    for op in refnorm.registry():
        for mod, names in SHARED_KERNELS + cases.get(op, "KERNELS", []):
            for name in names:
                monkeypatch.setattr(mod, name, _tripwire)


# the validation every op shares, on a few of them; the functions of no op
SHARED = [
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
    ("gain-unknown", lambda: refnorm.nonlinearity_gain("rellu"), ValueError, "name must be one of"),
    ("gain-source", lambda: refnorm.nonlinearity_gain("relu", "timm"), ValueError, "source must be"),
    ("gain-analytic-log-softmax", lambda: refnorm.analytic_gain("log_softmax"), ValueError, "no analytic gain"),
]



def _derivative_cases():
    """The forward-mode and second-order functions of every op, on its first
    battery case: a tangents/cotangents dict with an unknown key, of the wrong
    kind, with a wrong shape, and a cotangent ``dy`` of the wrong shape."""
    out = []
    for op, spec in refnorm.registry().items():
        kw = cases.get(op, "battery")(np.random.default_rng(0))[0][1]
        p = spec.primary
        bad = np.ones(np.shape(kw[p]) + (2,))
        dys = [np.ones(np.shape(kw[p]))] * len(spec.outputs)
        if spec.jvp is not None:
            out += [
                (f"{op}-jvp-unknown-key", lambda s=op, kw=kw: getattr(refnorm, s + '_jvp')({"gamma": 1.0}, **kw), ValueError,
                 "tangents has the key 'gamma', which is not a differentiable argument"),
                (f"{op}-jvp-not-a-dict", lambda s=op, kw=kw: getattr(refnorm, s + '_jvp')([1.0], **kw), TypeError,
                 "tangents must be a dict"),
                (f"{op}-jvp-shape", lambda s=op, kw=kw, p=p, bad=bad: getattr(refnorm, s + '_jvp')({p: bad}, **kw), ValueError,
                 f"tangents[{p!r}] must have the shape of {p}"),
                (f"{op}-jvp-int", lambda s=op, kw=kw, p=p: getattr(refnorm, s + '_jvp')({p: np.ones(np.shape(kw[p]), int)}, **kw),
                 TypeError, f"tangents[{p!r}] must have a real floating dtype"),
            ]
        if spec.double_backward is not None:
            out += [
                (f"{op}-double-backward-unknown-key",
                 lambda s=op, kw=kw, d=dys: getattr(refnorm, s + '_double_backward')({"dx": 1.0}, *d, **kw), ValueError,
                 "cotangents has the key 'dx'"),
                (f"{op}-double-backward-shape",
                 lambda s=op, kw=kw, d=dys, p=p, bad=bad: getattr(refnorm, s + '_double_backward')({p: bad}, *d, **kw), ValueError,
                 f"cotangents[{p!r}] must have the shape of {p}"),
                (f"{op}-double-backward-dy-shape",
                 lambda s=op, kw=kw, d=dys, bad=bad: getattr(refnorm, s + '_double_backward')({}, bad, *d[1:], **kw), ValueError,
                 "dy must have the shape"),
            ]
    return out


DERIVATIVES = [
    ("jvp-tangent-of-absent-weight", lambda: refnorm.layer_norm_jvp({"weight": np.ones(5)}, X2, 5), ValueError,
     "tangents['weight'] was given but weight is None"),
    ("double-backward-cotangent-of-absent-bias",
     lambda: refnorm.group_norm_double_backward({"bias": np.ones(6)}, np.ones(X4.shape), X4, 2, C6), ValueError,
     "cotangents['bias'] was given but bias is None"),
    ("jvp-bad-forward-argument-first", lambda: refnorm.batch_norm_jvp({"gamma": 1}, X4, None, None),
     ValueError, "running_mean and running_var are required"),
] + _derivative_cases()

CASES = SHARED + DERIVATIVES + [(f"{op}-{cid}", call, exc, match) for op in refnorm.registry()
                  for cid, call, exc, match in cases.get(op, "ERRORS", [])]


def test_every_registered_op_has_error_cases():
    cases.assert_complete("errors")


@pytest.mark.parametrize("cid,call,exc,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(cid, call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value), f"{cid}: message {str(info.value)!r} does not say {match!r}"


def _public_functions():
    return [n for n in refnorm.__all__ if n not in ("OpSpec", "registry") and callable(getattr(refnorm, n))]


def test_every_public_function_has_error_coverage(monkeypatch):
    """Every public function is refused bad input by some case: each
    ``refnorm.<name>`` is replaced by a recorder while every case runs.  An op's
    functions (forward, backward, statistics, running statistics) are reported
    with the op's case module to add the case to."""
    owner = {}
    for op, spec in refnorm.registry().items():
        for fn in (spec.forward, spec.backward, spec.forward_with_stats, spec.running_stats):
            for name in _public_functions():
                if fn is not None and getattr(refnorm, name) is fn:
                    owner[name] = op
    called = set()

    def recorder(name, fn):
        def call(*args, **kwargs):
            called.add(name)
            return fn(*args, **kwargs)
        return call

    for name in _public_functions():
        monkeypatch.setattr(refnorm, name, recorder(name, getattr(refnorm, name)))
    for _, call, exc, _ in CASES:
        with pytest.raises(exc):
            call()
    where = {name: f"ERRORS in tests/ops/cases/{op}.py" for name, op in owner.items()}
    missing = [f"no bad-input case calls refnorm.{name}: add one to "
               f"{where.get(name, 'SHARED in tests/ops/test_errors.py')}" for name in _public_functions()
               if name not in called]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("op", list(refnorm.registry()))
def test_tripwire_is_armed(op):
    """A valid call of the op's forward and backward trips the tripwire: its
    KERNELS list (with the shared kernels) covers what it runs."""
    battery = cases.get(op, "battery")
    if battery is None:
        pytest.fail("\n".join(cases.gaps("battery", [op])))
    spec = refnorm.registry()[op]
    kw = battery(np.random.default_rng(0))[0][1]
    dys = [np.ones(np.shape(kw[spec.differentiable[0]]))] * len(spec.outputs)  # every output is shaped like it
    calls = [("forward", lambda: spec.forward(**kw)), ("backward", lambda: spec.backward(*dys, **kw))]
    if spec.jvp is not None:
        calls.append(("jvp", lambda: spec.jvp({}, **kw)))
    if spec.double_backward is not None:
        calls.append(("double backward", lambda: spec.double_backward({}, *dys, **kw)))
    for what, call in calls:
        try:
            call()
        except AssertionError as e:
            assert "kernel ran" in str(e), e
        else:
            pytest.fail(f"op {op!r}: a valid {what} call ran without tripping the tripwire: list the kernels it "
                        f"runs in KERNELS in tests/ops/cases/{op}.py")

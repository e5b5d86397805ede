"""The derivative adapters of the built-in backends compute what they claim.

``torch`` (``<op>_jvp`` by ``torch.func.jvp``, ``<op>_double_backward`` by
autograd reverse over reverse), ``jax`` (``jax.jvp``; ``jax.vjp`` of
``jax.vjp``) and ``torch-fwfw`` (PyTorch's nested forward mode, its only
function being ``<op>_double_backward``) are checked in float64 on random,
non-uniform inputs, tangents and cotangents: against central differences of
the backend's own forward and backward, against the dot-product identity with
its backward, against refnorm's ``<op>_jvp`` / ``<op>_double_backward``, and
against each other.

The upstream bugs these adapters exist to expose are asserted *present* by
ordinary tests (each names its issue), so they fail loudly, rather than pass
silently, once PyTorch fixes them:

* nested forward mode is wrong for LayerNorm (pytorch#196700) and for
  training-mode BatchNorm and InstanceNorm with input statistics
  (pytorch#196699; ``F.instance_norm`` runs the batch-norm kernel), so
  ``torch-fwfw``'s second derivative with respect to ``x`` (and ``residual``)
  is wrong there, shown on the issues' closed forms;
* torch's double backward raises when ``weight`` is None, a ``bias`` is given
  and both ``x`` and ``bias`` carry second-order cotangents (since PR #63276);
* ``F.group_norm(x, G, None, bias)`` already fails its first backward;
* (found by these adapters, no upstream issue known to us) GroupNorm's nested
  forward mode is not linear in the outer tangent: along the zero direction it
  returns a rounding-size nonzero.
"""

from __future__ import annotations

import inspect
import math

import ml_dtypes
import numpy as np
import pytest

import refnorm
from refnorm._registry import STANDARD_OPS, VARIANT_OPS, protocol_parameters
from refnorm.conformance.backends import BUILTIN, load_backend

torch = pytest.importorskip("torch")

NAMES = ("torch", "jax", "torch-fwfw")


def _backend(name):
    if name == "jax":
        pytest.importorskip("jax", reason="jax is not installed")
        pytest.importorskip("flax", reason="flax is not installed (the jax backend needs flax.linen)")
    return load_backend(name)


# ----------------------------------------------------------------------------- configurations (float64)
def _config(name):
    """``(op, args, kwargs, directions, douts)`` for configuration ``name``: random non-centred data,
    random weights, tangents / second-order cotangents (``directions``, one per differentiable argument
    given) and first-order cotangents ``douts`` (``[dy]``, fused ``[dy, dh]``), all float64."""
    rng = np.random.default_rng(sum(map(ord, name)))

    def r(*shape, loc=0.0, scale=1.0):
        return loc + scale * rng.standard_normal(shape)

    x = r(3, 2, 5, loc=-0.7, scale=1.3)
    x4 = r(4, 3, 2, loc=0.4, scale=0.8)
    w5, b5 = r(5, loc=1.0, scale=0.5), r(5, scale=0.3)
    w3, b3 = r(3, loc=1.0, scale=0.5), r(3, scale=0.3)
    rm, rv = r(3), 0.5 + rng.random(3)
    configs = {
        "layer_norm": ("layer_norm", (x, (5,), w5, b5, 1e-3), {}),
        "layer_norm_2d": ("layer_norm", (x, (2, 5), r(2, 5, loc=1.0), r(2, 5)), {}),
        "layer_norm_noaffine": ("layer_norm", (x, (5,)), {"eps": 0.1}),
        "layer_norm_offset": ("layer_norm", (x, (5,), r(5, scale=0.2), b5), {"offset": 1.0}),
        "rms_norm": ("rms_norm", (x, (5,), w5), {}),
        "rms_norm_offset": ("rms_norm", (x, (5,), r(5, scale=0.2), 1e-4), {"offset": 1.0}),
        "group_norm": ("group_norm", (x4, 3, w3, b3, 1e-3), {}),
        "group_norm_weight_only": ("group_norm", (r(2, 6, 3, loc=0.3), 2, r(6, loc=1.0)), {}),
        "batch_norm_train": ("batch_norm", (x4, rm, rv, w3, b3, True, 0.1, 1e-3), {}),
        "batch_norm_eval": ("batch_norm", (x4, rm, rv, w3, b3, False), {}),
        "instance_norm": ("instance_norm", (x4, None, None, w3, b3, True, 0.1, 1e-3), {}),
        "instance_norm_running": ("instance_norm", (x4, rm, rv, w3, b3, False), {}),
        "add_rms_norm": ("add_rms_norm", (x, r(3, 2, 5, scale=0.5), (5,), w5), {}),
        "add_layer_norm": ("add_layer_norm", (x, r(3, 2, 5, scale=0.5), (5,), w5, b5), {}),
    }
    op, args, kwargs = configs[name]
    spec = refnorm.registry()[op]
    bound = inspect.signature(spec.forward).bind_partial(*args, **kwargs)
    given = {a: bound.arguments.get(a) for a in spec.differentiable}
    directions = {a: r(*np.shape(v)) for a, v in given.items() if v is not None}
    y = spec.forward(*args, **kwargs)
    outs = y if isinstance(y, tuple) else (y,)
    douts = [r(*np.shape(o)) for o in outs]
    return op, args, kwargs, directions, douts


CONFIGS = ("layer_norm", "layer_norm_2d", "layer_norm_noaffine", "layer_norm_offset", "rms_norm", "rms_norm_offset",
           "group_norm", "group_norm_weight_only", "batch_norm_train", "batch_norm_eval", "instance_norm",
           "instance_norm_running", "add_rms_norm", "add_layer_norm")

#: The configurations whose nested forward mode PyTorch 2.13 gets wrong: the upstream issue.
FWFW_BUGS = {"layer_norm": "pytorch#196700", "layer_norm_2d": "pytorch#196700",
             "layer_norm_noaffine": "pytorch#196700", "layer_norm_offset": "pytorch#196700",
             "add_layer_norm": "pytorch#196700", "batch_norm_train": "pytorch#196699",
             "instance_norm": "pytorch#196699 (F.instance_norm runs the batch-norm kernel)"}


def _call(name, config, kind):
    """The backend's ``<op>_jvp`` (``kind="jvp"``) or ``<op>_double_backward`` on the configuration;
    skipped when the backend does not offer it."""
    backend = _backend(name)
    op, args, kwargs, directions, douts = _config(config)
    fn = getattr(backend, f"{op}_{'jvp' if kind == 'jvp' else 'double_backward'}", None)
    if fn is None:
        pytest.skip(f"the {name} backend has no {op}_{kind}")
    try:
        if kind == "jvp":
            return fn(directions, *args, **kwargs)
        return fn(directions, *douts, *args, **kwargs)
    except NotImplementedError as exc:
        pytest.skip(f"{name}: {exc}")


def _outputs(op, result):
    """A jvp's ``(y, ty)`` as ``(outputs, tangent outputs)`` tuples."""
    y, ty = result
    return (y, ty) if op in VARIANT_OPS else ((y,), (ty,))


def _close(got, want, rtol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= rtol * scale, f"{what}: max |error| {err:.3g} > {rtol:.1g} * {scale:.3g}"


def _max_rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))


# ----------------------------------------------------------------------------- registration and signatures
def test_torch_fwfw_is_a_builtin_backend():
    assert BUILTIN["torch-fwfw"] == "refnorm.conformance.backends.torch_fwfw"
    backend = load_backend("torch-fwfw")
    info = backend.BACKEND_INFO
    assert info["name"] == "torch-fwfw"
    assert "nested forward mode" in info["description"] and "double_backward only" in info["description"]


def test_torch_fwfw_has_only_the_double_backward():
    """Every other check of the harness reports "not implemented" for torch-fwfw."""
    backend = load_backend("torch-fwfw")
    for op in STANDARD_OPS + VARIANT_OPS:
        assert callable(getattr(backend, f"{op}_double_backward"))
        for suffix in ("", "_backward", "_jvp", "_stats", "_running_stats"):
            assert not hasattr(backend, op + suffix), op + suffix


@pytest.mark.parametrize("name", NAMES)
def test_derivative_signatures_are_refnorm_s(name):
    """Names, order, defaults and keyword-only-ness as refnorm's own ``<op>_jvp`` / ``<op>_double_backward``."""
    backend = _backend(name)
    checked = 0
    for op in STANDARD_OPS + VARIANT_OPS:
        for suffix in ("_jvp", "_double_backward"):
            fn = getattr(backend, op + suffix, None)
            if fn is None:
                continue
            theirs = getattr(refnorm, op + suffix)
            want = [p for p in inspect.signature(theirs).parameters.values() if p.name in protocol_parameters(theirs)]
            got = list(inspect.signature(fn).parameters.values())
            assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in want], \
                op + suffix
            checked += 1
    # torch: all 7 ops both ways; jax: the 5 standard ops (Flax has no fused residual add); fwfw: 7 double backwards
    assert checked == {"torch": 14, "jax": 10, "torch-fwfw": 7}[name]


# ----------------------------------------------------------------------------- JVP: what the backend claims
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_jvp_output_is_the_forward_and_obeys_the_dot_product_identity(name, config):
    """``y`` is the backend's own forward; ``<dy, ty> = sum_k <backward(dy)[k], t_k>`` with the backend's backward."""
    op, args, kwargs, directions, douts = _config(config)
    backend = _backend(name)
    ys, tys = _outputs(op, _call(name, config, "jvp"))
    fwd = getattr(backend, op)(*args, **kwargs)
    for got, want in zip(ys, fwd if isinstance(fwd, tuple) else (fwd,)):
        assert np.array_equal(got, want)
    grads = getattr(backend, f"{op}_backward")(*douts, *args, **kwargs)
    lhs = sum(float(np.sum(d * t)) for d, t in zip(douts, tys))
    rhs = sum(float(np.sum(grads[k] * t)) for k, t in directions.items())
    assert math.isclose(lhs, rhs, rel_tol=1e-11, abs_tol=1e-11), (lhs, rhs)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_jvp_matches_central_differences_of_the_forward(name, config):
    op, args, kwargs, directions, _ = _config(config)
    backend = _backend(name)
    _, tys = _outputs(op, _call(name, config, "jvp"))
    spec = refnorm.registry()[op]
    names = list(inspect.signature(spec.forward).parameters)
    h = 1e-6

    def moved(s):
        a = list(args)
        for k, t in directions.items():
            a[names.index(k)] = a[names.index(k)] + s * t
        out = getattr(backend, op)(*a, **kwargs)
        return out if isinstance(out, tuple) else (out,)

    for ty, plus, minus in zip(tys, moved(h), moved(-h)):
        _close(ty, (plus - minus) / (2 * h), 1e-7, f"{name} {op}_jvp vs central differences")


# ----------------------------------------------------------------------------- double backward: what it claims
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_double_backward_matches_central_differences_of_the_backward(name, config):
    """Along a random direction of (dy [, dh], every given argument): the directional derivative of
    ``L = sum_k <cotangents[k], backward(dy, ...)[k]>``, by central differences of the backend's own
    backward, equals the double backward's gradient dotted with that direction."""
    op, args, kwargs, directions, douts = _config(config)
    backend = _backend(name)
    got = _call(name, config, "double_backward")
    spec = refnorm.registry()[op]
    names = list(inspect.signature(spec.forward).parameters)
    rng = np.random.default_rng(7)
    vd = [rng.standard_normal(np.shape(d)) for d in douts]
    va = {k: rng.standard_normal(np.shape(args[names.index(k)])) for k in directions}
    h = 1e-5

    def L(s):
        a = list(args)
        for k, v in va.items():
            a[names.index(k)] = a[names.index(k)] + s * v
        grads = getattr(backend, f"{op}_backward")(*[d + s * v for d, v in zip(douts, vd)], *a, **kwargs)
        return sum(float(np.sum(c * grads[k])) for k, c in directions.items())

    fd = (L(h) - L(-h)) / (2 * h)
    keys = [o for o in spec.cotangents]
    assert sorted(got) == sorted(keys + list(directions)), sorted(got)
    predicted = sum(float(np.sum(got[k] * v)) for k, v in zip(keys, vd))
    predicted += sum(float(np.sum(got[k] * v)) for k, v in va.items())
    assert math.isclose(predicted, fd, rel_tol=1e-7, abs_tol=1e-7), (predicted, fd)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", NAMES)
def test_double_backward_of_dy_is_the_jvp_along_the_cotangents(name, config):
    """The backward is linear in dy: ``dL/d(dy) = J c`` (fused: also ``dL/d(dh)``), the forward-mode
    derivative along the cotangents -- the torch backend's JVP for torch-fwfw, the backend's own otherwise."""
    op = _config(config)[0]
    got = _call(name, config, "double_backward")
    _, tys = _outputs(op, _call("torch" if name == "torch-fwfw" else name, config, "jvp"))
    for key, ty in zip(refnorm.registry()[op].cotangents, tys):
        _close(got[key], ty, 1e-12, f"{name} {op}_double_backward[{key!r}] vs the JVP")


# ----------------------------------------------------------------------------- against refnorm and each other
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_jvp_matches_refnorm(name, config):
    op, args, kwargs, directions, _ = _config(config)
    ys, tys = _outputs(op, _call(name, config, "jvp"))
    rys, rtys = _outputs(op, getattr(refnorm, f"{op}_jvp")(directions, *args, **kwargs))
    for got, want in zip(ys + tys, rys + rtys):
        _close(got, want, 1e-12, f"{name} {op}_jvp vs refnorm")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", NAMES)
def test_double_backward_matches_refnorm(name, config):
    """Every key agrees with refnorm's double backward -- except, for torch-fwfw, the ones PyTorch's
    nested forward mode gets wrong, which must still be wrong (see the upstream issue)."""
    op, args, kwargs, directions, douts = _config(config)
    got = _call(name, config, "double_backward")
    want = getattr(refnorm, f"{op}_double_backward")(directions, *douts, *args, **kwargs)
    assert sorted(got) == sorted(want)
    wrong = {"x", "residual"} if name == "torch-fwfw" and config in FWFW_BUGS else set()
    for key in want:
        if key in wrong:
            rel = _max_rel(got[key], want[key])
            assert rel > 1e-2, (f"torch-fwfw {op}_double_backward[{key!r}] now matches refnorm (error {rel:.3g}): "
                                f"{FWFW_BUGS[config]} looks fixed; update this test and the xfail rules")
        else:
            _close(got[key], want[key], 1e-11, f"{name} {op}_double_backward[{key!r}] vs refnorm")


@pytest.mark.parametrize("config", CONFIGS)
def test_torch_and_jax_agree(config):
    op = _config(config)[0]
    if op in VARIANT_OPS:
        pytest.skip("the jax backend has no fused residual add (Flax has none)")
    for kind in ("jvp", "double_backward"):
        a, b = _call("torch", config, kind), _call("jax", config, kind)
        if kind == "jvp":
            for x, y in zip(a, b):
                _close(x, y, 1e-12, f"{op}_jvp torch vs jax")
        else:
            assert sorted(a) == sorted(b)
            for k in a:
                _close(a[k], b[k], 1e-12, f"{op}_double_backward[{k!r}] torch vs jax")


@pytest.mark.parametrize("config", CONFIGS)
def test_torch_fwfw_agrees_with_reverse_over_reverse_except_where_pytorch_is_wrong(config):
    """torch-fwfw against the torch backend (same PyTorch, the other nesting): equal where nested
    forward mode is right, wrong on ``x`` (``residual``) exactly where the upstream issues say."""
    op = _config(config)[0]
    fwfw, ror = _call("torch-fwfw", config, "double_backward"), _call("torch", config, "double_backward")
    assert sorted(fwfw) == sorted(ror)
    for key in ror:
        if config in FWFW_BUGS and key in ("x", "residual"):
            rel = _max_rel(fwfw[key], ror[key])
            assert rel > 1e-2, (f"torch nested forward mode of {op} ({config}) now agrees with reverse over reverse "
                                f"on {key!r} (error {rel:.3g}): {FWFW_BUGS[config]} looks fixed")
        else:
            _close(fwfw[key], ror[key], 1e-11, f"{op}_double_backward[{key!r}] torch-fwfw vs torch")


# ----------------------------------------------------------------------------- the upstream closed forms
def _second_derivative(double_backward, dy, x1, x2):
    """f''(t) for f(t) = <dy, forward(x(t))> from a double backward ``cotangents -> dict`` at x(t):
    ``<DB({"x": x'})["x"], x'> + <DB({"x": x''})["dy"], dy>`` (the second term is <dy, J x''>)."""
    return (float(np.sum(double_backward({"x": x1})["x"] * x1))
            + float(np.sum(double_backward({"x": x2})["dy"] * dy)))


def _richardson(g, t, h=1e-2):
    """g'(t) by Richardson-extrapolated central differences (error O(h^4))."""
    d = lambda s: (g(t + s) - g(t - s)) / (2 * s)  # noqa: E731
    return (4 * d(h / 2) - d(h)) / 3


# pytorch#196700: f(t) = sum(layer_norm([[t, 0]], (2,), weight [1, 2], bias 0, eps 0.25)).  The row's mean
# is t/2, its centred values +-t/2, var t^2/4, so y = (t/2, -t) / sqrt(t^2/4 + 1/4) and
# f(t) = -t / sqrt(t^2 + 1), f'(t) = -(t^2 + 1)^(-3/2), f''(t) = 3 t (t^2 + 1)^(-5/2).
LN_T, LN_F2 = 0.7, 0.7749142079590942
LN_W, LN_B = np.array([1.0, 2.0]), np.zeros(2)


def _ln_x(t):
    return np.array([[t, 0.0]])


def test_pytorch_196700_closed_form_is_right():
    """The true f''(0.7), two independent ways: the closed form, and central differences of refnorm's
    own first derivative f'(t) = <layer_norm_backward(1, x(t))["x"], dx/dt>."""
    assert math.isclose(3 * LN_T * (LN_T ** 2 + 1) ** -2.5, LN_F2, rel_tol=1e-15)
    a, ones = np.array([[1.0, 0.0]]), np.ones((1, 2))

    def f1(t):
        return float(np.sum(refnorm.layer_norm_backward(ones, _ln_x(t), (2,), LN_W, LN_B, 0.25)["x"] * a))

    assert math.isclose(f1(LN_T), -(LN_T ** 2 + 1) ** -1.5, rel_tol=1e-14)
    assert math.isclose(_richardson(f1, LN_T), LN_F2, rel_tol=1e-8)


@pytest.mark.parametrize("name", ["refnorm", "torch", "jax", "torch-fwfw"])
def test_pytorch_196700_layer_norm_second_derivative(name):
    """Reverse over reverse (torch), jax and refnorm give f''(0.7) = 0.77491...; PyTorch's nested forward
    mode gives -0.38487... (pytorch#196700) -- through the adapter and through torch.func directly."""
    backend = refnorm if name == "refnorm" else _backend(name)
    ones, a = np.ones((1, 2)), np.array([[1.0, 0.0]])

    def db(c):
        return backend.layer_norm_double_backward(c, ones, _ln_x(LN_T), (2,), LN_W, LN_B, 0.25)

    got = _second_derivative(db, ones, a, np.zeros((1, 2)))
    if name != "torch-fwfw":
        assert math.isclose(got, LN_F2, rel_tol=1e-13), got
        return
    F = torch.nn.functional
    w, b = torch.tensor(LN_W), torch.tensor(LN_B)

    def f(t):
        return F.layer_norm(torch.stack([t, torch.zeros_like(t)]).reshape(1, 2), (2,), w, b, 0.25).sum()

    def f1(t):
        return torch.func.jvp(f, (t,), (torch.ones_like(t),))[1]

    direct = torch.func.jvp(f1, (torch.tensor(LN_T, dtype=torch.float64),), (torch.tensor(1.0, dtype=torch.float64),))
    assert math.isclose(got, float(direct[1]), rel_tol=1e-12), (got, float(direct[1]))
    assert abs(got - LN_F2) > 0.5, (f"torch nested forward mode now gives f''(0.7) = {got!r}, the true value "
                                    f"{LN_F2!r}: pytorch#196700 looks fixed; update this test and the xfail rules")


# pytorch#196699: x_i(t) = (i+1) t + (i%3 - 1) t^2 + i (i = 0..7, shape (2, 2, 2)), batch_norm training,
# eps 0.25, weight [1.5, -0.5], bias [0.25, 1], f(t) = sum_i (i+1) y_i; true f''(-6) = -0.20703015646993195.
BN_T, BN_F2 = -6.0, -0.20703015646993195
BN_I = np.arange(8.0)
BN_W, BN_B, BN_DY = np.array([1.5, -0.5]), np.array([0.25, 1.0]), (BN_I + 1).reshape(2, 2, 2)
BN_X1 = lambda t: ((BN_I + 1) + 2 * (BN_I % 3 - 1) * t).reshape(2, 2, 2)  # noqa: E731
BN_X2 = (2 * (BN_I % 3 - 1)).reshape(2, 2, 2)


def _bn_x(t):
    return ((BN_I + 1) * t + (BN_I % 3 - 1) * t ** 2 + BN_I).reshape(2, 2, 2)


def test_pytorch_196699_closed_form_is_right():
    """The true f''(-6) by central differences of refnorm's own first derivative
    f'(t) = <batch_norm_backward(dy, x(t))["x"], dx/dt>."""
    def f1(t):
        g = refnorm.batch_norm_backward(BN_DY, _bn_x(t), None, None, BN_W, BN_B, True, 0.1, 0.25)["x"]
        return float(np.sum(g * BN_X1(t)))

    assert math.isclose(_richardson(f1, BN_T), BN_F2, rel_tol=1e-8, abs_tol=1e-10)


@pytest.mark.parametrize("name", ["refnorm", "torch", "jax", "torch-fwfw"])
def test_pytorch_196699_batch_norm_second_derivative(name):
    """Reverse over reverse (torch), jax and refnorm give f''(-6) = -0.20703...; PyTorch's nested forward
    mode gives -2.1324... (pytorch#196699) -- through the adapter and through torch.func directly."""
    backend = refnorm if name == "refnorm" else _backend(name)

    def db(c):
        return backend.batch_norm_double_backward(c, BN_DY, _bn_x(BN_T), None, None, BN_W, BN_B, True, 0.1, 0.25)

    got = _second_derivative(db, BN_DY, BN_X1(BN_T), BN_X2)
    if name != "torch-fwfw":
        assert math.isclose(got, BN_F2, rel_tol=1e-12), got
        return
    F = torch.nn.functional
    i, w, b = torch.tensor(BN_I), torch.tensor(BN_W), torch.tensor(BN_B)

    def f(t):
        x = ((i + 1) * t + (i % 3 - 1) * t ** 2 + i).reshape(2, 2, 2)
        return (F.batch_norm(x, None, None, w, b, True, 0.1, 0.25).reshape(-1) * (i + 1)).sum()

    def f1(t):
        return torch.func.jvp(f, (t,), (torch.ones_like(t),))[1]

    t = torch.tensor(BN_T, dtype=torch.float64)
    direct = float(torch.func.jvp(f1, (t,), (torch.ones_like(t),))[1])
    assert math.isclose(got, direct, rel_tol=1e-12), (got, direct)
    assert abs(got - BN_F2) > 0.5, (f"torch nested forward mode now gives f''(-6) = {got!r}, the true value "
                                    f"{BN_F2!r}: pytorch#196699 looks fixed; update this test and the xfail rules")


def test_pytorch_196699_reaches_instance_norm():
    """InstanceNorm with input statistics is BatchNorm of the (1, N*C, ...) view in PyTorch: the same
    closed form through F.instance_norm (one sample, two channels) is wrong in nested forward mode."""
    fwfw = load_backend("torch-fwfw")
    x = lambda t: _bn_x(t).transpose(1, 0, 2).reshape(1, 2, 4)  # noqa: E731  channel c holds BN's channel c
    dy, x1, x2 = (BN_DY.transpose(1, 0, 2).reshape(1, 2, 4), BN_X1(BN_T).transpose(1, 0, 2).reshape(1, 2, 4),
                  BN_X2.transpose(1, 0, 2).reshape(1, 2, 4))

    def db(backend):
        return lambda c: backend.instance_norm_double_backward(c, dy, x(BN_T), None, None, BN_W, BN_B, True, 0.1,
                                                                0.25)

    assert math.isclose(_second_derivative(db(refnorm), dy, x1, x2), BN_F2, rel_tol=1e-12)
    assert math.isclose(_second_derivative(db(load_backend("torch")), dy, x1, x2), BN_F2, rel_tol=1e-12)
    got = _second_derivative(db(fwfw), dy, x1, x2)
    assert abs(got - BN_F2) > 0.5, (f"torch nested forward mode of instance_norm now gives f''(-6) = {got!r} "
                                    f"(true {BN_F2!r}): pytorch#196699 looks fixed for InstanceNorm")


# ----------------------------------------------------------------------------- weight None with a bias
def _bias_only(op):
    rng = np.random.default_rng(3)
    x = -0.5 + rng.standard_normal((2, 3, 4))
    b3, b4 = rng.standard_normal(3), rng.standard_normal(4)
    rm, rv = rng.standard_normal(3), 0.5 + rng.random(3)
    args = {"layer_norm": (x, (4,), None, b4, 1e-3), "batch_norm_train": (x, rm, rv, None, b3, True, 0.1, 1e-3),
            "batch_norm_eval": (x, rm, rv, None, b3, False), "instance_norm": (x, None, None, None, b3, True),
            "instance_norm_running": (x, rm, rv, None, b3, False),
            "add_layer_norm": (x, rng.standard_normal(x.shape), (4,), None, b4),
            "group_norm": (x, 3, None, b3)}[op]
    bias = args[4] if op.startswith(("batch", "instance", "add_layer")) else args[3]
    cot = {"x": rng.standard_normal(x.shape), "bias": rng.standard_normal(np.shape(bias))}
    douts = [rng.standard_normal(x.shape) for _ in range(2 if op == "add_layer_norm" else 1)]
    return op.replace("_train", "").replace("_eval", "").replace("_running", ""), args, cot, douts


@pytest.mark.parametrize("case", ["layer_norm", "batch_norm_train", "batch_norm_eval", "instance_norm",
                                  "instance_norm_running", "add_layer_norm"])
def test_torch_double_backward_crashes_without_weight_with_bias(case):
    """weight=None, a bias, second-order cotangents on both x and bias: torch's double backward raises
    (a regression since PR #63276); jax and torch-fwfw compute it, and agree with refnorm."""
    op, args, cot, douts = _bias_only(case)
    with pytest.raises(RuntimeError, match="Expected a proper Tensor but got None"):
        # if this stops raising, PyTorch fixed the weight=None double backward: update this test and the xfails
        getattr(load_backend("torch"), f"{op}_double_backward")(cot, *douts, *args)
    for only in ("x", "bias"):  # one of the two alone does not reach the broken term
        getattr(load_backend("torch"), f"{op}_double_backward")({only: cot[only]}, *douts, *args)
    want = getattr(refnorm, f"{op}_double_backward")(cot, *douts, *args)
    others = ["torch-fwfw"] + ([] if op in VARIANT_OPS else ["jax"])
    for name in others:
        got = getattr(_backend(name), f"{op}_double_backward")(cot, *douts, *args)
        for key in want:
            if name == "torch-fwfw" and case in ("layer_norm", "add_layer_norm", "batch_norm_train",
                                                  "instance_norm") and key in ("x", "residual"):
                assert _max_rel(got[key], want[key]) > 1e-2  # pytorch#196700 / #196699 again
                continue
            _close(got[key], want[key], 1e-11, f"{name} {op}_double_backward[{key!r}] (weight None, bias)")


def test_torch_group_norm_without_weight_with_bias_fails_the_first_backward():
    """F.group_norm(x, G, None, bias): the first backward already raises, so the double backward does too
    (whatever the cotangents); jax and torch-fwfw compute it and agree with refnorm."""
    op, args, cot, douts = _bias_only("group_norm")
    torch_backend = load_backend("torch")
    with pytest.raises(RuntimeError):
        torch_backend.group_norm_backward(douts[0], *args)
    for c in ({"x": cot["x"]}, {"bias": cot["bias"]}, cot):
        with pytest.raises(RuntimeError, match=r"shape '\[0\]' is invalid"):
            torch_backend.group_norm_double_backward(c, douts[0], *args)
    want = refnorm.group_norm_double_backward(cot, douts[0], *args)
    for name in ("jax", "torch-fwfw"):
        got = _backend(name).group_norm_double_backward(cot, douts[0], *args)
        for key in want:
            _close(got[key], want[key], 1e-11, f"{name} group_norm_double_backward[{key!r}] (weight None, bias)")


def test_torch_nested_forward_group_norm_is_not_linear_in_its_tangent():
    """Found by torch-fwfw (no upstream issue known to us): the forward-mode derivative of GroupNorm's own
    JVP, along the *zero* direction, is not zero but a rounding-size constant -- the outer JVP is affine,
    not linear.  It shows as a nonzero d2bias (exactly 0) in torch-fwfw's group_norm double backward;
    the other ops return exact zeros.  (PyTorch's GroupNorm JVP formula goes through batch_norm_jvp,
    the formula of pytorch#196699; that this is the same defect is a guess.)"""
    F, jvp = torch.nn.functional, torch.func.jvp
    gen = torch.Generator().manual_seed(0)
    x = 1 + torch.randn(3, 6, 4, generator=gen)
    w, b = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    c = tuple(torch.randn(t.shape, generator=gen) for t in (x, w, b))
    zeros = tuple(torch.zeros_like(t) for t in (x, w, b))

    def outer_along_zero(f):
        return jvp(lambda *p: jvp(f, p, c)[1], (x, w, b), zeros)[1].abs().max().item()

    assert outer_along_zero(lambda x, w, b: F.layer_norm(x, (4,), w[:4], b[:4], 1e-5)) == 0.0
    assert outer_along_zero(lambda x, w, b: F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)) == 0.0
    got = outer_along_zero(lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5))
    assert got > 0.0, "torch nested forward mode of group_norm is now linear in its tangent: update this test"
    # the adapter shows it as a d2bias that does not vanish (float32, where it is ~1e-6 of O(1) values)
    rng = np.random.default_rng(1)
    xs = (0.5 + rng.standard_normal((2, 6, 3))).astype(np.float32)
    cot = {k: rng.standard_normal(s).astype(np.float32) for k, s in (("x", xs.shape), ("weight", 6), ("bias", 6))}
    d2 = load_backend("torch-fwfw").group_norm_double_backward(
        cot, rng.standard_normal(xs.shape).astype(np.float32), xs, 3, (1 + rng.standard_normal(6)).astype(np.float32),
        rng.standard_normal(6).astype(np.float32))
    assert np.all(d2["bias"] != 0) and np.max(np.abs(d2["bias"])) < 1e-4, d2["bias"]


# ----------------------------------------------------------------------------- conventions
def test_torch_fwfw_refuses_a_case_too_large_naming_its_size():
    fwfw = load_backend("torch-fwfw")
    x = np.random.default_rng(0).standard_normal((65, 64))
    with pytest.raises(NotImplementedError, match=r"4160 elements .*limit of 4096"):
        fwfw.layer_norm_double_backward({"x": x}, x, x, (64,))


@pytest.mark.parametrize("name", NAMES)
def test_directions_are_checked_by_name_presence_and_shape(name):
    backend = _backend(name)
    rng = np.random.default_rng(0)
    x, dy, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 5)), rng.standard_normal(5)
    fns = [lambda d: backend.layer_norm_double_backward(d, dy, x, (5,), None, b)]
    if name != "torch-fwfw":
        fns.append(lambda d: backend.layer_norm_jvp(d, x, (5,), None, b))
    for fn in fns:
        with pytest.raises(TypeError):
            fn([x])
        with pytest.raises(ValueError, match="'gamma'"):
            fn({"gamma": b})
        with pytest.raises(ValueError, match="weight is None"):
            fn({"weight": b})
        with pytest.raises(ValueError, match="shape"):
            fn({"bias": x})


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_modified(name):
    """Training-mode BatchNorm updates its running statistics in place in PyTorch: the adapters work on copies."""
    backend = _backend(name)
    op, args, kwargs, directions, douts = _config("batch_norm_train")
    every = list(args) + list(directions.values()) + douts
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in every]
    if name != "torch-fwfw":
        backend.batch_norm_jvp(directions, *args, **kwargs)
    backend.batch_norm_double_backward(directions, *douts, *args, **kwargs)
    for a, b in zip(every, before):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b)


DTYPES = {"float32": (np.float32, 1e-5), "float16": (np.float16, 2e-2), "bfloat16": (ml_dtypes.bfloat16, 1e-1)}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("config", ["layer_norm", "batch_norm_eval", "rms_norm", "add_rms_norm"])
@pytest.mark.parametrize("name", NAMES)
def test_results_are_in_the_case_dtype(name, config, dtype):
    """Lower precision: every result in the dtype of the argument it belongs to (a tangent output in its
    output's, d<output> in the cotangent's), near refnorm's float64 value (loosely: the adapters compute
    in the case dtype)."""
    dt, tol = DTYPES[dtype]
    op, args, kwargs, directions, douts = _config(config)
    if name == "jax" and op in VARIANT_OPS:
        pytest.skip("the jax backend has no fused residual add")
    backend = _backend(name)
    cast = lambda a: a.astype(dt) if isinstance(a, np.ndarray) else a  # noqa: E731
    cargs = tuple(cast(a) for a in args)
    cdirs = {k: cast(v) for k, v in directions.items()}
    cdouts = [cast(d) for d in douts]
    results = {}
    if name != "torch-fwfw":
        _, tys = _outputs(op, getattr(backend, f"{op}_jvp")(cdirs, *cargs, **kwargs))
        _, rtys = _outputs(op, getattr(refnorm, f"{op}_jvp")(cdirs, *cargs, **kwargs))
        results.update({f"t{i}": (t, r) for i, (t, r) in enumerate(zip(tys, rtys))})
    got = getattr(backend, f"{op}_double_backward")(cdirs, *cdouts, *cargs, **kwargs)
    want = getattr(refnorm, f"{op}_double_backward")(cdirs, *cdouts, *cargs, **kwargs)
    results.update({k: (got[k], want[k]) for k in want})
    for k, (g, w) in results.items():
        assert np.asarray(g).dtype == np.dtype(dt), (k, np.asarray(g).dtype)
        if name == "torch-fwfw" and config in FWFW_BUGS and k in ("x", "residual"):
            assert _max_rel(g, w) > 2 * tol, f"{FWFW_BUGS[config]} looks fixed in {dtype}"
            continue
        _close(g, w, tol, f"{name} {op} {dtype} {k}")

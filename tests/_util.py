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
    elif op == "proxy_norm":
        # x is PN-Act's normalized pre-activation, but nothing assumes it: half
        # the cases are non-centred at -2.3 (ReLU then cuts most of x), half at 0.4
        for shape, act, nk, eps in [((2, 3, 5), "relu", 200, 0.03), ((3, 2, 2, 3), "silu", 200, 0.03),
                                    ((5, 3), "gelu", 200, 0.03), ((2, 4, 1, 3), "relu", 7, 0.5),
                                    ((3, 3, 4), "gelu", 7, 0.5), ((1, 1, 1), "silu", 200, 0.03),
                                    ((3, 2, 5), "swish", 1, 0.1)]:
            C = shape[1]
            x = noncentred(rng, shape, loc=0.4, scale=1.1) if len(out) % 2 else noncentred(rng, shape)
            kw = dict(x=x, weight=1.0 + 0.5 * rng.standard_normal(C), bias=0.3 * rng.standard_normal(C),
                      proxy_shift=0.3 * rng.standard_normal(C), proxy_scale=0.3 * rng.standard_normal(C),
                      activation=act, eps=eps, num_points=nk)
            out.append((f"{shape}-{act}-K{nk}-eps{eps}", kw))
    elif op == "gn_plus":
        # every GN set has >= 3 elements: with 2, GN's output is +-s/(sqrt2 (s + eps))
        # whatever x is, and BN0 of it (gn_first) is ill-conditioned (tests/ops/test_gn_plus.py)
        geoms = [((3, 6, 5), 3, np.array([1.0])), ((4, 4, 2, 3), 2, np.array(-0.4)), ((3, 6), 2, np.array([0.3])),
                 ((5, 3, 1, 3), 1, np.array([2.0]))]
        for i, (shape, G, mix) in enumerate(geoms):
            for variant in ("gn_first", "bn_first", "parallel"):
                for bs in ("position", "channel"):
                    if i >= 2 and (variant, bs) not in (("gn_first", "position"), ("parallel", "channel")):
                        continue
                    w, b = random_affine(rng, (shape[1],))
                    kw = dict(x=noncentred(rng, shape), num_groups=G, weight=w, bias=b, mix=mix.copy(), eps=1e-5,
                              variant=variant, batch_stats=bs)
                    out.append((f"{shape}-G{G}-{variant}-{bs}", kw))
    elif op == "weight_standardization":
        options = [dict(style="deepmind", eps=1e-4), dict(style="timm", eps=1e-6), dict(style="qiao", eps=1e-5),
                   dict(style="timm", eps=1e-5), dict(style="deepmind", eps=None)]
        for shape in [(5, 3, 3, 2), (4, 7), (3, 2, 1, 1)]:
            for k, opt in enumerate(options):
                for gain in (True, False):
                    if k >= 3 and (gain or shape != (4, 7)):
                        continue
                    kw = dict(weight=noncentred(rng, shape, loc=-0.3, scale=0.5),
                              gain=random_affine(rng, (shape[0],))[0] if gain else None, **opt)
                    out.append((f"{shape}-{opt['style']}-eps{opt['eps']}-gain{gain}", kw))
        # the keyword-only overrides: BiT StdConv2d (no fan-in scaling), the WS
        # paper's biased form, DeepMind's floor with the unbiased estimator
        for over in (dict(style="timm", fan_in_scaling=False), dict(style="qiao", estimator="biased"),
                     dict(style="deepmind", estimator="unbiased", eps_mode="variance")):
            kw = dict(weight=noncentred(rng, (4, 3, 3), loc=0.2, scale=0.4), gain=random_affine(rng, (4,))[0],
                      eps=None, **over)
            out.append((f"override-{'-'.join(f'{k}={v}' for k, v in over.items())}", kw))
    elif op == "batch_layer_norm":
        for shape, fa in [((5, 4), -1), ((3, 4, 5), -1), ((3, 4, 2, 3), 1)]:
            for bs in ("position", "channel"):
                d = shape[fa]
                x = noncentred(rng, shape)
                w, b = random_affine(rng, (d,))
                for batch_size in (None, 7):
                    kw = dict(x=x, weight=w, bias=b, batch_size=batch_size, eps=1e-3, feature_axis=fa, batch_stats=bs)
                    out.append((f"{shape}-fa{fa}-{bs}-B{batch_size}-train", kw))
                # inference: the default flags, all moving, and a mixed choice (a moving
                # mean with a current variance is taken about the current mean)
                # plausible moving statistics: those of a nearby batch (plain NumPy: no kernel at import)
                xs = x + 0.2 * rng.standard_normal(shape)
                f_ax = fa % len(shape)
                b_ax = (0,) if bs == "position" else tuple(a for a in range(len(shape)) if a != f_ax)
                mv = {"batch_mean": xs.mean(axis=b_ax, keepdims=True) + 0.05,
                      "batch_var": xs.var(axis=b_ax, keepdims=True) + 0.1,
                      "feature_mean": xs.mean(axis=f_ax, keepdims=True) + 0.05,
                      "feature_var": xs.var(axis=f_ax, keepdims=True) + 0.1}
                for flags in ((True, True, False, False), (True, True, True, True), (True, False, False, True)):
                    kw = dict(x=x, weight=w, bias=b, batch_size=8, eps=1e-3, training=False, moving_stats=mv,
                              flags=flags, feature_axis=fa, batch_stats=bs)
                    out.append((f"{shape}-fa{fa}-{bs}-infer{''.join('TF'[not f] for f in flags)}", kw))
        x = noncentred(rng, (4, 6))
        out.append(("no-affine-no-sqrt-d", dict(x=x, weight=None, bias=None, batch_size=None, eps=1e-3,
                                                 sqrt_d_scale=False)))
        w, b = random_affine(rng, (6,))
        out.append(("no-offset-eps1e-2", dict(x=x, weight=w, bias=None, batch_size=4, eps=1e-2, weight_offset=0.0)))
        out.append(("batch-of-one", dict(x=noncentred(rng, (1, 5)), weight=random_affine(rng, (5,))[0],
                                         bias=random_affine(rng, (5,))[1], batch_size=1, eps=1e-3)))
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


def gradient_scale(spec, kw, dy, name: str = "x") -> float:
    """An upper magnitude of the terms the gradient of argument ``name`` is summed
    from (they can cancel far below that).  Standard ops, every argument:
    ``max|dy| * max|weight| * max(rstd) * max(1, max|xhat|)`` and ``max|dy| * max|xhat|``.
    Seed layers: per argument, see :func:`_seed_gradient_scale`."""
    if spec.name in SEED_SCALES:
        return SEED_SCALES[spec.name](spec, kw, np.asarray(dy, dtype=np.float64), name)
    _, stats = spec.forward_with_stats(**kw)
    rstd = float(np.nanmax(np.abs(stats["rstd"]))) if np.size(stats["rstd"]) else 1.0
    w = kw.get("weight")
    wmax = 1.0 if w is None else float(np.max(np.abs(w)))
    x = np.asarray(kw["x"], dtype=np.float64)
    xhat = float(np.max(np.abs(x))) * rstd + 1.0 if x.size else 1.0
    dmax = float(np.max(np.abs(dy))) if np.size(dy) else 0.0
    return dmax * max(wmax * rstd * xhat, xhat) * max(1, x.size)


# --- magnitudes of the gradient terms of the seed layers ----------------------


def _pn_scale(spec, kw, dy, name):
    """dx = dy s phi'(u) w is a product (no cancellation): 0.  A parameter
    gradient is a sum of data terms and proxy-chain terms:
    ``s * sum|dy| * max(1, |w|) * max(1, |x|, |Y|)`` with ``|Y| <= |beta~| + 3|1 + gamma~|``."""
    if name == "x":
        return 0.0
    _, st = spec.forward_with_stats(**kw)
    ymax = 3.0 * (1.0 + np.max(np.abs(kw["proxy_scale"]))) + np.max(np.abs(kw["proxy_shift"]))
    x = np.asarray(kw["x"], dtype=np.float64)
    big = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0, ymax)
    return (float(np.max(st["rstd"])) * float(np.sum(np.abs(dy))) * max(1.0, float(np.max(np.abs(kw["weight"]))))
            * big)


def _gnp_scale(spec, kw, dy, name):
    """dx ~ max|dy| max|w| / min(std) over the sets of x and of both branches;
    dweight ~ sum|dy| max(|a|, |b|); dbias = sum|dy|; dmix ~ lam(1-lam) sum|w dy|(|a| + |b|)."""
    from refnorm.reference.gn_plus import batch_branch, group_branch

    x = np.asarray(kw["x"], dtype=np.float64)
    G, eps, bs, variant = kw["num_groups"], kw["eps"], kw["batch_stats"], kw["variant"]
    if variant == "gn_first":
        a = group_branch(x, G, eps)
        b = batch_branch(a, eps, bs)
    elif variant == "bn_first":
        b = batch_branch(x, eps, bs)
        a = group_branch(b, G, eps)
    else:
        a, b = group_branch(x, G, eps), batch_branch(x, eps, bs)
    N, C = x.shape[:2]
    stds = []
    for t in (x, a, b):
        stds.append(np.std(t.reshape(N, G, -1), axis=2, ddof=1))
        tt = t.reshape(N, C, -1)
        stds.append(np.std(tt, axis=0, ddof=1) if bs == "position"
                    else np.std(np.moveaxis(tt, 1, 0).reshape(C, -1), axis=1, ddof=1))
    inv = 1.0 / (min(float(np.min(s)) for s in stds) + eps)
    w = np.asarray(kw["weight"], dtype=np.float64)
    lam = 1.0 / (1.0 + np.exp(-float(np.reshape(kw["mix"], ()))))
    wb = w.reshape((1, C) + (1,) * (x.ndim - 2))
    return {"x": float(np.max(np.abs(dy))) * max(1.0, float(np.max(np.abs(w)))) * inv,
            "weight": float(np.sum(np.abs(dy)) * max(np.max(np.abs(a)), np.max(np.abs(b)))),
            "bias": float(np.sum(np.abs(dy))),
            "mix": float(lam * (1 - lam) * np.sum(np.abs(wb * dy) * (np.abs(a) + np.abs(b))))}[name]


def _ws_scale(spec, kw, dy, name):
    """Per output channel, ``dW = r (gd - mean gd) + c3 wc`` with ``gd = gain dy``:
    ``r max|gd| (2 + n/(n - delta) max(wc^2)/v)`` (every eps mode has
    ``|c3 wc| <= r max|gd| n/(n - delta) wc^2/v``); ``dgain = r sum dy wc``: ``r sum|dy wc|``."""
    from refnorm.reference.weight_standardization import resolve_options

    w = np.asarray(kw["weight"], dtype=np.float64)
    C = w.shape[0]
    w2 = w.reshape(C, -1)
    n = w2.shape[1]
    _, st = spec.forward_with_stats(**kw)
    r = st["scale"]
    est = resolve_options(kw.get("style", "deepmind"), kw.get("estimator"), kw.get("eps_mode"), kw.get("eps"),
                          kw.get("fan_in_scaling"))[0]
    delta = 1 if est == "unbiased" else 0
    wc = w2 - w2.mean(axis=1, keepdims=True)
    v = (wc * wc).sum(axis=1) / (n - delta)
    d2 = np.asarray(dy, dtype=np.float64).reshape(C, n)
    g = np.ones(C) if kw.get("gain") is None else np.asarray(kw["gain"], dtype=np.float64)
    if name == "gain":
        return float(np.max(r * np.abs(d2 * wc).sum(axis=1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t3 = np.where(v > 0, n / (n - delta) * np.max(wc * wc, axis=1) / v, 0.0)
    return float(np.max(r * np.abs(g) * np.max(np.abs(d2), axis=1) * (2.0 + t3)))


def _bln_scale(spec, kw, dy, name):
    """dx: for each branch, ``|w_branch|/sqrt(d) max|gamma dy| rstd (2 + max|xhat|^2)``;
    dweight: ``max_j sum |dy| (|w_F xhat_F| + |w_B xhat_B|)/sqrt(d)``; dbias: ``max_j sum|dy|``."""
    x = np.asarray(kw["x"], dtype=np.float64)
    fa = kw.get("feature_axis", -1) % x.ndim
    d = x.shape[fa]
    B = x.shape[0] if kw.get("batch_size") is None else kw["batch_size"]
    off = kw.get("weight_offset", 1e-4)
    w_F, w_B = 1.0 / B - off, 1.0 - (1.0 / B + off)
    sd = np.sqrt(d) if kw.get("sqrt_d_scale", True) else 1.0
    _, st = spec.forward_with_stats(**kw)
    xh_F = (x - st["feature_mean"]) * st["feature_rstd"]
    xh_B = (x - st["batch_mean"]) * st["batch_rstd"]
    axes = tuple(a for a in range(x.ndim) if a != fa)
    if name == "bias":
        return float(np.max(np.abs(dy).sum(axis=axes)))
    if name == "weight":
        return float(np.max((np.abs(dy) * (abs(w_F) * np.abs(xh_F) + abs(w_B) * np.abs(xh_B))).sum(axis=axes))) / sd
    pshape = tuple(d if a == fa else 1 for a in range(x.ndim))
    gam = np.ones(pshape) if kw.get("weight") is None else np.reshape(kw["weight"], pshape)
    gmax = float(np.max(np.abs(gam * dy))) / sd
    return gmax * sum(abs(wb) * float(np.max(r)) * (2.0 + float(np.max(np.abs(xh))) ** 2)
                      for wb, r, xh in ((w_F, st["feature_rstd"], xh_F), (w_B, st["batch_rstd"], xh_B)))


SEED_SCALES = {"proxy_norm": _pn_scale, "gn_plus": _gnp_scale, "weight_standardization": _ws_scale,
               "batch_layer_norm": _bln_scale}


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

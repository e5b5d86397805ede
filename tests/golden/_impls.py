"""Independent implementations used to calibrate the tolerance model
(tests/golden/test_tolerance.py): PyTorch CPU in the case dtype, a plain
two-pass float32 NumPy implementation and a one-pass (E[x^2] - E[x]^2)
float32 one; for the seed layers, PyTorch transcriptions of the authors'
formulas in float32 (:func:`run_torch_seed`).  Each returns ``{output name: float64 array}`` for the outputs
it can produce, or raises ``Unsupported``."""

from __future__ import annotations

import numpy as np

import refnorm
from refnorm.golden import recipes as R
from refnorm.golden.catalogue import const_stats, has_jvp, has_running_update, has_second_order, layout, resolved_eps
from refnorm.golden.dtypes import DTYPES


class Unsupported(Exception):
    pass


# ----------------------------------------------------------------------------- PyTorch


def _t(a, grad=False):
    import torch

    if a is None:
        return None
    if a.dtype == DTYPES["bfloat16"]:
        t = torch.tensor(a.astype(np.float32)).to(torch.bfloat16)  # exact
    else:
        t = torch.tensor(np.array(a, copy=True))
    return t.requires_grad_(True) if grad else t


def _n(t):
    import torch

    return t.detach().to(torch.float64).numpy().copy()


# what torch exposes: statistics of IN and RMSNorm are not returned by any public op
TORCH_NO_STATS = {"instance_norm": "torch.nn.functional.instance_norm returns no statistics",
                  "rms_norm": "torch.nn.functional.rms_norm returns no statistics"}


def run_torch(spec, inputs) -> dict:
    import torch
    import torch.nn.functional as F

    a = spec.attrs
    x = _t(inputs["x"], grad=True)
    w = _t(inputs.get("weight"), grad=True)
    b = _t(inputs.get("bias"), grad=True)
    rm, rv = _t(inputs.get("running_mean")), _t(inputs.get("running_var"))
    out = {}
    try:
        offset = a.get("offset", 0.0)
        if offset != 0.0 and w is not None and spec.op in ("layer_norm", "rms_norm"):
            # zero-centred weights as the Hugging Face Gemma RMSNorm computes them: float32 (float64
            # stays float64), scale offset + weight in that dtype, one rounding to the input dtype
            acc = torch.promote_types(x.dtype, torch.float32)
            ns = tuple(a["normalized_shape"])
            if spec.op == "layer_norm":
                y = F.layer_norm(x.to(acc), ns, offset + w.to(acc), None if b is None else b.to(acc), a["eps"])
            else:
                xf = x.to(acc)
                eps = torch.finfo(acc).eps if a["eps"] is None else a["eps"]
                dims = tuple(range(-len(ns), 0))
                y = xf * torch.rsqrt(xf.pow(2).mean(dims, keepdim=True) + eps) * (offset + w.to(acc))
            y = y.to(x.dtype)
            if spec.op == "layer_norm":
                _, m, r = torch.native_layer_norm(x.detach(), ns, None, None, a["eps"])
                lead = tuple(spec.shapes["x"][: len(spec.shapes["x"]) - len(ns)])
                out["mean"], out["rstd"] = _n(m).reshape(lead), _n(r).reshape(lead)
        elif spec.op == "layer_norm":
            y = F.layer_norm(x, a["normalized_shape"], w, b, a["eps"])
            _, m, r = torch.native_layer_norm(x.detach(), a["normalized_shape"], None if w is None else w.detach(),
                                              None if b is None else b.detach(), a["eps"])
            lead = tuple(spec.shapes["x"][: len(spec.shapes["x"]) - len(a["normalized_shape"])])
            out["mean"], out["rstd"] = _n(m).reshape(lead), _n(r).reshape(lead)
        elif spec.op == "rms_norm":
            y = F.rms_norm(x, a["normalized_shape"], w, a["eps"])
        elif spec.op == "group_norm":
            y = F.group_norm(x, a["num_groups"], w, b, a["eps"])
            N, C = x.shape[0], x.shape[1]
            HW = int(np.prod(x.shape[2:]))
            _, m, r = torch.native_group_norm(x.detach(), None if w is None else w.detach(),
                                              None if b is None else b.detach(), N, C, HW, a["num_groups"], a["eps"])
            out["mean"], out["rstd"] = _n(m).reshape(N, a["num_groups"]), _n(r).reshape(N, a["num_groups"])
        elif spec.op == "instance_norm":
            y = F.instance_norm(x, rm, rv, w, b, a["use_input_stats"], a["momentum"], a["eps"])
        elif spec.op == "batch_norm":
            m = a["momentum"]
            if m is None:
                m = 1.0 / (a["num_batches_tracked"] + 1)
            if a["training"]:
                _, sm, sr = torch.native_batch_norm(
                    x.detach(), None if w is None else w.detach(), None if b is None else b.detach(),
                    None if rm is None else rm.clone(), None if rv is None else rv.clone(), True, m, a["eps"])
                out["mean"], out["rstd"] = _n(sm), _n(sr)
            y = F.batch_norm(x, rm, rv, w, b, a["training"], m, a["eps"])
        else:
            raise Unsupported(f"tests/golden/_impls.py has no PyTorch transcription of {spec.op} (run_torch)")
        out["y"] = _n(y)
        if "dy" in inputs:
            y.backward(_t(inputs["dy"]).to(y.dtype))
            out["dx"] = _n(x.grad) if x.grad is not None else np.zeros(x.shape)
            if w is not None:
                out["dweight"] = _n(w.grad) if w.grad is not None else np.zeros(w.shape)
            if b is not None:
                out["dbias"] = _n(b.grad) if b.grad is not None else np.zeros(b.shape)
        if has_running_update(spec):
            out["new_running_mean_torch"], out["new_running_var_torch"] = _n(rm), _n(rv)
    except (RuntimeError, ValueError) as e:
        raise Unsupported(f"torch: {type(e).__name__}: {e}") from None
    return out


# ----------------------------------------------------------------------------- NumPy float32


def run_numpy32(spec, inputs, *, one_pass: bool = False) -> dict:
    """Plain float32 NumPy (pairwise sums): two-pass statistics, or the
    one-pass E[x^2] - E[x]^2 variance when ``one_pass``."""
    f = np.float32
    x = inputs["x"].astype(f)
    w = None if inputs.get("weight") is None else inputs["weight"].astype(f)
    if w is not None and spec.attrs.get("offset", 0.0) != 0.0:
        w = f(spec.attrs["offset"]) + w  # zero-centred weights: the scale offset + weight, formed in float32
    b = None if inputs.get("bias") is None else inputs["bias"].astype(f)
    eps = f(resolved_eps(spec, inputs))
    const = const_stats(spec)
    lay = layout(spec)
    center = refnorm.registry()[spec.op].center
    pview = lay.param_view

    out = {}
    if "residual" in inputs:  # a fused residual add: h = x + residual in float32, stored in residual_dtype
        rd = spec.attrs.get("residual_dtype") or spec.dtype
        h = x.astype(np.float64) + inputs["residual"].astype(f).astype(np.float64)  # the float32 sum, exact
        h = R.round_to(f(h) if rd != "float64" else h, rd).astype(np.float64)
        out["h"] = h
        x = h.astype(f) if rd != "float64" else h
    with np.errstate(all="ignore"):
        if const:
            shape = [1] * x.ndim
            shape[1] = x.shape[1]
            rm = inputs["running_mean"].astype(f)
            rstd_c = f(1) / np.sqrt(inputs["running_var"].astype(f) + eps)
            xhat = (x - rm.reshape(shape)) * rstd_c.reshape(shape)
            rstd_full = np.broadcast_to(rstd_c.reshape(shape), x.shape)
            out["mean"], out["rstd"] = rm.astype(np.float64), rstd_c.astype(np.float64)
        else:
            to_sets, from_sets = lay.to_sets, lay.from_sets
            s = to_sets(x)
            K = f(s.shape[1])
            if not center:
                ms = (s * s).sum(axis=1, dtype=f) / K
                rstd = f(1) / np.sqrt(ms + eps)
                xh = s * rstd[:, None]
            else:
                mean = s.sum(axis=1, dtype=f) / K
                if one_pass:
                    var = (s * s).sum(axis=1, dtype=f) / K - mean * mean
                else:
                    d = s - mean[:, None]
                    var = (d * d).sum(axis=1, dtype=f) / K
                rstd = f(1) / np.sqrt(var + eps)
                xh = (s - mean[:, None]) * rstd[:, None]
                out["mean"] = mean.astype(np.float64).reshape(lay.stats["mean"])
            out["rstd"] = rstd.astype(np.float64).reshape(lay.stats["rstd"])
            xhat = from_sets(np.ascontiguousarray(xh))
            rstd_full = from_sets(np.ascontiguousarray(np.broadcast_to(rstd[:, None], s.shape)))
        wv, bv = pview(w), pview(b)
        y = xhat if wv is None else xhat * wv
        if bv is not None:
            y = y + bv
        out["y"] = y.astype(np.float64)
        if "dy" in inputs:
            dy = inputs["dy"].astype(f)
            g = dy if wv is None else dy * wv
            if const:
                dx = rstd_full * g
            else:
                gs, gxs = to_sets(g), to_sets(g * xhat)
                Kf = f(gs.shape[1])
                mg = gs.sum(axis=1, dtype=f) / Kf
                mgx = gxs.sum(axis=1, dtype=f) / Kf
                xs = to_sets(xhat)
                inner = gs - xs * mgx[:, None]
                if center:
                    inner = inner - mg[:, None]
                dx = from_sets(np.ascontiguousarray(inner)) * rstd_full
            out["dx"] = dx.astype(np.float64)
            if "h" in out:  # both inputs of the sum get the cotangent of h: the norm's plus dh
                if "dh" in inputs:
                    out["dx"] = out["dx"] + inputs["dh"].astype(f).astype(np.float64)
                out["dresidual"] = out["dx"].copy()
            axes = tuple(i for i in range(x.ndim) if i not in lay.param_axes)
            if w is not None:
                out["dweight"] = (dy * xhat).sum(axis=axes, dtype=f).astype(np.float64)
            if b is not None:
                out["dbias"] = dy.sum(axis=axes, dtype=f).astype(np.float64)
    for k in list(out):
        out[k] = out[k].astype(np.float64)
    return out


# ----------------------------------------------------------------------------- the seed layers, PyTorch


def _round_out(t, dtype):
    """A torch result rounded once to the case dtype (the backend model), as float64."""
    import torch

    return R.round_to(t.detach().to(torch.float64).numpy(), dtype).astype(np.float64)


def seed_forward(spec, T, detach=False):
    """``(y, statistics)`` of a seed layer from the tensors ``T`` (torch, one
    dtype): straight PyTorch transcriptions, independent of refnorm's kernels
    (the authors' formulas: PN ``get_rand`` quantiles with ``torch.erfinv`` and
    ``proxy_fw``; GN+ ``Tensor.std`` + eps; DeepMind WS ``W*scale - mean*scale``;
    BLN ``tf.nn.moments``), written as a function so that autograd,
    torch.func.jvp and the double backward differentiate it; ``detach``: the
    statistics as constants (a wrong derivative, for the catch)."""
    import math

    import torch
    import torch.nn.functional as F

    from refnorm.reference.weight_standardization import resolve_options

    a = spec.attrs
    f = T["x" if "x" in T else "weight" if "weight" in T else refnorm.registry()[spec.op].primary].dtype

    def st(t):
        return t.detach() if detach else t

    if spec.op == "proxy_norm":
        act = {"relu": torch.relu, "silu": F.silu, "swish": F.silu, "gelu": F.gelu}[a["activation"]]
        x, w, b, ps, psc = T["x"], T["weight"], T["bias"], T["proxy_shift"], T["proxy_scale"]
        C = x.shape[1]
        sh = (1, C) + (1,) * (x.ndim - 2)
        K = a["num_points"]
        q = math.sqrt(2) * torch.erfinv(2 * (torch.arange(K, dtype=f) + 0.5) / K - 1)  # get_rand
        P = act(w[:, None] * (ps[:, None] + (1 + psc)[:, None] * q[None, :]) + b[:, None])
        m = st(P.mean(1))
        s = st(1 / torch.sqrt(((P - m[:, None]) ** 2).mean(1) + a["eps"]))
        return (act(w.reshape(sh) * x + b.reshape(sh)) - m.reshape(sh)) * s.reshape(sh), {"mean": m, "rstd": s}
    if spec.op == "gn_plus":
        x = T["x"]
        N, C = x.shape[:2]
        G, eps = a["num_groups"], a["eps"]

        def gn(t):
            tg = t.reshape(N, G, -1)
            return ((tg - st(tg.mean(2, keepdim=True))) / st(tg.std(2, keepdim=True) + eps)).reshape(t.shape)

        def bn0(t):
            ax = (0,) if a["batch_stats"] == "position" else (0,) + tuple(range(2, t.ndim))
            return (t - st(t.mean(ax, keepdim=True))) / st(t.std(ax, keepdim=True) + eps)

        if a["variant"] == "gn_first":
            A = gn(x)
            B = bn0(A)
        elif a["variant"] == "bn_first":
            B = bn0(x)
            A = gn(B)
        else:
            A, B = gn(x), bn0(x)
        lam = torch.sigmoid(T["mix"].reshape(()))
        sh = (1, C) + (1,) * (x.ndim - 2)
        return (lam * A + (1 - lam) * B) * T["weight"].reshape(sh) + T["bias"].reshape(sh), {}
    if spec.op == "weight_standardization":
        W = T["weight"]
        C = W.shape[0]
        w2 = W.reshape(C, -1)
        n = w2.shape[1]
        est, mode, eps, fan = resolve_options(a["style"], a.get("estimator"), a.get("eps_mode"), a["eps"],
                                              a.get("fan_in_scaling"))
        mean = st(w2.mean(1, keepdim=True))
        var = st(w2.var(1, keepdim=True, unbiased=(est == "unbiased")))
        s = float(n) if fan else 1.0
        if mode == "floor":  # DeepMind WSConv2D.standardize_weight
            scale = torch.rsqrt(torch.clamp(var * s, min=eps))
            y2 = w2 * scale - mean * scale
        elif mode == "variance":
            scale = 1 / torch.sqrt(s * (var + eps))
            y2 = (w2 - mean) * scale
        else:
            scale = 1 / (math.sqrt(s) * (torch.sqrt(var) + eps))
            y2 = (w2 - mean) * scale
        if "gain" in T:
            y2 = y2 * T["gain"][:, None]
        return y2.reshape(W.shape), {"mean": mean[:, 0], "scale": scale[:, 0]}
    if spec.op == "batch_layer_norm":
        x = T["x"]
        kw = spec.attrs  # BLN's keyword-only arguments, under their names
        fa = kw.get("feature_axis", -1) % x.ndim
        d = x.shape[fa]
        eps = a["eps"]
        flags = kw.get("flags", (True, True, False, False)) if not kw.get("training", True) else (False,) * 4
        bax = (0,) if kw.get("batch_stats", "position") == "position" else tuple(i for i in range(x.ndim) if i != fa)
        mB = st(x.mean(bax, keepdim=True))
        vB = st(((x - mB) ** 2).mean(bax, keepdim=True))
        mF = st(x.mean(fa, keepdim=True))
        vF = st(((x - mF) ** 2).mean(fa, keepdim=True))
        mv = {k[len("moving_"):]: T[k] for k in T if k.startswith("moving_")}
        mB = mv["batch_mean"] if flags[0] else mB
        vB = mv["batch_var"] if flags[1] else vB
        mF = mv["feature_mean"] if flags[2] else mF
        vF = mv["feature_var"] if flags[3] else vF
        rB, rF = 1 / torch.sqrt(vB + eps), 1 / torch.sqrt(vF + eps)
        Bc = x.shape[0] if a["batch_size"] is None else a["batch_size"]
        off = kw.get("weight_offset", 1e-4)
        z = (1.0 / Bc - off) * (x - mF) * rF + (1.0 - (1.0 / Bc + off)) * (x - mB) * rB
        pshape = tuple(d if i == fa else 1 for i in range(x.ndim))
        if "weight" in T:
            z = z * T["weight"].reshape(pshape)
        y = z / math.sqrt(d) if kw.get("sqrt_d_scale", True) else z
        if "bias" in T:
            y = y + T["bias"].reshape(pshape)
        return y, {"batch_mean": mB, "batch_rstd": rB, "feature_mean": mF, "feature_rstd": rF}
    if spec.op == "dyt":
        # the authors' DynamicTanh.forward, channels_last=True (jiachenzhu/DyT dynamic_tanh.py):
        # x = torch.tanh(self.alpha * x); x = x * self.weight + self.bias (each optional here)
        y = torch.tanh(T["alpha"] * T["x"])
        if "weight" in T:
            y = y * T["weight"]
        if "bias" in T:
            y = y + T["bias"]
        return y, {}
    if spec.op == "scale_norm":
        # the authors' ScaleNorm, norm = g / ||x||.clamp(min=eps); y = x * norm, written so that neither
        # the squares nor autograd's 1/n^2 overflow or underflow in float32 (the corpus's e7_huge and
        # tiny_eps0 cases demand it): each row is scaled by s = 2^-e, e the exponent of its max |x|
        # (exact), ss = sum (x s)^2, and 1/max(n, eps) is s/sqrt(ss) where n = sqrt(ss)/s >= eps, 1/eps
        # where the clamp is active (the mask a constant, as clamp's backward).  torch.sqrt, so that the
        # eps-inside-sqrt mutation of the calibration test reaches it; zero rows take no sqrt at all
        x = T["x"]
        e = torch.frexp(x.detach().abs().amax(-1, keepdim=True))[1]
        sc = torch.ldexp(torch.ones_like(x.detach()[..., :1]), -e)
        ss = ((x * sc) ** 2).sum(-1, keepdim=True)
        nz = ss > 0
        root = torch.sqrt(torch.where(nz, ss, torch.ones_like(ss)))
        active = (~nz) | (root.detach() / sc < a["eps"])
        r = st(torch.where(active, torch.full_like(ss, 1.0 / a["eps"] if a["eps"] > 0 else math.inf), sc / root))
        return x * (T["g"].reshape(()) * r), {"rnorm": r[..., 0]}
    if spec.op == "normalize":
        # torch.nn.functional.normalize's formula, x / vector_norm(x).clamp_min(eps), with the slice
        # scaled by a constant power of two 2^k near max|x| first (exact, and N = 2^k ||x / 2^k||
        # identically, so autograd's derivative is unchanged): F.normalize itself overflows or
        # underflows on the corpus's 2^70 / 2^-80 / 2^600 cases (refnorm/conformance/xfails/torch.txt)
        x = T["x"]
        p, dim, eps = float(a["p"]), int(a["dim"]), a["eps"]
        amax = x.detach().abs().amax(dim, keepdim=True)
        k = torch.frexp(torch.where(amax > 0, amax, torch.ones_like(amax)))[1]
        m = torch.ldexp(torch.ones_like(amax), k)
        norm = torch.linalg.vector_norm(x / m, ord=p, dim=dim, keepdim=True) * m
        d = st(norm.clamp_min(eps))
        return x / d, {"norm": d.squeeze(dim)}
    if spec.op == "filter_response_norm":  # timm FilterResponseNormTlu2d.forward, over every spatial dim
        x = T["x"]
        C = x.shape[1]
        sh = (1, C) + (1,) * (x.ndim - 2)
        nu2 = st(x.square().mean(dim=tuple(range(2, x.ndim)), keepdim=True))
        r = 1 / torch.sqrt(nu2 + a["eps"])  # timm: torch.rsqrt (1/sqrt here: the eps-shift catch patches sqrt)
        z = x * r * T["weight"].reshape(sh) + T["bias"].reshape(sh)
        y = torch.maximum(z, T["tau"].reshape(sh)) if "tau" in T else z
        return y, {"rstd": r.reshape(x.shape[0], C)}
    if spec.op == "local_response_norm":
        # torch.nn.functional.local_response_norm's code (torch/nn/functional.py, the dim > 3 branch, which
        # a 3-D input takes as (N, C, L, 1)) with its denominator exposed as the statistic: squares, zero
        # padding size // 2 in front and (size - 1) // 2 behind, avg_pool3d over size channels, then
        # (alpha mean + k)^beta; torch.pow (F.local_response_norm calls Tensor.pow), so that the
        # calibration test's mutation reaches it
        x = T["x"]
        size, sizes = int(a["size"]), x.shape
        div = (x * x).reshape(sizes[0], 1, sizes[1], sizes[2], -1)
        div = F.pad(div, (0, 0, 0, 0, size // 2, (size - 1) // 2))
        div = F.avg_pool3d(div, (size, 1, 1), stride=1).squeeze(1).reshape(sizes)
        div = st(torch.pow(div.mul(a.get("alpha", 1e-4)).add(a.get("k", 1.0)), a.get("beta", 0.75)))
        return x / div, {"div": div}
    if spec.op == "weight_norm":
        # torch._weight_norm's formula, v * (g / norm_except_dim(v, 2, dim)), as v * (g * (1 / n)) (dim -1: the
        # whole tensor),
        # with each slice scaled by a constant power of two 2^-e near 1/max|v| first (exact: n = 2^e
        # sqrt(sum (v 2^-e)^2) identically, so autograd's derivative is unchanged), because the unscaled
        # squares overflow float32 on the corpus's 2^70 case; torch.sqrt, so that the calibration's
        # eps-inside-sqrt mutation reaches it
        v, g, dim = T["v"], T["g"], int(a.get("dim", 0))
        axes = tuple(range(v.ndim)) if dim == -1 else tuple(i for i in range(v.ndim) if i != dim % v.ndim)
        # (torch reads an empty axes tuple as "every dim": a 1-d v with dim 0 has one-element slices)
        amax = v.detach().abs().amax(axes, keepdim=True) if axes else v.detach().abs()
        e = torch.frexp(torch.where(amax > 0, amax, torch.ones_like(amax)))[1]
        sc = torch.ldexp(torch.ones_like(amax), -e)
        sq = (v * sc) ** 2
        root = torch.sqrt(sq.sum(axes, keepdim=True) if axes else sq)
        r = st(sc / root)  # 1/n; never n itself in the graph: g/n^2 ~ 2^-140 would underflow float32
        n = root / sc
        return v * (g * r), {"norm": n.reshape(()) if dim == -1 else n}
    if spec.op == "evo_norm_b0":  # timm EvoNorm2dB0.forward (the running_var update is not in the corpus)
        x = T["x"]
        sh = (1, x.shape[1], 1, 1)
        eps = a["eps"]
        var = st(x.var(dim=(0, 2, 3), unbiased=False)) if a.get("training", True) else T["running_var"]
        left = torch.sqrt(var + eps).reshape(sh).expand_as(x)
        right = x * T["v"].reshape(sh) + torch.sqrt(st(x.var(dim=(2, 3), unbiased=False, keepdim=True)) + eps)
        y = x / torch.maximum(left, right) * T["weight"].reshape(sh) + T["bias"].reshape(sh)
        return y, {}
    if spec.op == "evo_norm_s0":  # timm EvoNorm2dS0.forward with group_std, over every spatial dim
        x, G = T["x"], a["num_groups"]
        N, C = x.shape[0], x.shape[1]
        sh = (1, C) + (1,) * (x.ndim - 2)
        xg = x.reshape(N, G, -1)
        m = xg.mean(2, keepdim=True)
        std = torch.sqrt(xg.var(dim=2, unbiased=False, keepdim=True) + a["eps"])  # group_std; the catch patches sqrt
        std = st(std).expand(xg.shape).reshape(x.shape)
        y = x * (x * T["v"].reshape(sh)).sigmoid() / std * T["weight"].reshape(sh) + T["bias"].reshape(sh)
        return y, {"mean": m.reshape(N, G), "rstd": 1 / std.reshape(N, G, -1)[:, :, 0]}
    if spec.op == "batch_renorm":  # Ioffe 2017, Algorithm 1; r, d detached (stop_gradient); eval: BN inference
        x, rm, rv = T["x"], T["running_mean"], T["running_var"]
        C = x.shape[1]
        sh = (1, C) + (1,) * (x.ndim - 2)
        dims = [0] + list(range(2, x.ndim))
        eps = a["eps"]
        sigma = torch.sqrt(rv + eps)
        stats = {}
        if a["training"]:
            mu = st(x.mean(dim=dims))
            var = st(((x - mu.reshape(sh)) ** 2).mean(dim=dims))
            sigma_b = torch.sqrt(var + eps)
            r = torch.clamp(sigma_b / sigma, 1.0 / a["r_max"], a["r_max"]).detach()
            d = torch.clamp((mu - rm) / sigma, -a["d_max"], a["d_max"]).detach()
            xhat = (x - mu.reshape(sh)) / sigma_b.reshape(sh) * r.reshape(sh) + d.reshape(sh)
            m = x.numel() // C
            f = a["momentum"] if a["momentum"] is not None else 1.0 / (a["num_batches_tracked"] + 1)
            stats = {"mean": mu, "rstd": 1 / sigma_b, "new_running_mean_torch": (1 - f) * rm + f * mu.detach(),
                     "new_running_var_torch": (1 - f) * rv + f * var.detach() * (m / (m - 1))}
        else:
            xhat = (x - rm.reshape(sh)) / sigma.reshape(sh)
            stats = {"mean": rm, "rstd": 1 / sigma}
        y = xhat * T["weight"].reshape(sh) if "weight" in T else xhat
        y = y + T["bias"].reshape(sh) if "bias" in T else y
        return y, stats
    if spec.op == "ada_layer_norm":  # DiT: modulate(nn.LayerNorm(hidden, elementwise_affine=False)(x), shift, scale)
        x = T["x"]
        ns = a["normalized_shape"]
        ns = (ns,) if isinstance(ns, int) else tuple(ns)
        N, D = x.shape[0], math.prod(ns)
        x3 = x.reshape(N, -1, D)
        m = st(x3.mean(-1, keepdim=True))
        v = st(((x3 - m) ** 2).mean(-1, keepdim=True))
        r = 1 / torch.sqrt(v + a["eps"])  # torch's layer_norm: rsqrt (1/sqrt here: the eps-shift catch patches sqrt)
        xn = (x3 - m) * r
        y = xn * (1 + T["scale"].reshape(N, 1, D)) + T["shift"].reshape(N, 1, D)  # modulate, unsqueeze over mid
        lead = x.shape[: x.ndim - len(ns)]
        return y.reshape(x.shape), {"mean": m.reshape(lead), "rstd": r.reshape(lead)}
    if spec.op == "adaptive_instance_norm":
        # the authors' calc_mean_std / adaptive_instance_normalization (naoto0804/pytorch-AdaIN function.py):
        # feat_var = feat.view(N, C, -1).var(dim=2) + eps (unbiased), feat_std = feat_var.sqrt()
        x, sty, eps = T["x"], T["style"], a.get("eps", 1e-5)
        N, C = x.shape[0], x.shape[1]
        f3, s3 = x.reshape(N, C, -1), sty.reshape(N, C, -1)
        m, sd = st(f3.mean(dim=2, keepdim=True)), torch.sqrt(f3.var(dim=2, keepdim=True) + eps)
        sm, ss = st(s3.mean(dim=2, keepdim=True)), st(torch.sqrt(s3.var(dim=2, keepdim=True) + eps))
        r = st(1 / sd)
        y = ((f3 - m) * r * ss + sm).reshape(x.shape)
        return y, {"mean": m.reshape(N, C), "rstd": r.reshape(N, C), "style_mean": sm.reshape(N, C),
                   "style_std": ss.reshape(N, C)}
    raise Unsupported(spec.op)


#: seed layers with no statistics to detach (``seed_forward(detach=True)`` is the same function)
NO_STATISTICS = {"dyt": "DyT is elementwise: it computes no statistic"}


def run_torch_seed_derivatives(spec, inputs, drop=None, detach=False) -> dict:
    """``ty`` (torch.func.jvp) and ``d2<key>`` (autograd's double backward of
    ``<dy, y>``, contracted with the second-order cotangents) of the
    transcription :func:`seed_forward`, computed in float64 for float64 cases and in
    float32 otherwise, rounded once to the case dtype.  ``drop``: an argument
    whose direction (tangent and second-order cotangent) is left out;
    ``detach``: the statistics as constants (both wrong, for the catch)."""
    import torch

    dt = spec.dtype
    f = torch.float64 if dt == "float64" else torch.float32
    T = {k: torch.tensor(np.asarray(v).astype(np.float64), dtype=f) for k, v in inputs.items()}
    op = refnorm.registry()[spec.op]
    args = [a for a in op.differentiable if a in T]
    primals = tuple(T[a] for a in args)

    def fn(*vals):
        return seed_forward(spec, {**T, **dict(zip(args, vals))}, detach)[0]

    def direction(prefix, a):
        return T[prefix + a] if prefix + a in T and a != drop else torch.zeros_like(T[a])

    out = {}
    if has_jvp(spec):
        out["ty"] = torch.func.jvp(fn, primals, tuple(direction("t", a) for a in args))[1]
    if has_second_order(spec):
        prim = [p.clone().requires_grad_(True) for p in primals]
        dy = T["dy"].clone().requires_grad_(True)
        grads = torch.autograd.grad(fn(*prim), prim, dy, create_graph=True, allow_unused=True)
        L = sum((direction("dd", a) * g).sum() for a, g in zip(args, grads) if g is not None)
        d2 = torch.autograd.grad(L, [dy] + prim, allow_unused=True)
        for key, v, like in zip(["dy"] + args, d2, [dy] + prim):
            out["d2" + key] = torch.zeros_like(like) if v is None else v
    return {k: R.round_to(v.detach().to(torch.float64).numpy(), dt).astype(np.float64) for k, v in out.items()}


def run_torch_seed(spec, inputs) -> dict:
    """The seed layers' transcriptions (:func:`seed_forward`), computed in
    float64 for float64 cases and in float32 otherwise: ``y``, the statistics,
    the backward by torch autograd and, for a case with tangents or
    second-order cotangents, :func:`run_torch_seed_derivatives`; every output
    rounded once to the case dtype."""
    import torch

    dt = spec.dtype
    f = torch.float64 if dt == "float64" else torch.float32
    T = {k: torch.tensor(np.asarray(v).astype(np.float64), dtype=f) for k, v in inputs.items()}
    grads = [k for k in refnorm.registry()[spec.op].differentiable if k in T]
    for k in grads:
        T[k].requires_grad_(True)
    y, out = seed_forward(spec, T)
    out["y"] = y
    if "dy" in T:
        y.backward(T["dy"])
        for k in grads:
            out["d" + k] = T[k].grad if T[k].grad is not None else torch.zeros_like(T[k])
    out = {k: _round_out(v, dt) for k, v in out.items()}
    out.update(run_torch_seed_derivatives(spec, inputs))
    return out


__all__ = [
    "NO_STATISTICS", "Unsupported", "run_torch", "run_torch_seed", "run_torch_seed_derivatives", "run_numpy32",
    "seed_forward", "TORCH_NO_STATS"
]

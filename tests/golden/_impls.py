"""Independent implementations used to calibrate the tolerance model
(tests/golden/test_tolerance.py): PyTorch CPU in the case dtype, a plain
two-pass float32 NumPy implementation and a one-pass (E[x^2] - E[x]^2)
float32 one.  Each returns ``{output name: float64 array}`` for the outputs
it can produce, or raises ``Unsupported``."""

from __future__ import annotations

import numpy as np

from refnorm.golden import recipes as R
from refnorm.golden.catalogue import forward_args, has_running_update, resolved_eps


class Unsupported(Exception):
    pass


# ----------------------------------------------------------------------------- PyTorch


def _t(a, grad=False):
    import torch

    if a is None:
        return None
    if a.dtype == R.DTYPES["bfloat16"]:
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
        if spec.op == "layer_norm":
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
            raise Unsupported(spec.op)
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
    a = spec.attrs
    x = inputs["x"].astype(f)
    w = None if inputs.get("weight") is None else inputs["weight"].astype(f)
    b = None if inputs.get("bias") is None else inputs["bias"].astype(f)
    eps = f(resolved_eps(spec, inputs))
    const = (spec.op == "batch_norm" and not a["training"]) or (
        spec.op == "instance_norm" and not a["use_input_stats"])

    def pview(p):
        if p is None:
            return None
        if spec.op in ("layer_norm", "rms_norm"):
            return np.broadcast_to(p, x.shape)
        shape = [1] * x.ndim
        shape[1] = x.shape[1]
        return np.broadcast_to(p.reshape(shape), x.shape)

    out = {}
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
            to_sets, from_sets = R.reduction_view(spec.op, x.shape, a)
            s = to_sets(x)
            K = f(s.shape[1])
            if spec.op == "rms_norm":
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
                lead = _lead(spec)
                out["mean"] = mean.astype(np.float64).reshape(lead)
            out["rstd"] = rstd.astype(np.float64).reshape(_lead(spec))
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
                if spec.op != "rms_norm":
                    inner = inner - mg[:, None]
                dx = from_sets(np.ascontiguousarray(inner)) * rstd_full
            out["dx"] = dx.astype(np.float64)
            if spec.op in ("layer_norm", "rms_norm"):
                axes = tuple(range(x.ndim - len(a["normalized_shape"])))
            else:
                axes = tuple(i for i in range(x.ndim) if i != 1)
            if w is not None:
                out["dweight"] = (dy * xhat).sum(axis=axes, dtype=f).astype(np.float64)
            if b is not None:
                out["dbias"] = dy.sum(axis=axes, dtype=f).astype(np.float64)
    for k in list(out):
        out[k] = out[k].astype(np.float64)
    return out


def _lead(spec):
    x, a = spec.shapes["x"], spec.attrs
    if spec.op in ("layer_norm", "rms_norm"):
        return tuple(x[: len(x) - len(a["normalized_shape"])])
    if spec.op == "group_norm":
        return (x[0], a["num_groups"])
    if spec.op == "instance_norm":
        return (x[0], x[1])
    return (x[1],)


__all__ = ["Unsupported", "run_torch", "run_numpy32", "TORCH_NO_STATS", "forward_args"]

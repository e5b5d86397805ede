"""Print the worst norm-wise relative error of refnorm against PyTorch float64
(forward and autograd backward) and against HIPS autograd differentiating the
reference, per op, over the cases of tests/_util.op_cases.

    python tools/core_errors.py

Relative error of an array = max|ours - theirs| / max(max|theirs|, m), where m
is the magnitude of the terms the array is computed from (tests/_util.gradient_scale;
0 for y).  Without m, a gradient that is exactly 0 (a single-element set) against
another implementation's 1e-17 of rounding noise would count as relative error 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from autograd import grad

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refnorm  # noqa: E402
from refnorm._registry import STANDARD_OPS  # noqa: E402
from tests._util import gradient_scale, op_cases, random_dy, reference_kwargs  # noqa: E402


def rel(a, b, m=0.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), m, np.finfo(float).tiny))


def torch_call(op, kw, dy):
    import torch
    F = torch.nn.functional
    T = {k: (torch.tensor(v, requires_grad=k in ("x", "weight", "bias")) if isinstance(v, np.ndarray) else v)
         for k, v in kw.items()}
    if op == "batch_norm":
        rm = None if kw["running_mean"] is None else torch.tensor(kw["running_mean"])
        rv = None if kw["running_var"] is None else torch.tensor(kw["running_var"])
        y = F.batch_norm(T["x"], rm, rv, T["weight"], T["bias"], kw["training"], kw["momentum"], kw["eps"])
    elif op == "instance_norm":
        rm = None if kw["running_mean"] is None else torch.tensor(kw["running_mean"])
        rv = None if kw["running_var"] is None else torch.tensor(kw["running_var"])
        y = F.instance_norm(T["x"], rm, rv, T["weight"], T["bias"], kw["use_input_stats"], kw["momentum"], kw["eps"])
    elif op == "layer_norm":
        y = F.layer_norm(T["x"], kw["normalized_shape"], T["weight"], T["bias"], kw["eps"])
    elif op == "group_norm":
        y = F.group_norm(T["x"], kw["num_groups"], T["weight"], T["bias"], kw["eps"])
    else:
        y = F.rms_norm(T["x"], kw["normalized_shape"], T["weight"], kw["eps"])
    y.backward(torch.tensor(dy))
    grads = {k: T[k].grad.numpy() for k in ("x", "weight", "bias") if isinstance(T.get(k), torch.Tensor)}
    return y.detach().numpy(), grads


def main():
    print(f"{'op':15s} {'vs torch: y':>12s} {'dx':>10s} {'dparams':>10s} | {'vs autograd: y':>14s} {'dx':>10s} {'dparams':>10s}")
    for op in STANDARD_OPS:  # the ops PyTorch has; seed layers are measured by their own tests
        spec = refnorm.registry()[op]
        worst = dict(ty=0.0, tdx=0.0, tdp=0.0, ay=0.0, adx=0.0, adp=0.0)
        for _, kw in op_cases(op):
            y = spec.forward(**kw)
            dy = random_dy(y.shape, seed=3)
            g = spec.backward(dy, **kw)
            m = gradient_scale(spec, kw, dy) / max(1, np.size(kw["x"]))  # one term, not their sum
            yt, gt = torch_call(op, kw, dy)
            worst["ty"] = max(worst["ty"], rel(y, yt))
            if rel(y, yt) > 1e-14:
                print(f"  note: {op} case {_} y vs torch {rel(y, yt):.1e}")
            worst["tdx"] = max(worst["tdx"], rel(g["x"], gt["x"], m))
            for k in ("weight", "bias"):
                if k in g:
                    worst["tdp"] = max(worst["tdp"], rel(g[k], gt[k], m))
            rkw = reference_kwargs(op, kw)
            worst["ay"] = max(worst["ay"], rel(y, spec.reference(**rkw)))
            for k in g:
                want = grad(lambda v, k=k: np.sum(spec.reference(**{**rkw, k: v}) * dy))(np.asarray(rkw[k], float))
                key = "adx" if k == "x" else "adp"
                worst[key] = max(worst[key], rel(g[k], want, m))
        print(f"{op:15s} {worst['ty']:12.1e} {worst['tdx']:10.1e} {worst['tdp']:10.1e} | "
              f"{worst['ay']:14.1e} {worst['adx']:10.1e} {worst['adp']:10.1e}")


if __name__ == "__main__":
    main()

"""numpy32: a plain, correct NumPy backend -- the honest second implementation.

It computes in float64 for float64 inputs and in float32 for every other
dtype (float32, float16, bfloat16: half types accumulate in float32, as real
kernels do), with a two-pass variance, and rounds every output to the dtype
of the array it belongs to (``y`` and ``dx`` to ``x.dtype``, ``dweight`` to
``weight.dtype``, running statistics to ``running_mean.dtype``).  The saved
statistics (``<op>_stats``) are returned in the accumulation dtype.

Everything is written once, on a *canonical view* of ``x`` (:class:`View`):
``stat_axes`` are the axes of one reduction set, ``param_shape`` broadcasts a
weight/bias against the view, ``param_axes`` are the axes ``dweight``/``dbias``
sum over.

======  ==========================  ==========  ===================  ==========
op      view                        stat_axes   param_shape          param_axes
======  ==========================  ==========  ===================  ==========
LN/RMS  ``(rows, D)``               (1,)        ``(1, D)``           (0,)
BN      ``(N, C, HW)``              (0, 2)      ``(1, C, 1)``        (0, 2)
IN      ``(N, C, HW)``              (2,)        ``(1, C, 1)``        (0, 2)
GN      ``(N, G, C/G, HW)``         (2, 3)      ``(1, G, C/G, 1)``   (0, 3)
======  ==========================  ==========  ===================  ==========

The numerics live in small methods of :class:`NumpyBackend` -- ``reduce_sum``,
``mean_of``, ``sum_squares``, ``rstd_of``, ``normalize``, ``recompute_xhat``,
``backward_terms``, ``param_grads``, ``store_stat``, ``momentum_factor``, ... --
so that each mutant in :mod:`refnorm.conformance.mutants` subclasses it and
overrides exactly one of them.  :func:`export` turns an instance into the
module-level protocol functions.

The only refinement over the textbook algorithm: the second pass divides the
centred values by a power of two ``s >= max|x - mean|`` (exact) when that
maximum exceeds 1, so float32 squares of values near 1e30 do not overflow
(E7 of the edge-case catalogue, docs/edge-cases.md#e7; PyTorch PR #178123);
``rstd = 1 / (s * sqrt(m2 + eps / s**2))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

BACKEND_INFO = {
    "name": "numpy32",
    "description": "plain NumPy, two-pass statistics, float32 accumulation for float32/float16/bfloat16 "
                   "(float64 for float64), outputs rounded to the input dtype",
}

_BF16 = np.dtype(ml_dtypes.bfloat16)

#: The protocol functions every backend built on :class:`NumpyBackend` exposes.
PROTOCOL = (
    "batch_norm", "batch_norm_backward", "batch_norm_stats", "batch_norm_running_stats",
    "layer_norm", "layer_norm_backward", "layer_norm_stats",
    "instance_norm", "instance_norm_backward", "instance_norm_stats", "instance_norm_running_stats",
    "group_norm", "group_norm_backward", "group_norm_stats",
    "rms_norm", "rms_norm_backward", "rms_norm_stats",
    "add_rms_norm", "add_rms_norm_backward", "add_rms_norm_stats",
    "add_layer_norm", "add_layer_norm_backward", "add_layer_norm_stats",
)


@dataclass
class View:
    """A canonical view of ``x`` (in the accumulation dtype) and how its axes are used."""

    x: np.ndarray
    stat_axes: tuple
    param_shape: tuple   # weight/bias reshaped to this broadcast against x
    param_axes: tuple    # axes dweight/dbias sum over
    stat_shape: tuple    # shape of the saved statistics
    out_shape: tuple     # the shape of the original x
    dtype: np.dtype      # the dtype of the original x
    eps: float = 0.0     # eps in the accumulation dtype
    center: bool = True  # False for RMSNorm (no mean subtraction)

    @property
    def n(self) -> int:
        """Size of one reduction set."""
        return int(np.prod([self.x.shape[a] for a in self.stat_axes]))


def _float_array(name, a):
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype.kind != "f" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def _check_param(name, p, shape):
    if p is not None and tuple(p.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(p.shape)}")


class NumpyBackend:
    """The numpy32 algorithm, one overridable piece per method."""

    # ------------------------------------------------------------------ dtypes
    def acc_dtype(self, dtype) -> np.dtype:
        """float64 for float64 inputs, float32 for everything else."""
        return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)

    def cast_eps(self, eps, dtype):
        """``eps`` as a scalar of the accumulation dtype."""
        return self.acc_dtype(dtype).type(eps)

    def rms_default_eps(self, dtype) -> float:
        """``rms_norm(eps=None)``: what PyTorch's kernel uses (refnorm's documented
        default): the float64 epsilon for float64, the float32 one otherwise."""
        return float(np.finfo(np.float64 if np.dtype(dtype) == np.float64 else np.float32).eps)

    def finish(self, a, dtype):
        """Round an output to ``dtype``."""
        return np.asarray(a).astype(dtype)

    def store_stat(self, a):
        """The saved statistics (mean, rstd) as ``<op>_stats`` returns them."""
        return a

    # ------------------------------------------------------------------ reductions
    def reduce_sum(self, a, axes):
        """Sum over ``axes`` keeping dims, in ``a``'s dtype (NumPy pairwise summation)."""
        return np.sum(a, axis=axes, keepdims=True)

    def mean_of(self, x, axes, n):
        """The first pass: the mean of each reduction set (0 for an empty set, an
        empty sum, as PyTorch and refnorm have it)."""
        return self.reduce_sum(x, axes) / x.dtype.type(max(n, 1))

    @staticmethod
    def pow2_scale(a, axes):
        """A power of two ``s >= max|a|`` per reduction set where that maximum exceeds 1, else 1."""
        with np.errstate(invalid="ignore"):
            amax = np.max(np.abs(a), axis=axes, keepdims=True) if a.size else np.zeros(
                [1 if i in axes else d for i, d in enumerate(a.shape)], a.dtype)
            _, e = np.frexp(np.where(np.isfinite(amax), amax, 0))
            return np.where(amax > 1, np.ldexp(a.dtype.type(1), e).astype(a.dtype), a.dtype.type(1))

    def sum_squares(self, xc, axes):
        """The second pass: ``(sum((xc / s)**2), s)`` with ``s`` the overflow guard."""
        s = self.pow2_scale(xc, axes)
        xs = xc / s
        return self.reduce_sum(xs * xs, axes), s

    def variance_divisor(self, n) -> int:
        """The divisor of the normalizing variance: n (biased)."""
        return n

    def rstd_of(self, m2, eps, s):
        """``1 / sqrt(var + eps)`` from the scaled variance ``m2 = var / s**2``."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return 1 / (s * np.sqrt(m2 + eps / (s * s)))

    def moments(self, x, axes, eps, center=True):
        """``(mean, rstd)`` of each reduction set (keepdims); ``mean`` is 0 for RMS."""
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if center:
                s0 = self.pow2_scale(x, axes)
                mean = self.mean_of(x / s0, axes, n) * s0
            else:
                mean = np.zeros([1 if i in axes else d for i, d in enumerate(x.shape)], x.dtype)
            ssq, s = self.sum_squares(x - mean, axes)
            m2 = ssq / x.dtype.type(self.variance_divisor(n))
            return mean, self.rstd_of(m2, eps, s)

    def running_moments(self, x, axes, correction):
        """``(mean, var)`` with divisor ``n - correction``, for running statistics."""
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s0 = self.pow2_scale(x, axes)
            mean = self.mean_of(x / s0, axes, n) * s0
            ssq, s = self.sum_squares(x - mean, axes)
            d = n - correction
            var = ssq / x.dtype.type(d) * (s * s) if d > 0 else np.full_like(ssq, np.nan)
            return mean, var

    # ------------------------------------------------------------------ forward pieces
    def normalize(self, x, mean, rstd):
        return (x - mean) * rstd

    def expand_param(self, p, view: View):
        """A weight/bias of the op's parameter shape, broadcastable against the view."""
        return None if p is None else p.reshape(view.param_shape)

    def affine(self, xhat, w, b):
        y = xhat if w is None else xhat * w
        return y if b is None else y + b

    def forward(self, view: View, weight, bias, stats):
        """``(y, mean, rstd)``; ``stats`` is ``(mean, rstd)`` for constant statistics or None."""
        mean, rstd = stats if stats is not None else self.moments(view.x, view.stat_axes, view.eps, view.center)
        w, b = self.expand_param(weight, view), self.expand_param(bias, view)
        with np.errstate(invalid="ignore", over="ignore"):
            y = self.affine(self.normalize(view.x, mean, rstd), w, b)
        return y, mean, rstd

    # ------------------------------------------------------------------ backward pieces
    def recompute_xhat(self, view: View, mean, rstd, w, b):
        """x-hat for the backward, recomputed from x and the statistics."""
        return self.normalize(view.x, mean, rstd)

    def reduce_mean(self, a, axes, n):
        return self.reduce_sum(a, axes) / a.dtype.type(n)

    def backward_terms(self, g, xhat, axes, n, center):
        """``c1 = mean(g)`` (0 without centring) and ``c2 = mean(g * xhat)`` per reduction set."""
        c1 = self.reduce_mean(g, axes, n) if center else 0
        c2 = self.reduce_mean(g * xhat, axes, n)
        return c1, c2

    def input_grad(self, g, xhat, rstd, c1, c2):
        """``dx = rstd * (g - c1 - xhat * c2)``."""
        return rstd * (g - c1 - xhat * c2)

    def param_grads(self, dy, xhat, view: View, wshape):
        """``dweight = sum dy * xhat``, ``dbias = sum dy`` over ``param_axes``."""
        dw = self.reduce_sum(dy * xhat, view.param_axes).reshape(wshape)
        db = self.reduce_sum(dy, view.param_axes).reshape(wshape)
        return dw, db

    def backward(self, dy, view: View, weight, bias, stats, wshape):
        """``{"x", "weight", "bias"}`` gradients (in the accumulation dtype)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            const = stats is not None
            mean, rstd = stats if const else self.moments(view.x, view.stat_axes, view.eps, view.center)
            w, b = self.expand_param(weight, view), self.expand_param(bias, view)
            xhat = self.recompute_xhat(view, mean, rstd, w, b)
            g = dy if w is None else dy * w
            if const:  # constant (running) statistics: no path through mean and rstd
                dx = g * rstd
            else:
                c1, c2 = self.backward_terms(g, xhat, view.stat_axes, view.n, view.center)
                dx = self.input_grad(g, xhat, rstd, c1, c2)
            out = {"x": dx}
            if weight is not None or bias is not None:
                dw, db = self.param_grads(dy, xhat, view, wshape)
                if weight is not None:
                    out["weight"] = dw
                if bias is not None:
                    out["bias"] = db
            return out

    # ------------------------------------------------------------------ running statistics
    def momentum_factor(self, momentum, num_batches_tracked, convention):
        """The weight of the *new* statistic."""
        if convention == "torch":
            if momentum is None:
                if num_batches_tracked is None:
                    raise ValueError("num_batches_tracked is required when momentum=None")
                return 1.0 / (int(num_batches_tracked) + 1)
            return float(momentum)
        if convention in ("onnx", "flax"):
            if momentum is None:
                raise ValueError(f"momentum=None exists only in convention='torch', got {convention!r}")
            return 1.0 - float(momentum)
        raise ValueError(f"convention must be 'torch', 'onnx' or 'flax', got {convention!r}")

    def running_var_correction(self, convention) -> int:
        """1 (unbiased) for torch, 0 (biased) for ONNX and Flax."""
        return 1 if convention == "torch" else 0

    def running_update(self, old, batch, factor):
        return factor * batch + (1 - factor) * old

    # ================================================================== views
    def _prep(self, x, *params):
        x = _float_array("x", x)
        return x, [_float_array(f"param{i}", p) for i, p in enumerate(params)]

    def _acc(self, a, dtype):
        return None if a is None else np.asarray(a).astype(self.acc_dtype(dtype))

    def _make_view(self, x, shape, stat_axes, param_shape, param_axes, stat_shape, eps, center):
        acc = self.acc_dtype(x.dtype)
        v = View(np.asarray(x).astype(acc).reshape(shape), stat_axes, param_shape, param_axes, stat_shape,
                 x.shape, x.dtype)
        v.eps = self.cast_eps(0.0 if eps is None else eps, x.dtype)
        v.center = center
        return v

    def rows_view(self, x, normalized_shape, eps, center=True):
        ns = (normalized_shape,) if np.ndim(normalized_shape) == 0 else tuple(normalized_shape)
        ns = tuple(int(d) for d in ns)
        if len(ns) == 0 or len(ns) > x.ndim or tuple(x.shape[x.ndim - len(ns):]) != ns:
            raise ValueError(f"normalized_shape {ns} must equal the trailing dimensions of x {x.shape}")
        D = int(np.prod(ns))
        lead = x.shape[: x.ndim - len(ns)]
        return self._make_view(x, (int(np.prod(lead)), D), (1,), (1, D), (0,), lead, eps, center), ns

    def channel_view(self, x, stat_axes, eps):
        """BN (stat_axes (0, 2)) and IN (stat_axes (2,)) view ``(N, C, HW)``."""
        if x.ndim < 2:
            raise ValueError(f"x must have shape (N, C, *spatial), got {x.shape}")
        N, C = x.shape[:2]
        HW = int(np.prod(x.shape[2:]))
        stat_shape = (C,) if stat_axes == (0, 2) else (N, C)
        return self._make_view(x, (N, C, HW), stat_axes, (1, C, 1), (0, 2), stat_shape, eps, True)

    def group_view(self, x, G, eps):
        """GN view ``(N, G, C/G, HW)``: group g holds channels g*C/G ... (g+1)*C/G - 1."""
        N, C = x.shape[:2]
        HW = int(np.prod(x.shape[2:]))
        return self._make_view(x, (N, G, C // G, HW), (2, 3), (1, G, C // G, 1), (0, 3), (N, G), eps, True)

    def _const_stats(self, view, running_mean, running_var):
        rm = self._acc(running_mean, view.dtype).reshape(view.param_shape)
        rv = self._acc(running_var, view.dtype).reshape(view.param_shape)
        return rm, self.rstd_of(rv, view.eps, view.x.dtype.type(1))

    def _stats_out(self, view, mean, rstd, center=True, const=False):
        """The saved statistics in the op's statistic shape ((C,) for running ones)."""
        shape = view.param_shape[1:2] if const else view.stat_shape
        stats = {"rstd": self.store_stat(np.asarray(rstd).reshape(shape))}
        if center:
            stats = {"mean": self.store_stat(np.asarray(mean).reshape(shape)), **stats}
        return stats

    def _grads_out(self, grads, view, weight, bias):
        out = {"x": self.finish(grads["x"].reshape(view.out_shape), view.dtype)}
        if "weight" in grads:
            out["weight"] = self.finish(grads["weight"], weight.dtype)
        if "bias" in grads:
            out["bias"] = self.finish(grads["bias"], bias.dtype)
        return out

    # ================================================================== LayerNorm
    def offset_scale(self, w, offset, backward=False):
        """The scale ``offset + weight`` of a zero-centred weight, formed in the
        accumulation dtype (float32; float64 for float64), as Gemma and
        TransformerEngine do; the weight itself when ``offset`` is 0."""
        if w is None or offset == 0.0:
            return w
        return w.dtype.type(offset) + w

    def _ln(self, x, normalized_shape, weight, bias, eps, offset=0.0, backward=False):
        x, (weight, bias) = self._prep(x, weight, bias)
        view, ns = self.rows_view(x, normalized_shape, eps)
        _check_param("weight", weight, ns)
        _check_param("bias", bias, ns)
        w = self.offset_scale(self._acc(weight, x.dtype), offset, backward)
        return view, ns, w, self._acc(bias, x.dtype), weight, bias

    def layer_norm_stats(self, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
        view, ns, w, b, _, _ = self._ln(x, normalized_shape, weight, bias, eps, offset)
        y, mean, rstd = self.forward(view, w, b, None)
        return self.finish(y.reshape(view.out_shape), view.dtype), self._stats_out(view, mean, rstd)

    def layer_norm(self, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
        return self.layer_norm_stats(x, normalized_shape, weight, bias, eps, offset=offset)[0]

    def layer_norm_backward(self, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
        view, ns, w, b, weight, bias = self._ln(x, normalized_shape, weight, bias, eps, offset, backward=True)
        dy = self._acc(dy, view.dtype).reshape(view.x.shape)
        return self._grads_out(self.backward(dy, view, w, b, None, ns), view, weight, bias)

    # ================================================================== RMSNorm
    def rms_weight(self, w):
        """The weight RMSNorm multiplies by (PyTorch: the weight itself)."""
        return w

    def _rms(self, x, normalized_shape, weight, eps, offset=0.0, backward=False):
        x, (weight,) = self._prep(x, weight)
        eps = self.rms_default_eps(x.dtype) if eps is None else eps
        view, ns = self.rows_view(x, normalized_shape, eps, center=False)
        _check_param("weight", weight, ns)
        return view, ns, self.offset_scale(self.rms_weight(self._acc(weight, x.dtype)), offset, backward), weight

    def rms_norm_stats(self, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
        view, ns, w, _ = self._rms(x, normalized_shape, weight, eps, offset)
        y, mean, rstd = self.forward(view, w, None, None)
        return self.finish(y.reshape(view.out_shape), view.dtype), self._stats_out(view, mean, rstd, center=False)

    def rms_norm(self, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
        return self.rms_norm_stats(x, normalized_shape, weight, eps, offset=offset)[0]

    def rms_norm_backward(self, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
        view, ns, w, weight = self._rms(x, normalized_shape, weight, eps, offset, backward=True)
        dy = self._acc(dy, view.dtype).reshape(view.x.shape)
        return self._grads_out(self.backward(dy, view, w, None, None, ns), view, weight, None)

    # ================================================================== fused residual add
    def residual_dtype(self, x, residual_dtype):
        if residual_dtype is None:
            return np.asarray(x).dtype
        return np.dtype(_BF16) if residual_dtype == "bfloat16" else np.dtype(residual_dtype)

    def residual_sum(self, x, residual, residual_dtype):
        """(h stored in residual_dtype, the values the norm sees): the sum in float32 (float64 when
        an input is float64), rounded once to residual_dtype; the norm sees that rounded h."""
        x, (residual,) = self._prep(x, residual)
        if residual.shape != x.shape:
            raise ValueError(f"residual must have the shape of x {x.shape}, got {residual.shape}")
        acc = np.float64 if np.float64 in (x.dtype, residual.dtype) else np.float32
        s = x.astype(acc) + residual.astype(acc)
        rd = self.residual_dtype(x, residual_dtype)
        h = s.astype(np.float32).astype(rd) if rd == _BF16 else s.astype(rd)
        return h, h

    def residual_grads(self, g, dh, x, residual):
        """dx = dresidual = the norm's input gradient + dh, each in its input's dtype."""
        total = np.asarray(g["x"]).astype(np.float64)
        if dh is not None:
            total = total + np.asarray(dh).astype(np.float64)
        out = {"x": self.finish(total, np.asarray(x).dtype), "residual": self.finish(total, np.asarray(residual).dtype)}
        out.update({k: v for k, v in g.items() if k != "x"})
        return out

    def add_rms_norm_stats(self, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                           residual_dtype=None):
        h, hn = self.residual_sum(x, residual, residual_dtype)
        y, stats = self.rms_norm_stats(hn, normalized_shape, weight, eps, offset=offset)
        return (y, h), stats

    def add_rms_norm(self, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
        return self.add_rms_norm_stats(x, residual, normalized_shape, weight, eps, offset=offset,
                                       residual_dtype=residual_dtype)[0]

    def add_rms_norm_backward(self, dy, dh, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                              residual_dtype=None):
        _, hn = self.residual_sum(x, residual, residual_dtype)
        dy = np.zeros(hn.shape, hn.dtype) if dy is None else dy
        g = self.rms_norm_backward(dy, hn, normalized_shape, weight, eps, offset=offset)
        return self.residual_grads(g, dh, x, residual)

    def add_layer_norm_stats(self, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                             residual_dtype=None):
        h, hn = self.residual_sum(x, residual, residual_dtype)
        y, stats = self.layer_norm_stats(hn, normalized_shape, weight, bias, eps, offset=offset)
        return (y, h), stats

    def add_layer_norm(self, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                       residual_dtype=None):
        return self.add_layer_norm_stats(x, residual, normalized_shape, weight, bias, eps, offset=offset,
                                         residual_dtype=residual_dtype)[0]

    def add_layer_norm_backward(self, dy, dh, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                                offset=0.0, residual_dtype=None):
        _, hn = self.residual_sum(x, residual, residual_dtype)
        dy = np.zeros(hn.shape, hn.dtype) if dy is None else dy
        g = self.layer_norm_backward(dy, hn, normalized_shape, weight, bias, eps, offset=offset)
        return self.residual_grads(g, dh, x, residual)

    # ================================================================== GroupNorm
    def _gn(self, x, num_groups, weight, bias, eps):
        x, (weight, bias) = self._prep(x, weight, bias)
        if x.ndim < 2:
            raise ValueError(f"x must have shape (N, C, *spatial), got {x.shape}")
        C = x.shape[1]
        G = int(num_groups)
        if G < 1 or C % G != 0:
            raise ValueError(f"num_groups must divide the number of channels C = {C}, got {num_groups}")
        _check_param("weight", weight, (C,))
        _check_param("bias", bias, (C,))
        view = self.group_view(x, G, eps)
        return view, self._acc(weight, x.dtype), self._acc(bias, x.dtype), weight, bias

    def group_norm_stats(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        view, w, b, _, _ = self._gn(x, num_groups, weight, bias, eps)
        y, mean, rstd = self.forward(view, w, b, None)
        return self.finish(y.reshape(view.out_shape), view.dtype), self._stats_out(view, mean, rstd)

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return self.group_norm_stats(x, num_groups, weight, bias, eps)[0]

    def group_norm_backward(self, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
        view, w, b, weight, bias = self._gn(x, num_groups, weight, bias, eps)
        dy = self._acc(dy, view.dtype).reshape(view.x.shape)
        return self._grads_out(self.backward(dy, view, w, b, None, (view.out_shape[1],)), view, weight, bias)

    # ================================================================== BatchNorm
    def bn_statistics(self, view, running_mean, running_var, training, momentum):
        """``None`` (batch statistics) in training, the running ones in eval."""
        if training:
            return None
        return self._const_stats(view, running_mean, running_var)

    def _bn(self, x, running_mean, running_var, weight, bias, training, momentum, eps):
        x, (running_mean, running_var, weight, bias) = self._prep(x, running_mean, running_var, weight, bias)
        view = self.channel_view(x, (0, 2), eps)
        C = x.shape[1]
        for name, p in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
            _check_param(name, p, (C,))
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must be given together")
        if not training and running_mean is None:
            raise ValueError("running_mean and running_var are required when training=False")
        if training and view.n == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got x of shape {x.shape}")
        stats = self.bn_statistics(view, running_mean, running_var, training, momentum)
        return view, stats, self._acc(weight, x.dtype), self._acc(bias, x.dtype), weight, bias

    def batch_norm_stats(self, x, running_mean, running_var, weight=None, bias=None, training=False,
                         momentum=0.1, eps=1e-5):
        view, stats, w, b, _, _ = self._bn(x, running_mean, running_var, weight, bias, training, momentum, eps)
        y, mean, rstd = self.forward(view, w, b, stats)
        return self.finish(y.reshape(view.out_shape), view.dtype), self._stats_out(view, mean, rstd, const=stats is not None)

    def batch_norm(self, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
        return self.batch_norm_stats(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]

    def batch_norm_backward(self, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                            momentum=0.1, eps=1e-5):
        view, stats, w, b, weight, bias = self._bn(x, running_mean, running_var, weight, bias, training,
                                                   momentum, eps)
        dy = self._acc(dy, view.dtype).reshape(view.x.shape)
        return self._grads_out(self.backward(dy, view, w, b, stats, (view.out_shape[1],)), view, weight, bias)

    def batch_norm_running_stats(self, x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                                 convention="torch"):
        x, (running_mean, running_var) = self._prep(x, running_mean, running_var)
        factor = self.momentum_factor(momentum, num_batches_tracked, convention)
        view = self.channel_view(x, (0, 2), 0.0)
        if view.n == 0:
            return running_mean.copy(), running_var.copy()
        if view.n == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got x of shape {x.shape}")
        mean, var = self.running_moments(view.x, (0, 2), self.running_var_correction(convention))
        return self._running_out(mean.reshape(-1), var.reshape(-1), running_mean, running_var, factor)

    def _running_out(self, mean, var, running_mean, running_var, factor):
        acc = mean.dtype
        f = acc.type(factor)
        new_mean = self.running_update(running_mean.astype(acc), mean, f)
        new_var = self.running_update(running_var.astype(acc), var, f)
        return self.finish(new_mean, running_mean.dtype), self.finish(new_var, running_var.dtype)

    # ================================================================== InstanceNorm
    def _in(self, x, running_mean, running_var, weight, bias, use_input_stats, eps):
        x, (running_mean, running_var, weight, bias) = self._prep(x, running_mean, running_var, weight, bias)
        view = self.channel_view(x, (2,), eps)
        C = x.shape[1]
        for name, p in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
            _check_param(name, p, (C,))
        if use_input_stats:
            if view.n == 1:
                raise ValueError(f"Expected more than 1 spatial element when training, got x of shape {x.shape}")
            stats = None
        else:
            if running_mean is None or running_var is None:
                raise ValueError("running_mean and running_var are required when use_input_stats=False")
            stats = self._const_stats(view, running_mean, running_var)
        return view, stats, self._acc(weight, x.dtype), self._acc(bias, x.dtype), weight, bias

    def instance_norm_stats(self, x, running_mean=None, running_var=None, weight=None, bias=None,
                            use_input_stats=True, momentum=0.1, eps=1e-5):
        view, stats, w, b, _, _ = self._in(x, running_mean, running_var, weight, bias, use_input_stats, eps)
        y, mean, rstd = self.forward(view, w, b, stats)
        return self.finish(y.reshape(view.out_shape), view.dtype), self._stats_out(view, mean, rstd, const=stats is not None)

    def instance_norm(self, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
        return self.instance_norm_stats(x, running_mean, running_var, weight, bias, use_input_stats, momentum,
                                        eps)[0]

    def instance_norm_backward(self, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                               use_input_stats=True, momentum=0.1, eps=1e-5):
        view, stats, w, b, weight, bias = self._in(x, running_mean, running_var, weight, bias, use_input_stats,
                                                   eps)
        dy = self._acc(dy, view.dtype).reshape(view.x.shape)
        return self._grads_out(self.backward(dy, view, w, b, stats, (view.out_shape[1],)), view, weight, bias)

    def instance_norm_running_stats(self, x, running_mean, running_var, momentum=0.1, *, convention="torch"):
        x, (running_mean, running_var) = self._prep(x, running_mean, running_var)
        if convention != "torch":
            raise NotImplementedError(f"instance norm running statistics exist only in convention='torch', "
                                      f"got {convention!r}")
        factor = self.momentum_factor(momentum, None, convention)
        view = self.channel_view(x, (2,), 0.0)
        if view.n == 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got x of shape {x.shape}")
        if x.shape[0] == 0:
            return running_mean.copy(), running_var.copy()
        mean, var = self.running_moments(view.x, (2,), self.running_var_correction(convention))
        # PyTorch averages the N per-sample updates, i.e. updates with the mean over n
        n = view.x.dtype.type(x.shape[0])
        mean = self.reduce_sum(mean, (0,)).reshape(-1) / n
        var = self.reduce_sum(var, (0,)).reshape(-1) / n
        return self._running_out(mean, var, running_mean, running_var, factor)


def export(backend: NumpyBackend, namespace: dict, names=PROTOCOL) -> None:
    """Bind ``backend``'s protocol methods as module-level functions of ``namespace``."""
    for name in names:
        namespace[name] = getattr(backend, name)


export(NumpyBackend(), globals())

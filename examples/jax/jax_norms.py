"""A JAX author's own LayerNorm and RMSNorm, with hand-written backward passes
(``jax.custom_vjp``), exposed as a refnorm backend.

This is what a kernel author's code looks like — it does not call refnorm.  It
is checked against the golden corpus with::

    refnorm check --backend examples/jax/jax_norms.py --ops layer_norm rms_norm

Numerics, as a production kernel would do them: half-precision inputs
(float16/bfloat16) are computed in float32 and the outputs rounded back to the
input dtype; float32 in float32; float64 in float64 (``jax_enable_x64``).
Statistics are two-pass (mean, then the mean of squared deviations), on data
scaled exactly by a power of two per row so that float32 sums and squares of
values near the top of the float32 range do not overflow (the corpus's E7 cases
caught the unscaled first version: rstd 0 and y 0 for rows of 1e30).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

BACKEND_INFO = {"name": "examples/jax", "description": "jax.numpy LayerNorm/RMSNorm with custom_vjp backward"}

def _compute_dtype(dtype):
    return jnp.float64 if dtype == jnp.float64 else jnp.float32

def _as_jax(a, dtype):
    return None if a is None else jnp.asarray(np.asarray(a)).astype(dtype)

# ----------------------------------------------------------------------------- LayerNorm

def _pow2_scale(x, axes):
    """Powers of two (s1, s2), s = s1 * s2 >= 1, with max|x| / s < 2 per reduction
    set (1 where the set is all-zero or non-finite).  Dividing by s is exact, so
    statistics of x / s cannot overflow even for float32 values near 3.4e38 (E7).
    Two factors of at most 2**64 each: XLA on CPU flushes subnormals to zero, so
    1 / 2**127 must never be formed."""
    m = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
    _, e = jnp.frexp(m)  # m = mant * 2**e, mant in [0.5, 1)
    k = jnp.where(jnp.isfinite(m) & (m > 1), e - 1, 0)
    one = jnp.ones_like(m)
    return jnp.ldexp(one, k // 2), jnp.ldexp(one, k - k // 2)

def _scaled_rstd(m2, s1, s2, eps):
    """(rstd, rstd * s) from the variance m2 of x / s, s = s1 * s2:
    rstd = 1 / sqrt(m2 s^2 + eps) without forming m2 s^2 (which overflows float32
    for |x| ~ 1e30) or 1 / s^2 (which underflows)."""
    r_s = jax.lax.rsqrt(m2 + ((eps / s1) / s1) / (s2 * s2))
    # a zero variance of a huge (s > 1) set: eps / s^2 may underflow, use eps itself
    degenerate = (m2 == 0) & (s1 * s2 > 1)
    rstd = jnp.where(degenerate, jax.lax.rsqrt(jnp.asarray(eps, m2.dtype)), (r_s / s1) / s2)
    return rstd, jnp.where(degenerate, 0.0, r_s)

def _ln_stats(x, axes, eps):
    """Two-pass statistics on the exactly scaled data t = x / s."""
    s1, s2 = _pow2_scale(x, axes)
    t = (x / s1) / s2
    # shift by the set's first element: a constant set then has deviations exactly 0
    # (so var is exactly 0, and with eps = 0 y is 0/0 = NaN as in exact arithmetic),
    # and a large common offset cancels before it is summed
    lead = x.shape[: x.ndim - len(axes)]
    k = t.reshape(lead + (int(np.prod(x.shape[x.ndim - len(axes):])),))[..., :1]
    k = k.reshape(lead + (1,) * len(axes))
    d = t - k
    dm = jnp.mean(d, axis=axes, keepdims=True)
    tc = d - dm
    m2 = jnp.mean(tc * tc, axis=axes, keepdims=True)  # biased variance of t
    rstd, r_s = _scaled_rstd(m2, s1, s2, eps)
    return ((k + dm) * s1) * s2, rstd, tc * r_s  # mean, rstd, xhat

@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _layer_norm(x, w, b, axes, eps):
    _, _, xhat = _ln_stats(x, axes, eps)
    return xhat * w + b

def _layer_norm_fwd(x, w, b, axes, eps):
    _, rstd, xhat = _ln_stats(x, axes, eps)
    return xhat * w + b, (xhat, rstd, w)

def _layer_norm_bwd(axes, eps, res, dy):
    xhat, rstd, w = res
    g = dy * w
    c1 = jnp.mean(g, axis=axes, keepdims=True)
    c2 = jnp.mean(g * xhat, axis=axes, keepdims=True)
    dx = rstd * (g - c1 - xhat * c2)
    lead = tuple(range(dy.ndim - len(axes)))
    return dx, jnp.sum(dy * xhat, axis=lead), jnp.sum(dy, axis=lead)

_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)

def _ln_setup(x, normalized_shape, weight, bias, offset=0.0):
    x = np.asarray(x)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    cd = _compute_dtype(x.dtype)
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    # zero-centred weights: the scale offset + weight, formed in the compute dtype
    w = offset + _as_jax(weight, cd) if weight is not None else jnp.ones(ns, cd)
    b = _as_jax(bias, cd) if bias is not None else jnp.zeros(ns, cd)
    return x, ns, cd, axes, w, b

def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    x, ns, cd, axes, w, b = _ln_setup(x, normalized_shape, weight, bias, offset)
    y = _layer_norm(_as_jax(x, cd), w, b, axes, float(eps))
    return np.asarray(y.astype(x.dtype))

def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    x, ns, cd, axes, w, b = _ln_setup(x, normalized_shape, weight, bias, offset)
    _, vjp = jax.vjp(lambda x_, w_, b_: _layer_norm(x_, w_, b_, axes, float(eps)), _as_jax(x, cd), w, b)
    dx, dw, db = vjp(_as_jax(dy, cd))
    out = {"x": np.asarray(dx.astype(x.dtype))}
    if weight is not None:
        out["weight"] = np.asarray(dw.astype(x.dtype))
    if bias is not None:
        out["bias"] = np.asarray(db.astype(x.dtype))
    return out

def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    x, ns, cd, axes, w, b = _ln_setup(x, normalized_shape, weight, bias, offset)
    xj = _as_jax(x, cd)
    mean, rstd, _ = _ln_stats(xj, axes, float(eps))
    y = _layer_norm(xj, w, b, axes, float(eps))
    lead = x.shape[: x.ndim - len(ns)]
    # statistics are kept in the compute dtype (float32 for half inputs), as kernels save them
    return np.asarray(y.astype(x.dtype)), {"mean": np.asarray(mean.reshape(lead)),
                                           "rstd": np.asarray(rstd.reshape(lead))}

# ----------------------------------------------------------------------------- RMSNorm

def _rms_stats(x, axes, eps):
    """rstd and xhat from the mean square of the exactly scaled data x / s."""
    s1, s2 = _pow2_scale(x, axes)
    t = (x / s1) / s2
    rstd, r_s = _scaled_rstd(jnp.mean(t * t, axis=axes, keepdims=True), s1, s2, eps)
    return rstd, t * r_s

@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _rms_norm(x, w, axes, eps):
    return _rms_stats(x, axes, eps)[1] * w

def _rms_norm_fwd(x, w, axes, eps):
    rstd, xhat = _rms_stats(x, axes, eps)
    return xhat * w, (xhat, rstd, w)

def _rms_norm_bwd(axes, eps, res, dy):
    xhat, rstd, w = res
    g = dy * w
    c2 = jnp.mean(g * xhat, axis=axes, keepdims=True)
    dx = rstd * (g - xhat * c2)
    lead = tuple(range(dy.ndim - len(axes)))
    return dx, jnp.sum(dy * xhat, axis=lead)

_rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)

def _rms_setup(x, normalized_shape, weight, eps, offset=0.0):
    x = np.asarray(x)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    cd = _compute_dtype(x.dtype)
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    w = offset + _as_jax(weight, cd) if weight is not None else jnp.ones(ns, cd)  # the scale offset + weight
    if eps is None:  # PyTorch's actual default: float32's epsilon unless the input is float64
        eps = float(np.finfo(np.float64 if x.dtype == np.float64 else np.float32).eps)
    return x, ns, cd, axes, w, float(eps)

def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    x, ns, cd, axes, w, eps = _rms_setup(x, normalized_shape, weight, eps, offset)
    return np.asarray(_rms_norm(_as_jax(x, cd), w, axes, eps).astype(x.dtype))

def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    x, ns, cd, axes, w, eps = _rms_setup(x, normalized_shape, weight, eps, offset)
    _, vjp = jax.vjp(lambda x_, w_: _rms_norm(x_, w_, axes, eps), _as_jax(x, cd), w)
    dx, dw = vjp(_as_jax(dy, cd))
    out = {"x": np.asarray(dx.astype(x.dtype))}
    if weight is not None:
        out["weight"] = np.asarray(dw.astype(x.dtype))
    return out

def rms_norm_stats(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    x, ns, cd, axes, w, eps = _rms_setup(x, normalized_shape, weight, eps, offset)
    xj = _as_jax(x, cd)
    rstd, _ = _rms_stats(xj, axes, eps)
    lead = x.shape[: x.ndim - len(ns)]
    return np.asarray(_rms_norm(xj, w, axes, eps).astype(x.dtype)), {"rstd": np.asarray(rstd.reshape(lead))}


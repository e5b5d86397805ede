"""Batch Layer Normalization (BLN): a fixed mix of a batch and a feature normalization.

.. math::

   \\hat x_B = \\frac{x - \\mu_B}{\\sqrt{\\sigma^2_B + \\epsilon}}, \\quad
   \\hat x_F = \\frac{x - \\mu_F}{\\sqrt{\\sigma^2_F + \\epsilon}}, \\quad
   y = \\gamma \\odot \\frac{w_F \\hat x_F + w_B \\hat x_B}{\\sqrt{d}} + \\beta,

   w_F = \\frac{1}{B} - o, \\qquad w_B = 1 - \\Big(\\frac{1}{B} + o\\Big)

as coded by the authors (Keras ``bln_layer``;
docs/ops/batch_layer_norm.md#bln-defaults): ``mu_B, sigma2_B`` over the batch
axis 0 only (one statistic per position and feature,
``batch_stats="position"``; ``"channel"``: over every axis but the feature
axis), ``mu_F, sigma2_F`` over the feature axis only (one per sample and
position); ``d`` = size of the feature axis; ``B`` = ``batch_size``, the
layer's constructor constant (None: ``x.shape[0]``); ``o = weight_offset``
(1e-4); the ``1/sqrt(d)`` factor is dropped when ``sqrt_d_scale=False``.

Shapes
    x: ``(B, ..., d)`` for ``feature_axis=-1`` (Keras, features last) or
    ``(N, C, *spatial)`` for ``feature_axis=1`` (NCHW: the channel is the
    feature axis); weight (gamma), bias (beta): ``(d,)`` or None (1 / 0).
    Statistics keep dims in x's layout: batch ``x.shape`` with axis 0 set to 1
    (``"channel"``: every non-feature axis set to 1); feature ``x.shape`` with
    the feature axis set to 1.  ``moving_stats`` (keys ``"batch_mean"``,
    ``"batch_var"``, ``"feature_mean"``, ``"feature_var"``) has these shapes, so
    moving feature statistics (stored per batch slot,
    docs/ops/batch_layer_norm.md#bln-inference) need an
    inference batch of the same size.

Conventions
    Biased variances (``tf.nn.moments``), ``eps`` (Keras "offset", 1e-3) inside
    the square root in both branches.  Training (``training=True``) uses the
    current batch for all four statistics and differentiates through them (no
    stop-gradient).  Inference: statistic k comes from ``moving_stats`` when
    ``flags[k]`` is True (``flags = (batch_moving_mean, batch_moving_var,
    feature_moving_mean, feature_moving_var)``, default (True, True, False,
    False)), else from the current batch; moving statistics are constants.  A
    current-batch variance is always taken about the current-batch mean, even
    when the moving mean is used for centring (as ``tf.nn.moments`` then the
    flag choice).  ``batch_size=1``: ``w_F = 1 - o``, ``w_B = -o``; with a batch
    of one sample ``x - mu_B = 0`` so ``xhat_B = 0``.

References
    Ziaee & Cano, "Batch Layer Normalization, A new normalization layer for
    CNNs and RNN", arXiv:2209.08898; code ``A2Amir/Batch-Layer-Normalization``
    ``helpers/bln_layer.py`` @ a79b8565; the choices and defaults:
    docs/ops/batch_layer_norm.md#bln-defaults.
"""

import autograd.numpy as np


# [docs:forward-start]
def batch_layer_norm(x, weight, bias, batch_size=None, eps=1e-3, *, training=True, moving_stats=None,
                     flags=(True, True, False, False), feature_axis=-1, batch_stats="position",
                     weight_offset=1e-4, sqrt_d_scale=True):
    fa = feature_axis % x.ndim  # (0) feature axis
    d = x.shape[fa]
    B = x.shape[0] if batch_size is None else batch_size
    b_axes = (0,) if batch_stats == "position" else tuple(a for a in range(x.ndim) if a != fa)
    pshape = tuple(d if a == fa else 1 for a in range(x.ndim))  # parameter broadcast
    use = (False, False, False, False) if training else tuple(flags)
    mean_B = np.mean(x, axis=b_axes, keepdims=True)  # (1) (1, ..., d) batch mean
    var_B = np.mean((x - mean_B) ** 2, axis=b_axes, keepdims=True)  # (2) (1, ..., d) biased
    mean_F = np.mean(x, axis=fa, keepdims=True)  # (3) (B, ..., 1) feature mean
    var_F = np.mean((x - mean_F) ** 2, axis=fa, keepdims=True)  # (4) (B, ..., 1) biased
    mean_B = moving_stats["batch_mean"] if use[0] else mean_B  # (5) inference flags
    var_B = moving_stats["batch_var"] if use[1] else var_B  # (5)
    mean_F = moving_stats["feature_mean"] if use[2] else mean_F  # (5)
    var_F = moving_stats["feature_var"] if use[3] else var_F  # (5)
    xhat_B = (x - mean_B) / np.sqrt(var_B + eps)  # (6) (B, ..., d)
    xhat_F = (x - mean_F) / np.sqrt(var_F + eps)  # (7) (B, ..., d)
    w_F = 1.0 / B - weight_offset  # (8) scalar
    w_B = 1.0 - (1.0 / B + weight_offset)  # (9) scalar
    z = w_F * xhat_F + w_B * xhat_B  # (10) (B, ..., d)
    num = z if weight is None else z * np.reshape(weight, pshape)  # (11) gamma * z
    y = num / np.sqrt(float(d)) if sqrt_d_scale else num  # (12) / sqrt(d)
    return y if bias is None else y + np.reshape(bias, pshape)  # (13) + beta
# [docs:forward-end]

"""AdaIN against an independent PyTorch transcription of the authors' code.

The transcription below is naoto0804/pytorch-AdaIN ``function.py``
(``calc_mean_std`` and ``adaptive_instance_normalization``) as written there,
with ``eps`` passed through (the original always uses ``calc_mean_std``'s
default 1e-5) and the 4-D assertion relaxed to ``N, C = size[:2]`` (the
``view(N, C, -1)`` it reshapes with is the same for any number of spatial
dimensions).  It never calls refnorm.  Forward, both gradients (torch
autograd) and the statistics are compared in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")


def calc_mean_std(feat, eps=1e-5):
    # eps is a small value added to the variance to avoid divide-by-zero.
    size = feat.size()
    N, C = size[:2]
    feat_var = feat.reshape(N, C, -1).var(dim=2) + eps
    feat_std = feat_var.sqrt().view(N, C, *([1] * (len(size) - 2)))
    feat_mean = feat.reshape(N, C, -1).mean(dim=2).view(N, C, *([1] * (len(size) - 2)))
    return feat_mean, feat_std


def adaptive_instance_normalization(content_feat, style_feat, eps=1e-5):
    assert (content_feat.size()[:2] == style_feat.size()[:2])
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat, eps)
    content_mean, content_std = calc_mean_std(content_feat, eps)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    sm = style_mean.reshape(size[:2] + (1,) * (len(size) - 2))
    ss = style_std.reshape(size[:2] + (1,) * (len(size) - 2))
    return normalized_feat * ss.expand(size) + sm.expand(size)


def _torch(x, style, dy, eps):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    st = torch.tensor(style, dtype=torch.float64, requires_grad=True)
    y = adaptive_instance_normalization(xt, st, eps)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), st.grad.numpy()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


CASES = [((2, 3, 8, 8), (2, 3, 8, 8), 1e-5), ((2, 4, 5, 6), (2, 4, 9, 7), 1e-5), ((3, 2, 11), (3, 2, 6), 1e-5),
         ((1, 3, 3, 4, 2), (1, 3, 2, 2, 5), 1e-3), ((2, 2, 2, 2), (2, 2, 3, 1), 1e-5), ((2, 3, 7), (2, 3, 2, 3), 0.0)]


@pytest.mark.parametrize("xs, ss, eps", CASES, ids=[f"{a}-{b}-eps{e}" for a, b, e in CASES])
def test_matches_the_authors_pytorch_code(xs, ss, eps):
    rng = np.random.default_rng(27100)
    x = 0.4 + 1.3 * rng.standard_normal(xs)
    style = -0.7 + 1.8 * rng.standard_normal(ss)
    dy = rng.standard_normal(xs)
    y_t, dx_t, ds_t = _torch(x, style, dy, eps)
    y = refnorm.adaptive_instance_norm(x, style, eps=eps)
    g = refnorm.adaptive_instance_norm_backward(dy, x, style, eps=eps)
    errs = {"y": _rel(y, y_t), "dx": _rel(g["x"], dx_t), "dstyle": _rel(g["style"], ds_t)}
    print(f"\nAdaIN vs pytorch-AdaIN {xs} / {ss}: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))
    assert max(errs.values()) < 1e-13, errs


def test_statistics_are_the_authors():
    rng = np.random.default_rng(27101)
    x, style = 2.0 + rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 2))
    _, st = refnorm.adaptive_instance_norm_stats(x, style)
    m, sd = calc_mean_std(torch.tensor(x))
    sm, ss = calc_mean_std(torch.tensor(style))
    np.testing.assert_allclose(st["mean"], m.reshape(2, 3).numpy(), rtol=1e-14)
    np.testing.assert_allclose(st["rstd"], 1.0 / sd.reshape(2, 3).numpy(), rtol=1e-14)
    np.testing.assert_allclose(st["style_mean"], sm.reshape(2, 3).numpy(), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(st["style_std"], ss.reshape(2, 3).numpy(), rtol=1e-14)


def test_output_has_the_style_statistics():
    """What AdaIN is for: each (n, c) of y has the style's mean and, up to eps, its unbiased std."""
    rng = np.random.default_rng(27102)
    x, style = rng.standard_normal((2, 3, 6, 6)), 5.0 + 3.0 * rng.standard_normal((2, 3, 4, 4))
    y = refnorm.adaptive_instance_norm(x, style, eps=0.0)
    np.testing.assert_allclose(y.reshape(2, 3, -1).mean(-1), style.reshape(2, 3, -1).mean(-1), rtol=1e-13)
    np.testing.assert_allclose(y.reshape(2, 3, -1).std(-1, ddof=1), style.reshape(2, 3, -1).std(-1, ddof=1),
                               rtol=1e-13)


def test_constant_style_channel_gives_sqrt_eps_std():
    x = np.random.default_rng(27103).standard_normal((1, 2, 5))
    style = np.stack([np.full(4, 1.5), np.arange(4.0)])[None]
    _, st = refnorm.adaptive_instance_norm_stats(x, style, eps=1e-5)
    assert st["style_std"][0, 0] == np.sqrt(1e-5)
    dy = np.random.default_rng(27104).standard_normal(x.shape)
    y_t, dx_t, ds_t = _torch(x, style, dy, 1e-5)
    g = refnorm.adaptive_instance_norm_backward(dy, x, style, eps=1e-5)
    assert _rel(g["style"], ds_t) < 1e-13 and _rel(g["x"], dx_t) < 1e-13


def test_one_position_sets_are_refused_where_torch_gives_nan():
    x = np.ones((2, 3, 1, 1))
    with pytest.warns(UserWarning):  # torch: degrees of freedom <= 0
        m, sd = calc_mean_std(torch.tensor(x))
    assert torch.isnan(sd).all()
    with pytest.raises(ValueError, match="x must have at least 2 spatial positions"):
        refnorm.adaptive_instance_norm(x, np.ones((2, 3, 4)))

"""add_layer_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py);
shared with add_rms_norm in tests/ops/cases/_fused.py."""

from __future__ import annotations

from . import _fused

finite_differences_apply = _fused.finite_differences_apply  # a hook of the protocol


def battery(rng):
    return _fused.battery(rng, bias=True, eps=1e-5)


ERRORS = _fused.errors("add_layer_norm", "aln")
KERNELS = []


def threads(rng):
    return _fused.threads(rng, bias=True)


EXACT = _fused.exact("LayerNorm")

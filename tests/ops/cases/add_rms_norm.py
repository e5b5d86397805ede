"""add_rms_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py);
shared with add_layer_norm in tests/ops/cases/_fused.py."""

from __future__ import annotations

from . import _fused
from . import rms_norm as _rms

#: the reference receives a resolved eps (eps=None is dtype-dependent), as RMSNorm's
reference_kwargs = _rms.reference_kwargs

finite_differences_apply = _fused.finite_differences_apply  # a hook of the protocol


def battery(rng):
    return _fused.battery(rng, bias=False, eps=1e-6)


ERRORS = _fused.errors("add_rms_norm", "arms")
KERNELS = []


def threads(rng):
    return _fused.threads(rng, bias=False)


EXACT = _fused.exact("RMSNorm")

"""The op registry: one explicitly written :class:`OpSpec` per normalizer.

Nothing is discovered by scanning names; adding an op means adding a record
to :func:`_build`.  Tests, the golden generator and the conformance harness
walk this registry, so an op that is registered is automatically checked.
Each record says whether the op is one of the seed layers; :data:`STANDARD_OPS`
and :data:`SEED_OPS`, the two lists every other module uses, are read from
the records.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

from . import reference as ref
from .ops import batch_layer_norm as bln
from .ops import batch_norm as bn
from .ops import gn_plus as gnp
from .ops import group_norm as gn
from .ops import instance_norm as inn
from .ops import layer_norm as ln
from .ops import proxy_norm as pn
from .ops import rms_norm as rms
from .ops import weight_standardization as ws
from .reference import batch_layer_norm as ref_bln
from .reference import gn_plus as ref_gnp
from .reference import proxy_norm as ref_pn
from .reference import weight_standardization as ref_ws


@dataclass(frozen=True)
class OpSpec:
    """Everything refnorm knows about one op.

    Attributes
    ----------
    name : the public name (``refnorm.<name>``, ``refnorm.<name>_backward``).
    forward : the public forward (returns ``y``).
    backward : ``(dy, *forward_args) -> dict`` of gradients.
    reference : the autograd.numpy definition, same signature as ``forward``
        (validated float64 arrays only; ``eps`` already resolved).
    forward_with_stats : ``(*forward_args) -> (y, {name: statistic})``, the
        statistics the op saves: ``{"mean", "rstd"}`` for the standard ops
        (RMSNorm: ``rstd``), PN's proxy ``{"mean", "var", "rstd"}``, WS's
        ``{"mean", "scale"}``, BLN's ``{"batch_mean", "batch_rstd",
        "feature_mean", "feature_rstd"}``; None for an op that exposes none (GN+).
    differentiable : names of the arguments the backward returns gradients for
        (when given); the first is the normalized input (``"x"``, or
        ``"weight"`` for weight standardization).
    running_stats : the op's running/moving-statistics update (its own
        signature: BN/IN ``(x, running_mean, running_var, momentum, ...)``, BLN
        ``(sums, steps, batch_size, ...)``), or None.
    seed : True for the seed layers (proxy norm, GN+, weight standardization,
        BLN); False for the standard normalizers (BN, LN, IN, GN, RMSNorm: the
        ones PyTorch has, which take ``out=`` and have an exact oracle).
    """

    name: str
    forward: Callable
    backward: Callable
    reference: Callable
    forward_with_stats: Callable | None
    differentiable: tuple[str, ...]
    running_stats: Callable | None = None
    seed: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        """The forward's argument names, in order (the protocol: without ``out``)."""
        return protocol_parameters(self.forward)


def protocol_parameters(fn: Callable) -> tuple[str, ...]:
    """The argument names of ``fn`` that every implementation of the op takes:
    all of them but a keyword-only ``out``, refnorm's own preallocated output
    (the five standard forwards and backwards), which a backend need not
    offer and a reference does not have."""
    return tuple(name for name, p in inspect.signature(fn).parameters.items()
                 if not (name == "out" and p.kind is inspect.Parameter.KEYWORD_ONLY))


def _build() -> dict[str, OpSpec]:
    specs = [
        OpSpec("batch_norm", bn.batch_norm, bn.batch_norm_backward, ref.batch_norm.batch_norm,
               bn.batch_norm_stats, ("x", "weight", "bias"), bn.batch_norm_running_stats),
        OpSpec("layer_norm", ln.layer_norm, ln.layer_norm_backward, ref.layer_norm.layer_norm,
               ln.layer_norm_stats, ("x", "weight", "bias")),
        OpSpec("instance_norm", inn.instance_norm, inn.instance_norm_backward,
               ref.instance_norm.instance_norm, inn.instance_norm_stats, ("x", "weight", "bias"),
               inn.instance_norm_running_stats),
        OpSpec("group_norm", gn.group_norm, gn.group_norm_backward, ref.group_norm.group_norm,
               gn.group_norm_stats, ("x", "weight", "bias")),
        OpSpec("rms_norm", rms.rms_norm, rms.rms_norm_backward, ref.rms_norm.rms_norm,
               rms.rms_norm_stats, ("x", "weight")),
        # the seed layers (docs/ops/index.md#seed-layers)
        OpSpec("proxy_norm", pn.proxy_norm, pn.proxy_norm_backward, ref_pn.proxy_norm, pn.proxy_norm_stats,
               ("x", "weight", "bias", "proxy_shift", "proxy_scale"), seed=True),
        OpSpec("gn_plus", gnp.gn_plus, gnp.gn_plus_backward, ref_gnp.gn_plus, None, ("x", "weight", "bias", "mix"),
               seed=True),
        OpSpec("weight_standardization", ws.weight_standardization, ws.weight_standardization_backward,
               ref_ws.weight_standardization, ws.weight_standardization_stats, ("weight", "gain"), seed=True),
        OpSpec("batch_layer_norm", bln.batch_layer_norm, bln.batch_layer_norm_backward, ref_bln.batch_layer_norm,
               bln.batch_layer_norm_stats, ("x", "weight", "bias"), bln.batch_layer_norm_moving_stats, seed=True),
    ]
    return {s.name: s for s in specs}


_REGISTRY = MappingProxyType(_build())
#: The standard normalizers' names, in registry order.
STANDARD_OPS: tuple[str, ...] = tuple(name for name, spec in _REGISTRY.items() if not spec.seed)
#: The seed layers' names, in registry order.
SEED_OPS: tuple[str, ...] = tuple(name for name, spec in _REGISTRY.items() if spec.seed)


def registry() -> MappingProxyType:
    """Name -> :class:`OpSpec`, read-only, in a fixed order."""
    return _REGISTRY


def get(name: str) -> OpSpec:
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(reg)}")
    return reg[name]

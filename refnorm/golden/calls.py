"""From a golden case to a call: the one mapping, for refnorm and backends alike.

A case states its tensors (``inputs``) and its other arguments (``attrs``) by
the names of the op's forward parameters, so the call is read off the
forward's signature (:attr:`refnorm.OpSpec.forward`):

* a positional parameter takes the input of that name, else the attr, else
  its default, else None (a tensor the case leaves out, e.g. running
  statistics);
* a keyword-only parameter takes the input or attr of that name, or the dict
  assembled from the inputs ``<prefix><key>`` of a grouped input
  (:attr:`refnorm.OpSpec.grouped_inputs`: BLN's ``moving_stats`` from
  ``moving_batch_mean`` ...), else keeps its default;
* JSON has no tuples: an attr given as a list is passed as a tuple to a
  keyword-only parameter and to ``normalized_shape``;
* JSON has no infinity: an attr given as the string ``"inf"`` or ``"-inf"``
  is passed as that float (``normalize``'s ``p = inf``).

The backward takes one cotangent per output first (``dy``, and ``dh`` for a
fused op's second output), the inputs of those names or None.  Forward mode
takes the dict of the tangents the case stores (``t<argument>``, keyed by the
argument: :func:`jvp_tangents`), the double backward the dict of the
cotangents of the gradients (``dd<argument>``: :func:`second_order_cotangents`)
before the backward's arguments.

This module is on the reading side of :mod:`refnorm.golden` (it imports only
the registry): the conformance harness calls backends with it and the
generator calls refnorm with it.
"""

from __future__ import annotations

import inspect

from .._registry import get, second_cotangent_name, tangent_name

__all__ = ["backward_cotangents", "call_arguments", "input_names", "jvp_tangents", "second_order_cotangents"]


_INFINITIES = {"inf": float("inf"), "-inf": float("-inf")}


def _attr(v):
    """An attr as the argument: the strings ``"inf"``/``"-inf"`` as floats (JSON has no infinity)."""
    return _INFINITIES[v] if isinstance(v, str) and v in _INFINITIES else v


def call_arguments(op: str, inputs: dict, attrs: dict) -> tuple[list, dict]:
    """Positional and keyword-only arguments of ``<op>`` for a case."""
    spec = get(op)
    attrs = {k: _attr(v) for k, v in attrs.items()}
    params = inspect.signature(spec.forward).parameters
    args, kwargs = [], {}
    for name, p in params.items():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            if name == "out":
                continue
            if name in inputs:
                kwargs[name] = inputs[name]
            elif name in attrs:
                v = attrs[name]
                kwargs[name] = tuple(v) if isinstance(v, list) else v
            elif name in spec.grouped_inputs:
                prefix = spec.grouped_inputs[name]
                group = {k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)}
                if group:
                    kwargs[name] = group
            continue
        if name in inputs:
            args.append(inputs[name])
        elif name in attrs:
            v = attrs[name]
            args.append(tuple(v) if name == "normalized_shape" else v)
        elif p.default is not inspect.Parameter.empty:
            args.append(p.default)
        else:
            args.append(None)  # a required argument the case leaves out (e.g. running stats): None
    return args, kwargs


def backward_cotangents(op: str, inputs: dict) -> list:
    """The backward's leading arguments: each output's cotangent, or None."""
    return [inputs.get(c) for c in get(op).cotangents]


def jvp_tangents(op: str, inputs: dict) -> dict:
    """The ``tangents`` argument of ``<op>_jvp``: ``{argument: inputs["t" + argument]}``
    for the tangents the case stores (the others are zero)."""
    return {a: inputs[tangent_name(a)] for a in get(op).differentiable if tangent_name(a) in inputs}


def second_order_cotangents(op: str, inputs: dict) -> dict:
    """The ``cotangents`` argument of ``<op>_double_backward``:
    ``{argument: inputs["dd" + argument]}`` for those the case stores."""
    return {a: inputs[second_cotangent_name(a)] for a in get(op).differentiable
            if second_cotangent_name(a) in inputs}


def input_names(op: str, shapes) -> list[str]:
    """The tensor names a case of ``op`` may carry, in call order (the forward's
    parameters, then grouped inputs, then the cotangents, the tangents and the
    second-order cotangents), restricted to ``shapes``; raises ValueError
    naming any other."""
    spec = get(op)
    prefixes = tuple(spec.grouped_inputs.values())
    known = [p for p in spec.parameters if p in shapes]
    known += sorted(n for n in shapes if prefixes and n.startswith(prefixes) and n not in known)
    known += [c for c in spec.cotangents + spec.tangent_inputs + spec.second_cotangents if c in shapes]
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise ValueError(f"{op}: tensors {unknown} are not arguments of {op}() ({', '.join(spec.parameters)}), "
                         f"grouped inputs ({', '.join(p + '*' for p in prefixes) or 'none'}), cotangents "
                         f"({', '.join(spec.cotangents)}), tangents ({', '.join(spec.tangent_inputs)}) or "
                         f"second-order cotangents ({', '.join(spec.second_cotangents)})")
    return known

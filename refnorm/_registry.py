"""The op registry: one explicitly written :class:`OpSpec` per normalizer.

Nothing is discovered by scanning names; adding an op means adding a record
to :func:`_build`.  Tests, the golden generator and the conformance harness
walk this registry, so an op that is registered is automatically checked.
Each record says whether the op is one of the seed layers or a variant;
:data:`STANDARD_OPS`, :data:`VARIANT_OPS` and :data:`SEED_OPS`, the lists every
other module uses, are read from the records.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from . import reference as ref
from .ops import add_layer_norm as aln
from .ops import add_rms_norm as arn
from .ops import batch_layer_norm as bln
from .ops import batch_norm as bn
from .ops import dyt as dyt_ops
from .ops import filter_response_norm as frn
from .ops import gn_plus as gnp
from .ops import group_norm as gn
from .ops import instance_norm as inn
from .ops import layer_norm as ln
from .ops import normalize as nrm
from .ops import proxy_norm as pn
from .ops import rms_norm as rms
from .ops import scale_norm as sn
from .ops import weight_standardization as ws
from .ops import weight_norm as wn
from .ops import evo_norm_b0 as evo_b0
from .ops import batch_renorm as brn
from .ops import ada_layer_norm as adaln
from .reference import add_layer_norm as ref_aln
from .reference import add_rms_norm as ref_arn
from .reference import batch_layer_norm as ref_bln
from .reference import dyt as ref_dyt
from .reference import filter_response_norm as ref_frn
from .reference import gn_plus as ref_gnp
from .reference import normalize as ref_nrm
from .reference import proxy_norm as ref_pn
from .reference import scale_norm as ref_sn
from .reference import weight_standardization as ref_ws
from .ops import local_response_norm as lrn
from .reference import local_response_norm as ref_lrn
from .reference import weight_norm as ref_wn
from .reference import evo_norm_b0 as ref_evo_b0
from .ops import evo_norm_s0 as evo
from .reference import evo_norm_s0 as ref_evo
from .reference import batch_renorm as ref_brn
from .reference import ada_layer_norm as ref_adaln
from .ops import adaptive_instance_norm as adain
from .reference import adaptive_instance_norm as ref_adain


#: How an op's golden tolerances are derived (docs/numerics.md): ``"moments"``,
#: the analytic model of a mean/variance normalizer over one canonical view
#: (:mod:`refnorm.golden.tolerance`); ``"running_error"``, a running error
#: analysis of the op's staged formula (:mod:`refnorm.golden.error_bounds`).
TOLERANCE_ROUTES = ("moments", "running_error")


@dataclass(frozen=True)
class OpSpec:
    """Everything refnorm knows about one op; the rest of refnorm reads it
    from here (the golden catalogue, the tolerance model, the harness, the
    docs, the tests), so nothing else names the op.

    Attributes
    ----------
    name : the public name (``refnorm.<name>``, ``refnorm.<name>_backward``,
        ``refnorm.<name>_stats``).
    forward : the public forward.  It returns ``y``, or, for an op with several
        :attr:`outputs`, a tuple of them in that order.
    backward : ``(d<output> for each output, *forward_args) -> dict``: the
        gradient of every differentiable argument that was given, keyed by the
        argument's name.  A backend's backward returns the same dict; the
        corpus stores the gradient of argument ``a`` as ``"d" + a``.
    reference : the autograd.numpy definition, same signature as ``forward``
        (validated float64 arrays only; ``eps`` already resolved).
    forward_with_stats : ``(*forward_args) -> (forward's result, {name: statistic})``;
        None for an op that saves no statistics (GN+).
    differentiable : the arguments the backward returns gradients for (when
        given); the first is the normalized input (``"x"``, or ``"weight"`` for
        weight standardization), whose shape every output has.
    layout : ``(<normalized input's shape>, <attributes>) -> Layout`` (see
        :mod:`refnorm.ops._layout`): the canonical view, the affine rule, the
        shapes of the saved statistics and where the parameters lie.  Its
        other arguments are named like the forward's and read from a case's
        attributes.  The op's ``_prepare`` views its input through it.
    stats : the saved statistics every golden case stores (the keys of
        ``layout(...).stats``; ``forward_with_stats`` may return more, e.g.
        PN's ``var``).
    outputs : the forward's outputs: ``("y",)``, or e.g. ``("y", "h")`` for a
        fused op; the backward takes one cotangent ``"d" + name`` per output.
    tolerance : the tolerance route, one of :data:`TOLERANCE_ROUTES`.
    center : False for an op that does not subtract a mean (RMSNorm): the
        ``"moments"`` model drops the mean terms.
    batch_stats_flag : the boolean argument that selects batch statistics
        (``"training"``, ``"use_input_stats"``); when it is False the running
        statistics are constants.  None: always batch statistics.
    running_stats : the op's running/moving-statistics update, or None: BN/IN
        ``<op>_running_stats(x, running_mean, running_var, momentum, *,
        num_batches_tracked, convention) -> (mean, var)`` (in the conformance
        protocol and the corpus); BLN ``batch_layer_norm_moving_stats(sums,
        steps, batch_size, ...)`` (its own signature, not in the corpus).
    running_conventions : the conventions whose updated running statistics
        the corpus stores, PyTorch's first.
    grouped_inputs : keyword argument -> input-name prefix: the case inputs
        ``<prefix><key>`` form the dict argument ``{<key>: ...}`` (BLN's
        ``moving_stats`` from ``moving_batch_mean`` ...).
    per_sample : True when a sample's outputs depend on that sample alone (the
        harness's batch-invariance check applies).
    batched_inputs : the inputs other than those shaped like the primary input
        that carry the batch on their dim 0 (one slice per sample: adaLN's
        ``scale``/``shift``, AdaIN's ``style``); the batch-invariance check
        slices them with the primary input.
    eps_default : ``dtype -> eps``, the eps the forward uses for ``eps=None``
        (RMSNorm), or None when eps is always given.
    weight_offset : the keyword argument whose value is added to the weight
        to form the scale (``"offset"``: LayerNorm/RMSNorm with zero-centred
        weights, ``offset + weight``), or None.
    normalized : the tensor whose values the normalization sees, when it is
        not the primary input: an output (a fused residual add normalizes its
        rounded sum ``"h"``); None: the primary input.
    variant : True for the variants production kernels ship around a standard
        normalizer (the fused residual adds): no ``out=``, no exact tier.
    jvp : ``<op>_jvp(tangents, *forward_args) -> (outputs, tangent outputs)``:
        forward mode, required; ``tangents`` is a dict over :attr:`differentiable`
        (missing = zero).  For a one-output op ``(y, ty)``, else
        ``((y, h), (ty, th))``.  The corpus stores the tangent of argument or
        output ``a`` as ``"t" + a`` (:func:`tangent_name`).
    double_backward : ``<op>_double_backward(cotangents, *backward_args) -> dict``,
        the VJP of :attr:`backward`, or None where it is not derived (some
        seed layers).  ``cotangents`` is keyed like the backward's result;
        the result is keyed by the backward's arguments (``"dy"``, ``"x"``,
        the given parameters).  The corpus stores the cotangent of the
        gradient ``"d" + a`` as ``"dd" + a`` and the result for argument ``k``
        as ``"d2" + k`` (:func:`second_cotangent_name`, :func:`second_grad_name`).
    seed : True for the research layers (proxy norm, GN+, weight standardization, DyT,
        BLN); False for the standard normalizers (BN, LN, IN, GN, RMSNorm: the
        ones PyTorch has, which take ``out=`` and have an exact oracle) and
        the variants.
    """

    name: str
    forward: Callable
    backward: Callable
    reference: Callable
    forward_with_stats: Callable | None
    differentiable: tuple[str, ...]
    layout: Callable
    stats: tuple[str, ...]
    outputs: tuple[str, ...] = ("y",)
    tolerance: str = "moments"
    center: bool = True
    batch_stats_flag: str | None = None
    running_stats: Callable | None = None
    running_conventions: tuple[str, ...] = ("torch",)
    grouped_inputs: Mapping[str, str] = field(default_factory=dict)
    per_sample: bool = False
    batched_inputs: tuple[str, ...] = ()
    eps_default: Callable | None = None
    weight_offset: str | None = None
    normalized: str | None = None
    variant: bool = False
    seed: bool = False
    jvp: Callable | None = None
    double_backward: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "grouped_inputs", MappingProxyType(dict(self.grouped_inputs)))
        _check_spec(self)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The forward's argument names, in order (the protocol: without ``out``)."""
        return protocol_parameters(self.forward)

    @property
    def primary(self) -> str:
        """The normalized input (``"x"``, ``"weight"`` for weight standardization)."""
        return self.differentiable[0]

    @property
    def cotangents(self) -> tuple[str, ...]:
        """The backward's leading arguments: ``"d" + output`` for each output."""
        return tuple(grad_name(o) for o in self.outputs)

    def grad_names(self) -> tuple[str, ...]:
        """The golden name of every gradient the backward can return (``"d" + argument``)."""
        return tuple(grad_name(a) for a in self.differentiable)

    def layout_of(self, shapes: Mapping, attrs: Mapping):
        """:attr:`layout` for a case: the primary input's shape from ``shapes``,
        the other arguments from ``attrs`` (their defaults when absent)."""
        params = list(inspect.signature(self.layout).parameters.values())[1:]
        kw = {p.name: attrs[p.name] for p in params if p.name in attrs}
        return self.layout(tuple(shapes[self.primary]), **kw)


    @property
    def tangent_inputs(self) -> tuple[str, ...]:
        """The golden names of the JVP's tangents: ``"t" + argument``."""
        return tuple(tangent_name(a) for a in self.differentiable)

    @property
    def tangent_outputs(self) -> tuple[str, ...]:
        """The golden names of the JVP's results: ``"t" + output``."""
        return tuple(tangent_name(o) for o in self.outputs)

    @property
    def second_cotangents(self) -> tuple[str, ...]:
        """The golden names of the double backward's cotangents (one per gradient)."""
        return tuple(second_cotangent_name(a) for a in self.differentiable)

    def second_grad_names(self) -> tuple[str, ...]:
        """The golden name of every result the double backward can return:
        ``"d2" + k`` for the cotangents of the backward and the differentiable arguments."""
        return tuple(second_grad_name(k) for k in self.cotangents + self.differentiable)


def grad_name(argument: str) -> str:
    """The one naming rule for gradients and cotangents: ``"d" + name``."""
    return "d" + argument


def tangent_name(name: str) -> str:
    """The tangent of an argument or output in the corpus: ``"t" + name``."""
    return "t" + name


def second_cotangent_name(argument: str) -> str:
    """The cotangent of the gradient ``"d" + argument`` (an output of the
    backward) by the same rule: ``"dd" + argument``."""
    return grad_name(grad_name(argument))


def second_grad_name(key: str) -> str:
    """A double backward's result for the backward's argument ``key``
    (``"dy"``, ``"x"``, ``"weight"`` ...): ``"d2" + key``."""
    return "d2" + key


def _check_spec(s: OpSpec) -> None:
    """Refuse a record with a missing or inconsistent piece, naming it."""
    where = f"OpSpec {s.name!r}"
    for piece in ("forward", "backward", "reference", "layout"):
        if not callable(getattr(s, piece)):
            raise TypeError(f"{where}: {piece} must be a function, got {getattr(s, piece)!r}")
    names = {"forward": s.name, "backward": s.name + "_backward"}
    if s.forward_with_stats is not None:
        names["forward_with_stats"] = s.name + "_stats"
    if s.running_stats is not None:
        names["running_stats"] = (s.name + "_running_stats", s.name + "_moving_stats")
    for piece, want in names.items():
        got = getattr(getattr(s, piece), "__name__", None)
        if got not in ((want,) if isinstance(want, str) else want):
            raise ValueError(f"{where}: {piece} must be the public function {want}(), got {got}()")
    params = s.parameters
    if not s.differentiable or any(a not in params for a in s.differentiable):
        raise ValueError(f"{where}: differentiable {s.differentiable} must name arguments of the forward {params}")
    if not s.outputs or len(set(s.outputs)) != len(s.outputs):
        raise ValueError(f"{where}: outputs must be distinct names, got {s.outputs}")
    # inputs, cotangents, outputs, gradients and statistics share one namespace in a golden case
    groups = {"forward arguments": params, "cotangents": s.cotangents, "outputs": s.outputs,
              "gradients": tuple(grad_name(a) for a in s.differentiable), "stats": s.stats,
              "tangents": s.tangent_inputs, "tangent outputs": s.tangent_outputs,
              "second-order cotangents": s.second_cotangents, "second-order gradients": s.second_grad_names()}
    seen: dict[str, str] = {}
    for group, names_ in groups.items():
        for n in names_:
            if n in seen:
                raise ValueError(f"{where}: the name {n!r} is both one of the {seen[n]} and one of the {group}")
            seen[n] = group
    want_bwd = s.cotangents + params
    if protocol_parameters(s.backward) != want_bwd:
        raise ValueError(f"{where}: backward must take {want_bwd}, takes {protocol_parameters(s.backward)}")
    if s.jvp is None:
        raise ValueError(f"{where}: jvp is missing: every op has forward mode, {s.name}_jvp()")
    else:
        if getattr(s.jvp, "__name__", None) != s.name + "_jvp":
            raise ValueError(f"{where}: jvp must be the public function {s.name}_jvp(), got "
                             f"{getattr(s.jvp, '__name__', None)}()")
        if protocol_parameters(s.jvp) != ("tangents",) + params:
            raise ValueError(f"{where}: jvp must take {('tangents',) + params}, takes {protocol_parameters(s.jvp)}")
    if s.double_backward is not None:
        if getattr(s.double_backward, "__name__", None) != s.name + "_double_backward":
            raise ValueError(f"{where}: double_backward must be the public function {s.name}_double_backward(), "
                             f"got {getattr(s.double_backward, '__name__', None)}()")
        want2 = ("cotangents",) + s.cotangents + params
        if protocol_parameters(s.double_backward) != want2:
            raise ValueError(f"{where}: double_backward must take {want2}, takes "
                             f"{protocol_parameters(s.double_backward)}")
    if protocol_parameters(s.reference) != params:
        raise ValueError(f"{where}: reference must take the forward's arguments {params}, "
                         f"takes {protocol_parameters(s.reference)}")
    if s.forward_with_stats is None:
        if s.stats:
            raise ValueError(f"{where}: stats {s.stats} need forward_with_stats ({s.name}_stats)")
    elif protocol_parameters(s.forward_with_stats) != params:
        raise ValueError(f"{where}: forward_with_stats must take the forward's arguments {params}")
    lay = list(inspect.signature(s.layout).parameters)
    if not lay or any(a not in params for a in lay[1:]):
        raise ValueError(f"{where}: layout must take the primary input's shape, then forward arguments; "
                         f"takes {lay}")
    if s.tolerance not in TOLERANCE_ROUTES:
        raise ValueError(f"{where}: tolerance route must be one of {TOLERANCE_ROUTES}, got {s.tolerance!r}")
    if s.batch_stats_flag is not None and s.batch_stats_flag not in params:
        raise ValueError(f"{where}: batch_stats_flag {s.batch_stats_flag!r} is not a forward argument")
    if not s.running_conventions or s.running_conventions[0] != "torch":
        raise ValueError(f"{where}: running_conventions must start with 'torch', got {s.running_conventions}")
    for kw in s.grouped_inputs:
        if kw not in params:
            raise ValueError(f"{where}: grouped input {kw!r} is not a forward argument")
    if s.weight_offset is not None and s.weight_offset not in params:
        raise ValueError(f"{where}: weight_offset {s.weight_offset!r} is not a forward argument")
    if s.seed and s.variant:
        raise ValueError(f"{where}: an op is a seed layer or a variant, not both")
    if s.normalized is not None and s.normalized not in s.outputs + params:
        raise ValueError(f"{where}: normalized {s.normalized!r} is neither an output nor a forward argument")


#: refnorm's own keyword-only arguments, not part of the protocol a backend implements: ``out``, the
#: preallocated output (the five standard forwards and backwards), and ``stats``, the statistics dict of
#: ``<op>_stats`` handed back to ``<op>_backward`` (the standard ops and the variants).
OWN_KEYWORDS = ("out", "stats")


def protocol_parameters(fn: Callable) -> tuple[str, ...]:
    """The argument names of ``fn`` that every implementation of the op takes:
    all of them but the keyword-only arguments of :data:`OWN_KEYWORDS`,
    refnorm's own, which a backend need not offer and a reference does not have."""
    return tuple(name for name, p in inspect.signature(fn).parameters.items()
                 if not (name in OWN_KEYWORDS and p.kind is inspect.Parameter.KEYWORD_ONLY))


def _build() -> dict[str, OpSpec]:
    standard = dict(stats=("mean", "rstd"))
    specs = [
        OpSpec("batch_norm", bn.batch_norm, bn.batch_norm_backward, ref.batch_norm.batch_norm,
               bn.batch_norm_stats, ("x", "weight", "bias"), bn.layout, **standard, batch_stats_flag="training",
               running_stats=bn.batch_norm_running_stats, running_conventions=("torch", "onnx", "flax"),
               jvp=bn.batch_norm_jvp, double_backward=bn.batch_norm_double_backward),
        OpSpec("layer_norm", ln.layer_norm, ln.layer_norm_backward, ref.layer_norm.layer_norm,
               ln.layer_norm_stats, ("x", "weight", "bias"), ln.layout, **standard, per_sample=True,
               weight_offset="offset",
               jvp=ln.layer_norm_jvp, double_backward=ln.layer_norm_double_backward),
        OpSpec("instance_norm", inn.instance_norm, inn.instance_norm_backward,
               ref.instance_norm.instance_norm, inn.instance_norm_stats, ("x", "weight", "bias"), inn.layout,
               **standard, batch_stats_flag="use_input_stats", running_stats=inn.instance_norm_running_stats,
               per_sample=True,
               jvp=inn.instance_norm_jvp, double_backward=inn.instance_norm_double_backward),
        OpSpec("group_norm", gn.group_norm, gn.group_norm_backward, ref.group_norm.group_norm,
               gn.group_norm_stats, ("x", "weight", "bias"), gn.layout, **standard, per_sample=True,
               jvp=gn.group_norm_jvp, double_backward=gn.group_norm_double_backward),
        OpSpec("rms_norm", rms.rms_norm, rms.rms_norm_backward, ref.rms_norm.rms_norm,
               rms.rms_norm_stats, ("x", "weight"), rms.layout, stats=("rstd",), center=False, per_sample=True,
               eps_default=rms.default_eps, weight_offset="offset",
               jvp=rms.rms_norm_jvp, double_backward=rms.rms_norm_double_backward),
        # fused residual add + norm: two outputs (y, h), two cotangents (dy, dh)
        OpSpec("add_rms_norm", arn.add_rms_norm, arn.add_rms_norm_backward, ref_arn.add_rms_norm,
               arn.add_rms_norm_stats, ("x", "residual", "weight"), arn.layout, stats=("rstd",), outputs=("y", "h"),
               center=False, per_sample=True, eps_default=rms.default_eps, weight_offset="offset", normalized="h",
               variant=True,
               jvp=arn.add_rms_norm_jvp, double_backward=arn.add_rms_norm_double_backward),
        OpSpec("add_layer_norm", aln.add_layer_norm, aln.add_layer_norm_backward, ref_aln.add_layer_norm,
               aln.add_layer_norm_stats, ("x", "residual", "weight", "bias"), aln.layout, **standard,
               outputs=("y", "h"), per_sample=True, weight_offset="offset", normalized="h", variant=True,
               jvp=aln.add_layer_norm_jvp, double_backward=aln.add_layer_norm_double_backward),
        # the seed layers (docs/ops/index.md#seed-layers)
        OpSpec("proxy_norm", pn.proxy_norm, pn.proxy_norm_backward, ref_pn.proxy_norm, pn.proxy_norm_stats,
               ("x", "weight", "bias", "proxy_shift", "proxy_scale"), pn.layout, stats=("mean", "rstd"),
               tolerance="running_error", seed=True,
               jvp=pn.proxy_norm_jvp, double_backward=pn.proxy_norm_double_backward),
        OpSpec("gn_plus", gnp.gn_plus, gnp.gn_plus_backward, ref_gnp.gn_plus, None, ("x", "weight", "bias", "mix"),
               gnp.layout, stats=(), tolerance="running_error", seed=True,
               jvp=gnp.gn_plus_jvp, double_backward=gnp.gn_plus_double_backward),
        OpSpec("weight_standardization", ws.weight_standardization, ws.weight_standardization_backward,
               ref_ws.weight_standardization, ws.weight_standardization_stats, ("weight", "gain"), ws.layout,
               stats=("mean", "scale"), tolerance="running_error", seed=True,
               jvp=ws.weight_standardization_jvp, double_backward=ws.weight_standardization_double_backward),
        OpSpec("batch_layer_norm", bln.batch_layer_norm, bln.batch_layer_norm_backward, ref_bln.batch_layer_norm,
               bln.batch_layer_norm_stats, ("x", "weight", "bias"), bln.layout,
               stats=("batch_mean", "batch_rstd", "feature_mean", "feature_rstd"), tolerance="running_error",
               running_stats=bln.batch_layer_norm_moving_stats, grouped_inputs={"moving_stats": "moving_"},
               seed=True,
               jvp=bln.batch_layer_norm_jvp, double_backward=bln.batch_layer_norm_double_backward),
        # Dynamic Tanh: elementwise, no statistics (stats=(), no _stats function, as GN+)
        OpSpec("dyt", dyt_ops.dyt, dyt_ops.dyt_backward, ref_dyt.dyt, None, ("x", "alpha", "weight", "bias"),
               dyt_ops.layout, stats=(), tolerance="running_error", per_sample=True, seed=True,
               jvp=dyt_ops.dyt_jvp, double_backward=dyt_ops.dyt_double_backward),
        OpSpec("scale_norm", sn.scale_norm, sn.scale_norm_backward, ref_sn.scale_norm, sn.scale_norm_stats,
               ("x", "g"), sn.layout, stats=("rnorm",), tolerance="running_error", center=False, per_sample=True,
               seed=True, jvp=sn.scale_norm_jvp, double_backward=sn.scale_norm_double_backward),
        # Lp normalization (torch.nn.functional.normalize): not a mean/variance normalizer, so its
        # tolerances come from a running error analysis, and it is listed with the research layers
        OpSpec("normalize", nrm.normalize, nrm.normalize_backward, ref_nrm.normalize, nrm.normalize_stats, ("x",),
               nrm.layout, stats=("norm",), tolerance="running_error", per_sample=True, seed=True,
               jvp=nrm.normalize_jvp, double_backward=nrm.normalize_double_backward),
        OpSpec("filter_response_norm", frn.filter_response_norm, frn.filter_response_norm_backward,
               ref_frn.filter_response_norm, frn.filter_response_norm_stats, ("x", "weight", "bias", "tau"),
               frn.layout, stats=("rstd",), tolerance="running_error", center=False, per_sample=True, seed=True,
               jvp=frn.filter_response_norm_jvp, double_backward=frn.filter_response_norm_double_backward),
        # Local Response Normalization (torch.nn.functional.local_response_norm): a power of a window mean
        # of squares across channels, no mean/variance, so a running error analysis gives its tolerances
        OpSpec("local_response_norm", lrn.local_response_norm, lrn.local_response_norm_backward,
               ref_lrn.local_response_norm, lrn.local_response_norm_stats, ("x",), lrn.layout, stats=("div",),
               tolerance="running_error", center=False, per_sample=True, seed=True,
               jvp=lrn.local_response_norm_jvp, double_backward=lrn.local_response_norm_double_backward),
        # Weight Normalization (torch._weight_norm): the input is the weight direction v, as WS's weight
        OpSpec("weight_norm", wn.weight_norm, wn.weight_norm_backward, ref_wn.weight_norm, wn.weight_norm_stats,
               ("v", "g"), wn.layout, stats=("norm",), tolerance="running_error", center=False, seed=True,
               jvp=wn.weight_norm_jvp, double_backward=wn.weight_norm_double_backward),
        # EvoNorm-B0: batch variance in training (running_var, a constant, in evaluation); the running update is
        # evo_norm_b0_running_stats (timm's, not in the corpus: there is no running_mean)
        OpSpec("evo_norm_b0", evo_b0.evo_norm_b0, evo_b0.evo_norm_b0_backward, ref_evo_b0.evo_norm_b0, None,
               ("x", "weight", "bias", "v"), evo_b0.layout, stats=(), tolerance="running_error",
               batch_stats_flag="training", running_stats=evo_b0.evo_norm_b0_running_stats, seed=True,
               jvp=evo_b0.evo_norm_b0_jvp, double_backward=evo_b0.evo_norm_b0_double_backward),
        OpSpec("evo_norm_s0", evo.evo_norm_s0, evo.evo_norm_s0_backward, ref_evo.evo_norm_s0, evo.evo_norm_s0_stats,
               ("x", "weight", "bias", "v"), evo.layout, stats=("mean", "rstd"), tolerance="running_error",
               per_sample=True, seed=True, jvp=evo.evo_norm_s0_jvp,
               double_backward=evo.evo_norm_s0_double_backward),
        # Batch Renormalization: BatchNorm with the constant correction r, d toward the running statistics
        OpSpec("batch_renorm", brn.batch_renorm, brn.batch_renorm_backward, ref_brn.batch_renorm,
               brn.batch_renorm_stats, ("x", "weight", "bias"), brn.layout, stats=("mean", "rstd"),
               tolerance="running_error", batch_stats_flag="training", running_stats=brn.batch_renorm_running_stats,
               seed=True, jvp=brn.batch_renorm_jvp, double_backward=brn.batch_renorm_double_backward),
        # adaLN (DiT): LayerNorm without affine, then the per-sample gain 1 + scale and shift
        OpSpec("ada_layer_norm", adaln.ada_layer_norm, adaln.ada_layer_norm_backward, ref_adaln.ada_layer_norm,
               adaln.ada_layer_norm_stats, ("x", "scale", "shift"), adaln.layout, stats=("mean", "rstd"),
               tolerance="running_error", per_sample=True, batched_inputs=("scale", "shift"), seed=True,
               jvp=adaln.ada_layer_norm_jvp, double_backward=adaln.ada_layer_norm_double_backward),
        # AdaIN: the content x takes the style's per-(n, c) mean and unbiased std; gradients reach the style too
        OpSpec("adaptive_instance_norm", adain.adaptive_instance_norm, adain.adaptive_instance_norm_backward,
               ref_adain.adaptive_instance_norm, adain.adaptive_instance_norm_stats, ("x", "style"), adain.layout,
               stats=("mean", "rstd", "style_mean", "style_std"), tolerance="running_error", per_sample=True,
               batched_inputs=("style",), seed=True, jvp=adain.adaptive_instance_norm_jvp,
               double_backward=adain.adaptive_instance_norm_double_backward),
    ]
    return {s.name: s for s in specs}


_REGISTRY = MappingProxyType(_build())
#: The standard normalizers' names, in registry order.
STANDARD_OPS: tuple[str, ...] = tuple(name for name, spec in _REGISTRY.items() if not spec.seed and not spec.variant)
#: The variants' names (fused residual adds), in registry order.
VARIANT_OPS: tuple[str, ...] = tuple(name for name, spec in _REGISTRY.items() if spec.variant)
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

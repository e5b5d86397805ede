"""``refnorm fuzz``: property-based conformance, drawn by design.

A committed corpus of a few hundred small cases cannot hold a reduction set of
a quarter million elements, seventy thousand sets, every tensor in every
memory layout, or the question "did the call write into its input?".  The
fuzzer draws such cases, computes their expected values and tolerances
exactly as the corpus does (:func:`refnorm.golden.build.build_case`: refnorm in
float64 on the drawn inputs, the derived tolerance model), and runs a backend
through the same harness as ``refnorm check`` (:func:`harness.check_case`), so
a failure found here is judged by the same rules as a corpus failure.

What it draws: a schedule, not luck
-----------------------------------
Example ``i`` of a run is of op ``ops[i % len(ops)]``; the op's ``k``-th example
takes the ``k``-th entry (rotated by the seed) of several short cycles, so
that within the first few examples of every op each entry of each cycle has
come up, whatever the seed (:data:`ROW_SIZES`, :data:`CHANNEL_SIZES`, the
dtypes, :data:`AFFINES`, :data:`EPS`); each tensor's memory layout cycles
through :data:`LAYOUTS` on its own counter, so every tensor -- ``dy``
included -- meets every layout.  Everything else (the sizes within a class,
the values' location and scale, the lead dimensions) comes from a random
stream seeded by ``(seed, i)``: the same seed draws the same cases on any
machine.  :func:`coverage` says what a run reached and where first.

The properties of every example
-------------------------------
* the values of every function the backend has (forward, backward, saved
  statistics, running statistics, forward mode, second order) within the
  corpus tolerance;
* every input bitwise unchanged after each call (``checks.inputs_unchanged``;
  a float64 input, whose upcast is a no-op, included);
* outputs of the right shape and a floating dtype;
* optionally ``repeat`` (n calls give the same bits) and ``batch_invariance``.

A failing example is shrunk (:func:`shrink`: fewer rows, smaller sets, plainer
layouts, while it still fails the same way) and written as a corpus case
(:func:`refnorm.golden.corpus.write_cases`) that ``refnorm check --golden-dir``
replays: the case carries its layouts and its checks.
"""

from __future__ import annotations

import inspect
import math
import time
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from .. import _registry
from .._registry import second_cotangent_name, tangent_name
from ..golden import catalogue
from ..golden.build import BuiltCase, build_case, build_inputs
from ..golden.calls import call_arguments
from ..golden.casespec import CaseSpec
from ..golden.corpus import write_cases
from ..golden.dtypes import DTYPES
from ..golden.layouts import describe
from ..golden.reader import GoldenCase
from ..golden.recipes import GENERATOR
from . import harness

__all__ = ["AFFINES", "CHANNEL_SIZES", "EPS", "Example", "FuzzReport", "LAYOUTS", "ROW_SIZES", "coverage", "draw",
           "fuzz", "plan", "required_features", "run_example", "shrink"]

#: The size classes of the row-normalizing ops (LayerNorm, RMSNorm, the fused adds).
ROW_SIZES = ("small", "set>2^17", "sets>2^16", "set=2^k+1", "set=2^k-1", "set of 1", "empty sets", "no sets")
#: The shape classes of the channel ops (BN, IN, GN and the research layers).
CHANNEL_SIZES = ("small", "odd C", "groups of one", "batch of one", "channels_last")
#: Memory layouts each tensor cycles through (see :mod:`refnorm.golden.layouts`).
LAYOUTS = ("contiguous", "transposed", "fortran", "step", "negative strides", "offset")
#: Which of weight and bias are given.
AFFINES = ("weight+bias", "weight only", "bias only", "neither")
#: eps classes: the op's default, 0, tiny, large.
EPS = ("default", "eps=0", "eps=1e-12", "eps=10")
#: Value patterns: the statistical tier's distributions; --adversarial adds the others.
VALUES = ("normal",)
ADVERSARIAL_VALUES = ("normal", "offset mean", "constant sets", "wide exponents", "tiny scale")

ROW_OPS = ("layer_norm", "rms_norm", "add_rms_norm", "add_layer_norm")
CHANNEL_OPS = ("batch_norm", "instance_norm", "group_norm")
#: The research layers: drawn from the catalogue's own cases of the op (valid
#: attributes), with the batch, the spatial size and the channel count varied.
TEMPLATE_OPS = (
    "proxy_norm", "gn_plus", "weight_standardization", "batch_layer_norm",
    "dyt",
    "scale_norm",
    "normalize",
    "filter_response_norm",
    "local_response_norm",
    "weight_norm",
    "evo_norm_b0",
    "evo_norm_s0",
    "batch_renorm",
    "ada_layer_norm",
    "adaptive_instance_norm",
)

BIG = 1 << 17   # "reduction sets of more than 2^17 elements"
MANY = 1 << 16  # "more than 2^16 reduction sets"


def _family(op: str) -> str:
    if op in ROW_OPS:
        return "rows"
    if op in CHANNEL_OPS or op in TEMPLATE_OPS:
        return "channels"
    raise ValueError(f"refnorm fuzz has no drawing rule for op {op!r}; known: "
                     f"{', '.join(ROW_OPS + CHANNEL_OPS + TEMPLATE_OPS)}")


# ----------------------------------------------------------------------------- an example


@dataclass
class Example:
    """One drawn case: its spec (shapes, recipes, attrs, layouts, checks), the
    features it exercises, and where it came from (``seed``, ``index``)."""

    spec: CaseSpec
    features: tuple
    seed: int
    index: int

    @property
    def op(self) -> str:
        return self.spec.op

    def label(self) -> str:
        """Shape, dtype and layouts in one line."""
        sh = self.spec.shapes[_registry.get(self.op).primary]
        lay = ", ".join(f"{t} {describe(v)}" for t, v in sorted(self.spec.layout.items())) or "all contiguous"
        return f"{self.op} {self.spec.dtype} {list(sh)} ({lay})"


class _Cycles:
    """The schedule's state: per op, how many examples it has had; per (op,
    tensor), how many times the tensor appeared (its layout counter)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.k: dict[str, int] = {}
        self.seen: dict[tuple, int] = {}
        self.pending: dict[str, set] = {}

    def pick(self, op: str, options, salt: int = 0):
        k = self.k.get(op, 0)
        return options[(k + self.seed * (salt + 1) + salt) % len(options)]

    def layout_kind(self, op: str, tensor: str, salt: int, ndim: int = 2) -> str:
        """The next layout of the tensor's cycle.  A 1-D appearance of the tensor walks its own cycle
        over the kinds a 1-D array can take (no transposed or Fortran order), so that it never spends
        a turn of the full cycle on a contiguous copy."""
        kinds = LAYOUTS if ndim >= 2 else tuple(k for k in LAYOUTS if k not in ("transposed", "fortran"))
        key = (op, tensor, len(kinds))
        n = self.seen.get(key, 0)
        self.seen[key] = n + 1
        return kinds[(n + salt + self.seed) % len(kinds)]


class _Stream:
    """The random choices of one example, from the raw 64-bit output of
    ``PCG64(SeedSequence([seed, index, 0x46555A5A]))`` mapped with integer
    arithmetic, as :mod:`refnorm.golden.recipes` does: NumPy keeps the
    BitGenerator's output stable across versions, not its distributions, so
    the same seed draws the same cases on any machine and NumPy."""

    def __init__(self, seed: int, index: int):
        self._bits = np.random.PCG64(np.random.SeedSequence([seed, index, 0x46555A5A]))

    def _word(self) -> int:
        return int(self._bits.random_raw())

    def integers(self, low: int, high: int | None = None) -> int:
        """An integer in ``[low, high)`` (``[0, low)`` with one argument)."""
        if high is None:
            low, high = 0, low
        return low + self._word() % (high - low)

    def random(self) -> float:
        """A float in [0, 1): the top 53 bits of a word, exactly."""
        return (self._word() >> 11) * 2.0 ** -53

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def choice(self, options):
        return options[self.integers(len(options))]


def _normal(loc, scale):
    return {"kind": "normal", "loc": float(loc), "scale": float(scale)}


def _values(pattern: str, rng) -> dict:
    """The recipe of a data tensor (x, residual) for a value pattern."""
    if pattern == "offset mean":  # |mean| / std ~ 1e3: the conditioning the tolerance model scales with
        return _normal(rng.choice([-1, 1]) * 1000.0, 1.0)
    if pattern == "constant sets":  # var = 0 in every set (x = c): only eps keeps rstd finite
        return {"kind": "constant", "value": rng.choice([0.5, -3.0, 1.25])}
    if pattern == "wide exponents":
        return {"kind": "pm_pow2", "exp": [-12, 12]}
    if pattern == "tiny scale":
        return _normal(1.0, 1e-3)
    return _normal(round(rng.uniform(-2, 2), 3), round(rng.uniform(0.25, 2.0), 3))


def _layout(kind: str, ndim: int, rng) -> dict:
    """A layout of ``kind`` for a tensor of ``ndim`` axes (contiguous when the kind needs more axes)."""
    if kind == "transposed" and ndim >= 2:
        order = list(range(ndim))
        order[-2], order[-1] = order[-1], order[-2]
        return {"order": order}
    if kind == "fortran" and ndim >= 2:
        return {"order": list(range(ndim))[::-1]}
    if kind == "channels_last" and ndim >= 3:
        return {"order": [0] + list(range(2, ndim)) + [1]}
    if kind == "step" and ndim >= 1:
        step = [1] * ndim
        step[rng.integers(ndim)] = rng.integers(2, 4)
        return {"step": step}
    if kind == "negative strides" and ndim >= 1:
        return {"flip": sorted({rng.integers(ndim), ndim - 1})}
    if kind == "offset":
        return {"offset": rng.integers(1, 8)}
    return {}


# ----------------------------------------------------------------------------- drawing per family


def _pow2_size(rng, above: bool, cap: int) -> int:
    j = rng.integers(3, max(4, min(15, int(math.log2(max(cap, 16))))))
    return (1 << j) + (1 if above else -1)


def _draw_rows(op, size, rng, cap):
    """(x shape, normalized_shape, features) for a row-normalizing op."""
    feats = [size]
    if size == "set>2^17" and cap > BIG:
        K = BIG + rng.integers(1, min(64, cap - BIG) + 1)
        lead = [1] if cap < 2 * K else [rng.integers(1, max(2, min(3, cap // K + 1)))]
        ns = [K]
    elif size == "sets>2^16" and cap > 2 * MANY:
        K = rng.integers(2, max(3, min(4, cap // (MANY + 1)) + 1))
        S = MANY + rng.integers(1, 33)
        lead, ns = [S], [K]
    elif size in ("set=2^k+1", "set=2^k-1"):
        K = _pow2_size(rng, size.endswith("+1"), cap // 2)
        lead, ns = [rng.integers(1, max(2, min(9, cap // K)))], [K]
    elif size == "set of 1":
        lead, ns = [rng.integers(1, 9), rng.integers(1, 5)], [1]
    elif size == "empty sets":
        lead, ns = [rng.integers(1, 6)], [rng.integers(1, 4), 0]
    elif size == "no sets":
        lead, ns = [0, rng.integers(1, 4)], [rng.integers(1, 9)]
    else:
        feats = ["small"]
        if rng.random() < 0.4:
            ns = [rng.integers(1, 9), rng.integers(2, 33)]
        else:
            ns = [rng.integers(1, 300)]
        lead = [rng.integers(1, 7) for _ in range(rng.integers(1, 3))]
    return lead + ns, ns, feats


def _divisors(c: int) -> list[int]:
    return [d for d in range(1, c + 1) if c % d == 0]


def _draw_channels(op, size, rng):
    """(x shape, attrs, features) for BN / IN / GN."""
    feats = [size]
    n = rng.integers(2, 6)
    c = rng.integers(2, 17)
    spatial = [rng.integers(1, 7) for _ in range(rng.integers(0 if op == "batch_norm" else 1, 3))]
    if size == "odd C":
        c = rng.choice([3, 5, 7, 9, 11, 13, 15, 17, 33, 65])
    elif size == "batch of one":
        n = 1
        spatial = spatial or [rng.integers(2, 7)]
        if math.prod(spatial) < 2:
            spatial = [2] + spatial[1:]
    elif size == "channels_last":
        spatial = [rng.integers(2, 6) for _ in range(rng.integers(1, 3))]
    elif size == "groups of one" and op != "group_norm":
        feats = ["small"]
    attrs: dict = {}
    if op == "group_norm":
        attrs["num_groups"] = c if size == "groups of one" else rng.choice(_divisors(c))
    if op in ("instance_norm",) and math.prod(spatial) < 2:
        spatial = [2]
    return [n, c] + spatial, attrs, feats


def _templates(op: str) -> list[CaseSpec]:
    """The catalogue's value cases of a research layer: valid attributes to vary (not those whose
    recipes fix values by position, ``values`` or ``set``, which a varied shape would not fit, e.g.
    DyT's huge_tiny)."""
    spec_op = _registry.get(op)
    return [s for s in catalogue.catalogue() if s.op == op and s.expect.get("kind") == "value" and
            s.tier != "exact" and not any(t in s.shapes for t in spec_op.tangent_inputs + spec_op.second_cotangents)
            and not any(isinstance(r, dict) and (r.get("kind") == "values" or "set" in r)
                        for r in s.recipe.values())]


_TEMPLATE_CACHE: dict[str, list] = {}


def _draw_template(op, size, rng):
    """(shapes without the tangents, attrs, the template, features) from one of the op's catalogue
    cases, varied to the size class: a batch of one, an odd channel count, groups of one channel,
    channels-last strides.  Templates are tried from a random one on until the variation is one
    refnorm defines (a research layer may need two samples or two elements per group); if none
    is, the first template unvaried ("small")."""
    if op not in _TEMPLATE_CACHE:
        _TEMPLATE_CACHE[op] = _templates(op)
    pool = _TEMPLATE_CACHE[op]
    if size == "channels_last":  # a template with spatial axes
        pool = [t for t in pool if len(t.shapes[_registry.get(op).primary]) >= 3] or pool
    start = rng.integers(len(pool))
    for n in range(len(pool)):
        tpl = pool[(start + n) % len(pool)]
        shapes, attrs, feats = _vary_template(op, tpl, size, rng)
        if feats != ["small"] and (feats == ["channels_last"] or _defined(op, shapes, attrs, tpl)):
            return shapes, attrs, tpl, feats
    tpl = pool[start]
    return _template_shapes(op, tpl), dict(tpl.attrs), tpl, ["small"]


def _template_shapes(op: str, tpl: CaseSpec) -> dict:
    """A template's tensors: the forward's arguments (grouped ones included) and dy."""
    spec_op = _registry.get(op)
    prefixes = tuple(spec_op.grouped_inputs.values())
    return {k: list(v) for k, v in tpl.shapes.items()
            if k in spec_op.parameters or k == "dy" or (prefixes and k.startswith(prefixes))}


def _vary_template(op: str, tpl: CaseSpec, size: str, rng) -> tuple[dict, dict, list]:
    shapes, attrs = _template_shapes(op, tpl), dict(tpl.attrs)
    lead = shapes[_registry.get(op).primary]
    batched = [k for k, v in shapes.items() if v == lead]
    bs = attrs.get("batch_size")
    if size == "batch of one" and op != "weight_standardization" and bs in (None, lead[0]) and \
            not (op == "batch_layer_norm" and not attrs.get("training", True)):
        for k in batched:
            shapes[k] = [1] + shapes[k][1:]
        if bs is not None:
            attrs["batch_size"] = 1
        return shapes, attrs, ["batch of one"]
    if size == "groups of one" and op == "gn_plus" and math.prod(lead[2:]) >= 2:  # GN+ needs 2 per group
        attrs["num_groups"] = lead[1]
        return shapes, attrs, ["groups of one"]
    if size == "odd C" and op in ("proxy_norm", "gn_plus") and len(lead) >= 2:
        c = rng.choice([3, 5, 7, 9])
        old = lead[1]
        for k, v in list(shapes.items()):
            if v == lead:
                shapes[k] = [v[0], c] + v[2:]
            elif v == [old]:
                shapes[k] = [c]
        if op == "gn_plus":  # at least 2 elements per group (GN+'s unbiased std)
            sp = math.prod(lead[2:])
            attrs["num_groups"] = rng.choice([d for d in _divisors(c) if c // d * sp >= 2])
        return shapes, attrs, ["odd C"]
    if size == "channels_last" and len(lead) >= 3:
        return shapes, attrs, ["channels_last"]
    return shapes, attrs, ["small"]


def _defined(op: str, shapes: dict, attrs: dict, tpl: CaseSpec) -> bool:
    """Whether refnorm's forward accepts these shapes and attributes (a research
    layer may need two samples or two elements per group)."""
    probe = replace(tpl, shapes={k: v for k, v in shapes.items() if k != "dy"}, attrs=attrs)
    try:
        with np.errstate(all="ignore"):
            args, kwargs = call_arguments(op, build_inputs(probe), attrs)
            _registry.get(op).forward(*args, **kwargs)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- draw


def _case_dtypes(dtypes) -> list[str]:
    """The dtype cycle: each dtype, and "mixed" (a half-precision input with float32 parameters)
    when a half dtype is selected."""
    out = list(dtypes)
    if any(d in ("float16", "bfloat16") for d in dtypes):
        out.append("mixed")
    return out


def draw(cycles: _Cycles, op: str, seed: int, index: int, *, dtypes, max_elements: int, adversarial: bool,
         derivatives: tuple = (), checks: dict | None = None) -> Example:
    """Example ``index`` of op ``op`` (the schedule's next entry for it)."""
    rng = _Stream(seed, index)
    spec_op = _registry.get(op)
    fam = _family(op)
    sizes = ROW_SIZES if fam == "rows" else CHANNEL_SIZES
    size = cycles.pick(op, sizes, 0)
    dt = cycles.pick(op, _case_dtypes(dtypes), 1)
    mixed = dt == "mixed"
    if mixed:  # a half-precision input with float32 parameters and buffers
        dt = rng.choice([d for d in dtypes if d in ("float16", "bfloat16")])
    affine = cycles.pick(op, AFFINES, 2)
    eps_cls = cycles.pick(op, EPS, 3)
    pattern = cycles.pick(op, ADVERSARIAL_VALUES if adversarial else VALUES, 4)
    running = cycles.pick(op, (True, False), 5)  # IN: running statistics given (updated) or not
    cycles.k[op] = cycles.k.get(op, 0) + 1

    feats = [f"dtype {dt}"] + (["mixed dtypes"] if mixed else [])
    attrs: dict = {}
    recipe: dict = {"generator": GENERATOR}
    tpl = None
    if fam == "rows":
        xshape, ns, f = _draw_rows(op, size, rng, max_elements)
        attrs["normalized_shape"] = ns
        shapes = {"x": xshape}
        if op.startswith("add_"):
            shapes["residual"] = list(xshape)
        pshape = list(ns)
    elif op in CHANNEL_OPS:
        xshape, attrs, f = _draw_channels(op, size, rng)
        shapes = {"x": xshape}
        pshape = [xshape[1]]
    else:
        shapes, attrs, tpl, f = _draw_template(op, size, rng)
        pshape = None
    feats += f

    # parameters: weight / bias present or absent (optional ones only)
    params = [p for p in ("weight", "bias") if p in spec_op.parameters and p != spec_op.primary]
    optional = [p for p in params if _is_optional(spec_op, p)]
    if tpl is None:
        want = {"weight+bias": {"weight", "bias"}, "weight only": {"weight"}, "bias only": {"bias"},
                "neither": set()}[affine]
        for p in params:
            if p in want or p not in optional:
                shapes[p] = list(pshape)
        for p in optional:
            feats.append(f"{p} {'given' if p in shapes else 'absent'}")
    elif op == "weight_standardization" and affine in ("weight only", "neither"):
        shapes.pop("gain", None)
        feats.append("gain absent")

    # batch statistics / running statistics (BN, IN)
    if op == "batch_norm":
        training = bool(rng.random() < 0.6) or size == "batch of one"
        attrs.update(training=training, momentum=0.1)
        if not training or rng.random() < 0.5:
            shapes["running_mean"] = [shapes["x"][1]]
            shapes["running_var"] = [shapes["x"][1]]
        if training and math.prod(shapes["x"]) // shapes["x"][1] < 2:
            shapes["x"] = shapes["x"] + [2]
    elif op == "instance_norm":
        attrs.update(use_input_stats=True, momentum=0.1)
        if running:
            shapes["running_mean"] = [shapes["x"][1]]
            shapes["running_var"] = [shapes["x"][1]]

    if op in CHANNEL_OPS and "eps=0" in (eps_cls, *cycles.pending.get(op, ())) and pattern != "constant sets":
        while _set_size(op, shapes, attrs) < 16:  # room for eps = 0: sets of 16 or more
            shapes["x"] = shapes["x"][:-1] + [shapes["x"][-1] * 2] if len(shapes["x"]) > 2 else shapes["x"] + [8]
    # eps; eps = 0 only where the op defines it: every set has a positive variance (sets of 16 or more
    # non-constant values); otherwise it waits for the op's next such example
    if tpl is None:
        defined = _set_size(op, shapes, attrs) >= 16 and pattern != "constant sets"
        pending = cycles.pending.setdefault(op, set())
        if eps_cls == "eps=0" and not defined:
            pending.add(eps_cls)
            eps_cls = "default"
        elif eps_cls == "default" and defined and "eps=0" in pending:
            pending.discard("eps=0")
            eps_cls = "eps=0"
        eps = {"default": _default_eps(spec_op), "eps=0": 0.0, "eps=1e-12": 1e-12, "eps=10": 10.0}[eps_cls]
        attrs["eps"] = eps
        feats.append(eps_cls)
    # cotangents, tangents, second-order cotangents
    prim = spec_op.primary
    for c, o in zip(spec_op.cotangents, spec_op.outputs):
        shapes[c] = list(shapes[prim])
    for d in derivatives:
        if d == "jvp":
            for a in spec_op.differentiable:
                if a in shapes:
                    shapes[tangent_name(a)] = list(shapes[a])
        elif d == "double_backward" and spec_op.double_backward is not None:
            for a in spec_op.differentiable:
                if a in shapes:
                    shapes[second_cotangent_name(a)] = list(shapes[a])
    shapes[prim] = list(shapes[prim])
    if math.prod(shapes[prim]) == 0:
        for d in list(shapes):  # derivative inputs of an empty case add nothing
            if d.startswith(("t", "dd")) and d not in spec_op.parameters:
                del shapes[d]

    # recipes
    for name, shape in shapes.items():
        if tpl is not None and name in tpl.recipe and tpl.shapes.get(name) == shape and name != prim:
            recipe[name] = dict(tpl.recipe[name])
        elif name in (prim, "residual"):
            recipe[name] = _values(pattern, rng)
        elif name == "weight" or name == "gain":
            recipe[name] = _normal(1.0, 0.5)
        elif name == "running_var":
            recipe[name] = {"kind": "uniform", "low": 0.5, "high": 2.0}
        elif name == "running_mean":
            recipe[name] = _normal(0.0, 0.5)
        elif name == "mix":
            recipe[name] = _normal(1.0, 0.5)
        elif name.startswith("dd"):
            recipe[name] = _normal(0.0, 0.7)
        else:
            recipe[name] = _normal(0.0, 1.0) if name != "bias" else _normal(0.25, 0.5)
        if mixed and name in ("weight", "bias", "gain", "proxy_shift", "proxy_scale", "mix", "running_mean",
                              "running_var"):  # a model's float32 parameters and buffers
            recipe[name]["dtype"] = "float32"
    if pattern != "normal":
        feats.append(f"values: {pattern}")

    # layouts: every tensor on its own counter; channels_last for the data tensors of a channels_last example
    layout = {}
    for name in sorted(shapes):
        nd = len(shapes[name])
        if size == "channels_last" and name in (prim, "dy", "residual") and nd >= 3:
            kind = "channels_last"
        else:
            kind = cycles.layout_kind(op, name, zlib.crc32(name.encode()), nd)
        lay = _layout(kind, nd, rng)
        if lay:
            layout[name] = lay
            feats.append(f"layout {kind}: {name}")
    if not layout:
        feats.append("layout: all contiguous")

    spec = CaseSpec(id="", op=op, name="",
                    tier="adversarial" if pattern != "normal" else "statistical", dtype=dt, attrs=attrs,
                    shapes=shapes, recipe=recipe, seed=int(seed) * 1_000_003 + int(index), expect={"kind": "value"},
                    description=f"refnorm fuzz --seed {seed}, example {index}: {', '.join(feats)}",
                    layout=layout, checks=dict(checks or {}))
    return Example(_named(spec, seed, index), tuple(feats), seed, index)


def _named(spec: CaseSpec, seed: int, index: int) -> CaseSpec:
    """The spec with its case name: ``fuzz_s<seed>_e<example>_<affine>`` (``wb``, ``w``, ``b``, ``none``;
    ``tpl`` for a research layer) and, where they apply, ``_eps0`` (eps = 0), ``_mixed`` (a tensor in
    another dtype) and ``_strided`` (the normalized input passed as a non-contiguous view): what an
    xfail rule can match on."""
    op = _registry.get(spec.op)
    if spec.op in TEMPLATE_OPS:
        tag = "tpl"
    else:
        has = [p for p in ("weight", "bias") if p in spec.shapes]
        tag = {("weight", "bias"): "wb", ("weight",): "w", ("bias",): "b", (): "none"}[tuple(has)]
    if spec.attrs.get("eps", None) == 0.0:
        tag += "_eps0"
    if any("dtype" in r for r in spec.recipe.values() if isinstance(r, dict)):
        tag += "_mixed"
    lay = spec.layout.get(op.primary, {})
    if lay and set(lay) - {"offset"}:
        tag += "_strided"
    name = f"fuzz_s{seed}_e{index}_{tag}"
    return replace(spec, id=f"{spec.op}/{name}__{spec.dtype}", name=name)


def _set_size(op: str, shapes: dict, attrs: dict) -> int:
    """Elements per reduction set (0 for an empty case)."""
    spec_op = _registry.get(op)
    stats = spec_op.layout_of(shapes, attrs).stats
    n = math.prod(shapes[spec_op.primary])
    sets = math.prod(next(iter(stats.values()))) if stats else 1
    return n // sets if sets else 0


def _is_optional(spec_op, name: str) -> bool:
    p = inspect.signature(spec_op.forward).parameters.get(name)
    return p is not None and p.default is None


def _default_eps(spec_op):
    p = inspect.signature(spec_op.forward).parameters.get("eps")
    return None if p is None else p.default


# ----------------------------------------------------------------------------- running one example


def golden_case(built: BuiltCase) -> GoldenCase:
    """A built case as the harness reads a corpus case (in memory)."""
    s = built.spec
    return GoldenCase(id=s.id, op=s.op, tier=s.tier, dtype=s.dtype, attrs=s.attrs, inputs=built.inputs,
                      expected=built.expected, scales=built.scales, tolerances=built.tolerances, expect=s.expect,
                      description=s.description, shapes=s.shapes, recipe=s.recipe, seed=s.seed, layout=s.layout,
                      checks=s.checks)


@dataclass
class Timing:
    """Seconds spent drawing and computing the expected values (the oracle), in the
    backend's calls, and comparing."""

    oracle: float = 0.0
    backend: float = 0.0
    harness: float = 0.0


class _TimedBackend:
    """A backend whose protocol functions' wall time is added up."""

    def __init__(self, backend, timing: Timing):
        self._b, self._t = backend, timing
        self.__name__ = getattr(backend, "__name__", "backend")

    def __getattr__(self, name):
        fn = getattr(self._b, name)
        if not callable(fn) or name.startswith("_") or name.isupper():
            return fn

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._t.backend += time.perf_counter() - t0

        timed.__signature__ = _signature(fn)
        timed.__name__ = name
        return timed


def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def run_example(backend, ex: Example, *, xfails=(), timing: Timing | None = None) -> tuple[BuiltCase, list]:
    """Build the example's case and check every applicable function; return the
    built case and the harness outcomes."""
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        built = build_case(ex.spec)
    t1 = time.perf_counter()
    case = golden_case(built)
    b = backend if timing is None else _TimedBackend(backend, timing)
    before = timing.backend if timing else 0.0
    outcomes = harness.check_case(b, case, xfails=xfails)
    if timing is not None:
        timing.oracle += t1 - t0
        timing.harness += time.perf_counter() - t1 - (timing.backend - before)
    return built, outcomes


def _failed(outcomes) -> list:
    """The failing outcomes.  An xfail rule cannot list drawn cases one by one, so in
    a fuzz run it is not strict: a check it covers may fail (xfailed) or pass (an
    unexpected pass is not a failure here, unlike ``refnorm check``)."""
    return [o for o in outcomes if o.status == "failed"]


def _kind(o) -> str:
    """The property a failed outcome violates."""
    m = o.message
    if m.startswith("input modified in place") or m.startswith("input ") and "changed" in m.split("\n")[0]:
        return "inputs unchanged"
    if m.startswith("nondeterministic"):
        return "repeat"
    if m.startswith("batch-variant"):
        return "batch invariance"
    if m.startswith("raised"):
        return "raised"
    if "floating-point dtype" in m:
        return "floating dtype"
    if "shape" in m and "out of tolerance" not in m:
        return "shape"
    return "values"


# ----------------------------------------------------------------------------- shrinking


def _smaller_specs(spec: CaseSpec):
    """Candidate simplifications of a spec, simplest first: plainer layouts, fewer
    rows/batch, smaller sets."""
    if spec.layout:
        yield replace(spec, layout={})
        for t in sorted(spec.layout):
            yield replace(spec, layout={k: v for k, v in spec.layout.items() if k != t})
    prim = _registry.get(spec.op).primary
    x = spec.shapes[prim]
    rows_op = spec.op in ROW_OPS
    nd = len(spec.attrs.get("normalized_shape", [])) if rows_op else 0
    lead_axes = range(len(x) - nd) if rows_op else [0] + list(range(2, len(x)))
    for ax in lead_axes:
        for new in ({1, x[ax] // 2} if x[ax] > 1 else set()):
            if spec.op == "batch_norm" and spec.attrs.get("training") and ax >= 0:
                if math.prod(x) // x[1] // x[ax] * new < 2:
                    continue
            if spec.op == "instance_norm" and ax >= 2 and math.prod(x[2:]) // x[ax] * new < 2:
                continue
            yield _resize(spec, ax, new)
    if rows_op:
        for j in range(nd):
            ax = len(x) - nd + j
            for new in sorted({1, x[ax] // 2, MANY + 1 if x[ax] > MANY + 1 else 0} - {0}):
                if new < x[ax]:
                    yield _resize(spec, ax, new, normalized=j)


def _resize(spec: CaseSpec, ax: int, new: int, normalized: int | None = None) -> CaseSpec:
    prim = _registry.get(spec.op).primary
    x = spec.shapes[prim]
    shapes = {}
    for k, v in spec.shapes.items():
        if v == x:
            v = v[:ax] + [new] + v[ax + 1:]
        elif normalized is not None and v == spec.attrs["normalized_shape"]:
            v = v[:normalized] + [new] + v[normalized + 1:]
        shapes[k] = list(v)
    attrs = dict(spec.attrs)
    if normalized is not None:
        ns = list(attrs["normalized_shape"])
        ns[normalized] = new
        attrs["normalized_shape"] = ns
    return replace(spec, shapes=shapes, attrs=attrs)


def shrink(backend, ex: Example, failing: list, *, xfails=(), budget: int = 40) -> tuple[Example, BuiltCase, list]:
    """Shrink a failing example while it still fails the same way (the same
    function and property): greedy, at most ``budget`` candidate runs."""
    want = {(o.function, _kind(o)) for o in failing}
    best = ex
    built, outcomes = None, failing
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in _smaller_specs(best.spec):
            cand = _named(cand, best.seed, best.index)
            tries += 1
            try:
                b, oc = run_example(backend, replace(best, spec=cand), xfails=xfails)
            except ValueError:  # an invalid shape for the op: not a candidate
                continue
            if want & {(o.function, _kind(o)) for o in _failed(oc)}:
                best, built, outcomes = replace(best, spec=cand), b, oc
                improved = True
                break
            if tries >= budget:
                break
    if built is None:
        built, outcomes = run_example(backend, best, xfails=xfails)
    return best, built, _failed(outcomes)


# ----------------------------------------------------------------------------- a run


def required_features(op: str, dtypes, max_elements: int = 1 << 18) -> list[str]:
    """What a run must reach for ``op`` within its first 200 examples (the
    classes a cap of ``max_elements`` leaves possible)."""
    fam = _family(op)
    spec_op = _registry.get(op)
    out = [f"dtype {d}" for d in dtypes]
    if any(d in ("float16", "bfloat16") for d in dtypes):
        out.append("mixed dtypes")
    if fam == "rows":
        out += [s for s in ROW_SIZES if s != "small"]
        if max_elements <= BIG:
            out.remove("set>2^17")
        if max_elements <= 2 * MANY:
            out.remove("sets>2^16")
        out += list(EPS)
    else:
        out += ["batch of one", "channels_last"]
        if op in ("batch_norm", "instance_norm", "group_norm", "proxy_norm", "gn_plus"):
            out.append("odd C")
        if op in ("group_norm", "gn_plus"):
            out.append("groups of one")
        if op in CHANNEL_OPS:
            out += list(EPS)
        if op in ("weight_standardization", "gn_plus"):  # no batch axis; GN+ needs two samples (BN0)
            out.remove("batch of one")
    if op in TEMPLATE_OPS:  # the normalized input and dy in every layout (the templates' other tensors vary)
        for t in (spec_op.primary, "dy"):
            out += [f"layout {kind}: {t}" for kind in LAYOUTS[1:]]
    else:
        for p in ("weight", "bias"):
            if p in spec_op.parameters and _is_optional(spec_op, p):
                out += [f"{p} given", f"{p} absent"]
        tensors = ["x", "dy"] + [p for p in ("weight", "bias", "residual", "running_mean", "running_var")
                                 if p in spec_op.parameters] + (["dh"] if "dh" in spec_op.cotangents else [])
        for t in tensors:
            for kind in LAYOUTS[1:]:
                if kind in ("transposed", "fortran") and t in ("weight", "bias", "running_mean", "running_var") \
                        and fam == "channels":
                    continue  # 1-D tensors have no transpose
                if kind in ("transposed", "fortran") and t in ("weight", "bias") and fam == "rows":
                    continue  # 1-D unless the normalized shape has two dimensions: reached, not required
                out.append(f"layout {kind}: {t}")
    return out


@dataclass
class Failure:
    """A failing example after shrinking: what it violates and where it was written."""

    example: Example
    outcomes: list
    case_id: str
    written: str = ""

    def message(self) -> str:
        o = self.outcomes[0]
        return (f"FAILED {self.case_id} :: {o.function} ({_kind(o)}): {self.example.label()}, seed "
                f"{self.example.seed}, example {self.example.index}\n  " + o.message.replace("\n", "\n  "))


@dataclass
class FuzzReport:
    backend: str
    seed: int
    examples: int
    outcomes: int = 0
    passed: int = 0
    not_implemented: int = 0
    xfailed: int = 0
    failures: list = field(default_factory=list)
    first_reached: dict = field(default_factory=dict)  # op -> feature -> first example index
    timing: Timing = field(default_factory=Timing)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        return {"backend": self.backend, "seed": self.seed, "examples": self.examples, "ok": self.ok,
                "outcomes": self.outcomes, "passed": self.passed, "xfailed": self.xfailed,
                "not_implemented": self.not_implemented, "seconds": round(self.seconds, 3),
                "timing": {k: round(v, 3) for k, v in vars(self.timing).items()},
                "examples_per_second": round(self.examples / self.seconds, 2) if self.seconds else None,
                "coverage": self.first_reached,
                "failures": [{"case_id": f.case_id, "function": f.outcomes[0].function,
                              "property": _kind(f.outcomes[0]), "message": f.outcomes[0].message,
                              "layout": f.example.spec.layout, "shapes": f.example.spec.shapes,
                              "seed": f.example.seed, "index": f.example.index, "written": f.written}
                             for f in self.failures]}


def plan(seed: int, examples: int, ops, dtypes=None, *, max_elements: int = 1 << 18, adversarial: bool = False,
         derivatives=None, checks=None):
    """The examples a run with these options draws, in order (None where one
    would exceed ``max_elements``): ``draw`` on the schedule, ops round robin.
    ``derivatives`` maps an op to the derivative functions whose inputs are
    drawn (``("jvp", "double_backward")``)."""
    dtypes = list(dtypes or DTYPES)
    cycles = _Cycles(seed)
    for i in range(examples):
        op = ops[i % len(ops)]
        ex = draw(cycles, op, seed, i, dtypes=dtypes, max_elements=max_elements, adversarial=adversarial,
                  derivatives=(derivatives or {}).get(op, ()), checks=checks)
        yield ex if math.prod(ex.spec.shapes[_registry.get(op).primary]) <= max_elements else None


def _derivatives(backend, op: str) -> tuple:
    out = []
    if callable(getattr(backend, f"{op}_jvp", None)):
        out.append("jvp")
    if callable(getattr(backend, f"{op}_double_backward", None)):
        out.append("double_backward")
    return tuple(out)


def fuzz(backend, *, backend_name: str = "", ops=None, dtypes=None, examples: int = 200, seed: int = 0,
         max_elements: int = 1 << 18, adversarial: bool = False, repeat: int = 1, batch_invariance: bool = False,
         xfails=(), out_dir=None, max_failures: int = 5, shrink_budget: int = 40, progress=None) -> FuzzReport:
    """Draw ``examples`` cases and check ``backend`` on each; shrink and (with
    ``out_dir``) write every failing one.  Ops default to those whose forward
    the backend defines; dtypes to all four.  Stops drawing after
    ``max_failures`` failing examples; ``shrink_budget`` bounds the candidate
    runs of each shrink (0: no shrinking)."""
    t_start = time.perf_counter()
    reg = _registry.registry()
    if ops is None:
        ops = [op for op in reg if callable(getattr(backend, op, None))]
    ops = list(ops)
    for op in ops:
        _family(op)
    if not ops:
        raise ValueError("the backend defines none of refnorm's ops; nothing to fuzz")
    dtypes = list(dtypes or DTYPES)
    checks = {"inputs_unchanged": True}
    if repeat > 1:
        checks["repeat"] = int(repeat)
    if batch_invariance:
        checks["batch_invariance"] = True
    report = FuzzReport(backend_name or getattr(backend, "__name__", str(backend)), seed, 0)
    derivs = {op: _derivatives(backend, op) for op in ops}
    for i, ex in enumerate(plan(seed, examples, ops, dtypes, max_elements=max_elements, adversarial=adversarial,
                                derivatives=derivs, checks=checks)):
        op = ops[i % len(ops)]
        if ex is not None:
            try:
                built, outcomes = run_example(backend, ex, xfails=xfails, timing=report.timing)
            except ValueError as e:
                raise ValueError(f"refnorm could not build fuzz example {i} ({ex.label()}): {e}") from e
            report.examples += 1
            for f in ex.features:
                report.first_reached.setdefault(op, {}).setdefault(f, i)
            report.outcomes += len(outcomes)
            report.passed += sum(o.status in ("passed", "xpassed") for o in outcomes)
            report.xfailed += sum(o.status == "xfailed" for o in outcomes)
            report.not_implemented += sum(o.status == "not_implemented" for o in outcomes)
            bad = _failed(outcomes)
            if bad:
                small, sbuilt, sbad = shrink(backend, ex, bad, xfails=xfails, budget=shrink_budget) \
                    if shrink_budget else (ex, built, bad)
                fail = Failure(small, sbad or bad, small.spec.id)
                if out_dir is not None:
                    write_cases(out_dir, [sbuilt])
                    fail.written = str(out_dir)
                report.failures.append(fail)
                if len(report.failures) >= max_failures:
                    break
        if progress is not None:
            progress(i + 1, examples)
    report.seconds = time.perf_counter() - t_start
    return report


def first_reached(examples) -> dict:
    """``{op: {feature: index of the first example that has it}}`` over drawn examples."""
    out: dict = {}
    for ex in examples:
        if ex is not None:
            for f in ex.features:
                out.setdefault(ex.op, {}).setdefault(f, ex.index)
    return out


def missed_features(reached: dict, dtypes=None, max_elements: int = 1 << 18) -> dict:
    """``{op: [required features not in reached[op]]}``."""
    dtypes = list(dtypes or DTYPES)
    return {op: [f for f in required_features(op, dtypes, max_elements) if f not in r] for op, r in reached.items()}


def coverage(report: FuzzReport, dtypes=None, max_elements: int = 1 << 18) -> tuple[str, dict]:
    """The coverage table of a run (one line per op: the required features
    reached, with the example index where each was first reached, and those
    missed) and ``{op: [missed features]}``."""
    lines, missed = [], {}
    dtypes = list(dtypes or DTYPES)
    for op, reached in report.first_reached.items():
        need = required_features(op, dtypes, max_elements)
        miss = [f for f in need if f not in reached]
        missed[op] = miss
        last = max((reached[f] for f in need if f in reached), default=0)
        lines.append(f"{op}: {len(need) - len(miss)}/{len(need)} required features by example {last}"
                     + (f"; missed: {', '.join(miss)}" if miss else ""))
        extra = sorted({f for f in reached if f not in need}, key=lambda f: reached[f])
        sizes = [f for f in need if f in reached and not f.startswith(("layout", "dtype"))]
        lines.append("    " + ", ".join(f"{f} (#{reached[f]})" for f in sizes))
        if extra:
            lines.append("    also: " + ", ".join(extra[:12]) + (" ..." if len(extra) > 12 else ""))
    return "\n".join(lines), missed

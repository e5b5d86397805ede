"""Run a backend against the golden corpus.

A *backend* is any module exposing some of refnorm's public function names
with refnorm's signatures (see :mod:`refnorm.conformance.backends`).  For every
golden case, each protocol function that applies is checked on its own:

==========================  =====================================================
function                    outputs compared
==========================  =====================================================
``<op>``                    every output of :attr:`OpSpec.outputs` (``y``; a fused
                            op returns a tuple, e.g. ``(y, h)``)
``<op>_backward``           ``d<argument>`` for every gradient the case stores
                            (``dx``, ``dweight``, ``dbias``, ``dproxy_shift``, ``dmix``,
                            ``dgain`` ...): the backend returns ``{argument: gradient}``
                            and every key refnorm stores is compared
``<op>_jvp``                ``t<output>`` (``ty``; a fused op ``ty``, ``th``): forward mode
                            along the tangents the case stores (``tx``, ``tweight`` ...,
                            passed as ``{"x": tx, ...}``; the backend returns
                            ``(outputs, tangent outputs)``)
``<op>_double_backward``    ``d2<key>`` (``d2dy``, ``d2x``, ``d2weight`` ...): the VJP of
                            the backward for the second-order cotangents the case stores
                            (``ddx``, ``ddweight`` ..., passed as ``{"x": ddx, ...}``);
                            the backend returns ``{key: gradient}``
``<op>_stats``              the saved statistics of :attr:`OpSpec.stats` in the case
``<op>_running_stats``      ``new_running_mean_<conv>``, ``new_running_var_<conv>``
                            for each convention the case carries
==========================  =====================================================

The backward takes one cotangent per output first (``dy``; ``dy, dh`` for a
fused op), then the forward's arguments.  An expected output the backend does
not return fails the check (*missing*); an output the case does not store is
ignored.

A function the backend does not define, that raises ``NotImplementedError``, or
whose signature lacks a keyword argument the case passes (a variant such as
``offset=``), is *not implemented* (reported, never a failure).  Error cases (``expect.kind ==
"error"``) pass when the forward raises the declared exception type, or one of
the argument-error types the backend declares in ``BACKEND_INFO["error_types"]``
(PyTorch's ``RuntimeError``, say); anything else, or no error, fails.

Optional checks: ``repeat`` calls every function that many times and requires
identical bits (racy reductions); ``batch_invariance`` requires that a sample's
forward output does not depend on the rest of the batch (per-sample ops only).
"""

from __future__ import annotations

import fnmatch
import inspect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import _registry
from .._registry import grad_name, second_grad_name, tangent_name
from ..golden.calls import backward_cotangents, call_arguments, jvp_tangents, second_order_cotangents
from ..golden.comparison import compare
from ..golden.layouts import strided_view
from ..golden.reader import load_cases

STATUSES = ("passed", "failed", "xfailed", "xpassed", "not_implemented")


class NotImplementedByBackend(Exception):
    """The backend lacks the function or raised NotImplementedError."""


def _json_float(v):
    """A float for JSON: finite values as numbers (``json`` writes the shortest
    repr, so full precision), NaN and infinities as the strings "nan", "inf",
    "-inf" (JSON has no literal for them)."""
    return v if v is None or np.isfinite(v) else str(v)


@dataclass
class Mismatch:
    """One output of a (case, function) check that is out of tolerance.

    ``n_bad`` of the output's ``size`` elements are out of tolerance; the worst
    of them (largest error as a multiple of the tolerance, ``ratio``) is at
    ``index``, where the float64 golden value is ``expected`` and the backend's
    value, widened to float64, is ``got``; ``ulps`` is that error in units in the
    last place of the case dtype (inf where either value is not finite).  An
    output that cannot be compared element by element (missing, not an array,
    another shape) has only ``note``, which says why.
    """

    output: str
    n_bad: int = 0
    size: int = 0
    index: tuple | None = None
    expected: float | None = None
    got: float | None = None
    ratio: float = float("inf")
    ulps: float = float("inf")
    note: str = ""

    def line(self) -> str:
        """One line for a person: the output, the count, and the worst element
        with both values at full precision (shortest round-trip repr); the ulps
        are of the case dtype, which the case id names."""
        if self.note:
            return f"{self.output}: {self.note}"
        return (f"{self.output}: {self.n_bad} of {self.size} out of tolerance; worst {self.ratio:.3g} x tolerance "
                f"at {self.index}: expected {self.expected!r}, got {self.got!r} ({self.ulps:.3g} ulp)")

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("expected", "got", "ratio", "ulps"):
            d[k] = _json_float(d[k])
        return d


@dataclass
class Outcome:
    """The result of one (case, function) check.

    ``message`` says why a check failed (or was not implemented) as plain text:
    for out-of-tolerance outputs one :meth:`Mismatch.line` per output, joined by
    newlines, with the same facts in ``mismatches`` as fields.  ``description``
    is the case's, from the corpus manifest, for reports that group by case.
    """

    case_id: str
    op: str
    dtype: str
    tier: str
    function: str
    status: str
    worst_ratio: float | None = None  # worst |error| / allowed over the outputs checked
    message: str = ""
    outputs: dict = field(default_factory=dict)  # output -> worst ratio
    reason: str = ""  # the xfail reason, when one applies
    description: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["worst_ratio"] = _json_float(d["worst_ratio"])
        d["outputs"] = {k: _json_float(v) for k, v in d["outputs"].items()}
        d["mismatches"] = [m.to_json() for m in self.mismatches]
        return d


# ----------------------------------------------------------------------------- xfail files


@dataclass(frozen=True)
class XfailRule:
    pattern: str  # fnmatch pattern over "<case id>" or "<case id>::<function>"
    reason: str
    line: int


def read_xfails(path) -> list[XfailRule]:
    """Parse an xfail file: one rule per line, ``<case id or glob>[::<function>]  # reason``.

    Blank lines and lines starting with ``#`` are ignored; every rule needs a reason.
    """
    rules = []
    p = Path(path)
    for i, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition("#")
        pattern, reason = pattern.strip(), reason.strip()
        if not sep or not reason or not pattern or " " in pattern:
            raise ValueError(f"{p}:{i}: expected '<case id>[::<function>]  # reason', got {raw!r}")
        rules.append(XfailRule(pattern, reason, i))
    return rules


def match_xfail(rules, case_id: str, function: str) -> XfailRule | None:
    for r in rules:
        target = f"{case_id}::{function}" if "::" in r.pattern else case_id
        if fnmatch.fnmatchcase(target, r.pattern):
            return r
    return None


# ----------------------------------------------------------------------------- calling a backend


def call_inputs(case) -> dict[str, np.ndarray]:
    """The tensors one call receives: a fresh copy of every input of the case,
    in the memory layout the case states for it (:mod:`refnorm.golden.layouts`;
    C order by default).  Every call gets its own copies, so a backend that
    writes into its inputs cannot change what a later check of the case sees."""
    layout = getattr(case, "layout", None) or {}
    return {k: strided_view(v, layout.get(k)) for k, v in case.inputs.items()}


def _forward_args(case, inputs=None) -> tuple[list, dict]:
    """Positional and keyword-only arguments of the op's forward for the case
    (:func:`refnorm.golden.calls.call_arguments`, the mapping refnorm's own
    generator uses), from ``inputs`` (default: :func:`call_inputs`)."""
    return call_arguments(case.op, call_inputs(case) if inputs is None else inputs, case.attrs)


def _get(backend, name):
    fn = getattr(backend, name, None)
    if fn is None or not callable(fn):
        raise NotImplementedByBackend(f"backend has no {name}()")
    return fn


def _unaccepted_keywords(fn, kwargs) -> list[str]:
    """The keyword arguments ``fn``'s signature does not take (none when it
    takes ``**kwargs`` or has no inspectable signature)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [k for k in kwargs if k not in params]


def _call(fn, *args, **kwargs):
    missing = _unaccepted_keywords(fn, kwargs)
    if missing:  # a variant the backend does not offer (e.g. offset=), not a wrong result
        shown = [f"{k}={kwargs[k]!r}" if isinstance(kwargs[k], (bool, int, float, str)) else f"{k}=..."
                 for k in missing]
        raise NotImplementedByBackend(f"{getattr(fn, '__name__', 'the function')}() takes no "
                                      f"{', '.join(k + '=' for k in missing)} (the case passes {', '.join(shown)})")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise NotImplementedByBackend(str(exc) or f"{fn.__name__} raised NotImplementedError") from None


def _as_f64(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    return np.asarray(a).astype(np.float64)


def _running_momentum(case, convention):
    rs = case.attrs.get("running_stats", {})
    if isinstance(rs, dict) and convention in rs and "momentum" in rs[convention]:
        return rs[convention]["momentum"]
    if convention == "torch":
        return case.attrs.get("momentum", 0.1)
    raise ValueError(f"case {case.id} carries {convention!r} running statistics but no "
                     f"attrs.running_stats.{convention}.momentum")


def _forward_outputs(spec, result) -> dict:
    """A forward's result by output name: ``y``, or the tuple of a fused op's outputs."""
    if len(spec.outputs) == 1:
        return {spec.outputs[0]: result}
    if not isinstance(result, (tuple, list)) or len(result) != len(spec.outputs):
        raise TypeError(f"{spec.name} must return a tuple of {len(spec.outputs)} outputs {spec.outputs}, got "
                        f"{type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list))
                                                      else ""))
    return dict(zip(spec.outputs, result))


def produce(backend, case, function: str, inputs=None) -> dict[str, np.ndarray]:
    """Call ``function`` of ``backend`` on ``case``; return its outputs by golden name.

    ``inputs`` are the tensors passed (default: fresh ones, :func:`call_inputs`);
    the caller may compare them with ``case.inputs`` afterwards."""
    op = case.op
    spec = _registry.get(op)
    inputs = call_inputs(case) if inputs is None else inputs
    args, kwargs = _forward_args(case, inputs)
    if function == op:
        return _forward_outputs(spec, _call(_get(backend, op), *args, **kwargs))
    if function == f"{op}_backward":
        grads = _call(_get(backend, f"{op}_backward"), *backward_cotangents(op, inputs), *args, **kwargs)
        if not isinstance(grads, dict):
            raise TypeError(f"{op}_backward must return a dict {{argument: gradient}}, got {type(grads).__name__}")
        return {grad_name(k): v for k, v in grads.items()}
    if function == f"{op}_jvp":
        result = _call(_get(backend, f"{op}_jvp"), jvp_tangents(op, inputs), *args, **kwargs)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"{op}_jvp must return (outputs, tangent outputs), got {type(result).__name__}")
        return {tangent_name(k): v for k, v in _forward_outputs(spec, result[1]).items()}
    if function == f"{op}_double_backward":
        grads = _call(_get(backend, f"{op}_double_backward"), second_order_cotangents(op, inputs),
                      *backward_cotangents(op, inputs), *args, **kwargs)
        if not isinstance(grads, dict):
            raise TypeError(f"{op}_double_backward must return a dict {{argument: gradient}}, got "
                            f"{type(grads).__name__}")
        return {second_grad_name(k): v for k, v in grads.items()}
    if function == f"{op}_stats":
        _, stats = _call(_get(backend, f"{op}_stats"), *args, **kwargs)
        return dict(stats)
    if function == f"{op}_running_stats":
        fn = _get(backend, f"{op}_running_stats")
        out, skipped = {}, []
        for conv in _conventions(case):
            kw = {"convention": conv}
            if "num_batches_tracked" in case.attrs:
                kw["num_batches_tracked"] = case.attrs["num_batches_tracked"]
            try:
                mean, var = _call(fn, inputs["x"], inputs["running_mean"], inputs["running_var"],
                                  _running_momentum(case, conv), **kw)
            except NotImplementedByBackend as exc:
                skipped.append(str(exc))  # each convention is checked on its own
                continue
            out[f"new_running_mean_{conv}"] = mean
            out[f"new_running_var_{conv}"] = var
        if not out:
            raise NotImplementedByBackend("; ".join(skipped))
        return out
    raise ValueError(f"unknown function {function!r} for op {op!r}")


def _conventions(case) -> list[str]:
    return sorted(k[len("new_running_mean_"):] for k in case.expected if k.startswith("new_running_mean_"))


def expected_outputs(case, function: str) -> list[str]:
    """The outputs the case stores for ``function``: what a check of it compares."""
    spec = _registry.get(case.op)
    if function == case.op:
        names = spec.outputs
    elif function == f"{case.op}_backward":
        names = spec.grad_names()
    elif function == f"{case.op}_jvp":
        names = spec.tangent_outputs
    elif function == f"{case.op}_double_backward":
        names = spec.second_grad_names()
    elif function == f"{case.op}_stats":
        names = spec.stats
    elif function == f"{case.op}_running_stats":
        names = [f"new_running_{s}_{c}" for c in _conventions(case) for s in ("mean", "var")]
    else:
        raise ValueError(f"unknown function {function!r} for op {case.op!r}")
    return [n for n in names if n in case.expected]


def applicable_functions(case) -> list[str]:
    """The protocol functions a case checks."""
    op = case.op
    if case.expect.get("kind") == "error":
        return [op]
    spec = _registry.get(op)
    fns = [op] if expected_outputs(case, op) else []
    if expected_outputs(case, f"{op}_backward") and any(c in case.inputs for c in spec.cotangents):
        fns.append(f"{op}_backward")
    if expected_outputs(case, f"{op}_jvp"):
        fns.append(f"{op}_jvp")
    if expected_outputs(case, f"{op}_double_backward"):
        fns.append(f"{op}_double_backward")
    if expected_outputs(case, f"{op}_stats"):
        fns.append(f"{op}_stats")
    if _conventions(case):
        fns.append(f"{op}_running_stats")
    return fns


# ----------------------------------------------------------------------------- checking


def _compare_outputs(case, outputs: dict, function: str) -> tuple[bool, float, list[Mismatch], dict]:
    """Compare each output the case expects; return whether all are within
    tolerance, the worst ratio, a :class:`Mismatch` per output that is not, and
    the worst ratio per output."""
    ok, worst, bad, per = True, 0.0, [], {}
    for name, actual in outputs.items():
        if name not in case.expected:
            continue
        try:
            a = _as_f64(actual)
        except Exception as exc:  # not array-like
            ok, worst = False, float("inf")
            bad.append(Mismatch(name, note=f"not an array ({type(actual).__name__}: {exc})"))
            per[name] = float("inf")
            continue
        cmp = compare(case.expected[name], a, case.tolerances[name], case.scales.get(name), dtype=case.dtype)
        per[name] = float(cmp.worst_ratio)
        worst = max(worst, float(cmp.worst_ratio))
        if not cmp.ok:
            ok = False
            bad.append(_mismatch(name, case.expected[name], a, cmp))
    missing = [n for n in _expected_names(case, outputs, function) if n not in outputs]
    if missing:
        ok, worst = False, float("inf")
        bad.extend(Mismatch(n, note="missing (the backend returned no such output)") for n in missing)
    return ok, worst, bad, per


def _mismatch(name: str, expected, actual: np.ndarray, cmp) -> Mismatch:
    """A :class:`Mismatch` from a failed comparison: the values at its worst
    index are read back from the arrays it compared (a comparison that has no
    worst index, e.g. of another shape, keeps its message as the note)."""
    if cmp.worst_index is None:
        return Mismatch(name, note=cmp.message)
    e = np.asarray(expected, dtype=np.float64)
    i = cmp.worst_index
    return Mismatch(name, cmp.n_bad, int(e.size), i, float(e[i]), float(actual[i]), float(cmp.worst_ratio),
                    float(cmp.worst_ulps))


def _expected_names(case, outputs, function: str) -> list[str]:
    """The outputs that must be present: all the case stores for ``function``;
    for running statistics, both statistics of each convention the backend
    implements (a NotImplementedError skips a convention)."""
    if function == f"{case.op}_running_stats":
        convs = {k.rsplit("_", 1)[1] for k in outputs if k.startswith("new_running_")}
        return [f"new_running_{s}_{c}" for c in sorted(convs) for s in ("mean", "var")
                if f"new_running_{s}_{c}" in case.expected]
    return expected_outputs(case, function)


def _bits(outputs: dict) -> dict:
    return {k: _as_f64(v).tobytes() for k, v in outputs.items()}


def _check_repeat(backend, case, function, first, repeat) -> str:
    ref = _bits(first)
    for r in range(1, repeat):
        again = _bits(produce(backend, case, function))
        for k in ref:
            if again.get(k) != ref[k]:
                a = np.frombuffer(ref[k]).copy()
                b = np.frombuffer(again.get(k, b"")).copy()
                if a.shape != b.shape:
                    return f"run {r + 1} of {repeat}: {k} changed shape"
                diff = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
                return (f"nondeterministic: run {r + 1} of {repeat} differs from run 1 in {k} at "
                        f"{diff.size} elements (first flat index {int(diff[0])}: {float(a[diff[0]])!r} vs "
                        f"{float(b[diff[0]])!r})")
    return ""


def _check_batch_invariance(backend, case) -> str:
    """Sample i's outputs computed in the full batch, alone, and inside a
    batch padded with copies of other samples must be bit-identical.  Every
    input batched like the primary one (a fused op's ``residual``) is sliced
    and padded with it."""
    spec = _registry.get(case.op)
    inputs = call_inputs(case)
    x = inputs[spec.primary]
    if not spec.per_sample or x.ndim < 2 or x.shape[0] < 2:
        return ""
    batched = [k for k, v in inputs.items() if k in spec.parameters and (v.shape == x.shape
                                                                         or k in spec.batched_inputs)]
    fn = _get(backend, case.op)

    def run(pick):
        fresh = call_inputs(case)  # every run its own copies: a write into an input cannot pass for variance
        args, kwargs = _forward_args(case, {**fresh, **{k: pick(fresh[k]) for k in batched}})
        return {k: _as_f64(v) for k, v in _forward_outputs(spec, _call(fn, *args, **kwargs)).items()}

    full = run(lambda a: a)
    n = x.shape[0]
    for i in sorted({0, n - 1}):
        for label, outs in (("alone", run(lambda a: a[i:i + 1])),
                            (f"in a padded batch of {4 * n + 1}",
                             run(lambda a: np.concatenate([a[i:i + 1]] + [a] * 4, axis=0)))):
            for name, got in outs.items():
                got, want = got[:1], full[name][i:i + 1]
                same = (got == want) | (np.isnan(got) & np.isnan(want))
                if not np.all(same):
                    j = tuple(int(v) for v in np.unravel_index(int(np.flatnonzero(~same)[0]), got.shape))
                    where = "" if len(spec.outputs) == 1 else f" ({name})"
                    return (f"batch-variant: sample {i} computed {label} differs from the full batch{where} "
                            f"at {j}: {float(got[j])!r} vs {float(want[j])!r}")
    return ""


def _changed_inputs(case, inputs: dict) -> str:
    """Why the tensors passed to a call no longer equal the case's inputs
    (bitwise; NaN payloads included), or "" when none changed."""
    for name, want in case.inputs.items():
        got = inputs.get(name)
        if got is None:
            continue
        a, b = np.ascontiguousarray(want), np.ascontiguousarray(got)
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"input {name} changed from {a.dtype}{list(a.shape)} to {b.dtype}{list(b.shape)}"
        ua, ub = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
        bad = np.flatnonzero(ua != ub)
        if bad.size:
            i = tuple(int(v) for v in np.unravel_index(int(bad[0]), a.shape))
            return (f"input modified in place: {name} changed at {bad.size} of {a.size} elements (first at {i}: "
                    f"{float(a[i])!r} before the call, {float(b[i])!r} after)")
    return ""


def _non_float_outputs(outputs: dict) -> list[Mismatch]:
    """A :class:`Mismatch` for each output that is not a floating-point array."""
    bad = []
    for name, v in outputs.items():
        dt = getattr(v, "dtype", None)
        if dt is not None and hasattr(dt, "is_floating_point"):  # a torch tensor
            ok = bool(dt.is_floating_point)
        else:
            try:
                dt = np.asarray(v).dtype
            except Exception:  # not array-like: _compare_outputs says so
                continue
            ok = dt.kind == "f" or dt.name == "bfloat16"
        if not ok:
            bad.append(Mismatch(name, note=f"dtype {dt} is not a floating-point dtype"))
    return bad


def check_function(backend, case, function: str, *, xfails=(), repeat: int = 1,
                   batch_invariance: bool = False) -> Outcome:
    """Check one protocol function of ``backend`` on one golden case.

    Besides the values: the outputs must be floating-point arrays, and the
    properties the case asks for in its ``checks`` (inputs unchanged, repeat
    runs, batch invariance) are checked as if given here."""
    rule = match_xfail(xfails, case.id, function)
    oc = Outcome(case.id, case.op, case.dtype, case.tier, function, "passed", description=case.description)
    checks = getattr(case, "checks", None) or {}
    repeat = max(repeat, int(checks.get("repeat", 1)))
    batch_invariance = batch_invariance or bool(checks.get("batch_invariance"))
    try:
        if case.expect.get("kind") == "error":
            oc.status, oc.message = _check_error(backend, case)
        else:
            inputs = call_inputs(case)
            outputs = produce(backend, case, function, inputs)
            ok, worst, bad, per = _compare_outputs(case, outputs, function)
            typed = _non_float_outputs({k: v for k, v in outputs.items() if k in case.expected})
            if typed:
                ok, bad = False, bad + typed
            oc.worst_ratio, oc.outputs, oc.mismatches = worst, per, bad
            oc.status = "passed" if ok else "failed"
            oc.message = "\n".join(m.line() for m in bad)
            changed = _changed_inputs(case, inputs) if checks.get("inputs_unchanged") else ""
            if changed:
                oc.status = "failed"
                oc.message = "\n".join(filter(None, [changed, oc.message]))
            if oc.status == "passed" and repeat > 1:
                msg = _check_repeat(backend, case, function, outputs, repeat)
                if msg:
                    oc.status, oc.message = "failed", msg
            if oc.status == "passed" and batch_invariance and function == case.op:
                msg = _check_batch_invariance(backend, case)
                if msg:
                    oc.status, oc.message = "failed", msg
    except NotImplementedByBackend as exc:
        oc.status, oc.message = "not_implemented", str(exc)
    except Exception as exc:  # the backend crashed on a value case
        oc.status, oc.message = "failed", f"raised {type(exc).__name__}: {exc}"
    if rule is not None and oc.status in ("passed", "failed"):
        oc.reason = rule.reason
        oc.status = "xfailed" if oc.status == "failed" else "xpassed"
    return oc


def check_case(backend, case, *, xfails=(), repeat: int = 1, batch_invariance: bool = False) -> list[Outcome]:
    """All outcomes for one golden case."""
    return [check_function(backend, case, fn, xfails=xfails, repeat=repeat, batch_invariance=batch_invariance)
            for fn in applicable_functions(case)]


def _check_error(backend, case) -> tuple[str, str]:
    want = case.expect.get("type", "ValueError")
    args, kwargs = _forward_args(case)
    fn = _get(backend, case.op)
    try:
        _call(fn, *args, **kwargs)
    except NotImplementedByBackend:
        raise
    except Exception as exc:
        names = {c.__name__ for c in type(exc).__mro__}
        if want in names:
            return "passed", ""
        # A framework has its own argument-error types (PyTorch raises RuntimeError
        # where refnorm raises ValueError); a backend declares them explicitly in
        # BACKEND_INFO["error_types"], and only those are accepted in place of `want`.
        declared = tuple(getattr(backend, "BACKEND_INFO", {}).get("error_types", ()))
        if declared and isinstance(exc, declared):
            return "passed", f"raised {type(exc).__name__} (a declared argument-error type of the backend) for {want}"
        return "failed", f"expected {want}, got {type(exc).__name__}: {exc}"
    return "failed", f"expected {want} ({case.expect.get('match', '')}), but no error was raised"


@dataclass
class Report:
    backend: str
    outcomes: list[Outcome]
    seconds: float
    options: dict

    @property
    def unexpected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "xpassed")]

    @property
    def ok(self) -> bool:
        return not self.unexpected

    def counts(self) -> dict[str, int]:
        return {s: sum(o.status == s for o in self.outcomes) for s in STATUSES}

    def to_json(self) -> dict:
        return {"backend": self.backend, "ok": self.ok, "seconds": round(self.seconds, 3), "options": self.options,
                "counts": self.counts(), "outcomes": [o.to_json() for o in self.outcomes]}


def check(backend, *, backend_name: str = "", ops=None, dtypes=None, tiers=None, root=None, xfails=(),
          repeat: int = 1, batch_invariance: bool = False, progress=None) -> Report:
    """Run ``backend`` against every applicable golden case; return a :class:`Report`."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    t0 = time.perf_counter()
    cases = list(load_cases(ops=ops, dtypes=dtypes, tiers=tiers, root=root))
    outcomes = []
    for i, case in enumerate(cases):
        outcomes.extend(check_case(backend, case, xfails=xfails, repeat=repeat, batch_invariance=batch_invariance))
        if progress is not None:
            progress(i + 1, len(cases))
    return Report(backend_name or getattr(backend, "__name__", str(backend)), outcomes, time.perf_counter() - t0,
                  {"ops": ops, "dtypes": dtypes, "tiers": tiers, "repeat": repeat,
                   "batch_invariance": batch_invariance})

"""examples/triton: the Triton LayerNorm kernels, as a refnorm backend, against the
committed golden corpus under Triton's CPU interpreter.

Which cases, and why.  The interpreter runs every program of a grid in Python, so a case
costs ~0.1 s (five kernel launches) plus ~50 ms a row (one forward program per row),
whatever its dtype or row length; batch invariance, which runs the forward again on 1
and 4M + 1 rows, multiplies that by ~3.5.  The 149 layer_norm cases take ~2 minutes
without it, most of that the two 1024-row E9 cases.  The corpus test checks, chosen from
the manifest (``_selection``):

* no case of more than MAX_ROWS rows (the two E9 and the two 29-row E21 cases: more
  rows only repeat the program; the summation over several rows in one backward
  program, the one thing E9 adds, is checked by test_backward_is_deterministic);
* each case family (op/name) in one of its dtypes, taking float64, float32, float16,
  bfloat16 in turn over the families of each tier in manifest order: every family --
  every adversarial input, size, parameter combination -- is checked, and every dtype
  in every tier.  The kernels compute float16, bfloat16 and float32 alike in float32,
  so one family's cases in these dtypes differ in the rounding of inputs and outputs,
  which the exact tier checks, to the last bit, in each dtype;
* but every dtype of the families that expect NaN outputs (E2 with eps = 0, E23 NaN/inf
  rows: NaN must survive each dtype's output conversion, hand-written for bfloat16) and
  of the edge-case classes examples/triton/README.md reports the corpus found, E2
  (constant rows) and E7 (overflow).

On the committed corpus that is 56 of the 149 cases (50 implemented: the example takes
no offset=), ~15 s.  Batch invariance is checked once per family, on the case of its
turn, if that has at most BATCH_INVARIANCE_MAX_ROWS rows: the padded batches cost 9x
the rows of the case, and a program that computes one row cannot tell 2 rows from 16.
The test asserts that the selection covers every family and every (dtype, tier) through
each function, so a corpus change cannot shrink the coverage unnoticed.
REFNORM_TRITON_ALL_CASES=1 checks every case in every dtype, all with batch invariance.
The full run's table is in examples/triton/README.md.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

# The interpreter must be chosen before triton is first imported (its library is
# decorated at import time); the backend refuses to load otherwise.
os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("torch")
pytest.importorskip("triton")

from refnorm.conformance.backends import load_backend  # noqa: E402
from refnorm.conformance.harness import check, check_function, produce  # noqa: E402
from refnorm.golden.corpus import iter_entries, load_case  # noqa: E402

from .._util import corpus_subset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "triton" / "triton_layer_norm.py"
GOLDEN = REPO / "spec" / "golden"
DTYPES = ("float64", "float32", "float16", "bfloat16")  # the backend implements every dtype
FUNCTIONS = ("layer_norm", "layer_norm_backward", "layer_norm_stats")
MAX_ROWS = 16
BATCH_INVARIANCE_MAX_ROWS = 2
EVERY_DTYPE = ("e2_", "e7_")  # the edge-case classes examples/triton/README.md reports the corpus found
ALL_CASES = os.environ.get("REFNORM_TRITON_ALL_CASES") == "1"


def _rows(entry) -> int:
    """Rows of a LayerNorm case (= forward programs launched), from the manifest alone."""
    shape = entry["shapes"]["x"]
    ns = entry["attrs"]["normalized_shape"]
    k = 1 if isinstance(ns, int) else len(ns)
    return math.prod(shape[: len(shape) - k])


def _every_dtype(entry) -> bool:
    return entry["expect"]["kind"] == "nan" or entry["name"].startswith(EVERY_DTYPE)


def _selection(entries) -> tuple[list, set]:
    """The cases the corpus test checks, in manifest order, and the ids of those it checks
    for batch invariance (module docstring)."""
    families: dict[str, dict] = {}
    for e in entries:
        if _rows(e) <= MAX_ROWS:
            families.setdefault(e["name"], {})[e["dtype"]] = e
    turn = Counter()  # tier -> where in DTYPES its next family starts looking
    keep, batch_invariance = [], set()
    for by_dtype in families.values():
        tier = next(iter(by_dtype.values()))["tier"]
        k = next(k for k in range(turn[tier], turn[tier] + len(DTYPES)) if DTYPES[k % len(DTYPES)] in by_dtype)
        turn[tier] = k + 1
        pick = by_dtype[DTYPES[k % len(DTYPES)]]
        keep += by_dtype.values() if any(_every_dtype(e) for e in by_dtype.values()) else [pick]
        if _rows(pick) <= BATCH_INVARIANCE_MAX_ROWS:
            batch_invariance.add(pick["id"])
    order = {e["id"]: i for i, e in enumerate(entries)}
    return sorted(keep, key=lambda e: order[e["id"]]), batch_invariance


def _copy(tmp_path_factory, name, ids) -> Path:
    """A corpus directory holding the committed corpus's cases ``ids``."""
    return corpus_subset(GOLDEN, ids, tmp_path_factory.mktemp(name))


@pytest.fixture(scope="module")
def backend():
    return load_backend(str(EXAMPLE))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """(corpus directory, check batch invariance) pairs: the committed corpus, or copies
    holding the selected cases to check with and without batch invariance."""
    if ALL_CASES:
        return [(GOLDEN, True)]
    selected, small = _selection(iter_entries(GOLDEN, ops=["layer_norm"]))
    assert small, "no small layer_norm case in the corpus"
    return [(_copy(tmp_path_factory, "golden_small", small), True),
            (_copy(tmp_path_factory, "golden_rest", {e["id"] for e in selected} - small), False)]


def _summary(report) -> str:
    return "\n".join(f"{o.status.upper()} {o.case_id} :: {o.function}: {o.message}" for o in report.unexpected)


def test_layer_norm_corpus(backend, corpora):
    outcomes = []
    for root, batch_invariance in corpora:
        report = check(backend, backend_name="examples/triton", ops=["layer_norm"], root=root,
                       batch_invariance=batch_invariance)
        assert report.ok, _summary(report)
        outcomes += report.outcomes
    assert outcomes
    # the example offers no zero-centred weights (offset=), forward mode or second order: those cases and
    # functions, and only those, are not implemented
    skipped = [o for o in outcomes if o.status == "not_implemented"
               and not o.function.endswith(("_jvp", "_double_backward"))]
    assert all("takes no offset=" in o.message and "offset" in o.case_id.split("/")[1] for o in skipped), [
        (o.case_id, o.function, o.message) for o in skipped if "takes no offset=" not in o.message][:5]
    implemented = {o.case_id for o in outcomes if o.status == "passed"}
    # every family with a case of at most MAX_ROWS rows, and every dtype in every tier through
    # each function, was checked (by construction of the selection: asserted, so that a corpus
    # change cannot shrink the coverage unnoticed)
    entries = [e for e in iter_entries(GOLDEN, ops=["layer_norm"]) if _rows(e) <= MAX_ROWS
               and "offset" not in e["attrs"]]
    assert {e["name"] for e in entries} <= {i.split("/")[1].rsplit("__", 1)[0] for i in implemented}
    for dtype in DTYPES:
        for tier in sorted({e["tier"] for e in entries if e["dtype"] == dtype}):
            for fn in FUNCTIONS:
                passed = sum(o.status == "passed" for o in outcomes
                             if o.dtype == dtype and o.tier == tier and o.function == fn)
                assert passed > 0, f"no {fn} check of a {tier} case passed in {dtype}"
    assert {e["id"] for e in entries if _every_dtype(e)} <= implemented
    # no xfail file: every case passes, the E7 overflow cases (rows of ~1e30 and near the
    # float32 maximum, fixed by the per-row power-of-two scaling) included
    assert sum(o.status in ("xfailed", "xpassed") for o in outcomes) == 0
    e7 = {"layer_norm/e7_1e30__float32", "layer_norm/e7_1e30__bfloat16", "layer_norm/e7_near_max__float32"}
    e7_outcomes = [o for o in outcomes if o.case_id in e7]
    assert {o.case_id for o in e7_outcomes} == e7
    assert all(o.status == "passed" for o in e7_outcomes), [(o.case_id, o.function, o.status) for o in e7_outcomes]
    # the argument-error cases are in the selection and were refused
    errors = [o for o in outcomes if o.case_id.startswith("layer_norm/err_")]
    assert errors and all(o.status == "passed" for o in errors)


def _bits(outputs: dict) -> dict:
    return {k: (np.asarray(v).dtype.str, np.asarray(v).shape, np.ascontiguousarray(v).tobytes())
            for k, v in outputs.items()}


def test_backward_is_deterministic(backend, monkeypatch):
    """The two-stage dweight/dbias reduction has a fixed order: identical bits run to run,
    and whatever order the backward's programs run in."""
    # The interpreter runs a grid's programs one after another, always in the same order, so
    # here a racy reduction (atomic adds of the programs' partial sums, or programs sharing a
    # partial row) gives the same bits on every run: repeating the call cannot catch it, on
    # any input and however often.  Running the programs in reverse order does -- the partial
    # sums are then added in another order and round differently -- on any case whose
    # backward has three programs or more (two partials add the same either way).  One
    # repeat in program order is enough for the rest: with the programs' order fixed, two
    # calls can differ only through state one call leaves to the next (a partial buffer not
    # zeroed, say), which the second call already sees.  float32: the compute dtype of every
    # input but float64 (same code), and a half dtype's output rounding could hide a
    # reordered sum.
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    set_grid_idx = builder.set_grid_idx
    reversed_programs = []

    def reverse(x, y, z):
        nx, ny, nz = builder.grid_dim
        reversed_programs.append((x, y, z))
        set_grid_idx(nx - 1 - x, ny - 1 - y, nz - 1 - z)

    # Four partial sums (CPU default 32): each program then owns several rows, as on a GPU when the
    # batch has more rows than 2 x its SMs, so the accumulation over a program's rows, which the CPU
    # grid reaches only with more than 32 rows (E9), is checked against the corpus too.
    monkeypatch.setattr(backend, "NUM_PARTIALS_CPU", 4)
    # the float32 statistical case(s) with a weight and a bias of the most rows (at most MAX_ROWS)
    entries = [e for e in iter_entries(GOLDEN, ops=["layer_norm"], tiers=["statistical"], dtypes=["float32"])
               if {"weight", "bias"} <= set(e["shapes"]) and _rows(e) <= MAX_ROWS and not e["attrs"].get("offset")]
    most = max(_rows(e) for e in entries)
    cases = [load_case(e["id"], GOLDEN) for e in entries if _rows(e) == most]
    # at least 3 programs, each but perhaps the last of several rows
    assert math.ceil(most / math.ceil(most / backend.NUM_PARTIALS_CPU)) >= 3 and most > backend.NUM_PARTIALS_CPU
    for case in cases:
        outcome = check_function(backend, case, "layer_norm_backward", repeat=2)
        assert outcome.status == "passed", f"{case.id}: {outcome.message}"
        in_order = _bits(produce(backend, case, "layer_norm_backward"))
        with monkeypatch.context() as m:
            m.setattr(builder, "set_grid_idx", reverse)
            reordered = _bits(produce(backend, case, "layer_norm_backward"))
        assert reversed_programs, "the interpreter no longer sets the program ids through set_grid_idx"
        assert reordered == in_order, f"{case.id}: the backward depends on the order its programs run in"


def test_long_rows_match_single_block(backend, monkeypatch):
    """The chunked path (rows longer than MAX_BLOCK_N) agrees with the one-block path."""
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 2.0, size=(5, 300)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    w = rng.normal(size=300).astype(np.float32)
    b = rng.normal(size=300).astype(np.float32)
    one = backend.layer_norm_backward(dy, x, 300, w, b)
    y_one, st_one = backend.layer_norm_stats(x, 300, w, b)
    monkeypatch.setattr(backend, "MAX_BLOCK_N", 64)  # 300 columns in 5 chunks
    chunked = backend.layer_norm_backward(dy, x, 300, w, b)
    y_chunked, st_chunked = backend.layer_norm_stats(x, 300, w, b)
    for k in ("x", "weight", "bias"):
        np.testing.assert_allclose(chunked[k], one[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_chunked, y_one, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(st_chunked["rstd"], st_one["rstd"], rtol=1e-6)


@pytest.mark.parametrize("call, exc, name", [
    (lambda m, x, w: m.layer_norm(x, (4,)), ValueError, "normalized_shape"),
    (lambda m, x, w: m.layer_norm(x, "5"), TypeError, "normalized_shape"),
    (lambda m, x, w: m.layer_norm(x, (5,), weight=w[:4]), ValueError, "weight"),
    (lambda m, x, w: m.layer_norm(x, (5,), bias=np.ones((1, 5), np.float32)), ValueError, "bias"),
    (lambda m, x, w: m.layer_norm(x.astype(np.int32), (5,)), TypeError, "x"),
    (lambda m, x, w: m.layer_norm(x, (5,), weight=w.astype(np.int64)), TypeError, "weight"),
    (lambda m, x, w: m.layer_norm(x, (5,), eps="1e-5"), TypeError, "eps"),
    (lambda m, x, w: m.layer_norm_stats(x, (5,), eps=float("nan")), ValueError, "eps"),
    (lambda m, x, w: m.layer_norm_backward(x[:2], x, (5,), w), ValueError, "dy"),
    (lambda m, x, w: m.layer_norm_backward(x, x, (3, 5), w), ValueError, "normalized_shape"),
])
def test_argument_errors_before_any_kernel(backend, monkeypatch, call, exc, name):
    def no_kernels(*args, **kwargs):
        raise AssertionError("a kernel was launched before the arguments were checked")

    monkeypatch.setattr(backend, "_launch", no_kernels)
    x = np.ones((3, 5), np.float32)
    w = np.ones(5, np.float32)
    with pytest.raises(exc, match=name):
        call(backend, x, w)


_COMPILE = r"""
import os, sys
os.environ["TRITON_INTERPRET"] = "0"
sys.path.insert(0, sys.argv[1])
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import triton_layer_norm as T

target = GPUTarget("cuda", 80, 32)
for x, s, cdt, fp64 in (("bf16", "fp32", tl.float32, False), ("fp64", "fp64", tl.float64, True)):
    for single in (True, False):
        block = 1024 if single else 4096
        fwd = dict(X="*" + x, Y="*" + x, W="*" + x, B="*" + x, Mean="*" + s, Rstd="*" + s, N="i32", eps="fp64")
        triton.compile(ASTSource(T._ln_fwd_kernel, {**fwd, **{k: "constexpr" for k in
                       ("HAS_W", "HAS_B", "CDT", "IS_FP64", "BLOCK_N")}},
                       dict(HAS_W=True, HAS_B=True, CDT=cdt, IS_FP64=fp64, BLOCK_N=block)), target=target)
        bwd = dict(DY="*" + x, X="*" + x, W="*" + x, Mean="*" + s, Rstd="*" + s, DX="*" + x, DWp="*" + s,
                   DBp="*" + s, M="i32", N="i32", rows_per_program="i32")
        cst = dict(HAS_W=True, NEED_DW=True, NEED_DB=True, CDT=cdt, IS_FP64=fp64, BLOCK_N=block, SINGLE_BLOCK=single)
        triton.compile(ASTSource(T._ln_bwd_kernel, {**bwd, **{k: "constexpr" for k in cst}}, cst), target=target)
    red = dict(DWp="*" + s, DBp="*" + s, DW="*" + x, DB="*" + x, G="i32", N="i32")
    cst = dict(NEED_DW=True, NEED_DB=True, CDT=cdt, BLOCK_G=32, BLOCK_N=1024)
    triton.compile(ASTSource(T._ln_bwd_reduce_kernel, {**red, **{k: "constexpr" for k in cst}}, cst), target=target)
print("compiled")
"""


def test_kernels_compile_for_a_gpu():
    """The same kernels compile for an NVIDIA GPU (sm_80) -- no GPU needed, only the
    ptxas that ships with triton.  Guards against code that only the interpreter accepts."""
    pytest.importorskip("triton.backends.nvidia")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE, str(EXAMPLE.parent)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-4000:]

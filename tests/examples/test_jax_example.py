"""examples/jax: a JAX author's LayerNorm/RMSNorm (jax.numpy + custom_vjp hand
backward) checked through the harness against the committed corpus.

Which cases, and why.  The example is not jitted: it runs op by op, and XLA compiles
each operation for every new input shape and compute dtype, float32 (for float16,
bfloat16 and float32 inputs alike) or float64 -- about 2 s a (shape, compute dtype) on
a 2-core machine, after which every other case of that shape and compute dtype takes
~10 ms (a float16 or bfloat16 one ~0.3 s more the first time, for its conversions).
The 237 layer_norm and rms_norm cases fall into 93 such groups (~3 minutes); the
README's command checks them all, and so does the test with REFNORM_JAX_ALL_CASES=1.

By default the test checks every case of a few (shape, compute dtype) groups, chosen
from the manifest by a greedy cover (``_selection``): repeatedly the group that covers
the most items not yet covered (ties: the group of more cases, then manifest order),
until all items of the corpus are covered.  The items, per op: each (dtype, tier) of
the corpus, and each of these properties that some case of the op has -- no weight, no
bias, a normalized_shape of several dims, an odd row length, declared NaN outputs (E2
with eps = 0, E23 NaN/inf rows), a zero-centred weight (``offset``), parameters of
another dtype than x (float32 weights of half activations), an argument error -- and
the two edge-case classes the example's README reports the corpus found, E2 (constant
rows) and E7 (overflow).  Only a case with values to compare has a property (an
argument-error case covers only the argument error).  On the committed corpus that is
12 groups, 58 cases, ~25 s.  The test asserts that every item was covered by passing
checks, so a corpus change cannot shrink the coverage unnoticed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

pytest.importorskip("jax")

from refnorm.conformance.backends import load_backend  # noqa: E402
from refnorm.conformance.harness import check  # noqa: E402
from refnorm.golden.corpus import iter_entries  # noqa: E402

from .._util import corpus_subset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "jax" / "jax_norms.py"
GOLDEN = REPO / "spec" / "golden"
OPS = ("layer_norm", "rms_norm")
DTYPES = ("float64", "float32", "float16", "bfloat16")
REGRESSIONS = ("e2_", "e7_")  # the edge-case classes examples/jax/README.md reports the corpus found


def _normalized_shape(entry) -> list[int]:
    ns = entry["attrs"]["normalized_shape"]
    return [ns] if isinstance(ns, int) else list(ns)


def _group(entry) -> tuple:
    """What XLA compiles the example for: x's shape, the normalized dims and the compute dtype."""
    compute = "float64" if entry["dtype"] == "float64" else "float32"
    return tuple(entry["shapes"]["x"]), tuple(_normalized_shape(entry)), compute


def _items(entry, params) -> set:
    """What a case covers (see the module docstring); ``params``: op -> the parameters
    some case of the op has."""
    op = entry["op"]
    if entry["expect"]["kind"] == "error":
        return {(op, "argument error")}
    n = math.prod(_normalized_shape(entry))
    x_dtype = entry["tensors"]["x"]["dtype"]
    properties = {
        **{f"no {p}": p not in entry["shapes"] for p in params[op]},
        "normalized over several dims": len(_normalized_shape(entry)) > 1,
        "odd row length": n > 1 and n % 2 == 1,
        "declared NaN outputs": entry["expect"]["kind"] == "nan",
        "zero-centred weight": "offset" in entry["attrs"],
        "parameters of another dtype": any(entry["tensors"][p]["dtype"] != x_dtype
                                           for p in params[op] if p in entry["shapes"]),
        **{tag: entry["name"].startswith(tag) for tag in REGRESSIONS},
    }
    return {(op, entry["dtype"], entry["tier"])} | {(op, k) for k, v in properties.items() if v}


def _corpus_items(entries) -> tuple[dict, set]:
    params = {op: {p for e in entries if e["op"] == op for p in ("weight", "bias") if p in e["shapes"]}
              for op in OPS}
    return params, set().union(*(_items(e, params) for e in entries))


def _selection(entries) -> list[dict]:
    """The entries of the groups chosen by the greedy cover (module docstring)."""
    params, todo = _corpus_items(entries)
    groups: dict[tuple, list] = {}
    for e in entries:
        groups.setdefault(_group(e), []).append(e)
    covers = {k: set().union(*(_items(e, params) for e in g)) for k, g in groups.items()}
    chosen = []
    while todo:
        best = max(groups, key=lambda k: (len(covers[k] & todo), len(groups[k])))
        chosen.append(best)
        todo -= covers[best]
    return [e for k in chosen for e in groups[k]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The committed corpus, or a copy holding only the selected cases."""
    if os.environ.get("REFNORM_JAX_ALL_CASES") == "1":
        return GOLDEN
    keep = {e["id"] for e in _selection(iter_entries(GOLDEN, ops=list(OPS)))}
    return corpus_subset(GOLDEN, keep, tmp_path_factory.mktemp("golden_jax"))


def test_jax_example_passes_the_corpus(corpus):
    report = check(load_backend(str(EXAMPLE)), ops=list(OPS), root=corpus)
    c = report.counts()
    assert report.ok, [f"{o.case_id}::{o.function}: {o.message}" for o in report.unexpected][:10]
    # the example implements the forward, the backward and the statistics; forward mode and the
    # second order (a jax.custom_vjp function has no forward mode) are reported as not implemented
    unimplemented = [o for o in report.outcomes if o.status == "not_implemented"]
    assert all(o.function.endswith(("_jvp", "_double_backward")) for o in unimplemented), [
        (o.case_id, o.function) for o in unimplemented][:5]
    assert c["xfailed"] == 0
    # every op, dtype and tier of the committed corpus was checked through all three functions ...
    entries = iter_entries(GOLDEN, ops=list(OPS))
    for op in OPS:
        for dt in DTYPES:
            for tier in sorted({e["tier"] for e in entries if e["op"] == op and e["dtype"] == dt}):
                fns = {o.function for o in report.outcomes
                       if o.op == op and o.dtype == dt and o.tier == tier and o.status == "passed"}
                assert fns == {op, f"{op}_backward", f"{op}_stats"}, (op, dt, tier, fns)
    # ... and each property of the docstring's list, by a case whose checks all passed
    params, want = _corpus_items(entries)
    by_id = {e["id"]: e for e in entries}
    got = set().union(*(_items(by_id[i], params) for i in {o.case_id for o in report.outcomes}))
    assert got == want, sorted(map(str, want - got))

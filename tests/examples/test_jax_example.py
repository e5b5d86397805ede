"""examples/jax: a JAX author's LayerNorm/RMSNorm (jax.numpy + custom_vjp hand
backward) checked through the harness against the committed corpus.  The full
run (all four dtypes, ~2 minutes on 2 cores: a compilation per shape) is the
README's command; the test runs the float32 and bfloat16 cases."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("jax")

from refnorm.conformance.backends import load_backend  # noqa: E402
from refnorm.conformance.harness import check  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jax" / "jax_norms.py"


def test_jax_example_passes_the_corpus():
    # bfloat16: the example's upcast-accumulate-round path, the one with something to get wrong (JAX compiles
    # per shape, so each dtype costs ~40 s on the CI machine; float32 is the same code without the casts)
    report = check(load_backend(str(EXAMPLE)), ops=["layer_norm", "rms_norm"], dtypes=["bfloat16"])
    c = report.counts()
    assert report.ok, [f"{o.case_id}::{o.function}: {o.message}" for o in report.unexpected][:10]
    # the example implements the forward, the backward and the statistics; forward mode and the
    # second order (a jax.custom_vjp function has no forward mode) are reported as not implemented
    unimplemented = [o for o in report.outcomes if o.status == "not_implemented"]
    assert all(o.function.endswith(("_jvp", "_double_backward")) for o in unimplemented), [
        (o.case_id, o.function) for o in unimplemented][:5]
    assert c["xfailed"] == 0
    for op in ("layer_norm", "rms_norm"):
        for dt in ("float32", "bfloat16"):
            fns = {o.function for o in report.outcomes if o.op == op and o.dtype == dt and o.status == "passed"}
            assert fns == {op, f"{op}_backward", f"{op}_stats"}, (op, dt, fns)

"""Same bits for any thread count: every registered op's forward and backward
(and its forward mode and second order, where it has them),
on the large inputs of ``threads(rng)`` in its tests/ops/cases/<op>.py (plus
any ``thread_extras``), run in a fresh interpreter with NUMBA_NUM_THREADS=1
and =2; the results' bytes are hashed per op and compared.  An op without
those inputs fails :func:`test_every_registered_op_has_thread_inputs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import refnorm

from . import cases

SCRIPT = textwrap.dedent("""
    import hashlib, json, numpy as np, numba, refnorm
    from tests.ops import cases
    assert numba.config.NUMBA_NUM_THREADS == int(__import__("os").environ["NUMBA_NUM_THREADS"])
    hashes = {}
    for op, spec in refnorm.registry().items():
        mod = cases.module(op)
        if mod is None or not hasattr(mod, "threads"):
            continue
        rng = np.random.default_rng(0)
        h = hashlib.sha256()
        def feed(*arrays):
            for a in arrays:
                h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        inputs = mod.threads(rng)
        for kw in inputs:
            y = spec.forward(**kw)
            outs = y if len(spec.outputs) > 1 else (y,)  # a fused op returns a tuple
            feed(*outs, *spec.backward(*[rng.standard_normal(o.shape) for o in outs], **kw).values())
            dirs = {a: rng.standard_normal(np.shape(kw[a])) for a in spec.differentiable if kw.get(a) is not None}
            if spec.jvp is not None:  # forward mode and second order: the same bits too
                touts = spec.jvp(dirs, **kw)[1]
                feed(*(touts if len(spec.outputs) > 1 else (touts,)))
            if spec.double_backward is not None:
                feed(*spec.double_backward(dirs, *[rng.standard_normal(o.shape) for o in outs], **kw).values())
        feed(*getattr(mod, "thread_extras", lambda inputs: [])(inputs))
        hashes[op] = h.hexdigest()
    print(json.dumps(hashes))
""")


def _run(threads: int) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_registered_op_has_thread_inputs():
    cases.assert_complete("threads")


def test_bits_do_not_depend_on_thread_count():
    one, two = _run(1), _run(2)
    missing = sorted(set(refnorm.registry()) - set(one))
    assert not missing, f"ops without thread inputs (see test_every_registered_op_has_thread_inputs): {missing}"
    differ = {op: (one[op], two[op]) for op in one if one[op] != two.get(op)}
    assert not differ, f"NUMBA_NUM_THREADS=1 and =2 give different bits for: {differ}"

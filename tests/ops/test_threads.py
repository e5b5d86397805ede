"""Same bits for any thread count: every op's forward and backward run in a
fresh interpreter with NUMBA_NUM_THREADS=1 and =2 and the results' bytes are
hashed and compared."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, numba, refnorm
    assert numba.config.NUMBA_NUM_THREADS == int(__import__("os").environ["NUMBA_NUM_THREADS"])
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    def feed(*arrays):
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000)); w = rng.standard_normal(1000); b = rng.standard_normal(1000)
    dy = rng.standard_normal(x.shape)
    feed(refnorm.layer_norm(x, 1000, w, b), *refnorm.layer_norm_backward(dy, x, 1000, w, b).values())
    feed(refnorm.rms_norm(x, 1000, w), *refnorm.rms_norm_backward(dy, x, 1000, w).values())
    x4 = 1e3 + rng.standard_normal((8, 32, 9, 11)); c = rng.standard_normal(32); dy4 = rng.standard_normal(x4.shape)
    feed(refnorm.group_norm(x4, 8, c, c), *refnorm.group_norm_backward(dy4, x4, 8, c, c).values())
    feed(refnorm.instance_norm(x4, weight=c, bias=c), *refnorm.instance_norm_backward(dy4, x4, weight=c, bias=c).values())
    feed(refnorm.batch_norm(x4, None, None, c, c, True), *refnorm.batch_norm_backward(dy4, x4, None, None, c, c, True).values())
    feed(*refnorm.batch_norm_running_stats(x4, c, np.abs(c)))
    print(h.hexdigest())
""")


def _run(threads: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_bits_do_not_depend_on_thread_count():
    one, two = _run(1), _run(2)
    assert len(one) == 64 and one == two, f"NUMBA_NUM_THREADS=1 gives {one}, =2 gives {two}"

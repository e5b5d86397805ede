"""Same bits for any thread count: every op's forward and backward (the
standard ops and the seed layers) run in a fresh interpreter with NUMBA_NUM_THREADS=1 and =2 and the results' bytes are
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
    # the seed layers
    p = [c + k for k in (1.0, 0.0, 0.0, 0.0)]
    feed(refnorm.proxy_norm(x4 - 1e3, *p, "gelu"), *refnorm.proxy_norm_backward(dy4, x4 - 1e3, *p, "gelu").values())
    for variant in ("gn_first", "bn_first", "parallel"):
        feed(refnorm.gn_plus(x4, 8, c, c, np.ones(1), variant=variant),
             *refnorm.gn_plus_backward(dy4, x4, 8, c, c, np.ones(1), variant=variant).values())
    wt = -0.3 + 0.5 * rng.standard_normal((64, 32, 3, 3)); dyw = rng.standard_normal(wt.shape); g = np.abs(c).repeat(2)
    for style in ("deepmind", "timm", "qiao"):
        feed(refnorm.weight_standardization(wt, g, style=style),
             *refnorm.weight_standardization_backward(dyw, wt, g, style=style).values())
    xb = x.reshape(96, 10, 100); wb = w[:100]
    mv = {k: v + 0.1 for k, v in refnorm.batch_layer_norm_batch_stats(xb + 0.1).items()}
    for kw in (dict(), dict(training=False, moving_stats=mv, flags=(True, False, True, False))):
        feed(refnorm.batch_layer_norm(xb, wb, wb, 128, **kw), *refnorm.batch_layer_norm_backward(dy.reshape(xb.shape),
             xb, wb, wb, 128, **kw).values())
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

"""Mutant: one-pass variance ``E[x^2] - E[x]^2`` in the accumulation dtype (float32).

Bug class: catastrophic cancellation for large-mean, small-spread data
(E1, docs/edge-cases.md#e1).  Seen in: the ONNX LayerNormalization-17 and
GroupNormalization-21 function bodies (``onnx/defs/nn/defs.cc`` ~2587, ~2836),
``jax.nn.standardize(algorithm="fast")``, Flax ``use_fast_variance=True``,
pytorch#51102 / #40302, tracel-ai/burn#5607.
Affects: every op that computes batch statistics (forward, backward, stats;
``<op>_running_stats`` keep the two-pass variance).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def moments(self, x, axes, eps, center=True):
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = self.reduce_sum(x, axes) / x.dtype.type(n) if center else 0 * x.sum(axis=axes, keepdims=True)
            var = self.reduce_sum(x * x, axes) / x.dtype.type(n) - mean * mean  # the bug
            return mean, 1 / np.sqrt(var + eps)


BACKEND_INFO = {"name": "one_pass_variance", "description": "variance as E[x^2] - E[x]^2 in float32 (E1)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", (1000 + 0.01 * _demo.rng(0).standard_normal((4, 4096))).astype(np.float32),
                        (4096,))
export(Backend(), globals())

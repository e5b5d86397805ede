"""Deliberately buggy backends: the conformance suite must catch every one.

Each mutant is :mod:`refnorm.conformance.backends.numpy32` with exactly one
piece replaced (a mutant of a layer numpy32 lacks, DyT, adds the layer with
the bug, and its ``CONTROL`` is the same code without it) by a bug seen in a real implementation (its module docstring
names the bug class, its entry in the edge-case catalogue (docs/edge-cases.md)
and the issue, and the
functions it affects).  Each module exposes the full protocol (unaffected
functions behave as numpy32), ``BACKEND_INFO``, ``AFFECTS`` and a
``DEMO_INPUT`` on which the bug shows.  ``racy_reduction`` is caught only by
repeat runs and ``batch_variant`` only by a batch-invariance check.  The
:data:`FUZZ_ONLY` mutants pass every committed case: their bugs need what a
stored case cannot hold (huge reduction sets, more than 2**16 of them,
strided views, a check that the inputs are unchanged), and only
``refnorm fuzz`` catches them.

    >>> from refnorm.conformance.mutants import load_mutant
    >>> backend = load_mutant("one_pass_variance")       # or load_backend("mutant:one_pass_variance")
"""

from __future__ import annotations

import importlib

MUTANTS = {
    "one_pass_variance": "variance as E[x^2] - E[x]^2 in float32 (E1, ONNX LN-17/GN-21 bodies, Flax fast variance)",
    "eps_outside_sqrt": "1 / (std + eps) instead of 1 / sqrt(var + eps)",
    "unbiased_normalization": "normalizes with the unbiased (n - 1) variance (E26)",
    "bn_eval_batch_stats": "BatchNorm eval (training=False) uses the batch statistics",
    "running_var_biased": "torch-convention running_var updated with the biased variance (E5)",
    "reversed_momentum": "torch-convention momentum weights the old statistic (E5, onnxscript PR #1289)",
    "gn_strided_groups": "GroupNorm puts channel c in group c % G (E22)",
    "gn_per_group_affine": "GroupNorm scale/bias per group, as ONNX GroupNormalization-18 (E22, onnx#5466)",
    "backward_no_mean_term": "backward drops the mean(g) (c1) term",
    "backward_no_var_term": "backward drops the xhat * mean(g * xhat) (c2) term",
    "dweight_wrong_axes": "dweight/dbias summed over flat index % C, i.e. NHWC indexing of NCHW data (E20)",
    "dweight_bf16_accumulation": "dweight/dbias accumulated row by row in bfloat16 (E9, llm.c#428)",
    "fp16_squares": "second-pass squares computed in float16, 256**2 = inf (E6, onnx PR #8439)",
    "square_overflow_fp32": "unscaled float32 squares overflow for |x| ~ 1e30 (E7, pytorch PR #178123)",
    "nan_leak_global_shift": "global pre-shift by the whole-tensor mean leaks a NaN into every row (E23)",
    "rms_eps_finfo_dtype": "RMSNorm eps=None taken as finfo(x.dtype).eps, the docs' reading (E16)",
    "mean_fp16_accumulation": "mean accumulated sequentially in float16 (E8, pytorch#92164)",
    "rstd_bf16_saved": "saved mean/rstd stored in bfloat16 (E18, onnxruntime PR #5215); <op>_stats only",
    "memory_efficient_backward": "backward recomputes xhat = (y - bias) / weight: NaN at weight 0 (E13, apex)",
    "dbias_mean": "dbias as a mean over the rows instead of a sum",
    "racy_reduction": "random reduction order per call: caught only by repeat runs (E10)",
    "batch_variant": "float32 blocking chosen from the row count: caught only by batch invariance (E11, vllm)",
    "eps_in_input_dtype": "eps rounded to the half input dtype, 1e-8 -> 0 in float16 (E15, pytorch#86580)",
    "onnx_bn9_updated_stats": "BN training normalizes with the updated running statistics (E5, ONNX BN-9)",
    "rms_zero_centered_gamma": "RMSNorm multiplies by 1 + weight, the Gemma variant (E17)",
    "offset_bf16_scale": "zero-centred scale offset + weight formed in bfloat16 (E17, vllm PR #3653, Liger PR #1462)",
    "offset_missing_in_backward": "backward scales dy by weight, not offset + weight (E17, TransformerEngine PR #67)",
    "residual_unrounded_output": "fused add returns h as the float32 sum, not rounded to residual_dtype (vllm PR #43242)",
    "unrounded_sum_normalized": "fused add normalizes the unrounded sum, stores h rounded (vllm#52104)",
    "dresidual_missing_dh": "fused add backward: dresidual lacks the cotangent dh of h (quack PR #53)",
    "set_size_block_limit": "statistics read only the first 2**16 elements of each reduction set (E12, xformers#785)",
    "grid_limit_sets": "reduction set r >= 65535 uses the statistics of set r % 65535 (E12, apex#411)",
    "strides_ignored": "strides ignored: a non-contiguous array read as if C-contiguous (E20, pytorch#174345)",
    "inplace_float64": "float64 x normalized in place, the caller's x overwritten by x-hat (nano-vllm#170)",
    "dyt_weight_channels_first": "DyT weight/bias over dim 1 of a channels-last (..., C) tensor (DynamicTanh's "
                                 "channels_last=False branch)",
    "scale_norm_rms": "ScaleNorm divides by the RMS ||x||/sqrt(d), not the L2 norm (x-transformers, mmpose ScaleNorm)",
    "normalize_no_eps_clamp": "normalize divides by ||x||_p without clamp_min(eps): NaN on a zero slice (E2)",
    "frn_eps_outside_rsqrt": "FRN: x / (sqrt(nu2) + eps) instead of x * rsqrt(nu2 + eps) (E15)",
    "lrn_alpha_not_divided_by_size": "LRN applies alpha to the window sum of squares, not its mean sum / size "
                                     "(TensorFlow's and the AlexNet paper's form with PyTorch's alpha)",
    "weight_norm_wrong_dims": "weight norm over dim itself (a per-input-channel norm), not over every other dim",
    "evo_norm_b0_unbiased_batch_var": "EvoNorm-B0 training normalizes with the unbiased (n - 1) batch variance (E26)",
    "evo_norm_s0_sigmoid_of_normalized": "EvoNorm-S0: the gate sigmoid(v x) taken of the normalized x / group_std",
    "brn_rd_differentiated": "Batch Renormalization: r and d not detached, the gradient flows through them "
                             "(a dropped stop_gradient)",
    "ada_ln_scale_without_one": "adaLN gain is scale, not 1 + scale (DiT's modulate ported without the 1 +)",
    "adain_biased_var": "AdaIN with the biased variance (divisor M), not calc_mean_std's unbiased var(dim=2) (E26)",
}

#: The mutants that pass every case of the committed corpus: each bug needs an
#: input a stored case cannot hold -- a reduction set of more than 2**16
#: elements, more than 2**16 sets, a strided view -- or a check that the inputs
#: are unchanged after the call.  Only ``refnorm fuzz`` catches them.
FUZZ_ONLY = frozenset({"set_size_block_limit", "grid_limit_sets", "strides_ignored", "inplace_float64"})


def load_mutant(name: str):
    """The mutant backend module ``name`` (a key of :data:`MUTANTS`)."""
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r}; known: {', '.join(sorted(MUTANTS))}")
    return importlib.import_module(f"{__name__}.{name}")


__all__ = ["FUZZ_ONLY", "MUTANTS", "load_mutant"]

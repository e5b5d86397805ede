"""The one table of test tolerances, each with its reason.

All comparisons here are float64 against float64.  "scale" is the largest
magnitude of the expected array (a norm-wise relative check): element-wise
relative checks are meaningless for entries that cancel to ~0, and the
element-wise accuracy of refnorm against exact arithmetic is tested separately
(tests/ops/test_accuracy.py, against an exact oracle).
"""

TOLERANCES = {
    # refnorm kernel vs the autograd.numpy reference, same math, different
    # summation (compensated vs NumPy pairwise) on well-conditioned data
    # (|mean|/std <= ~5, n <= ~1e3): both within ~n*u of exact.
    "kernel_vs_reference": (1e-13, "two float64 evaluations, summation orders differ; n*u ~ 1e-13"),
    # hand backward vs autograd's VJP of the reference: as above, plus the
    # reference's backward reductions being uncompensated.
    "backward_vs_autograd": (1e-12, "float64 VJPs with different reduction orders on well-conditioned data"),
    # hand backward vs central finite differences of the forward with step h:
    # truncation ~h^2 |f'''| ~ 1e-10 and rounding ~u |f| / h ~ 1e-11 for h = 1e-5.
    "backward_vs_fd": (1e-7, "central differences, h = 1e-5: O(h^2) truncation plus O(u/h) rounding"),
    # hand JVP / double backward vs autograd's forward mode / reverse-over-reverse of
    # the reference: the same float64 arithmetic as the backward, one more level of terms.
    "jvp_vs_autograd": (1e-12, "float64 forward mode, different reduction orders on well-conditioned data"),
    "second_vs_autograd": (1e-11, "float64 reverse-over-reverse: products of two first-order terms (rstd^2)"),
    # central differences of refnorm's own lower-order function: the forward
    # along a direction (h = 1e-6) or the backward element by element (h = 1e-5).
    "jvp_vs_fd": (1e-7, "central differences, h = 1e-6: O(h^2) truncation plus O(u/h) rounding"),
    "second_vs_fd": (1e-6, "central differences of the backward, h = 1e-5: O(h^2) truncation plus O(u/h) rounding"),
    # refnorm vs PyTorch float64 CPU: PyTorch sums in a different order
    # (vectorized/Welford), ~n*u relative to the largest magnitude.
    "vs_torch_float64": (1e-12, "PyTorch float64 CPU: different, uncompensated summation order"),
    # vs PyTorch in a half/single dtype: torch rounds its output (and half-type
    # inputs accumulate in float32): a few units of the output dtype's roundoff.
    "vs_torch_float32": (8 * 2.0 ** -24, "torch float32: float32 accumulation and output rounding"),
    "vs_torch_float16": (4 * 2.0 ** -11, "torch float16: float32 accumulation, float16 output rounding"),
    "vs_torch_bfloat16": (4 * 2.0 ** -8, "torch bfloat16: float32 accumulation, bfloat16 output rounding"),
    # invariants evaluated in float64 (mean of xhat ~ 0 etc.): n*u relative.
    "invariant": (1e-12, "a float64 identity evaluated with n*u rounding"),
}


def tol(name: str) -> float:
    return TOLERANCES[name][0]

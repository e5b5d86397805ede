/*
 * norms.h -- plain C99 LayerNorm and RMSNorm, forward and backward, for CPUs.
 *
 * Two layers, as in a production kernel library:
 *
 *   1. argument validation (rn_layer_norm_check, rn_rms_norm_check, rn_check_same_shape):
 *      the PyTorch-style call -- x's shape, normalized_shape, the weight/bias shapes, eps --
 *      is checked and reduced to a (rows x cols) problem; a bad call is refused with a
 *      message (RN_EINVAL);
 *   2. the kernels, on contiguous row-major data viewed as rows x cols (cols = the product
 *      of normalized_shape).  Each exists for float (_f32: float data, float accumulators)
 *      and double (_f64: double data, double accumulators).  Half-precision callers
 *      convert to float, call _f32 and round the outputs back.
 *
 * Numerics (per row, K = cols):
 *   LayerNorm forward   two passes over the row: mean = x0 + sum(x_i - x0)/K (shifted by the
 *                       row's first element, so a constant row has mean == x exactly), then
 *                       var = sum((x_i - mean)^2)/K (biased); rstd = 1/sqrt(var + eps);
 *                       y = (x - mean) * rstd * w + b.
 *   RMSNorm forward     ms = sum(x_i^2)/K; rstd = 1/sqrt(ms + eps); y = x * rstd * w.
 *   Overflow            when max|x| of a row exceeds 2^40 (float) / 2^400 (double) the
 *                       statistics are computed on x * 2^-k (exact power-of-two scaling),
 *                       so squares and sums cannot overflow; outputs are unchanged.
 *   Backward            from the saved mean/rstd: xhat = (x - mean) * rstd, g = w * dy,
 *                       dx = rstd * (g - mean(g) - xhat * mean(g * xhat))  (RMSNorm: no mean(g)),
 *                       dweight = sum over rows of dy * xhat, dbias = sum over rows of dy.
 *   Non-finite input    propagates as IEEE arithmetic does (a row holding inf or NaN gives
 *                       NaN/inf statistics for that row only, as PyTorch and refnorm do).
 */
#ifndef REFNORM_EXAMPLE_NORMS_H
#define REFNORM_EXAMPLE_NORMS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rn_status { RN_OK = 0, RN_EINVAL = 1 } rn_status;

/* ---------------------------------------------------------------- validation */

/* LayerNorm(x, normalized_shape, weight, bias, eps), as torch.nn.functional.layer_norm
   validates it: normalized_shape non-empty, non-negative, equal to x's trailing
   dimensions; weight and bias (ndim < 0: absent) of shape normalized_shape; eps not NaN.
   On success *rows, *cols describe the problem. */
rn_status rn_layer_norm_check(const int64_t *x_shape, int x_ndim, const int64_t *normalized_shape, int ns_ndim,
                              const int64_t *weight_shape, int weight_ndim, const int64_t *bias_shape, int bias_ndim,
                              double eps, int64_t *rows, int64_t *cols, char *err, size_t errlen);

/* RMSNorm(x, normalized_shape, weight, eps): as above, no bias.  eps_is_default != 0 means
   eps=None (use rn_rms_norm_default_eps_*), and then eps is ignored. */
rn_status rn_rms_norm_check(const int64_t *x_shape, int x_ndim, const int64_t *normalized_shape, int ns_ndim,
                            const int64_t *weight_shape, int weight_ndim, int eps_is_default, double eps,
                            int64_t *rows, int64_t *cols, char *err, size_t errlen);

/* A tensor that must have x's shape (the cotangent dy). */
rn_status rn_check_same_shape(const char *name, const int64_t *shape, int ndim, const int64_t *x_shape, int x_ndim,
                              char *err, size_t errlen);

/* The epsilon of RMSNorm(eps=None), as PyTorch's CPU composite really uses it: the machine
   epsilon of the compute type -- float32's (2^-23) for float32/float16/bfloat16 inputs,
   float64's (2^-52) for float64. */
float rn_rms_norm_default_eps_f32(void);
double rn_rms_norm_default_eps_f64(void);

/* ---------------------------------------------------------------- kernels */
/* All arrays are contiguous row-major.  x, y, dy, dx: rows*cols; mean, rstd: rows;
   weight, bias, dweight, dbias: cols.  weight/bias may be NULL (no affine); mean/rstd
   outputs may be NULL in the forwards; dweight/dbias may be NULL in the backwards (not
   computed).  The kernels refuse (RN_EINVAL) negative sizes, a NULL required pointer and
   a NaN eps; they do not allocate. */

rn_status rn_layer_norm_forward_f32(const float *x, const float *weight, const float *bias, int64_t rows, int64_t cols,
                                    float eps, float *y, float *mean, float *rstd);
rn_status rn_layer_norm_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd,
                                     const float *weight, int64_t rows, int64_t cols, float *dx, float *dweight,
                                     float *dbias);
rn_status rn_rms_norm_forward_f32(const float *x, const float *weight, int64_t rows, int64_t cols, float eps, float *y,
                                  float *rstd);
rn_status rn_rms_norm_backward_f32(const float *dy, const float *x, const float *rstd, const float *weight,
                                   int64_t rows, int64_t cols, float *dx, float *dweight);

rn_status rn_layer_norm_forward_f64(const double *x, const double *weight, const double *bias, int64_t rows,
                                    int64_t cols, double eps, double *y, double *mean, double *rstd);
rn_status rn_layer_norm_backward_f64(const double *dy, const double *x, const double *mean, const double *rstd,
                                     const double *weight, int64_t rows, int64_t cols, double *dx, double *dweight,
                                     double *dbias);
rn_status rn_rms_norm_forward_f64(const double *x, const double *weight, int64_t rows, int64_t cols, double eps,
                                  double *y, double *rstd);
rn_status rn_rms_norm_backward_f64(const double *dy, const double *x, const double *rstd, const double *weight,
                                   int64_t rows, int64_t cols, double *dx, double *dweight);

#ifdef __cplusplus
}
#endif

#endif /* REFNORM_EXAMPLE_NORMS_H */

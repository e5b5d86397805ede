/*
 * norms.c -- LayerNorm and RMSNorm for CPUs in plain C99 (see norms.h for the numerics).
 *
 * The kernels are written once and instantiated for float and double by including this
 * file into itself with RN_T (the data and accumulator type) defined -- the C idiom for a
 * template.  Nothing here allocates or calls anything but <math.h>.
 */
#ifndef RN_T /* ====================================================== common part */

#include "norms.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void rn_shape_str(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t k = 0;
    int d;
    if (len == 0) return;
    k += (size_t)snprintf(buf, len, "(");
    for (d = 0; d < ndim && k < len; d++) k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, ndim == 1 ? ",)" : ")");
}

static void rn_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static int rn_same(const int64_t *a, int an, const int64_t *b, int bn) {
    int d;
    if (an != bn) return 0;
    for (d = 0; d < an; d++)
        if (a[d] != b[d]) return 0;
    return 1;
}

/* x, normalized_shape and the per-element parameters; the refnorm/PyTorch messages. */
static rn_status rn_check_common(const int64_t *x_shape, int x_ndim, const int64_t *ns, int ns_ndim, const char *pname,
                                 const int64_t *pshape, int pndim, const char *qname, const int64_t *qshape, int qndim,
                                 int64_t *rows, int64_t *cols, char *err, size_t errlen) {
    char a[256], b[256], msg[640];
    int d;
    int64_t r = 1, c = 1;
    if (x_ndim < 1 || !x_shape) {
        rn_shape_str(x_shape, x_ndim < 0 ? 0 : x_ndim, a, sizeof a);
        snprintf(msg, sizeof msg, "x must have at least 1 dimensions ((*, *normalized_shape)), got shape %s", a);
        rn_err(err, errlen, msg);
        return RN_EINVAL;
    }
    for (d = 0; d < x_ndim; d++)
        if (x_shape[d] < 0) {
            rn_shape_str(x_shape, x_ndim, a, sizeof a);
            snprintf(msg, sizeof msg, "x has a negative dimension: shape %s", a);
            rn_err(err, errlen, msg);
            return RN_EINVAL;
        }
    if (ns_ndim < 1 || !ns) {
        rn_err(err, errlen, "normalized_shape must contain at least one dimension, got ()");
        return RN_EINVAL;
    }
    for (d = 0; d < ns_ndim; d++)
        if (ns[d] < 0) {
            rn_shape_str(ns, ns_ndim, a, sizeof a);
            snprintf(msg, sizeof msg, "normalized_shape must not contain negative sizes, got %s", a);
            rn_err(err, errlen, msg);
            return RN_EINVAL;
        }
    if (ns_ndim > x_ndim || !rn_same(x_shape + (x_ndim - ns_ndim), ns_ndim, ns, ns_ndim)) {
        rn_shape_str(ns, ns_ndim, a, sizeof a);
        rn_shape_str(x_shape, x_ndim, b, sizeof b);
        snprintf(msg, sizeof msg, "normalized_shape %s must equal the trailing dimensions of x, got x of shape %s", a, b);
        rn_err(err, errlen, msg);
        return RN_EINVAL;
    }
    if (pndim >= 0 && !rn_same(pshape, pndim, ns, ns_ndim)) {
        rn_shape_str(ns, ns_ndim, a, sizeof a);
        rn_shape_str(pshape, pndim, b, sizeof b);
        snprintf(msg, sizeof msg, "%s must have shape %s (normalized_shape), got shape %s", pname, a, b);
        rn_err(err, errlen, msg);
        return RN_EINVAL;
    }
    if (qndim >= 0 && !rn_same(qshape, qndim, ns, ns_ndim)) {
        rn_shape_str(ns, ns_ndim, a, sizeof a);
        rn_shape_str(qshape, qndim, b, sizeof b);
        snprintf(msg, sizeof msg, "%s must have shape %s (normalized_shape), got shape %s", qname, a, b);
        rn_err(err, errlen, msg);
        return RN_EINVAL;
    }
    for (d = 0; d < x_ndim - ns_ndim; d++) r *= x_shape[d];
    for (d = 0; d < ns_ndim; d++) c *= ns[d];
    *rows = r;
    *cols = c;
    return RN_OK;
}

rn_status rn_layer_norm_check(const int64_t *x_shape, int x_ndim, const int64_t *normalized_shape, int ns_ndim,
                              const int64_t *weight_shape, int weight_ndim, const int64_t *bias_shape, int bias_ndim,
                              double eps, int64_t *rows, int64_t *cols, char *err, size_t errlen) {
    rn_status s = rn_check_common(x_shape, x_ndim, normalized_shape, ns_ndim, "weight", weight_shape, weight_ndim, "bias",
                                  bias_shape, bias_ndim, rows, cols, err, errlen);
    if (s != RN_OK) return s;
    if (isnan(eps)) {
        rn_err(err, errlen, "eps must not be NaN");
        return RN_EINVAL;
    }
    return RN_OK;
}

rn_status rn_rms_norm_check(const int64_t *x_shape, int x_ndim, const int64_t *normalized_shape, int ns_ndim,
                            const int64_t *weight_shape, int weight_ndim, int eps_is_default, double eps,
                            int64_t *rows, int64_t *cols, char *err, size_t errlen) {
    rn_status s = rn_check_common(x_shape, x_ndim, normalized_shape, ns_ndim, "weight", weight_shape, weight_ndim, "bias",
                                  NULL, -1, rows, cols, err, errlen);
    if (s != RN_OK) return s;
    if (!eps_is_default && isnan(eps)) {
        rn_err(err, errlen, "eps must not be NaN");
        return RN_EINVAL;
    }
    return RN_OK;
}

rn_status rn_check_same_shape(const char *name, const int64_t *shape, int ndim, const int64_t *x_shape, int x_ndim,
                              char *err, size_t errlen) {
    char a[256], b[256], msg[600];
    if (rn_same(shape, ndim, x_shape, x_ndim)) return RN_OK;
    rn_shape_str(x_shape, x_ndim, a, sizeof a);
    rn_shape_str(shape, ndim, b, sizeof b);
    snprintf(msg, sizeof msg, "%s must have the shape of the forward output %s, got shape %s", name, a, b);
    rn_err(err, errlen, msg);
    return RN_EINVAL;
}

float rn_rms_norm_default_eps_f32(void) { return FLT_EPSILON; }
double rn_rms_norm_default_eps_f64(void) { return DBL_EPSILON; }

/* ------------------------------------------------------------------ instantiations */

#define RN_T float
#define RN_FN(name) name##_f32
#define RN_SQRT sqrtf
#define RN_FABS fabsf
#define RN_FREXP frexpf
#define RN_LDEXP ldexpf
#define RN_MAXV FLT_MAX
#define RN_BIG_EXP 40    /* rows with max|x| > 2^40 are scaled: K * (2 * 2^40)^2 < FLT_MAX for K < 2^44 */
#include "norms.c"
#undef RN_T
#undef RN_FN
#undef RN_SQRT
#undef RN_FABS
#undef RN_FREXP
#undef RN_LDEXP
#undef RN_MAXV
#undef RN_BIG_EXP

#define RN_T double
#define RN_FN(name) name##_f64
#define RN_SQRT sqrt
#define RN_FABS fabs
#define RN_FREXP frexp
#define RN_LDEXP ldexp
#define RN_MAXV DBL_MAX
#define RN_BIG_EXP 400
#include "norms.c"

#else /* ============================================ the kernels, for one RN_T */

/*
 * Overflow guard.  Statistics are accumulated in RN_T.  For a row with max|x| <= 2^RN_BIG_EXP
 * no sum or sum of squares can overflow (K (2 max|x|)^2 stays below the largest RN_T for any
 * realistic K), and the row is processed as is.  Otherwise -- |x| ~ 1e30 in float: the
 * squares overflow (pytorch#162489); |x| ~ 3e38: even the plain sum does -- the statistics
 * are computed on x * 2^-e, with 2^e just above max|x|: an exact power-of-two scaling, so
 * the outputs are what the unscaled arithmetic would give without the overflow.
 * Returns the scale (1 for an ordinary row).
 */
static RN_T RN_FN(rn_row_scale)(RN_T amax) {
    int e;
    if (!(amax > RN_LDEXP((RN_T)1, RN_BIG_EXP)) || !(amax <= RN_MAXV)) return (RN_T)1;   /* ordinary, inf or NaN */
    (void)RN_FREXP(amax, &e);                        /* amax = f 2^e, f in [1/2, 1) */
    return RN_LDEXP((RN_T)1, -e);
}

/*
 * 1/sqrt(var + eps) for statistics of a row scaled by `scale` (var_s = var * scale^2):
 * rstd_s (the scaled-domain factor that multiplies x*scale - mean*scale) and the true rstd.
 */
static void RN_FN(rn_rstd)(RN_T var_s, RN_T eps, RN_T scale, RN_T *rstd_s, RN_T *rstd) {
    RN_T denom;
    if (scale == (RN_T)1) {
        *rstd = *rstd_s = (RN_T)1 / RN_SQRT(var_s + eps);
        return;
    }
    denom = var_s + eps * scale * scale;             /* eps * scale^2 may underflow: it is then negligible... */
    if (denom == 0 && eps > 0) {                      /* ...unless the row is constant (var_s == 0 exactly): */
        *rstd_s = (RN_T)1;                            /* it multiplies exact zeros (x == mean) */
        *rstd = (RN_T)1 / RN_SQRT(eps);
        return;
    }
    *rstd_s = (RN_T)1 / RN_SQRT(denom);
    *rstd = *rstd_s * scale;
}

rn_status RN_FN(rn_layer_norm_forward)(const RN_T *x, const RN_T *weight, const RN_T *bias, int64_t rows, int64_t cols,
                                       RN_T eps, RN_T *y, RN_T *mean, RN_T *rstd) {
    int64_t r, i;
    if (rows < 0 || cols < 0 || isnan(eps)) return RN_EINVAL;
    if (rows > 0 && cols > 0 && (!x || !y)) return RN_EINVAL;
    for (r = 0; r < rows; r++) {
        const RN_T *xr = x + r * cols;
        RN_T *yr = y + r * cols;
        RN_T shift = 0, amax = 0, s1 = 0, s2 = 0, scale, mean_s, rstd_s, rs;
        /* pass 1: the mean, summing x - x[0] (a constant row sums exact zeros, so its mean is
           exactly x and its variance exactly 0 -- eps = 0 then gives rstd = inf and NaN
           outputs, as declared); max|x| for the overflow guard */
        if (cols > 0 && RN_FABS(xr[0]) <= RN_MAXV) shift = xr[0];
        for (i = 0; i < cols; i++) {
            RN_T a = RN_FABS(xr[i]);
            if (a > amax) amax = a;
            s1 += xr[i] - shift;
        }
        scale = RN_FN(rn_row_scale)(amax);
        if (scale != (RN_T)1) {                       /* rare: redo pass 1 on the scaled row */
            shift *= scale;
            s1 = 0;
            for (i = 0; i < cols; i++) s1 += xr[i] * scale - shift;
        }
        mean_s = shift + s1 / (RN_T)cols;
        /* pass 2: the biased variance about that mean */
        for (i = 0; i < cols; i++) {
            RN_T d = xr[i] * scale - mean_s;
            s2 += d * d;
        }
        RN_FN(rn_rstd)(s2 / (RN_T)cols, eps, scale, &rstd_s, &rs);
        /* pass 3: y = xhat * w + b */
        for (i = 0; i < cols; i++) {
            RN_T t = (xr[i] * scale - mean_s) * rstd_s;
            if (weight) t *= weight[i];
            if (bias) t += bias[i];
            yr[i] = t;
        }
        if (mean) mean[r] = mean_s / scale;
        if (rstd) rstd[r] = rs;
    }
    return RN_OK;
}

/* xhat = (x - mean) * rstd from the saved statistics.  When 1/rstd (the row's spread) is
   beyond the overflow guard, x - mean itself could overflow: halve both first. */
#define RN_XHAT(xv, m, rs, half) ((half) ? ((xv) * (RN_T)0.5 - (m) * (RN_T)0.5) * ((rs) * 2) : ((xv) - (m)) * (rs))

rn_status RN_FN(rn_layer_norm_backward)(const RN_T *dy, const RN_T *x, const RN_T *mean, const RN_T *rstd,
                                        const RN_T *weight, int64_t rows, int64_t cols, RN_T *dx, RN_T *dweight,
                                        RN_T *dbias) {
    int64_t r, i;
    if (rows < 0 || cols < 0) return RN_EINVAL;
    if (rows > 0 && (!mean || !rstd || (cols > 0 && (!x || !dy || !dx)))) return RN_EINVAL;
    for (i = 0; i < cols; i++) {
        if (dweight) dweight[i] = 0;
        if (dbias) dbias[i] = 0;
    }
    for (r = 0; r < rows; r++) {
        const RN_T *xr = x + r * cols, *dyr = dy + r * cols;
        RN_T *dxr = dx + r * cols;
        RN_T m = mean[r], rs = rstd[r], sg = 0, sgx = 0, c1, c2;
        int half = rs < RN_LDEXP((RN_T)1, -RN_BIG_EXP);
        for (i = 0; i < cols; i++) {
            RN_T xh = RN_XHAT(xr[i], m, rs, half);
            RN_T g = weight ? weight[i] * dyr[i] : dyr[i];
            sg += g;
            sgx += g * xh;
            if (dweight) dweight[i] += dyr[i] * xh;
            if (dbias) dbias[i] += dyr[i];
        }
        c1 = sg / (RN_T)cols;
        c2 = sgx / (RN_T)cols;
        for (i = 0; i < cols; i++) {
            RN_T xh = RN_XHAT(xr[i], m, rs, half);
            RN_T g = weight ? weight[i] * dyr[i] : dyr[i];
            dxr[i] = rs * (g - c1 - xh * c2);
        }
    }
    return RN_OK;
}

#undef RN_XHAT

rn_status RN_FN(rn_rms_norm_forward)(const RN_T *x, const RN_T *weight, int64_t rows, int64_t cols, RN_T eps, RN_T *y,
                                     RN_T *rstd) {
    int64_t r, i;
    if (rows < 0 || cols < 0 || isnan(eps)) return RN_EINVAL;
    if (rows > 0 && cols > 0 && (!x || !y)) return RN_EINVAL;
    for (r = 0; r < rows; r++) {
        const RN_T *xr = x + r * cols;
        RN_T *yr = y + r * cols;
        RN_T amax = 0, ss = 0, scale, rstd_s, rs;
        for (i = 0; i < cols; i++) {
            RN_T a = RN_FABS(xr[i]);
            if (a > amax) amax = a;
            ss += xr[i] * xr[i];
        }
        scale = RN_FN(rn_row_scale)(amax);
        if (scale != (RN_T)1) {                       /* rare: the squares would overflow */
            ss = 0;
            for (i = 0; i < cols; i++) {
                RN_T v = xr[i] * scale;
                ss += v * v;
            }
        }
        RN_FN(rn_rstd)(ss / (RN_T)cols, eps, scale, &rstd_s, &rs);
        for (i = 0; i < cols; i++) {
            RN_T t = (xr[i] * scale) * rstd_s;
            yr[i] = weight ? t * weight[i] : t;
        }
        if (rstd) rstd[r] = rs;
    }
    return RN_OK;
}

rn_status RN_FN(rn_rms_norm_backward)(const RN_T *dy, const RN_T *x, const RN_T *rstd, const RN_T *weight, int64_t rows,
                                      int64_t cols, RN_T *dx, RN_T *dweight) {
    int64_t r, i;
    if (rows < 0 || cols < 0) return RN_EINVAL;
    if (rows > 0 && (!rstd || (cols > 0 && (!x || !dy || !dx)))) return RN_EINVAL;
    for (i = 0; i < cols; i++)
        if (dweight) dweight[i] = 0;
    for (r = 0; r < rows; r++) {
        const RN_T *xr = x + r * cols, *dyr = dy + r * cols;
        RN_T *dxr = dx + r * cols;
        RN_T rs = rstd[r], sgx = 0, c2;
        for (i = 0; i < cols; i++) {
            RN_T xh = xr[i] * rs;                     /* |xhat| <= sqrt(K): no overflow */
            RN_T g = weight ? weight[i] * dyr[i] : dyr[i];
            sgx += g * xh;
            if (dweight) dweight[i] += dyr[i] * xh;
        }
        c2 = sgx / (RN_T)cols;
        for (i = 0; i < cols; i++) {
            RN_T xh = xr[i] * rs;
            RN_T g = weight ? weight[i] * dyr[i] : dyr[i];
            dxr[i] = rs * (g - xh * c2);
        }
    }
    return RN_OK;
}

#endif

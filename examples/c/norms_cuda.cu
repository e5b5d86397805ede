/*
 * norms_cuda.cu -- the LayerNorm/RMSNorm kernels of norms.c as CUDA C++ kernels, with a host
 * runner that checks them against the golden corpus through the same header
 * (refnorm_golden.h, compiled here as C++17 by nvcc).
 *
 *     make cuda                      # nvcc -std=c++17 ... -o norms_cuda norms_cuda.cu norms.c
 *     ./norms_cuda [CORPUS_DIR]      # needs a CUDA device; exits 77 ("skipped") without one
 *
 * Same algorithm as norms.c, one thread block per row: float data and float accumulators
 * for float32/float16/bfloat16 cases (double for float64), the first-element-shifted mean,
 * the two-pass variance, exact power-of-two scaling of rows with max|x| > 2^40 (2^400),
 * rstd = 1/sqrt(var + eps) with IEEE sqrt and division (no rsqrt approximation).  Only the
 * order of the row sums differs: a fixed (deterministic) tree in shared memory instead of a
 * sequential loop.  dweight/dbias: one thread per column summing over the rows, in order
 * (deterministic, no atomics).  Argument validation is norms.c's (rn_*_check, host code).
 *
 * Build with IEEE-exact division and square root (nvcc's defaults; do not add
 * --use_fast_math or -ftz=true: subnormal rstd values appear in the corpus's E7 cases).
 */
#define REFNORM_GOLDEN_IMPLEMENTATION
#include "refnorm_golden.h"
#include "norms.h"

#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kBlock = 256;   // threads per row; a power of two (tree reduction)

template <typename T> struct Num;
template <> struct Num<float> {
    static constexpr int big_exp = 40;
    __device__ static float sqrt_(float v) { return sqrtf(v); }   // IEEE (-prec-sqrt=true, the default)
    __device__ static float abs_(float v) { return fabsf(v); }
    __device__ static float ldexp_(float v, int e) { return ldexpf(v, e); }
    __device__ static float frexp_(float v, int *e) { return frexpf(v, e); }
    __device__ static float maxv() { return FLT_MAX; }
};
template <> struct Num<double> {
    static constexpr int big_exp = 400;
    __device__ static double sqrt_(double v) { return sqrt(v); }
    __device__ static double abs_(double v) { return fabs(v); }
    __device__ static double ldexp_(double v, int e) { return ldexp(v, e); }
    __device__ static double frexp_(double v, int *e) { return frexp(v, e); }
    __device__ static double maxv() { return DBL_MAX; }
};

// Deterministic block reductions (every thread gets the result).
template <typename T> __device__ T block_sum(T v, T *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kBlock / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

template <typename T> __device__ T block_max(T v, T *sh) {   // NaN-ignoring, as the CPU loop
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kBlock / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x]) sh[threadIdx.x] = sh[threadIdx.x + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

template <typename T> __device__ T row_scale(T amax) {
    if (!(amax > Num<T>::ldexp_(T(1), Num<T>::big_exp)) || !(amax <= Num<T>::maxv())) return T(1);
    int e;
    (void)Num<T>::frexp_(amax, &e);
    return Num<T>::ldexp_(T(1), -e);
}

template <typename T> __device__ void rstd_of(T var_s, T eps, T scale, T *rstd_s, T *rstd) {
    if (scale == T(1)) {
        *rstd = *rstd_s = T(1) / Num<T>::sqrt_(var_s + eps);
        return;
    }
    T denom = var_s + eps * scale * scale;
    if (denom == T(0) && eps > T(0)) {   // constant row, eps*scale^2 underflowed: multiplies exact zeros
        *rstd_s = T(1);
        *rstd = T(1) / Num<T>::sqrt_(eps);
        return;
    }
    *rstd_s = T(1) / Num<T>::sqrt_(denom);
    *rstd = *rstd_s * scale;
}

template <typename T>
__global__ void ln_forward(const T *x, const T *w, const T *b, long long cols, T eps, T *y, T *mean, T *rstd) {
    __shared__ T sh[kBlock];
    const T *xr = x + blockIdx.x * cols;
    T *yr = y + blockIdx.x * cols;
    T shift = (cols > 0 && Num<T>::abs_(xr[0]) <= Num<T>::maxv()) ? xr[0] : T(0);
    T s1 = 0, amax = 0;
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T a = Num<T>::abs_(xr[i]);
        if (a > amax) amax = a;
        s1 += xr[i] - shift;
    }
    amax = block_max(amax, sh);
    T scale = row_scale(amax);
    if (scale != T(1)) {
        shift *= scale;
        s1 = 0;
        for (long long i = threadIdx.x; i < cols; i += kBlock) s1 += xr[i] * scale - shift;
    }
    T mean_s = shift + block_sum(s1, sh) / T(cols);
    T s2 = 0;
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T d = xr[i] * scale - mean_s;
        s2 += d * d;
    }
    T rstd_s, rs;
    rstd_of(block_sum(s2, sh) / T(cols), eps, scale, &rstd_s, &rs);
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T t = (xr[i] * scale - mean_s) * rstd_s;
        if (w) t *= w[i];
        if (b) t += b[i];
        yr[i] = t;
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mean_s / scale;
        rstd[blockIdx.x] = rs;
    }
}

template <typename T> __device__ T xhat_of(T xv, T m, T rs, bool half) {
    return half ? (xv * T(0.5) - m * T(0.5)) * (rs * T(2)) : (xv - m) * rs;
}

template <typename T>
__global__ void ln_backward_dx(const T *dy, const T *x, const T *mean, const T *rstd, const T *w, long long cols, T *dx) {
    __shared__ T sh[kBlock];
    const T *xr = x + blockIdx.x * cols, *dyr = dy + blockIdx.x * cols;
    T *dxr = dx + blockIdx.x * cols;
    T m = mean[blockIdx.x], rs = rstd[blockIdx.x], sg = 0, sgx = 0;
    bool half = rs < Num<T>::ldexp_(T(1), -Num<T>::big_exp);
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T g = w ? w[i] * dyr[i] : dyr[i];
        sg += g;
        sgx += g * xhat_of(xr[i], m, rs, half);
    }
    T c1 = block_sum(sg, sh) / T(cols), c2 = block_sum(sgx, sh) / T(cols);
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T g = w ? w[i] * dyr[i] : dyr[i];
        dxr[i] = rs * (g - c1 - xhat_of(xr[i], m, rs, half) * c2);
    }
}

template <typename T>
__global__ void ln_backward_params(const T *dy, const T *x, const T *mean, const T *rstd, long long rows, long long cols,
                                   T *dw, T *db) {
    long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (j >= cols) return;
    T sw = 0, sb = 0;
    for (long long r = 0; r < rows; r++) {
        T rs = rstd[r];
        bool half = rs < Num<T>::ldexp_(T(1), -Num<T>::big_exp);
        T d = dy[r * cols + j];
        sw += d * xhat_of(x[r * cols + j], mean[r], rs, half);
        sb += d;
    }
    if (dw) dw[j] = sw;
    if (db) db[j] = sb;
}

template <typename T>
__global__ void rms_forward(const T *x, const T *w, long long cols, T eps, T *y, T *rstd) {
    __shared__ T sh[kBlock];
    const T *xr = x + blockIdx.x * cols;
    T *yr = y + blockIdx.x * cols;
    T ss = 0, amax = 0;
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T a = Num<T>::abs_(xr[i]);
        if (a > amax) amax = a;
        ss += xr[i] * xr[i];
    }
    amax = block_max(amax, sh);
    T scale = row_scale(amax);
    if (scale != T(1)) {
        ss = 0;
        for (long long i = threadIdx.x; i < cols; i += kBlock) {
            T v = xr[i] * scale;
            ss += v * v;
        }
    }
    T rstd_s, rs;
    rstd_of(block_sum(ss, sh) / T(cols), eps, scale, &rstd_s, &rs);
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T t = (xr[i] * scale) * rstd_s;
        yr[i] = w ? t * w[i] : t;
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
}

template <typename T>
__global__ void rms_backward_dx(const T *dy, const T *x, const T *rstd, const T *w, long long cols, T *dx) {
    __shared__ T sh[kBlock];
    const T *xr = x + blockIdx.x * cols, *dyr = dy + blockIdx.x * cols;
    T *dxr = dx + blockIdx.x * cols;
    T rs = rstd[blockIdx.x], sgx = 0;
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T g = w ? w[i] * dyr[i] : dyr[i];
        sgx += g * (xr[i] * rs);
    }
    T c2 = block_sum(sgx, sh) / T(cols);
    for (long long i = threadIdx.x; i < cols; i += kBlock) {
        T g = w ? w[i] * dyr[i] : dyr[i];
        dxr[i] = rs * (g - (xr[i] * rs) * c2);
    }
}

template <typename T>
__global__ void rms_backward_params(const T *dy, const T *x, const T *rstd, long long rows, long long cols, T *dw) {
    long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (j >= cols) return;
    T sw = 0;
    for (long long r = 0; r < rows; r++) sw += dy[r * cols + j] * (x[r * cols + j] * rstd[r]);
    dw[j] = sw;
}

// ------------------------------------------------------------------------- host side

#define CUDA_OK(call)                                                                                   \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) {                                                                        \
            std::fprintf(stderr, "norms_cuda: %s failed: %s\n", #call, cudaGetErrorString(e_));         \
            std::exit(1);                                                                               \
        }                                                                                               \
    } while (0)

template <typename T> struct DevBuf {
    T *p = nullptr;
    explicit DevBuf(const std::vector<T> &h) {
        if (h.empty()) return;
        CUDA_OK(cudaMalloc(&p, h.size() * sizeof(T)));
        CUDA_OK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    explicit DevBuf(size_t n) {
        if (n) CUDA_OK(cudaMalloc(&p, n * sizeof(T)));
    }
    ~DevBuf() { cudaFree(p); }
    DevBuf(const DevBuf &) = delete;
    DevBuf &operator=(const DevBuf &) = delete;
    std::vector<double> get(size_t n) const {
        std::vector<T> h(n);
        if (n) CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
        return std::vector<double>(h.begin(), h.end());
    }
};

struct Outputs {
    std::vector<double> y, mean, rstd, dx, dw, db;
};

template <typename T>
Outputs run_gpu(bool ln, const std::vector<double> &x, const std::vector<double> *w, const std::vector<double> *b,
                const std::vector<double> *dy, long long rows, long long cols, T eps) {
    auto cast = [](const std::vector<double> &v) { return std::vector<T>(v.begin(), v.end()); };
    const size_t n = x.size();
    DevBuf<T> dxin(cast(x)), dwin(w ? cast(*w) : std::vector<T>()), dbin(b ? cast(*b) : std::vector<T>()),
        ddy(dy ? cast(*dy) : std::vector<T>()), dyout(n), dmean((size_t)rows), drstd((size_t)rows), ddx(n),
        ddw(w ? (size_t)cols : 0), ddb(b ? (size_t)cols : 0);
    const int pblocks = (int)((cols + kBlock - 1) / kBlock);
    Outputs o;
    if (rows > 0 && cols > 0) {
        if (ln) ln_forward<T><<<(unsigned)rows, kBlock>>>(dxin.p, dwin.p, dbin.p, cols, eps, dyout.p, dmean.p, drstd.p);
        else rms_forward<T><<<(unsigned)rows, kBlock>>>(dxin.p, dwin.p, cols, eps, dyout.p, drstd.p);
        CUDA_OK(cudaGetLastError());
        if (dy) {
            if (ln) {
                ln_backward_dx<T><<<(unsigned)rows, kBlock>>>(ddy.p, dxin.p, dmean.p, drstd.p, dwin.p, cols, ddx.p);
                if (w || b) ln_backward_params<T><<<pblocks, kBlock>>>(ddy.p, dxin.p, dmean.p, drstd.p, rows, cols, ddw.p, ddb.p);
            } else {
                rms_backward_dx<T><<<(unsigned)rows, kBlock>>>(ddy.p, dxin.p, drstd.p, dwin.p, cols, ddx.p);
                if (w) rms_backward_params<T><<<pblocks, kBlock>>>(ddy.p, dxin.p, drstd.p, rows, cols, ddw.p);
            }
            CUDA_OK(cudaGetLastError());
        }
        CUDA_OK(cudaDeviceSynchronize());
        o.y = dyout.get(n);
        o.mean = dmean.get((size_t)rows);
        o.rstd = drstd.get((size_t)rows);
        if (dy) {
            o.dx = ddx.get(n);
            if (w) o.dw = ddw.get((size_t)cols);
            if (b) o.db = ddb.get((size_t)cols);
        }
    } else {   // empty problem: empty outputs, zero parameter gradients
        o.mean.assign((size_t)rows, NAN);
        o.rstd.assign((size_t)rows, NAN);
        o.dx.assign(n, 0.0);
        if (w) o.dw.assign((size_t)cols, 0.0);
        if (b) o.db.assign((size_t)cols, 0.0);
        o.y.assign(n, 0.0);
    }
    return o;
}

std::vector<double> read(const rg_case_file &f, const char *name) {
    uint64_t n = 0;
    double *p = rg_case_read(&f, name, &n);
    std::vector<double> v(p, p + n);
    std::free(p);
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "../../spec/golden";
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        std::printf("norms_cuda: no CUDA device available -- built, not run (the CPU driver checks the same "
                    "algorithm)\n");
        return 77;
    }
    char err[2048];
    rg_manifest m;
    if (rg_manifest_load(&m, dir, err, sizeof err)) {
        std::fprintf(stderr, "norms_cuda: refusing the corpus: %s\n", err);
        return 2;
    }
    int passed[2][4] = {{0}}, failed[2][4] = {{0}};
    double worst[2][4] = {{0}};
    for (size_t ci = 0; ci < m.n_cases; ci++) {
        const rg_case *c = &m.cases[ci];
        const bool ln = std::strcmp(c->op, "layer_norm") == 0;
        if (!ln && std::strcmp(c->op, "rms_norm") != 0) continue;
        const int oi = ln ? 0 : 1, di = (int)c->dtype;
        const rg_case_tensor *tx = rg_case_tensor_find(c, "x"), *tw = rg_case_tensor_find(c, "weight"),
                             *tb = rg_case_tensor_find(c, "bias"), *tdy = rg_case_tensor_find(c, "dy");
        int64_t ns[RG_MAX_NDIM], rows = 0, cols = 0;
        int ns_ndim = 0;
        double eps = 1e-5;
        const int erc = rg_attr_number(c, "eps", &eps);
        const bool eps_default = !ln && (erc == RG_ATTR_NULL || erc == RG_ATTR_MISSING);
        if (!tx || rg_attr_int_list(c, "normalized_shape", ns, RG_MAX_NDIM, &ns_ndim) != RG_ATTR_OK) continue;
        rn_status st = ln ? rn_layer_norm_check(tx->shape, tx->ndim, ns, ns_ndim, tw ? tw->shape : nullptr,
                                                tw ? tw->ndim : -1, tb ? tb->shape : nullptr, tb ? tb->ndim : -1, eps,
                                                &rows, &cols, err, sizeof err)
                          : rn_rms_norm_check(tx->shape, tx->ndim, ns, ns_ndim, tw ? tw->shape : nullptr,
                                              tw ? tw->ndim : -1, eps_default, eps, &rows, &cols, err, sizeof err);
        if (c->expect == RG_EXPECT_ERROR || st != RN_OK) {
            const bool ok = (c->expect == RG_EXPECT_ERROR) == (st != RN_OK);
            (ok ? passed : failed)[oi][di]++;
            if (!ok) std::printf("FAIL %s: argument checks disagree with expect.kind\n", c->id);
            continue;
        }
        rg_case_file f;
        if (rg_case_load(&m, c, &f, err, sizeof err)) {
            std::printf("REFUSED %s: %s\n", c->id, err);
            failed[oi][di]++;
            continue;
        }
        std::vector<double> x = read(f, "x"), w, b, dy;
        if (tw) w = read(f, "weight");
        if (tb) b = read(f, "bias");
        if (tdy) dy = read(f, "dy");
        Outputs o = c->dtype == RG_F64
                        ? run_gpu<double>(ln, x, tw ? &w : nullptr, tb ? &b : nullptr, tdy ? &dy : nullptr, rows, cols,
                                          eps_default ? rn_rms_norm_default_eps_f64() : eps)
                        : run_gpu<float>(ln, x, tw ? &w : nullptr, tb ? &b : nullptr, tdy ? &dy : nullptr, rows, cols,
                                         eps_default ? rn_rms_norm_default_eps_f32() : (float)eps);
        bool ok = true;
        for (size_t ti = 0; ti < c->n_tensors; ti++) {
            const rg_case_tensor *t = &c->tensors[ti];
            if (t->role != RG_ROLE_EXPECTED) continue;
            std::vector<double> *a = !std::strcmp(t->name, "y")       ? &o.y
                                     : !std::strcmp(t->name, "mean")  ? &o.mean
                                     : !std::strcmp(t->name, "rstd")  ? &o.rstd
                                     : !std::strcmp(t->name, "dx")    ? &o.dx
                                     : !std::strcmp(t->name, "dweight") ? &o.dw
                                     : !std::strcmp(t->name, "dbias") ? &o.db
                                                                      : nullptr;
            if (!a) { ok = false; continue; }
            for (double &v : *a) v = rg_round_to_dtype(v, c->dtype);   // stored in the case dtype
            std::vector<double> e = read(f, t->name), s;
            if (t->tol.scale_tensor) s = read(f, (std::string(t->name) + ".scale").c_str());
            rg_comparison cmp;
            // the shapes: the kernel writes exactly the expected layout (checked by the CPU driver)
            if (a->size() != e.size() ||
                rg_compare(e.data(), t->shape, t->ndim, a->data(), t->shape, t->ndim, s.empty() ? nullptr : s.data(),
                           &t->tol, c->dtype, &cmp)) {
                ok = false;
                continue;
            }
            if (cmp.worst_ratio > worst[oi][di]) worst[oi][di] = cmp.worst_ratio;
            if (!cmp.ok) {
                char msg[600];
                rg_comparison_message(&cmp, t->shape, t->ndim, c->dtype, msg, sizeof msg);
                std::printf("FAIL %s %s: %s\n", c->id, t->name, msg);
                ok = false;
            }
        }
        (ok ? passed : failed)[oi][di]++;
        rg_case_file_free(&f);
    }
    int any = 0;
    std::printf("%-11s %-9s %6s %6s  %s\n", "op", "dtype", "passed", "failed", "worst err/tol");
    for (int oi = 0; oi < 2; oi++)
        for (int di = 0; di < 4; di++) {
            if (!passed[oi][di] && !failed[oi][di]) continue;
            any |= failed[oi][di];
            std::printf("%-11s %-9s %6d %6d  %.3g\n", oi ? "rms_norm" : "layer_norm", rg_dtype_name((rg_dtype)di),
                        passed[oi][di], failed[oi][di], worst[oi][di]);
        }
    rg_manifest_free(&m);
    std::printf("%s\n", any ? "RESULT: FAIL" : "RESULT: PASS");
    return any ? 1 : 0;
}

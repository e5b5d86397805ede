/*
 * refnorm_golden.h -- a header-only C99 reader for the refnorm golden corpus
 * (format version 1, spec/FORMAT.md).  No dependencies beyond the C standard
 * library (plus realpath() on POSIX, to refuse symlinks leading out of the
 * corpus).  Also valid C++ (it is compiled by nvcc for norms_cuda.cu).
 *
 * Usage: in exactly one translation unit,
 *
 *     #define _XOPEN_SOURCE 700          (POSIX: before any system header, for realpath)
 *     #define REFNORM_GOLDEN_IMPLEMENTATION
 *     #include "refnorm_golden.h"
 *
 * and plain `#include "refnorm_golden.h"` everywhere else.  Define
 * REFNORM_GOLDEN_NO_REALPATH to build without realpath() (then only the
 * lexical path rules of FORMAT.md section 9 are enforced, not the symlink one).
 *
 * What it provides
 *   - SHA-256 (rg_sha256_*), a strict JSON parser (rg_json_*), UTF-8 validation;
 *   - safetensors parsing with every check of FORMAT.md section 2 (rg_safetensors_parse);
 *   - exact F64/F32/F16/BF16 -> double decoding (subnormals, signed zeros, inf, NaN);
 *   - the manifest (rg_manifest_load) validated as refnorm.golden.manifest does,
 *     with per-case tensors, roles, tolerances, expect and attrs;
 *   - rg_case_load: path rules + SHA-256 check + header parse + cross-check with the manifest;
 *   - rg_compare: the tolerance rule of FORMAT.md section 7 (rules 1-4, including the
 *     flush-to-zero allowance), exactly as refnorm/golden/tolerance.py compare() implements it;
 *   - rg_round_to_dtype: round a double to float32/float16/bfloat16 (nearest, ties to even).
 *
 * Every function that can fail returns 0 on success and non-zero on failure,
 * writing "<file>: <reason>" into the caller's err buffer.
 *
 * Number parsing uses strtod(): call it with the "C" LC_NUMERIC locale (the default).
 */
#ifndef REFNORM_GOLDEN_H
#define REFNORM_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RG_MAX_NDIM 32                      /* tensors with more dimensions are refused */
#define RG_MAX_HEADER_BYTES 100000000u      /* FORMAT.md 2.1 */
#define RG_JSON_MAX_DEPTH 128

/* ------------------------------------------------------------------ dtypes */

typedef enum rg_dtype { RG_F64 = 0, RG_F32 = 1, RG_F16 = 2, RG_BF16 = 3 } rg_dtype;

const char *rg_dtype_code(rg_dtype dt);          /* "F64", "F32", "F16", "BF16" */
const char *rg_dtype_name(rg_dtype dt);          /* "float64", "float32", "float16", "bfloat16" */
int rg_dtype_from_code(const char *code, rg_dtype *out);   /* 0 on success */
int rg_dtype_from_name(const char *name, rg_dtype *out);   /* 0 on success */
size_t rg_dtype_itemsize(rg_dtype dt);
int rg_dtype_precision(rg_dtype dt);             /* significand bits p: 53, 24, 11, 8 */
int rg_dtype_emin(rg_dtype dt);                  /* smallest normal exponent: -1022, -126, -14, -126 */

/* Exact decoding of one stored value to double. */
double rg_f64_bits_to_double(uint64_t bits);
double rg_f32_bits_to_double(uint32_t bits);
double rg_f16_bits_to_double(uint16_t bits);
double rg_bf16_bits_to_double(uint16_t bits);
double rg_decode_le(const unsigned char *p, rg_dtype dt);    /* one little-endian element */

/* v rounded to the nearest value of dt (ties to even; overflow to +-inf; NaN stays NaN). */
double rg_round_to_dtype(double v, rg_dtype dt);
/* numpy's np.spacing evaluated in dt, as refnorm.golden.dtypes.spacing: the gap from
   |x| to the next larger magnitude of dt (subnormal spacing below the normal range). */
double rg_spacing(double x, rg_dtype dt);

/* ------------------------------------------------------------------ SHA-256 */

typedef struct rg_sha256_ctx {
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char buf[64];
    size_t nbuf;
} rg_sha256_ctx;

void rg_sha256_init(rg_sha256_ctx *ctx);
void rg_sha256_update(rg_sha256_ctx *ctx, const void *data, size_t n);
void rg_sha256_final(rg_sha256_ctx *ctx, unsigned char digest[32]);
void rg_sha256_hex(const void *data, size_t n, char hex[65]);   /* lowercase, NUL-terminated */

/* ------------------------------------------------------------------ JSON */

typedef enum rg_json_type {
    RG_JSON_NULL, RG_JSON_FALSE, RG_JSON_TRUE, RG_JSON_NUMBER, RG_JSON_STRING, RG_JSON_ARRAY, RG_JSON_OBJECT
} rg_json_type;

typedef struct rg_json rg_json;
struct rg_json {
    rg_json_type type;
    double number;       /* NUMBER: the value (strtod, correctly rounded) */
    int is_integer;      /* NUMBER: written without fraction or exponent (a Python int) */
    int int_fits;        /* NUMBER: is_integer and within int64 */
    int64_t integer;     /* NUMBER: the value when int_fits */
    char *string;        /* STRING: decoded UTF-8, NUL-terminated */
    size_t length;       /* STRING: bytes; ARRAY/OBJECT: number of elements */
    rg_json *items;      /* ARRAY/OBJECT: the elements (values) */
    char **keys;         /* OBJECT: the keys, in document order */
};

/* Strict RFC 8259 JSON: no NaN/Infinity, no trailing commas, no duplicate keys in any
   object, no control characters in strings.  text need not be NUL-terminated.  Returns
   NULL and fills err on failure.  The caller validates UTF-8 first (rg_utf8_valid). */
rg_json *rg_json_parse(const char *text, size_t len, char *err, size_t errlen);
void rg_json_free(rg_json *v);
const rg_json *rg_json_get(const rg_json *obj, const char *key);   /* NULL if absent / not an object */
const char *rg_json_type_name(const rg_json *v);
int rg_utf8_valid(const unsigned char *s, size_t n, size_t *bad_offset);   /* 1 if valid */

/* ------------------------------------------------------------------ safetensors */

typedef struct rg_tensor {
    char *name;
    rg_dtype dtype;
    int ndim;
    int64_t shape[RG_MAX_NDIM];
    uint64_t numel;
    uint64_t begin, end;             /* relative to the data buffer */
    const unsigned char *data;       /* first byte of the tensor (inside the file's bytes) */
} rg_tensor;

typedef struct rg_safetensors {
    uint64_t header_len;             /* N */
    const unsigned char *buffer;     /* the data buffer (bytes + 8 + N) */
    uint64_t buffer_len;
    size_t n_tensors;
    rg_tensor *tensors;              /* in header order */
    size_t n_metadata;
    char **metadata_keys, **metadata_values;
} rg_safetensors;

/* Validate bytes[0, size) as a safetensors file (FORMAT.md section 2).  st points into
   bytes, which must outlive it.  source names the file in err. */
int rg_safetensors_parse(rg_safetensors *st, const unsigned char *bytes, size_t size,
                         const char *source, char *err, size_t errlen);
void rg_safetensors_free(rg_safetensors *st);
const rg_tensor *rg_safetensors_find(const rg_safetensors *st, const char *name);
void rg_tensor_decode(const rg_tensor *t, double *out);   /* t->numel doubles, exact */

/* ------------------------------------------------------------------ manifest */

typedef enum rg_role { RG_ROLE_INPUT, RG_ROLE_EXPECTED, RG_ROLE_SCALE } rg_role;
typedef enum rg_expect_kind { RG_EXPECT_VALUE, RG_EXPECT_NAN, RG_EXPECT_ERROR } rg_expect_kind;

typedef struct rg_tolerance {
    double atol, rtol;
    int has_ulp;                     /* ulp is not null */
    int64_t ulp;
    int scale_tensor;                /* scale == "tensor": rtol multiplies <output>.scale */
    const char *derivation;
} rg_tolerance;

typedef struct rg_case_tensor {
    const char *name;
    rg_dtype dtype;
    int ndim;
    int64_t shape[RG_MAX_NDIM];
    rg_role role;
    int has_tolerance;               /* role == expected */
    rg_tolerance tol;
} rg_case_tensor;

typedef struct rg_case {
    const char *id, *op, *name, *tier, *file, *sha256, *description;
    rg_dtype dtype;
    rg_expect_kind expect;
    const char *expect_type, *expect_match, *expect_where;   /* NULL when absent */
    int large;
    const rg_json *json;             /* the whole case object */
    const rg_json *attrs;            /* the attrs object */
    size_t n_tensors;
    rg_case_tensor *tensors;
} rg_case;

typedef struct rg_manifest {
    char *dir;                       /* the corpus directory as given */
    char *path;                      /* <dir>/manifest.json */
    rg_json *root;
    const char *refnorm_version;
    size_t n_cases;
    rg_case *cases;
} rg_manifest;

/* Read and validate <corpus_dir>/manifest.json (as refnorm.golden.manifest.load_manifest). */
int rg_manifest_load(rg_manifest *m, const char *corpus_dir, char *err, size_t errlen);
void rg_manifest_free(rg_manifest *m);
const rg_case_tensor *rg_case_tensor_find(const rg_case *c, const char *name);

/* attrs.<key>: results of the accessors */
enum { RG_ATTR_OK = 0, RG_ATTR_MISSING = 1, RG_ATTR_NULL = 2, RG_ATTR_BADTYPE = 3 };
int rg_attr_number(const rg_case *c, const char *key, double *out);
/* An int, or a list of ints (normalized_shape); *n receives the length. */
int rg_attr_int_list(const rg_case *c, const char *key, int64_t *out, int max, int *n);

/* ------------------------------------------------------------------ one case file */

typedef struct rg_case_file {
    char *path;                      /* <dir>/<file> */
    unsigned char *bytes;
    size_t size;
    rg_safetensors st;
} rg_case_file;

/* Resolve the case's file inside the corpus (refusing escapes), read it, check its
   SHA-256 against the manifest, parse it and check that it holds exactly the tensors
   the manifest lists (same dtypes and shapes). */
int rg_case_load(const rg_manifest *m, const rg_case *c, rg_case_file *f, char *err, size_t errlen);
void rg_case_file_free(rg_case_file *f);
/* Decode tensor `name` of a loaded case into a malloc'ed array of doubles (caller frees).
   Returns NULL if absent (or out of memory; *numel is then 0). */
double *rg_case_read(const rg_case_file *f, const char *name, uint64_t *numel);

/* ------------------------------------------------------------------ the tolerance rule */

typedef struct rg_comparison {
    int ok;
    int shape_mismatch;
    double worst_ratio;              /* |a-e| / (atol + rtol*s), ulp-widened; inf for a mismatch */
    double worst_ulps;               /* |a-e| / spacing_dtype(e) at the worst element */
    size_t worst_index;              /* flat index of the worst element */
    size_t n_bad, n;
    double worst_expected, worst_actual;
} rg_comparison;

/* FORMAT.md section 7 / refnorm.golden.tolerance.compare: compare `actual` (already
   converted to double) with `expected`.  An element passes iff (1) both are non-finite and
   equal (NaN matches NaN), or both are finite and (2) |a-e| <= atol + rtol*s, or (3) ulp is
   not null and |a-e| <= ulp*spacing(e), or (4) a == 0 and |e| < the dtype's smallest normal.  scale is the <output>.scale tensor (required iff
   tol->scale_tensor; same shape as expected).  Returns 0, or -1 if a scale tensor is
   required but missing. */
int rg_compare(const double *expected, const int64_t *eshape, int endim,
               const double *actual, const int64_t *ashape, int andim,
               const double *scale, const rg_tolerance *tol, rg_dtype dtype, rg_comparison *out);
/* A one-line description like compare()'s message. */
void rg_comparison_message(const rg_comparison *r, const int64_t *shape, int ndim, rg_dtype dt,
                           char *buf, size_t len);
/* "(i, j, k)" for a flat index. */
void rg_format_index(size_t flat, const int64_t *shape, int ndim, char *buf, size_t len);
void rg_format_shape(const int64_t *shape, int ndim, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* REFNORM_GOLDEN_H */

/* ======================================================================== */
/*                              implementation                              */
/* ======================================================================== */

#ifdef REFNORM_GOLDEN_IMPLEMENTATION
#ifndef REFNORM_GOLDEN_IMPLEMENTED
#define REFNORM_GOLDEN_IMPLEMENTED

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(REFNORM_GOLDEN_NO_REALPATH) && (defined(__unix__) || defined(__APPLE__))
#  if !(defined(_XOPEN_SOURCE) || defined(_GNU_SOURCE) || defined(_DEFAULT_SOURCE) || defined(_BSD_SOURCE) \
        || defined(__APPLE__) || !defined(__STRICT_ANSI__) || defined(__cplusplus))
#    error "refnorm_golden.h needs realpath(): #define _XOPEN_SOURCE 700 before any #include, or define REFNORM_GOLDEN_NO_REALPATH"
#  endif
#  define RG__HAVE_REALPATH 1
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ helpers */

static void rg__errf(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void rg__errf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *rg__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = (char *)malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------------------------ dtypes */

static const char *const rg__codes[4] = {"F64", "F32", "F16", "BF16"};
static const char *const rg__names[4] = {"float64", "float32", "float16", "bfloat16"};
static const size_t rg__itemsize[4] = {8, 4, 2, 2};
static const int rg__prec[4] = {53, 24, 11, 8};
static const int rg__emin[4] = {-1022, -126, -14, -126};
static const int rg__emax[4] = {1023, 127, 15, 127};

const char *rg_dtype_code(rg_dtype dt) { return rg__codes[(int)dt & 3]; }
const char *rg_dtype_name(rg_dtype dt) { return rg__names[(int)dt & 3]; }
size_t rg_dtype_itemsize(rg_dtype dt) { return rg__itemsize[(int)dt & 3]; }
int rg_dtype_precision(rg_dtype dt) { return rg__prec[(int)dt & 3]; }
int rg_dtype_emin(rg_dtype dt) { return rg__emin[(int)dt & 3]; }

int rg_dtype_from_code(const char *code, rg_dtype *out) {
    int i;
    for (i = 0; i < 4; i++)
        if (code && strcmp(code, rg__codes[i]) == 0) { *out = (rg_dtype)i; return 0; }
    return -1;
}

int rg_dtype_from_name(const char *name, rg_dtype *out) {
    int i;
    for (i = 0; i < 4; i++)
        if (name && strcmp(name, rg__names[i]) == 0) { *out = (rg_dtype)i; return 0; }
    return -1;
}

/* Bit layouts (FORMAT.md section 3).  Built from integers with ldexp, so the decoding
   is exact and independent of the host's float formats and byte order. */
double rg_f64_bits_to_double(uint64_t b) {
    int sign = (int)(b >> 63);
    int e = (int)((b >> 52) & 0x7ff);
    uint64_t f = b & (((uint64_t)1 << 52) - 1);
    double v;
    if (e == 0x7ff) v = f ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)f, -1074);                          /* zero / subnormal */
    else v = ldexp((double)(f | ((uint64_t)1 << 52)), e - 1075);
    return sign ? -v : v;
}

double rg_f32_bits_to_double(uint32_t b) {
    int sign = (int)(b >> 31);
    int e = (int)((b >> 23) & 0xff);
    uint32_t f = b & 0x7fffffu;
    double v;
    if (e == 0xff) v = f ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)f, -149);
    else v = ldexp((double)(f | 0x800000u), e - 150);
    return sign ? -v : v;
}

double rg_f16_bits_to_double(uint16_t b) {
    int sign = b >> 15;
    int e = (b >> 10) & 0x1f;
    unsigned f = b & 0x3ffu;
    double v;
    if (e == 0x1f) v = f ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)f, -24);
    else v = ldexp((double)(f | 0x400u), e - 25);
    return sign ? -v : v;
}

double rg_bf16_bits_to_double(uint16_t b) {
    return rg_f32_bits_to_double((uint32_t)b << 16);   /* the top half of a binary32 */
}

double rg_decode_le(const unsigned char *p, rg_dtype dt) {
    uint64_t u = 0;
    size_t i, n = rg_dtype_itemsize(dt);
    for (i = 0; i < n; i++) u |= (uint64_t)p[i] << (8 * i);
    switch (dt) {
    case RG_F64: return rg_f64_bits_to_double(u);
    case RG_F32: return rg_f32_bits_to_double((uint32_t)u);
    case RG_F16: return rg_f16_bits_to_double((uint16_t)u);
    default: return rg_bf16_bits_to_double((uint16_t)u);
    }
}

double rg_spacing(double x, rg_dtype dt) {
    int e = 0, lead;
    int p = rg_dtype_precision(dt), emin = rg_dtype_emin(dt);
    x = fabs(x);
    if (isfinite(x) && x > 0) {
        (void)frexp(x, &e);               /* x = m 2^e, m in [1/2, 1) */
        lead = e - 1 > emin ? e - 1 : emin;
    } else {
        lead = emin;
    }
    return ldexp(1.0, lead - (p - 1));
}

double rg_round_to_dtype(double v, rg_dtype dt) {
    int p, emin, emax, e = 0, lead;
    double q, r, maxval;
    if (dt == RG_F64 || !isfinite(v) || v == 0) return v;
    p = rg_dtype_precision(dt);
    emin = rg_dtype_emin(dt);
    emax = rg__emax[(int)dt];
    (void)frexp(fabs(v), &e);
    lead = e - 1 > emin ? e - 1 : emin;
    q = ldexp(1.0, lead - (p - 1));                 /* the spacing of dt at v: a power of two */
    r = nearbyint(v / q) * q;                       /* v / q is exact; ties to even */
    maxval = ldexp(2.0 - ldexp(1.0, 1 - p), emax);
    if (fabs(r) > maxval) return v > 0 ? INFINITY : -INFINITY;
    return r;
}

/* ------------------------------------------------------------------ SHA-256 (FIPS 180-4) */

static const uint32_t rg__sha_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

#define RG__ROR(x, n) ((uint32_t)(((x) >> (n)) | ((x) << (32 - (n)))))

static void rg__sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) |
               (uint32_t)p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = RG__ROR(w[i - 15], 7) ^ RG__ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = RG__ROR(w[i - 2], 17) ^ RG__ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
    for (i = 0; i < 64; i++) {
        t1 = k + (RG__ROR(e, 6) ^ RG__ROR(e, 11) ^ RG__ROR(e, 25)) + ((e & f) ^ (~e & g)) + rg__sha_k[i] + w[i];
        t2 = (RG__ROR(a, 2) ^ RG__ROR(a, 13) ^ RG__ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

void rg_sha256_init(rg_sha256_ctx *ctx) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(ctx->h, h0, sizeof h0);
    ctx->nbytes = 0;
    ctx->nbuf = 0;
}

void rg_sha256_update(rg_sha256_ctx *ctx, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    ctx->nbytes += n;
    if (ctx->nbuf) {
        size_t take = 64 - ctx->nbuf < n ? 64 - ctx->nbuf : n;
        memcpy(ctx->buf + ctx->nbuf, p, take);
        ctx->nbuf += take; p += take; n -= take;
        if (ctx->nbuf < 64) return;
        rg__sha256_block(ctx->h, ctx->buf);
        ctx->nbuf = 0;
    }
    while (n >= 64) { rg__sha256_block(ctx->h, p); p += 64; n -= 64; }
    memcpy(ctx->buf, p, n);
    ctx->nbuf = n;
}

void rg_sha256_final(rg_sha256_ctx *ctx, unsigned char digest[32]) {
    uint64_t bits = ctx->nbytes * 8;
    int i;
    ctx->buf[ctx->nbuf++] = 0x80;
    if (ctx->nbuf > 56) {
        memset(ctx->buf + ctx->nbuf, 0, 64 - ctx->nbuf);
        rg__sha256_block(ctx->h, ctx->buf);
        ctx->nbuf = 0;
    }
    memset(ctx->buf + ctx->nbuf, 0, 56 - ctx->nbuf);
    for (i = 0; i < 8; i++) ctx->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    rg__sha256_block(ctx->h, ctx->buf);
    for (i = 0; i < 32; i++) digest[i] = (unsigned char)(ctx->h[i / 4] >> (24 - 8 * (i % 4)));
}

void rg_sha256_hex(const void *data, size_t n, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char d[32];
    rg_sha256_ctx ctx;
    int i;
    rg_sha256_init(&ctx);
    rg_sha256_update(&ctx, data, n);
    rg_sha256_final(&ctx, d);
    for (i = 0; i < 32; i++) { hex[2 * i] = digits[d[i] >> 4]; hex[2 * i + 1] = digits[d[i] & 15]; }
    hex[64] = '\0';
}

/* ------------------------------------------------------------------ UTF-8 */

int rg_utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len, k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else goto fail;
        if (n - i < len) goto fail;
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) goto fail;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto fail;   /* overlong, range, surrogate */
        i += len;
    }
    return 1;
fail:
    if (bad) *bad = i;
    return 0;
}

/* ------------------------------------------------------------------ JSON */

typedef struct rg__jp {
    const char *s;
    size_t n, i;
    char *err;
    size_t errlen;
} rg__jp;

typedef struct rg__buf { char *p; size_t n, cap; } rg__buf;

static int rg__buf_put(rg__buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        char *np;
        while (cap < b->n + n + 1) cap *= 2;
        np = (char *)realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int rg__jfail(rg__jp *p, const char *what) {
    rg__errf(p->err, p->errlen, "%s at byte %lu", what, (unsigned long)p->i);
    return -1;
}

static void rg__jws(rg__jp *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static void rg__json_clear(rg_json *v) {
    size_t i;
    if (!v) return;
    if (v->type == RG_JSON_ARRAY || v->type == RG_JSON_OBJECT) {
        for (i = 0; i < v->length; i++) {
            rg__json_clear(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
    free(v->string);
    memset(v, 0, sizeof *v);
}

void rg_json_free(rg_json *v) {
    rg__json_clear(v);
    free(v);
}

static int rg__hex4(const char *s, uint32_t *out) {
    int i;
    uint32_t v = 0;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static int rg__put_utf8(rg__buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    return rg__buf_put(b, u, n);
}

/* A string token; p->i is at the opening quote.  Lone surrogate escapes decode to U+FFFD. */
static int rg__jstring(rg__jp *p, char **out, size_t *outlen) {
    rg__buf b = {NULL, 0, 0};
    p->i++;
    if (rg__buf_put(&b, "", 0)) return rg__jfail(p, "out of memory");
    for (;;) {
        size_t start = p->i;
        unsigned char c;
        while (p->i < p->n && (c = (unsigned char)p->s[p->i]) != '"' && c != '\\' && c >= 0x20) p->i++;
        if (p->i > start && rg__buf_put(&b, p->s + start, p->i - start)) goto oom;
        if (p->i >= p->n) { free(b.p); return rg__jfail(p, "unterminated string"); }
        c = (unsigned char)p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { free(b.p); return rg__jfail(p, "control character in string"); }
        /* backslash */
        if (p->i + 1 >= p->n) { free(b.p); return rg__jfail(p, "unterminated escape"); }
        c = (unsigned char)p->s[p->i + 1];
        if (c == 'u') {
            uint32_t cp, lo;
            if (p->i + 6 > p->n || rg__hex4(p->s + p->i + 2, &cp)) {
                free(b.p);
                return rg__jfail(p, "invalid \\u escape");
            }
            p->i += 6;
            if (cp >= 0xd800 && cp <= 0xdbff && p->i + 6 <= p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u' &&
                rg__hex4(p->s + p->i + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p->i += 6;
            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd;
            }
            if (rg__put_utf8(&b, cp)) goto oom;
            continue;
        } else {
            char e;
            switch (c) {
            case '"': e = '"'; break;
            case '\\': e = '\\'; break;
            case '/': e = '/'; break;
            case 'b': e = '\b'; break;
            case 'f': e = '\f'; break;
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            default: free(b.p); return rg__jfail(p, "invalid escape in string");
            }
            if (rg__buf_put(&b, &e, 1)) goto oom;
            p->i += 2;
        }
    }
    *out = b.p;
    *outlen = b.n;
    return 0;
oom:
    free(b.p);
    return rg__jfail(p, "out of memory");
}

static int rg__jnumber(rg__jp *p, rg_json *v) {
    size_t start = p->i, k;
    int neg = 0, is_int = 1, overflow = 0;
    uint64_t mag = 0;
    char small[64], *tmp;
    if (p->s[p->i] == '-') { neg = 1; p->i++; }
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rg__jfail(p, "invalid number");
    if (p->s[p->i] == '0') {
        p->i++;
    } else {
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
            unsigned d = (unsigned)(p->s[p->i] - '0');
            if (mag > (UINT64_MAX - d) / 10) overflow = 1;
            else mag = mag * 10 + d;
            p->i++;
        }
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        is_int = 0;
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rg__jfail(p, "invalid number (digit expected after '.')");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        is_int = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rg__jfail(p, "invalid number (exponent digits expected)");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    k = p->i - start;
    tmp = k < sizeof small ? small : (char *)malloc(k + 1);
    if (!tmp) return rg__jfail(p, "out of memory");
    memcpy(tmp, p->s + start, k);
    tmp[k] = '\0';
    v->type = RG_JSON_NUMBER;
    v->number = strtod(tmp, NULL);
    if (tmp != small) free(tmp);
    v->is_integer = is_int;
    if (is_int && !overflow && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
        v->int_fits = 1;
        v->integer = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
    return 0;
}

static int rg__jvalue(rg__jp *p, rg_json *v, int depth);

static int rg__jcontainer(rg__jp *p, rg_json *v, int depth, int is_object) {
    size_t cap = 0;
    char close = is_object ? '}' : ']';
    v->type = is_object ? RG_JSON_OBJECT : RG_JSON_ARRAY;
    if (depth > RG_JSON_MAX_DEPTH) return rg__jfail(p, "nesting too deep");
    p->i++;
    rg__jws(p);
    if (p->i < p->n && p->s[p->i] == close) { p->i++; return 0; }
    for (;;) {
        char *key = NULL;
        size_t keylen = 0, j;
        rg__jws(p);
        if (is_object) {
            if (p->i >= p->n || p->s[p->i] != '"') return rg__jfail(p, "object key (a string) expected");
            if (rg__jstring(p, &key, &keylen)) return -1;
            if (strlen(key) != keylen) { free(key); return rg__jfail(p, "NUL character (\\u0000) in an object key"); }
            for (j = 0; j < v->length; j++) {
                if (strcmp(v->keys[j], key) == 0) {
                    char msg[200];
                    snprintf(msg, sizeof msg, "duplicate key \"%.120s\"", key);
                    free(key);
                    return rg__jfail(p, msg);
                }
            }
            rg__jws(p);
            if (p->i >= p->n || p->s[p->i] != ':') { free(key); return rg__jfail(p, "':' expected after object key"); }
            p->i++;
        }
        if (v->length == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            rg_json *ni = (rg_json *)realloc(v->items, ncap * sizeof *ni);
            if (!ni) { free(key); return rg__jfail(p, "out of memory"); }
            v->items = ni;
            if (is_object) {
                char **nk = (char **)realloc(v->keys, ncap * sizeof *nk);
                if (!nk) { free(key); return rg__jfail(p, "out of memory"); }
                v->keys = nk;
            }
            cap = ncap;
        }
        memset(&v->items[v->length], 0, sizeof v->items[0]);
        if (is_object) v->keys[v->length] = key;
        v->length++;
        rg__jws(p);
        if (rg__jvalue(p, &v->items[v->length - 1], depth + 1)) return -1;
        rg__jws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == close) { p->i++; return 0; }
        return rg__jfail(p, is_object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int rg__jlit(rg__jp *p, const char *lit) {
    size_t k = strlen(lit);
    return p->n - p->i >= k && memcmp(p->s + p->i, lit, k) == 0;
}

static int rg__jvalue(rg__jp *p, rg_json *v, int depth) {
    char c;
    rg__jws(p);
    if (p->i >= p->n) return rg__jfail(p, "unexpected end of input (value expected)");
    c = p->s[p->i];
    if (c == '{') return rg__jcontainer(p, v, depth, 1);
    if (c == '[') return rg__jcontainer(p, v, depth, 0);
    if (c == '"') {
        v->type = RG_JSON_STRING;
        return rg__jstring(p, &v->string, &v->length);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return rg__jnumber(p, v);
    if (rg__jlit(p, "null")) { v->type = RG_JSON_NULL; p->i += 4; return 0; }
    if (rg__jlit(p, "true")) { v->type = RG_JSON_TRUE; p->i += 4; return 0; }
    if (rg__jlit(p, "false")) { v->type = RG_JSON_FALSE; p->i += 5; return 0; }
    if (rg__jlit(p, "NaN") || rg__jlit(p, "Infinity")) return rg__jfail(p, "non-standard JSON constant");
    return rg__jfail(p, "invalid JSON value");
}

rg_json *rg_json_parse(const char *text, size_t len, char *err, size_t errlen) {
    rg__jp p;
    rg_json *v = (rg_json *)calloc(1, sizeof *v);
    if (!v) { rg__errf(err, errlen, "out of memory"); return NULL; }
    p.s = text; p.n = len; p.i = 0; p.err = err; p.errlen = errlen;
    if (rg__jvalue(&p, v, 0)) { rg_json_free(v); return NULL; }
    rg__jws(&p);
    if (p.i != p.n) { rg__jfail(&p, "extra data after the JSON value"); rg_json_free(v); return NULL; }
    return v;
}

const rg_json *rg_json_get(const rg_json *obj, const char *key) {
    size_t i;
    if (!obj || obj->type != RG_JSON_OBJECT) return NULL;
    for (i = 0; i < obj->length; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const char *rg_json_type_name(const rg_json *v) {
    if (!v) return "missing";
    switch (v->type) {
    case RG_JSON_NULL: return "null";
    case RG_JSON_FALSE: case RG_JSON_TRUE: return "boolean";
    case RG_JSON_NUMBER: return v->is_integer ? "integer" : "number";
    case RG_JSON_STRING: return "string";
    case RG_JSON_ARRAY: return "array";
    default: return "object";
    }
}

/* ------------------------------------------------------------------ safetensors */

static int rg__valid_name(const char *s) {   /* ^[A-Za-z_][A-Za-z0-9_.]*$ */
    const char *q;
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    for (q = s + 1; *q; q++)
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' || *q == '.'))
            return 0;
    return 1;
}

/* A list of non-negative integers into shape[]; -1 if not, -2 if too many dims. */
static int rg__shape_of(const rg_json *v, int64_t *shape, int *ndim) {
    size_t i;
    if (!v || v->type != RG_JSON_ARRAY) return -1;
    for (i = 0; i < v->length; i++)
        if (v->items[i].type != RG_JSON_NUMBER || !v->items[i].is_integer || !v->items[i].int_fits ||
            v->items[i].integer < 0)
            return -1;
    if (v->length > RG_MAX_NDIM) return -2;
    for (i = 0; i < v->length; i++) shape[i] = v->items[i].integer;
    *ndim = (int)v->length;
    return 0;
}

static void rg__json_snip(const rg_json *v, char *buf, size_t len) {
    size_t i, k = 0;
    if (len == 0) return;
    buf[0] = '\0';
    if (!v) { snprintf(buf, len, "(missing)"); return; }
    switch (v->type) {
    case RG_JSON_NUMBER: snprintf(buf, len, "%.17g", v->number); return;
    case RG_JSON_STRING: snprintf(buf, len, "\"%.60s\"", v->string); return;
    case RG_JSON_ARRAY:
        k += (size_t)snprintf(buf + k, len - k, "[");
        for (i = 0; i < v->length && k < len; i++) {
            char inner[64];
            rg__json_snip(&v->items[i], inner, sizeof inner);
            k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", inner);
        }
        if (k < len) snprintf(buf + k, len - k, "]");
        return;
    default: snprintf(buf, len, "%s", rg_json_type_name(v)); return;
    }
}

typedef struct rg__span { uint64_t begin, end; const char *name; } rg__span;

static int rg__span_cmp(const void *a, const void *b) {
    const rg__span *x = (const rg__span *)a, *y = (const rg__span *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

void rg_safetensors_free(rg_safetensors *st) {
    size_t i;
    if (!st) return;
    for (i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (i = 0; i < st->n_metadata; i++) { free(st->metadata_keys[i]); free(st->metadata_values[i]); }
    free(st->metadata_keys);
    free(st->metadata_values);
    memset(st, 0, sizeof *st);
}

int rg_safetensors_parse(rg_safetensors *st, const unsigned char *bytes, size_t size, const char *source,
                         char *err, size_t errlen) {
    uint64_t n = 0, buffer_len, pos;
    size_t i, bad = 0, nt = 0;
    rg_json *hdr = NULL;
    rg__span *spans = NULL;
    char jerr[256];
    const rg_json *meta = NULL;
    memset(st, 0, sizeof *st);
    if (size < 8) {
        rg__errf(err, errlen, "%s: file is %lu bytes, shorter than the 8-byte header length", source, (unsigned long)size);
        return -1;
    }
    for (i = 0; i < 8; i++) n |= (uint64_t)bytes[i] << (8 * i);
    if (n > RG_MAX_HEADER_BYTES) {
        rg__errf(err, errlen, "%s: header length %llu exceeds the limit of %u bytes", source, (unsigned long long)n,
                 RG_MAX_HEADER_BYTES);
        return -1;
    }
    if (n > (uint64_t)size - 8) {
        rg__errf(err, errlen, "%s: header length %llu runs past the end of the file (%lu bytes; file truncated?)",
                 source, (unsigned long long)n, (unsigned long)size);
        return -1;
    }
    if (n < 2) {
        rg__errf(err, errlen, "%s: header length %llu is too small for a JSON object", source, (unsigned long long)n);
        return -1;
    }
    if (!rg_utf8_valid(bytes + 8, (size_t)n, &bad)) {
        rg__errf(err, errlen, "%s: header is not valid UTF-8 (bad byte at header offset %lu)", source, (unsigned long)bad);
        return -1;
    }
    hdr = rg_json_parse((const char *)bytes + 8, (size_t)n, jerr, sizeof jerr);
    if (!hdr) {
        rg__errf(err, errlen, "%s: header is not valid JSON (%s)", source, jerr);
        return -1;
    }
    if (hdr->type != RG_JSON_OBJECT) {
        rg__errf(err, errlen, "%s: header is a JSON %s, not an object", source, rg_json_type_name(hdr));
        goto fail;
    }
    st->header_len = n;
    st->buffer = bytes + 8 + n;
    buffer_len = st->buffer_len = (uint64_t)size - 8 - n;
    st->tensors = (rg_tensor *)calloc(hdr->length + 1, sizeof *st->tensors);
    spans = (rg__span *)calloc(hdr->length + 1, sizeof *spans);
    if (!st->tensors || !spans) { rg__errf(err, errlen, "%s: out of memory", source); goto fail; }
    meta = rg_json_get(hdr, "__metadata__");
    if (meta) {
        if (meta->type != RG_JSON_OBJECT) goto badmeta;
        for (i = 0; i < meta->length; i++)
            if (meta->items[i].type != RG_JSON_STRING) goto badmeta;
        st->metadata_keys = (char **)calloc(meta->length + 1, sizeof(char *));
        st->metadata_values = (char **)calloc(meta->length + 1, sizeof(char *));
        if (!st->metadata_keys || !st->metadata_values) { rg__errf(err, errlen, "%s: out of memory", source); goto fail; }
        for (i = 0; i < meta->length; i++) {
            st->metadata_keys[i] = rg__strdup(meta->keys[i]);
            st->metadata_values[i] = rg__strdup(meta->items[i].string);
            st->n_metadata++;
        }
    }
    for (i = 0; i < hdr->length; i++) {
        const char *name = hdr->keys[i];
        const rg_json *e = &hdr->items[i], *jd, *js, *jo;
        rg_tensor *t;
        rg_dtype dt;
        int r;
        uint64_t want, b, en;
        int d;
        char snip[160];
        if (strcmp(name, "__metadata__") == 0) continue;
        if (!rg__valid_name(name)) {
            rg__errf(err, errlen, "%s: invalid tensor name \"%.80s\" (must match ^[A-Za-z_][A-Za-z0-9_.]*$)", source, name);
            goto fail;
        }
        if (e->type != RG_JSON_OBJECT) {
            rg__errf(err, errlen, "%s: tensor '%s': entry is not an object", source, name);
            goto fail;
        }
        jd = rg_json_get(e, "dtype");
        js = rg_json_get(e, "shape");
        jo = rg_json_get(e, "data_offsets");
        if (e->length != 3 || !jd || !js || !jo) {
            size_t k, w = 0;
            char keys[200];
            keys[0] = '\0';
            for (k = 0; k < e->length && w < sizeof keys; k++)
                w += (size_t)snprintf(keys + w, sizeof keys - w, "%s'%.40s'", k ? ", " : "", e->keys[k]);
            rg__errf(err, errlen, "%s: tensor '%s': entry has keys [%s], expected ['data_offsets', 'dtype', 'shape']",
                     source, name, keys);
            goto fail;
        }
        if (jd->type != RG_JSON_STRING || rg_dtype_from_code(jd->string, &dt)) {
            rg__json_snip(jd, snip, sizeof snip);
            rg__errf(err, errlen, "%s: tensor '%s': unsupported dtype %s (golden files use F64, F32, F16, BF16)", source,
                     name, snip);
            goto fail;
        }
        t = &st->tensors[nt];
        t->dtype = dt;
        r = rg__shape_of(js, t->shape, &t->ndim);
        if (r) {
            rg__json_snip(js, snip, sizeof snip);
            if (r == -2)
                rg__errf(err, errlen, "%s: tensor '%s': shape %s has more than %d dimensions (this reader's limit)",
                         source, name, snip, RG_MAX_NDIM);
            else
                rg__errf(err, errlen, "%s: tensor '%s': shape %s is not a list of non-negative integers", source, name, snip);
            goto fail;
        }
        if (jo->type != RG_JSON_ARRAY || jo->length != 2 || jo->items[0].type != RG_JSON_NUMBER ||
            jo->items[1].type != RG_JSON_NUMBER || !jo->items[0].is_integer || !jo->items[1].is_integer ||
            !jo->items[0].int_fits || !jo->items[1].int_fits || jo->items[0].integer < 0 ||
            jo->items[0].integer > jo->items[1].integer) {
            rg__json_snip(jo, snip, sizeof snip);
            rg__errf(err, errlen, "%s: tensor '%s': data_offsets %s is not [begin, end] with 0 <= begin <= end", source,
                     name, snip);
            goto fail;
        }
        b = (uint64_t)jo->items[0].integer;
        en = (uint64_t)jo->items[1].integer;
        if (en > buffer_len) {
            rg__errf(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the %llu-byte data "
                     "buffer (file truncated?)", source, name, (unsigned long long)b, (unsigned long long)en,
                     (unsigned long long)buffer_len);
            goto fail;
        }
        want = rg_dtype_itemsize(dt);
        t->numel = 1;
        for (d = 0; d < t->ndim; d++) {
            uint64_t s = (uint64_t)t->shape[d];
            if (s != 0 && t->numel > UINT64_MAX / s) { t->numel = UINT64_MAX; break; }
            t->numel *= s;
        }
        for (d = 0; d < t->ndim; d++) if (t->shape[d] == 0) t->numel = 0;
        if (t->numel > UINT64_MAX / want || en - b != t->numel * want) {
            rg__json_snip(js, snip, sizeof snip);
            if (t->numel > UINT64_MAX / want)
                rg__errf(err, errlen, "%s: tensor '%s': %llu bytes for shape %s of %s (needs more than 2^64)", source,
                         name, (unsigned long long)(en - b), snip, rg_dtype_code(dt));
            else
                rg__errf(err, errlen, "%s: tensor '%s': %llu bytes for shape %s of %s (needs %llu)", source, name,
                         (unsigned long long)(en - b), snip, rg_dtype_code(dt), (unsigned long long)(t->numel * want));
            goto fail;
        }
        t->name = rg__strdup(name);
        if (!t->name) { rg__errf(err, errlen, "%s: out of memory", source); goto fail; }
        t->begin = b;
        t->end = en;
        t->data = st->buffer + b;
        spans[nt].begin = b;
        spans[nt].end = en;
        spans[nt].name = t->name;
        nt++;
        st->n_tensors = nt;
    }
    qsort(spans, nt, sizeof *spans, rg__span_cmp);
    pos = 0;
    for (i = 0; i < nt; i++) {
        if (spans[i].begin < pos) {
            rg__errf(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s'", source, spans[i].name,
                     (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end, spans[i - 1].name);
            goto fail;
        }
        if (spans[i].begin > pos) {
            rg__errf(err, errlen, "%s: tensor '%s': gap of %llu unused bytes before data_offsets [%llu, %llu]", source,
                     spans[i].name, (unsigned long long)(spans[i].begin - pos), (unsigned long long)spans[i].begin,
                     (unsigned long long)spans[i].end);
            goto fail;
        }
        pos = spans[i].end;
    }
    if (pos != buffer_len) {
        rg__errf(err, errlen, "%s: %llu trailing bytes after the last tensor (data buffer is %llu bytes, tensors cover %llu)",
                 source, (unsigned long long)(buffer_len - pos), (unsigned long long)buffer_len, (unsigned long long)pos);
        goto fail;
    }
    free(spans);
    rg_json_free(hdr);
    return 0;
badmeta:
    rg__errf(err, errlen, "%s: __metadata__ must be an object mapping strings to strings", source);
fail:
    free(spans);
    rg_json_free(hdr);
    rg_safetensors_free(st);
    return -1;
}

const rg_tensor *rg_safetensors_find(const rg_safetensors *st, const char *name) {
    size_t i;
    for (i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

void rg_tensor_decode(const rg_tensor *t, double *out) {
    uint64_t i;
    size_t w = rg_dtype_itemsize(t->dtype);
    for (i = 0; i < t->numel; i++) out[i] = rg_decode_le(t->data + i * w, t->dtype);   /* memcpy-free, any alignment */
}

/* ------------------------------------------------------------------ files */

static int rg__read_file(const char *path, unsigned char **out, size_t *size, char *err, size_t errlen) {
    FILE *fp;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    errno = 0;
    fp = fopen(path, "rb");
    if (!fp) {
        rg__errf(err, errlen, "%s: cannot open (%s)", path, errno ? strerror(errno) : "unknown error");
        return -1;
    }
    for (;;) {
        size_t got;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 65536;
            unsigned char *nb = (unsigned char *)realloc(buf, ncap);
            if (!nb) { free(buf); fclose(fp); rg__errf(err, errlen, "%s: out of memory", path); return -1; }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    if (ferror(fp)) {
        free(buf);
        fclose(fp);
        rg__errf(err, errlen, "%s: read error", path);
        return -1;
    }
    fclose(fp);
    *out = buf;
    *size = n;
    return 0;
}

static char *rg__join(const char *dir, const char *rel) {
    size_t a = strlen(dir), b = strlen(rel);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = (char *)malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a++] = '/';
    memcpy(p + a, rel, b + 1);
    return p;
}

/* FORMAT.md section 9, lexical rules; NULL if fine. */
static const char *rg__path_problem(const char *rel) {
    const char *c;
    if (!rel[0]) return "is empty";
    if (strchr(rel, '\\')) return "must be a POSIX path (no backslashes or NUL)";
    if (rel[0] == '/' || (rel[0] && rel[1] == ':')) return "is absolute; it must be relative to the corpus directory";
    c = rel;
    for (;;) {
        const char *e = strchr(c, '/');
        size_t k = e ? (size_t)(e - c) : strlen(c);
        if (k == 0 || (k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
            return "must be a normalised relative path (no '..', '.', or empty components)";
        if (!e) break;
        c = e + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ manifest */

static const char *rg__str(const rg_json *o, const char *key) {
    const rg_json *v = rg_json_get(o, key);
    return v && v->type == RG_JSON_STRING ? v->string : NULL;
}

static int rg__is_type(const rg_json *v, const char *want) {
    if (!v) return 0;
    if (strcmp(want, "string") == 0) return v->type == RG_JSON_STRING;
    if (strcmp(want, "object") == 0) return v->type == RG_JSON_OBJECT;
    if (strcmp(want, "array") == 0) return v->type == RG_JSON_ARRAY;
    if (strcmp(want, "integer") == 0) return v->type == RG_JSON_NUMBER && v->is_integer;
    return 0;
}

void rg_manifest_free(rg_manifest *m) {
    size_t i;
    if (!m) return;
    for (i = 0; i < m->n_cases; i++) free(m->cases[i].tensors);
    free(m->cases);
    rg_json_free(m->root);
    free(m->dir);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static int rg__check_tolerance(const rg_json *t, rg_tolerance *out, const char *src, const char *where, const char *name,
                               char *err, size_t errlen) {
    static const char *const keys[5] = {"atol", "rtol", "ulp", "scale", "derivation"};
    int k;
    const rg_json *v;
    if (!t || t->type != RG_JSON_OBJECT) {
        rg__errf(err, errlen, "%s: %s: tolerances['%s'] is %s, expected an object", src, where, name, rg_json_type_name(t));
        return -1;
    }
    for (k = 0; k < 5; k++)
        if (!rg_json_get(t, keys[k])) {
            rg__errf(err, errlen, "%s: %s: tolerances['%s'] lacks '%s'", src, where, name, keys[k]);
            return -1;
        }
    for (k = 0; k < 2; k++) {
        v = rg_json_get(t, keys[k]);
        if (v->type != RG_JSON_NUMBER || !isfinite(v->number) || v->number < 0) {
            rg__errf(err, errlen, "%s: %s: tolerances['%s'].%s must be a finite number >= 0", src, where, name, keys[k]);
            return -1;
        }
    }
    out->atol = rg_json_get(t, "atol")->number;
    out->rtol = rg_json_get(t, "rtol")->number;
    v = rg_json_get(t, "ulp");
    if (v->type == RG_JSON_NULL) {
        out->has_ulp = 0;
        out->ulp = 0;
    } else if (v->type == RG_JSON_NUMBER && v->is_integer && v->int_fits && v->integer >= 0) {
        out->has_ulp = 1;
        out->ulp = v->integer;
    } else {
        rg__errf(err, errlen, "%s: %s: tolerances['%s'].ulp must be null or an integer >= 0", src, where, name);
        return -1;
    }
    v = rg_json_get(t, "scale");
    if (v->type == RG_JSON_STRING && strcmp(v->string, "expected") == 0) out->scale_tensor = 0;
    else if (v->type == RG_JSON_STRING && strcmp(v->string, "tensor") == 0) out->scale_tensor = 1;
    else {
        rg__errf(err, errlen, "%s: %s: tolerances['%s'].scale must be 'expected' or 'tensor'", src, where, name);
        return -1;
    }
    v = rg_json_get(t, "derivation");
    if (v->type != RG_JSON_STRING) {
        rg__errf(err, errlen, "%s: %s: tolerances['%s'].derivation must be a string", src, where, name);
        return -1;
    }
    out->derivation = v->string;
    return 0;
}

static int rg__check_case(const rg_json *cj, size_t idx, rg_case *c, const char *src, char *err, size_t errlen) {
    static const char *const fields[14][2] = {
        {"id", "string"}, {"op", "string"}, {"tier", "string"}, {"dtype", "string"}, {"attrs", "object"},
        {"shapes", "object"}, {"recipe", "object"}, {"seed", "integer"}, {"expect", "object"},
        {"description", "string"}, {"file", "string"}, {"sha256", "string"}, {"tensors", "object"},
        {"tolerances", "object"}};
    char where[300];
    const rg_json *tj, *tols, *ex, *kind;
    const char *problem;
    size_t i, j, n_expected = 0;
    int k;
    if (cj->type != RG_JSON_OBJECT) {
        rg__errf(err, errlen, "%s: cases[%lu] is %s, expected an object", src, (unsigned long)idx, rg_json_type_name(cj));
        return -1;
    }
    if (rg__str(cj, "id")) snprintf(where, sizeof where, "case %.200s", rg__str(cj, "id"));
    else snprintf(where, sizeof where, "cases[%lu]", (unsigned long)idx);
    for (k = 0; k < 14; k++) {
        const rg_json *v = rg_json_get(cj, fields[k][0]);
        if (!v) {
            rg__errf(err, errlen, "%s: %s: missing field '%s'", src, where, fields[k][0]);
            return -1;
        }
        if (!rg__is_type(v, fields[k][1])) {
            rg__errf(err, errlen, "%s: %s: field '%s' is %s, expected %s", src, where, fields[k][0], rg_json_type_name(v),
                     fields[k][1]);
            return -1;
        }
    }
    memset(c, 0, sizeof *c);
    c->json = cj;
    c->id = rg__str(cj, "id");
    c->op = rg__str(cj, "op");
    c->name = rg__str(cj, "name");
    c->tier = rg__str(cj, "tier");
    c->file = rg__str(cj, "file");
    c->sha256 = rg__str(cj, "sha256");
    c->description = rg__str(cj, "description");
    c->attrs = rg_json_get(cj, "attrs");
    c->large = rg_json_get(cj, "large") && rg_json_get(cj, "large")->type == RG_JSON_TRUE;
    if (strncmp(c->id, c->op, strlen(c->op)) != 0 || c->id[strlen(c->op)] != '/') {
        rg__errf(err, errlen, "%s: %s: id does not start with its op '%s' + '/'", src, where, c->op);
        return -1;
    }
    if (strcmp(c->tier, "exact") && strcmp(c->tier, "statistical") && strcmp(c->tier, "adversarial")) {
        rg__errf(err, errlen, "%s: %s: tier '%s' not one of exact, statistical, adversarial", src, where, c->tier);
        return -1;
    }
    if (rg_dtype_from_name(rg__str(cj, "dtype"), &c->dtype)) {
        rg__errf(err, errlen, "%s: %s: dtype '%s' not one of float64, float32, float16, bfloat16", src, where,
                 rg__str(cj, "dtype"));
        return -1;
    }
    ex = rg_json_get(cj, "expect");
    kind = rg_json_get(ex, "kind");
    if (kind && kind->type == RG_JSON_STRING && strcmp(kind->string, "value") == 0) c->expect = RG_EXPECT_VALUE;
    else if (kind && kind->type == RG_JSON_STRING && strcmp(kind->string, "nan") == 0) c->expect = RG_EXPECT_NAN;
    else if (kind && kind->type == RG_JSON_STRING && strcmp(kind->string, "error") == 0) c->expect = RG_EXPECT_ERROR;
    else {
        rg__errf(err, errlen, "%s: %s: expect.kind not one of value, nan, error", src, where);
        return -1;
    }
    c->expect_type = rg__str(ex, "type");
    c->expect_match = rg__str(ex, "match");
    c->expect_where = rg__str(ex, "where");
    problem = rg__path_problem(c->file);
    if (!problem && rg_json_get(cj, "file")->length != strlen(c->file))
        problem = "must be a POSIX path (no backslashes or NUL)";
    if (problem) {
        rg__errf(err, errlen, "%s: %s: file '%s' %s", src, where, c->file, problem);
        return -1;
    }
    if (strlen(c->sha256) != 64 || strspn(c->sha256, "0123456789abcdef") != 64) {
        rg__errf(err, errlen, "%s: %s: sha256 '%.80s' is not 64 lowercase hex digits", src, where, c->sha256);
        return -1;
    }
    tj = rg_json_get(cj, "tensors");
    tols = rg_json_get(cj, "tolerances");
    c->tensors = (rg_case_tensor *)calloc(tj->length + 1, sizeof *c->tensors);
    if (!c->tensors) { rg__errf(err, errlen, "%s: out of memory", src); return -1; }
    c->n_tensors = tj->length;
    for (i = 0; i < tj->length; i++) {
        rg_case_tensor *t = &c->tensors[i];
        const rg_json *e = &tj->items[i], *r;
        t->name = tj->keys[i];
        if (!rg__valid_name(t->name)) {
            rg__errf(err, errlen, "%s: %s: tensors['%.80s']: invalid tensor name", src, where, t->name);
            return -1;
        }
        if (e->type != RG_JSON_OBJECT || !rg_json_get(e, "dtype") || !rg_json_get(e, "shape") || !rg_json_get(e, "role")) {
            rg__errf(err, errlen, "%s: %s: tensors['%s'] must be an object with dtype, shape and role", src, where, t->name);
            return -1;
        }
        if (rg_dtype_from_code(rg__str(e, "dtype"), &t->dtype)) {
            rg__errf(err, errlen, "%s: %s: tensors['%s'].dtype not one of F64, F32, F16, BF16", src, where, t->name);
            return -1;
        }
        if (rg__shape_of(rg_json_get(e, "shape"), t->shape, &t->ndim)) {
            rg__errf(err, errlen, "%s: %s: tensors['%s'].shape is not a list of at most %d non-negative integers", src,
                     where, t->name, RG_MAX_NDIM);
            return -1;
        }
        r = rg_json_get(e, "role");
        if (r->type == RG_JSON_STRING && strcmp(r->string, "input") == 0) t->role = RG_ROLE_INPUT;
        else if (r->type == RG_JSON_STRING && strcmp(r->string, "expected") == 0) t->role = RG_ROLE_EXPECTED;
        else if (r->type == RG_JSON_STRING && strcmp(r->string, "scale") == 0) t->role = RG_ROLE_SCALE;
        else {
            rg__errf(err, errlen, "%s: %s: tensors['%s'].role not one of input, expected, scale", src, where, t->name);
            return -1;
        }
    }
    for (i = 0; i < c->n_tensors; i++) {
        rg_case_tensor *t = &c->tensors[i];
        if (t->role == RG_ROLE_SCALE) {
            size_t L = strlen(t->name);
            int ok = 0;
            if (L > 6 && strcmp(t->name + L - 6, ".scale") == 0)
                for (j = 0; j < c->n_tensors; j++)
                    if (c->tensors[j].role == RG_ROLE_EXPECTED && strlen(c->tensors[j].name) == L - 6 &&
                        strncmp(c->tensors[j].name, t->name, L - 6) == 0)
                        ok = 1;
            if (!ok) {
                rg__errf(err, errlen, "%s: %s: scale tensor '%s' is not '<expected output>.scale'", src, where, t->name);
                return -1;
            }
        }
        if (t->role == RG_ROLE_EXPECTED) {
            const rg_json *tol = rg_json_get(tols, t->name);
            n_expected++;
            if (c->expect == RG_EXPECT_ERROR) {
                rg__errf(err, errlen, "%s: %s: an error case holds expected tensor '%s'", src, where, t->name);
                return -1;
            }
            if (!tol) {
                rg__errf(err, errlen, "%s: %s: no tolerance for expected output '%s'", src, where, t->name);
                return -1;
            }
            if (rg__check_tolerance(tol, &t->tol, src, where, t->name, err, errlen)) return -1;
            t->has_tolerance = 1;
            if (t->tol.scale_tensor) {
                char sname[300];
                const rg_case_tensor *st;
                snprintf(sname, sizeof sname, "%s.scale", t->name);
                st = rg_case_tensor_find(c, sname);
                if (!st || st->role != RG_ROLE_SCALE) {
                    rg__errf(err, errlen, "%s: %s: tolerances['%s'] uses a scale tensor but the file has no '%s'", src,
                             where, t->name, sname);
                    return -1;
                }
            }
        }
    }
    if (tols->length != n_expected) {
        rg__errf(err, errlen, "%s: %s: tolerances given for %lu outputs but there are %lu expected outputs", src, where,
                 (unsigned long)tols->length, (unsigned long)n_expected);
        return -1;
    }
    return 0;
}

int rg_manifest_load(rg_manifest *m, const char *dir, char *err, size_t errlen) {
    unsigned char *bytes = NULL;
    size_t size = 0, bad = 0, i, j;
    char jerr[256];
    const rg_json *v, *cases;
    static const char *const top[6][2] = {{"format", "string"}, {"format_version", "integer"},
                                         {"refnorm_version", "string"}, {"generator", "string"},
                                         {"accuracy", "object"}, {"cases", "array"}};
    int k;
    memset(m, 0, sizeof *m);
    m->dir = rg__strdup(dir);
    m->path = rg__join(dir, "manifest.json");
    if (!m->dir || !m->path) { rg__errf(err, errlen, "%s: out of memory", dir); goto fail; }
    if (rg__read_file(m->path, &bytes, &size, err, errlen)) goto fail;
    if (!rg_utf8_valid(bytes, size, &bad)) {
        rg__errf(err, errlen, "%s: not valid JSON (invalid UTF-8 at byte %lu)", m->path, (unsigned long)bad);
        goto fail;
    }
    m->root = rg_json_parse((const char *)bytes, size, jerr, sizeof jerr);
    free(bytes);
    bytes = NULL;
    if (!m->root) { rg__errf(err, errlen, "%s: not valid JSON (%s)", m->path, jerr); goto fail; }
    if (m->root->type != RG_JSON_OBJECT) {
        rg__errf(err, errlen, "%s: top level is a JSON %s, not an object", m->path, rg_json_type_name(m->root));
        goto fail;
    }
    v = rg_json_get(m->root, "format");
    if (!v || v->type != RG_JSON_STRING || strcmp(v->string, "refnorm-golden") != 0) {
        rg__errf(err, errlen, "%s: format is not 'refnorm-golden'", m->path);
        goto fail;
    }
    v = rg_json_get(m->root, "format_version");
    if (!v) { rg__errf(err, errlen, "%s: missing field 'format_version'", m->path); goto fail; }
    if (v->type != RG_JSON_NUMBER || v->number != 1.0) {
        char snip[80];
        rg__json_snip(v, snip, sizeof snip);
        rg__errf(err, errlen, "%s: unknown format_version %s; this reader reads version 1", m->path, snip);
        goto fail;
    }
    for (k = 0; k < 6; k++) {
        v = rg_json_get(m->root, top[k][0]);
        if (!v) { rg__errf(err, errlen, "%s: missing field '%s'", m->path, top[k][0]); goto fail; }
        if (!rg__is_type(v, top[k][1])) {
            rg__errf(err, errlen, "%s: field '%s' is %s, expected %s", m->path, top[k][0], rg_json_type_name(v), top[k][1]);
            goto fail;
        }
    }
    m->refnorm_version = rg__str(m->root, "refnorm_version");
    cases = rg_json_get(m->root, "cases");
    m->cases = (rg_case *)calloc(cases->length + 1, sizeof *m->cases);
    if (!m->cases) { rg__errf(err, errlen, "%s: out of memory", m->path); goto fail; }
    for (i = 0; i < cases->length; i++) {
        rg_case *c = &m->cases[i];
        int r = rg__check_case(&cases->items[i], i, c, m->path, err, errlen);
        m->n_cases = i + 1;   /* so that rg_manifest_free frees c->tensors */
        if (r) goto fail;
    }
    for (i = 0; i < m->n_cases; i++)   /* quadratic, but a manifest holds a few hundred cases */
        for (j = 0; j < i; j++) {
            if (strcmp(m->cases[i].id, m->cases[j].id) == 0) {
                rg__errf(err, errlen, "%s: duplicate case id '%s'", m->path, m->cases[i].id);
                goto fail;
            }
            if (strcmp(m->cases[i].file, m->cases[j].file) == 0) {
                rg__errf(err, errlen, "%s: cases '%s' and '%s' share the file '%s'", m->path, m->cases[j].id,
                         m->cases[i].id, m->cases[i].file);
                goto fail;
            }
        }
    return 0;
fail:
    free(bytes);
    rg_manifest_free(m);
    return -1;
}

const rg_case_tensor *rg_case_tensor_find(const rg_case *c, const char *name) {
    size_t i;
    for (i = 0; i < c->n_tensors; i++)
        if (strcmp(c->tensors[i].name, name) == 0) return &c->tensors[i];
    return NULL;
}

int rg_attr_number(const rg_case *c, const char *key, double *out) {
    const rg_json *v = rg_json_get(c->attrs, key);
    if (!v) return RG_ATTR_MISSING;
    if (v->type == RG_JSON_NULL) return RG_ATTR_NULL;
    if (v->type != RG_JSON_NUMBER) return RG_ATTR_BADTYPE;
    *out = v->number;
    return RG_ATTR_OK;
}

int rg_attr_int_list(const rg_case *c, const char *key, int64_t *out, int max, int *n) {
    const rg_json *v = rg_json_get(c->attrs, key);
    size_t i;
    if (!v) return RG_ATTR_MISSING;
    if (v->type == RG_JSON_NULL) return RG_ATTR_NULL;
    if (v->type == RG_JSON_NUMBER && v->is_integer && v->int_fits && max >= 1) {
        out[0] = v->integer;
        *n = 1;
        return RG_ATTR_OK;
    }
    if (v->type != RG_JSON_ARRAY || v->length > (size_t)max) return RG_ATTR_BADTYPE;
    for (i = 0; i < v->length; i++) {
        if (v->items[i].type != RG_JSON_NUMBER || !v->items[i].is_integer || !v->items[i].int_fits) return RG_ATTR_BADTYPE;
        out[i] = v->items[i].integer;
    }
    *n = (int)v->length;
    return RG_ATTR_OK;
}

/* ------------------------------------------------------------------ case files */

void rg_case_file_free(rg_case_file *f) {
    if (!f) return;
    rg_safetensors_free(&f->st);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int rg__inside(const char *dir, const char *path, char *err, size_t errlen) {
#ifdef RG__HAVE_REALPATH
    char *rd = realpath(dir, NULL), *rp = realpath(path, NULL);
    int ok;
    size_t L;
    if (!rd || !rp) {
        int e = errno;
        rg__errf(err, errlen, "%s: cannot resolve path (%s)", rp ? dir : path, strerror(e));
        free(rd);
        free(rp);
        return -1;
    }
    L = strlen(rd);
    if (L > 0 && rd[L - 1] == '/') L--;   /* the root directory "/" */
    ok = strncmp(rp, rd, L) == 0 && rp[L] == '/';
    if (!ok)
        rg__errf(err, errlen, "%s: resolves to %s, outside the corpus directory %s (symlink?)", path, rp, rd);
    free(rd);
    free(rp);
    return ok ? 0 : -1;
#else
    (void)dir; (void)path; (void)err; (void)errlen;
    return 0;
#endif
}

int rg_case_load(const rg_manifest *m, const rg_case *c, rg_case_file *f, char *err, size_t errlen) {
    const char *problem = rg__path_problem(c->file);
    char hex[65];
    size_t i;
    memset(f, 0, sizeof *f);
    f->path = rg__join(m->dir, c->file);
    if (!f->path) { rg__errf(err, errlen, "%s: out of memory", c->file); return -1; }
    if (problem) {
        rg__errf(err, errlen, "%s: file '%s' %s", m->path, c->file, problem);
        goto fail;
    }
    if (rg__inside(m->dir, f->path, err, errlen)) goto fail;
    if (rg__read_file(f->path, &f->bytes, &f->size, err, errlen)) goto fail;
    rg_sha256_hex(f->bytes, f->size, hex);
    if (strcmp(hex, c->sha256) != 0) {
        /* refuse; say what else is wrong with the file when the parser can tell */
        char why[400];
        rg_safetensors tmp;
        if (rg_safetensors_parse(&tmp, f->bytes, f->size, "also", why, sizeof why) == 0) {
            rg_safetensors_free(&tmp);
            snprintf(why, sizeof why, "its header still parses: tensor data or header bytes were modified");
        }
        rg__errf(err, errlen, "%s: SHA-256 mismatch: the manifest says %s, the file (%lu bytes) hashes to %s -- "
                 "refusing a corrupt or modified case file (%s)", f->path, c->sha256, (unsigned long)f->size, hex, why);
        goto fail;
    }
    if (rg_safetensors_parse(&f->st, f->bytes, f->size, f->path, err, errlen)) goto fail;
    if (f->st.n_tensors != c->n_tensors) {
        rg__errf(err, errlen, "%s: holds %lu tensors, the manifest lists %lu", f->path, (unsigned long)f->st.n_tensors,
                 (unsigned long)c->n_tensors);
        goto fail;
    }
    for (i = 0; i < c->n_tensors; i++) {
        const rg_case_tensor *ct = &c->tensors[i];
        const rg_tensor *t = rg_safetensors_find(&f->st, ct->name);
        int d, same;
        if (!t) {
            rg__errf(err, errlen, "%s: has no tensor '%s' (the manifest lists it)", f->path, ct->name);
            goto fail;
        }
        same = t->dtype == ct->dtype && t->ndim == ct->ndim;
        for (d = 0; same && d < t->ndim; d++) same = t->shape[d] == ct->shape[d];
        if (!same) {
            char a[200], b[200];
            rg_format_shape(t->shape, t->ndim, a, sizeof a);
            rg_format_shape(ct->shape, ct->ndim, b, sizeof b);
            rg__errf(err, errlen, "%s: tensor '%s' is %s %s, the manifest says %s %s", f->path, ct->name,
                     rg_dtype_code(t->dtype), a, rg_dtype_code(ct->dtype), b);
            goto fail;
        }
    }
    return 0;
fail:
    rg_case_file_free(f);
    return -1;
}

double *rg_case_read(const rg_case_file *f, const char *name, uint64_t *numel) {
    const rg_tensor *t = rg_safetensors_find(&f->st, name);
    double *out;
    if (numel) *numel = 0;
    if (!t || t->numel > (uint64_t)(SIZE_MAX / sizeof(double)) - 1) return NULL;
    out = (double *)malloc((size_t)t->numel * sizeof(double) + sizeof(double));   /* never malloc(0) */
    if (!out) return NULL;
    rg_tensor_decode(t, out);
    if (numel) *numel = t->numel;
    return out;
}

/* ------------------------------------------------------------------ comparison */

void rg_format_shape(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t k = 0;
    int d;
    if (len == 0) return;
    k += (size_t)snprintf(buf, len, "(");
    for (d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, ndim == 1 ? ",)" : ")");
}

void rg_format_index(size_t flat, const int64_t *shape, int ndim, char *buf, size_t len) {
    int64_t idx[RG_MAX_NDIM];
    int d;
    for (d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] > 0 ? (int64_t)(flat % (size_t)shape[d]) : 0;
        flat = shape[d] > 0 ? flat / (size_t)shape[d] : 0;
    }
    rg_format_shape(idx, ndim, buf, len);
}

int rg_compare(const double *e, const int64_t *eshape, int endim, const double *a, const int64_t *ashape, int andim,
               const double *scale, const rg_tolerance *tol, rg_dtype dtype, rg_comparison *out) {
    size_t n = 1, i;
    int d, same = endim == andim;
    memset(out, 0, sizeof *out);
    for (d = 0; same && d < endim; d++) same = eshape[d] == ashape[d];
    if (!same) {
        out->shape_mismatch = 1;
        out->worst_ratio = INFINITY;
        out->worst_ulps = INFINITY;
        return 0;
    }
    for (d = 0; d < endim; d++) n *= (size_t)eshape[d];
    out->n = n;
    if (n == 0) { out->ok = 1; return 0; }            /* empty: nothing to compare */
    if (tol->scale_tensor && !scale) return -1;
    out->worst_ratio = -1;
    for (i = 0; i < n; i++) {
        double ei = e[i], ai = a[i], s, err = 0, allowed, sp, ratio;
        int fe = isfinite(ei), fa = isfinite(ai), both = fe && fa, ok, ftz;
        /* 1. non-finite: equal, NaN matching NaN */
        int nonfin_ok = !fe && !fa && ((isnan(ei) && isnan(ai)) || ei == ai);
        if (both) err = fabs(ai - ei);
        s = tol->scale_tensor ? scale[i] : fabs(ei);
        s = both ? (isfinite(s) ? s : 0.0) : 0.0;
        allowed = tol->atol + tol->rtol * s;           /* 2. atol + rtol * s */
        sp = rg_spacing(fe ? ei : 0.0, dtype);
        if (tol->has_ulp && (double)tol->ulp * sp > allowed) allowed = (double)tol->ulp * sp;   /* 3. ulp */
        if (both) ratio = err == 0 ? 0.0 : (allowed > 0 ? err / allowed : INFINITY);
        else ratio = nonfin_ok ? 0.0 : INFINITY;
        /* 4. flush-to-zero: a == 0 where |e| is below the smallest normal of the dtype (0 x tolerance) */
        ftz = both && ai == 0 && fabs(ei) < ldexp(1.0, rg_dtype_emin(dtype));
        if (ftz) ratio = 0.0;
        ok = nonfin_ok || ftz || (both && err <= allowed);
        if (!ok) out->n_bad++;
        if (ratio > out->worst_ratio) {               /* first maximum, as np.argmax */
            out->worst_ratio = ratio;
            out->worst_index = i;
            out->worst_ulps = both ? err / sp : INFINITY;
            out->worst_expected = ei;
            out->worst_actual = ai;
        }
    }
    out->ok = out->n_bad == 0;
    return 0;
}

void rg_comparison_message(const rg_comparison *r, const int64_t *shape, int ndim, rg_dtype dt, char *buf, size_t len) {
    char idx[200], ev[40], av[40];
    if (r->shape_mismatch) { snprintf(buf, len, "shape mismatch"); return; }
    if (r->n == 0) { snprintf(buf, len, "ok: empty, nothing to compare"); return; }
    rg_format_index(r->worst_index, shape, ndim, idx, sizeof idx);
    if (isnan(r->worst_expected)) snprintf(ev, sizeof ev, "nan"); else snprintf(ev, sizeof ev, "%.17g", r->worst_expected);
    if (isnan(r->worst_actual)) snprintf(av, sizeof av, "nan"); else snprintf(av, sizeof av, "%.17g", r->worst_actual);
    if (r->ok)
        snprintf(buf, len, "ok: worst %.3g x tolerance (%.3g ulp of %s) at %s", r->worst_ratio, r->worst_ulps,
                 rg_dtype_name(dt), idx);
    else
        snprintf(buf, len, "%lu of %lu elements out of tolerance; worst %.3g x tolerance at %s: expected %s, got %s "
                 "(%.3g ulp of %s)", (unsigned long)r->n_bad, (unsigned long)r->n, r->worst_ratio, idx, ev, av,
                 r->worst_ulps, rg_dtype_name(dt));
}

#ifdef __cplusplus
}
#endif

#endif /* REFNORM_GOLDEN_IMPLEMENTED */
#endif /* REFNORM_GOLDEN_IMPLEMENTATION */

/*
 * driver.c -- run the C LayerNorm/RMSNorm kernels (norms.c) on every layer_norm and
 * rms_norm case of a refnorm golden corpus and judge them by the corpus's tolerance rule.
 *
 *     usage: driver [CORPUS_DIR] [-v] [-k SUBSTRING]
 *
 * CORPUS_DIR defaults to ../../spec/golden (relative to the current directory).  -v prints
 * one line per case; -k runs only the cases whose id contains SUBSTRING.
 *
 * Per case: the file is resolved inside the corpus, SHA-256-checked and parsed
 * (refnorm_golden.h); inputs are decoded exactly, converted to the kernel's type (float for
 * float32/float16/bfloat16 cases, double for float64 cases), validated by the kernel
 * library's own argument checks, run forward (y, mean, rstd) and, when the case has a
 * cotangent dy, backward (dx, dweight, dbias).  Outputs are stored in the case dtype (as a
 * half-precision kernel would write them) and every expected tensor is compared under
 * FORMAT.md section 7.  expect.kind == "error" cases pass iff the argument checks refuse them.
 *
 * Exit status: 0 if every case passed, 1 if any case failed or a case file was refused,
 * 2 on a usage error or an unreadable manifest.
 */
#define _XOPEN_SOURCE 700 /* realpath(), for refnorm_golden.h */
#define REFNORM_GOLDEN_IMPLEMENTATION
#include "refnorm_golden.h"
#include "norms.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OPS 2
#define N_DT 4
static const char *const OPS[N_OPS] = {"layer_norm", "rms_norm"};

typedef enum { R_PASS, R_FAIL, R_NA } result_kind;

typedef struct {
    int cases, passed, failed, na;
    double worst;          /* worst |a - e| / tolerance over the compared outputs */
    char worst_at[200];
} cell;

typedef struct {
    char **items;
    size_t n, cap;
} strlist;

static void sl_add(strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = (char **)realloc(l->items, cap * sizeof *p);
        if (!p) { fprintf(stderr, "driver: out of memory\n"); exit(2); }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n] = (char *)malloc(strlen(s) + 1);
    if (!l->items[l->n]) { fprintf(stderr, "driver: out of memory\n"); exit(2); }
    strcpy(l->items[l->n++], s);
}

static void sl_free(strlist *l) {
    size_t i;
    for (i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
}

/* A computed output: values (double, already in the case dtype) and shape. */
typedef struct {
    const char *name;
    double *v;
    int ndim;
    int64_t shape[RG_MAX_NDIM];
} output;

typedef struct {
    char message[1200];      /* why a case failed / is n/a, or the refusal message of an error case */
    double worst;            /* over this case's compared outputs */
    char worst_output[40];
    int compared;            /* number of compared outputs */
} case_report;

static int op_index(const char *op) {
    int i;
    for (i = 0; i < N_OPS; i++)
        if (strcmp(op, OPS[i]) == 0) return i;
    return -1;
}

/* Shape of an input tensor of the case, or ndim = -1 if absent. */
static const rg_case_tensor *input_of(const rg_case *c, const char *name) {
    const rg_case_tensor *t = rg_case_tensor_find(c, name);
    return t && t->role == RG_ROLE_INPUT ? t : NULL;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "driver: out of memory\n"); exit(2); }
    return p;
}

static float *to_float(const double *v, size_t n, int *lossy) {
    float *f = (float *)xmalloc(n * sizeof(float));
    size_t i;
    for (i = 0; i < n; i++) {
        f[i] = (float)v[i];
        if (!(isnan(v[i]) || (double)f[i] == v[i])) *lossy = 1;
    }
    return f;
}

/* float kernel output -> double in the case dtype (float32 is exact; half types rounded) */
static double *from_float(const float *f, size_t n, rg_dtype dt) {
    double *v = (double *)xmalloc(n * sizeof(double));
    size_t i;
    for (i = 0; i < n; i++) v[i] = rg_round_to_dtype((double)f[i], dt);
    return v;
}

static double *copy_d(const double *s, size_t n) {
    double *v = (double *)xmalloc(n * sizeof(double));
    if (n) memcpy(v, s, n * sizeof(double));
    return v;
}

static size_t numel(const int64_t *shape, int ndim) {
    size_t n = 1;
    int d;
    for (d = 0; d < ndim; d++) n *= (size_t)shape[d];
    return n;
}

static void set_shape(output *o, const char *name, const int64_t *shape, int ndim) {
    o->name = name;
    o->ndim = ndim;
    if (ndim > 0) memcpy(o->shape, shape, (size_t)ndim * sizeof(int64_t));
}

/* Run one layer_norm / rms_norm case.  Returns R_PASS / R_FAIL / R_NA and fills rep. */
static result_kind run_case(const rg_manifest *m, const rg_case *c, case_report *rep, int *refused_file) {
    int is_ln = strcmp(c->op, "layer_norm") == 0;
    char err[1024];
    rg_case_file f;
    const rg_case_tensor *tx = input_of(c, "x"), *tw = input_of(c, "weight"), *tb = input_of(c, "bias"),
                         *tdy = input_of(c, "dy");
    int64_t ns[RG_MAX_NDIM], rows = 0, cols = 0;
    int ns_ndim = 0, rc, eps_default = 0, lossy = 0, ok = 1;
    double eps = 0;
    size_t i, nx, nouts = 0;
    double *x = NULL, *w = NULL, *b = NULL, *dy = NULL;
    output outs[6];
    result_kind res = R_PASS;
    rn_status st;

    memset(rep, 0, sizeof *rep);
    memset(outs, 0, sizeof outs);
    *refused_file = 0;

    /* ---- inputs this kernel understands */
    for (i = 0; i < c->n_tensors; i++) {
        const rg_case_tensor *t = &c->tensors[i];
        if (t->role == RG_ROLE_INPUT && strcmp(t->name, "x") && strcmp(t->name, "weight") &&
            (!is_ln || strcmp(t->name, "bias")) && strcmp(t->name, "dy")) {
            snprintf(rep->message, sizeof rep->message, "input '%s' is not an argument of this C kernel", t->name);
            return R_NA;
        }
    }
    if (!tx) {
        snprintf(rep->message, sizeof rep->message, "the case has no input x");
        return R_NA;
    }

    /* ---- attrs */
    rc = rg_attr_int_list(c, "normalized_shape", ns, RG_MAX_NDIM, &ns_ndim);
    if (rc != RG_ATTR_OK) {
        snprintf(rep->message, sizeof rep->message, "attrs.normalized_shape is %s",
                 rc == RG_ATTR_MISSING ? "missing" : "not an int or a list of ints");
        return R_NA;
    }
    rc = rg_attr_number(c, "eps", &eps);
    if (rc == RG_ATTR_MISSING || rc == RG_ATTR_NULL) {
        if (is_ln && rc == RG_ATTR_MISSING) eps = 1e-5;   /* torch.nn.functional.layer_norm's default */
        else if (is_ln) {
            snprintf(rep->message, sizeof rep->message, "attrs.eps is null: LayerNorm has no eps=None in this C API");
            return R_NA;
        } else eps_default = 1;                            /* RMSNorm eps=None */
    } else if (rc != RG_ATTR_OK) {
        snprintf(rep->message, sizeof rep->message, "attrs.eps is not a number");
        return R_NA;
    }
    {   /* zero-centred weights (scale offset + weight): a variant these kernels do not offer */
        double offset = 0;
        rc = rg_attr_number(c, "offset", &offset);
        if (rc != RG_ATTR_MISSING && (rc != RG_ATTR_OK || offset != 0)) {
            snprintf(rep->message, sizeof rep->message, "attrs.offset = %g: zero-centred weights are not offered "
                     "by this C kernel", offset);
            return R_NA;
        }
    }

    /* ---- the kernel library's own argument validation (also for "error" cases) */
    if (is_ln)
        st = rn_layer_norm_check(tx->shape, tx->ndim, ns, ns_ndim, tw ? tw->shape : NULL, tw ? tw->ndim : -1,
                                 tb ? tb->shape : NULL, tb ? tb->ndim : -1, eps, &rows, &cols, err, sizeof err);
    else
        st = rn_rms_norm_check(tx->shape, tx->ndim, ns, ns_ndim, tw ? tw->shape : NULL, tw ? tw->ndim : -1, eps_default,
                               eps, &rows, &cols, err, sizeof err);
    if (st == RN_OK && tdy) st = rn_check_same_shape("dy", tdy->shape, tdy->ndim, tx->shape, tx->ndim, err, sizeof err);

    /* ---- the file: resolved, SHA-256-checked, parsed (also for error cases: refuse bad files) */
    if (rg_case_load(m, c, &f, rep->message, sizeof rep->message)) {
        *refused_file = 1;
        return R_FAIL;
    }

    if (c->expect == RG_EXPECT_ERROR) {
        if (st != RN_OK) {
            snprintf(rep->message, sizeof rep->message, "refused: %s  [refnorm: %s matching '%s']", err,
                     c->expect_type ? c->expect_type : "an error", c->expect_match ? c->expect_match : "");
            res = R_PASS;
        } else {
            snprintf(rep->message, sizeof rep->message, "the C argument checks accepted inputs that refnorm refuses "
                     "(%s matching '%s')", c->expect_type ? c->expect_type : "error", c->expect_match ? c->expect_match : "");
            res = R_FAIL;
        }
        rg_case_file_free(&f);
        return res;
    }
    if (st != RN_OK) {
        snprintf(rep->message, sizeof rep->message, "the C argument checks refused a valid case: %s", err);
        rg_case_file_free(&f);
        return R_FAIL;
    }

    /* ---- decode inputs (exact) */
    nx = numel(tx->shape, tx->ndim);
    x = rg_case_read(&f, "x", NULL);
    w = tw ? rg_case_read(&f, "weight", NULL) : NULL;
    b = tb ? rg_case_read(&f, "bias", NULL) : NULL;
    dy = tdy ? rg_case_read(&f, "dy", NULL) : NULL;
    if (!x || (tw && !w) || (tb && !b) || (tdy && !dy)) { fprintf(stderr, "driver: out of memory\n"); exit(2); }

    /* ---- run: y, mean (LayerNorm), rstd, dx, dweight, dbias */
    {
        int64_t lead[RG_MAX_NDIM];
        int lead_ndim = tx->ndim - ns_ndim;
        size_t nr = (size_t)rows, nc = (size_t)cols;
        memcpy(lead, tx->shape, (size_t)(lead_ndim > 0 ? lead_ndim : 0) * sizeof(int64_t));
        set_shape(&outs[nouts++], "y", tx->shape, tx->ndim);
        if (is_ln) set_shape(&outs[nouts++], "mean", lead, lead_ndim);
        set_shape(&outs[nouts++], "rstd", lead, lead_ndim);
        if (dy) {
            set_shape(&outs[nouts++], "dx", tx->shape, tx->ndim);
            if (w) set_shape(&outs[nouts++], "dweight", tw->shape, tw->ndim);
            if (b) set_shape(&outs[nouts++], "dbias", tb->shape, tb->ndim);
        }
        if (c->dtype == RG_F64) {
            double *y = (double *)xmalloc(nx * sizeof(double)), *mu = (double *)xmalloc(nr * sizeof(double)),
                   *rs = (double *)xmalloc(nr * sizeof(double));
            double *dx = NULL, *dw = NULL, *db = NULL;
            double e = eps_default ? rn_rms_norm_default_eps_f64() : eps;
            st = is_ln ? rn_layer_norm_forward_f64(x, w, b, rows, cols, e, y, mu, rs)
                       : rn_rms_norm_forward_f64(x, w, rows, cols, e, y, rs);
            if (st == RN_OK && dy) {
                dx = (double *)xmalloc(nx * sizeof(double));
                dw = w ? (double *)xmalloc(nc * sizeof(double)) : NULL;
                db = b ? (double *)xmalloc(nc * sizeof(double)) : NULL;
                st = is_ln ? rn_layer_norm_backward_f64(dy, x, mu, rs, w, rows, cols, dx, dw, db)
                           : rn_rms_norm_backward_f64(dy, x, rs, w, rows, cols, dx, dw);
            }
            for (i = 0; i < nouts; i++) {
                const char *n = outs[i].name;
                double *src = !strcmp(n, "y") ? y : !strcmp(n, "mean") ? mu : !strcmp(n, "rstd") ? rs
                            : !strcmp(n, "dx") ? dx : !strcmp(n, "dweight") ? dw : db;
                outs[i].v = copy_d(src, numel(outs[i].shape, outs[i].ndim));
            }
            free(y); free(mu); free(rs); free(dx); free(dw); free(db);
        } else {
            /* float32, float16, bfloat16: decoded to float exactly, computed in float */
            float *xf = to_float(x, nx, &lossy), *wf = w ? to_float(w, nc, &lossy) : NULL,
                  *bf = b ? to_float(b, nc, &lossy) : NULL, *dyf = dy ? to_float(dy, nx, &lossy) : NULL;
            float *y = (float *)xmalloc(nx * sizeof(float)), *mu = (float *)xmalloc(nr * sizeof(float)),
                  *rs = (float *)xmalloc(nr * sizeof(float));
            float *dx = NULL, *dw = NULL, *db = NULL;
            float e = eps_default ? rn_rms_norm_default_eps_f32() : (float)eps;
            if (lossy) {
                snprintf(rep->message, sizeof rep->message, "an input is stored with more precision than float32: "
                         "a float32 kernel cannot take it exactly");
                free(xf); free(wf); free(bf); free(dyf); free(y); free(mu); free(rs);
                res = R_NA;
                goto done;
            }
            st = is_ln ? rn_layer_norm_forward_f32(xf, wf, bf, rows, cols, e, y, mu, rs)
                       : rn_rms_norm_forward_f32(xf, wf, rows, cols, e, y, rs);
            if (st == RN_OK && dyf) {
                dx = (float *)xmalloc(nx * sizeof(float));
                dw = wf ? (float *)xmalloc(nc * sizeof(float)) : NULL;
                db = bf ? (float *)xmalloc(nc * sizeof(float)) : NULL;
                st = is_ln ? rn_layer_norm_backward_f32(dyf, xf, mu, rs, wf, rows, cols, dx, dw, db)
                           : rn_rms_norm_backward_f32(dyf, xf, rs, wf, rows, cols, dx, dw);
            }
            for (i = 0; i < nouts; i++) {
                const char *n = outs[i].name;
                float *src = !strcmp(n, "y") ? y : !strcmp(n, "mean") ? mu : !strcmp(n, "rstd") ? rs
                           : !strcmp(n, "dx") ? dx : !strcmp(n, "dweight") ? dw : db;
                outs[i].v = from_float(src, numel(outs[i].shape, outs[i].ndim), c->dtype);
            }
            free(xf); free(wf); free(bf); free(dyf); free(y); free(mu); free(rs); free(dx); free(dw); free(db);
        }
        if (st != RN_OK) {
            snprintf(rep->message, sizeof rep->message, "the kernel refused its arguments (RN_EINVAL)");
            res = R_FAIL;
            goto done;
        }
    }

    /* ---- compare every expected tensor */
    {
        size_t k = 0;
        rep->worst = 0;
        rep->message[0] = '\0';
        for (i = 0; i < c->n_tensors; i++) {
            const rg_case_tensor *t = &c->tensors[i];
            const output *o = NULL;
            size_t j;
            double *e, *s = NULL;
            rg_comparison cmp;
            char msg[600];
            if (t->role != RG_ROLE_EXPECTED) continue;
            for (j = 0; j < nouts; j++)
                if (strcmp(outs[j].name, t->name) == 0) o = &outs[j];
            if (!o) {
                k += (size_t)snprintf(rep->message + k, k < sizeof rep->message ? sizeof rep->message - k : 0,
                                      "%s%s: not produced by the C kernel", k ? "; " : "", t->name);
                ok = 0;
                continue;
            }
            e = rg_case_read(&f, t->name, NULL);
            if (t->tol.scale_tensor) {
                char sname[80];
                snprintf(sname, sizeof sname, "%s.scale", t->name);
                s = rg_case_read(&f, sname, NULL);
            }
            if (!e || (t->tol.scale_tensor && !s)) { fprintf(stderr, "driver: out of memory\n"); exit(2); }
            if (rg_compare(e, t->shape, t->ndim, o->v, o->shape, o->ndim, s, &t->tol, c->dtype, &cmp)) {
                snprintf(msg, sizeof msg, "%s: scale tensor missing", t->name);
                cmp.ok = 0;
                cmp.worst_ratio = INFINITY;
            } else if (cmp.shape_mismatch) {
                char a[200], bb[200];
                rg_format_shape(t->shape, t->ndim, a, sizeof a);
                rg_format_shape(o->shape, o->ndim, bb, sizeof bb);
                snprintf(msg, sizeof msg, "%s: shape mismatch: expected %s, got %s", t->name, a, bb);
            } else {
                char body[500];
                rg_comparison_message(&cmp, t->shape, t->ndim, c->dtype, body, sizeof body);
                snprintf(msg, sizeof msg, "%s: %s", t->name, body);
            }
            rep->compared++;
            if (cmp.worst_ratio > rep->worst || rep->compared == 1) {
                rep->worst = cmp.worst_ratio;
                snprintf(rep->worst_output, sizeof rep->worst_output, "%s", t->name);
            }
            if (!cmp.ok) {
                ok = 0;
                k += (size_t)snprintf(rep->message + k, k < sizeof rep->message ? sizeof rep->message - k : 0, "%s%s",
                                      k ? "\n      " : "", msg);
            }
            free(e);
            free(s);
        }
        res = ok ? R_PASS : R_FAIL;
        if (ok) snprintf(rep->message, sizeof rep->message, "%d outputs within tolerance (worst %.3g x tolerance, %s)",
                         rep->compared, rep->worst, rep->worst_output);
    }

done:
    for (i = 0; i < nouts; i++) free(outs[i].v);
    free(x); free(w); free(b); free(dy);
    rg_case_file_free(&f);
    return res;
}

int main(int argc, char **argv) {
    const char *dir = "../../spec/golden", *filter = NULL;
    int verbose = 0, a, o, d, any_fail = 0, n_refused = 0, n_error_cases = 0, n_error_refused = 0;
    size_t i, n_run = 0;
    char err[2048];
    rg_manifest m;
    cell cells[N_OPS][N_DT];
    strlist failures = {NULL, 0, 0}, nas = {NULL, 0, 0}, refusals = {NULL, 0, 0};

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-v") == 0) verbose = 1;
        else if (strcmp(argv[a], "-k") == 0 && a + 1 < argc) filter = argv[++a];
        else if (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) {
            printf("usage: %s [CORPUS_DIR] [-v] [-k SUBSTRING]\n", argv[0]);
            return 0;
        } else if (argv[a][0] == '-') {
            fprintf(stderr, "%s: unknown option %s (usage: %s [CORPUS_DIR] [-v] [-k SUBSTRING])\n", argv[0], argv[a], argv[0]);
            return 2;
        } else dir = argv[a];
    }
    memset(cells, 0, sizeof cells);

    if (rg_manifest_load(&m, dir, err, sizeof err)) {
        fprintf(stderr, "driver: refusing the corpus: %s\n", err);
        return 2;
    }
    printf("corpus %s: %lu cases, refnorm %s, format 1\n", dir, (unsigned long)m.n_cases,
           m.refnorm_version ? m.refnorm_version : "?");
    printf("kernels: norms.c float32 (float accumulators) for float32/float16/bfloat16 cases, "
           "float64 (double accumulators) for float64 cases; outputs stored in the case dtype\n\n");

    for (i = 0; i < m.n_cases; i++) {
        const rg_case *c = &m.cases[i];
        int oi = op_index(c->op), refused = 0;
        case_report rep;
        result_kind r;
        cell *ce;
        char line[1600];
        if (oi < 0) continue;
        if (filter && !strstr(c->id, filter)) continue;
        n_run++;
        ce = &cells[oi][(int)c->dtype];
        ce->cases++;
        r = run_case(&m, c, &rep, &refused);
        if (c->expect == RG_EXPECT_ERROR) {
            n_error_cases++;
            if (r == R_PASS) n_error_refused++;
        }
        if (refused) {
            n_refused++;
            snprintf(line, sizeof line, "REFUSED %s: %s", c->id, rep.message);
            sl_add(&refusals, line);
        }
        if (r == R_PASS) ce->passed++;
        else if (r == R_FAIL) {
            ce->failed++;
            any_fail = 1;
            if (!refused) {
                snprintf(line, sizeof line, "FAIL %s [%s]:\n      %s", c->id, c->tier, rep.message);
                sl_add(&failures, line);
            }
        } else {
            ce->na++;
            snprintf(line, sizeof line, "n/a  %s: %s", c->id, rep.message);
            sl_add(&nas, line);
        }
        if (rep.compared && (rep.worst > ce->worst || ce->worst_at[0] == '\0')) {
            ce->worst = rep.worst;
            snprintf(ce->worst_at, sizeof ce->worst_at, "%s %s", c->id + strlen(c->op) + 1, rep.worst_output);
        }
        if (verbose)
            printf("%-4s %-50s %s\n", r == R_PASS ? "ok" : r == R_FAIL ? "FAIL" : "n/a", c->id,
                   refused ? "file refused" : rep.message);
    }
    if (verbose) printf("\n");

    printf("%-11s %-9s %6s %6s %6s %5s  %-14s %s\n", "op", "dtype", "cases", "passed", "failed", "n/a",
           "worst err/tol", "(worst at)");
    for (o = 0; o < N_OPS; o++)
        for (d = 0; d < N_DT; d++) {
            cell *ce = &cells[o][d];
            char worst[32];
            if (!ce->cases) continue;
            if (ce->worst_at[0]) snprintf(worst, sizeof worst, "%.3g", ce->worst);
            else snprintf(worst, sizeof worst, "-");
            printf("%-11s %-9s %6d %6d %6d %5d  %-14s %s\n", OPS[o], rg_dtype_name((rg_dtype)d), ce->cases, ce->passed,
                   ce->failed, ce->na, worst, ce->worst_at);
        }
    {
        int tc = 0, tp = 0, tf = 0, tn = 0;
        for (o = 0; o < N_OPS; o++)
            for (d = 0; d < N_DT; d++) {
                tc += cells[o][d].cases; tp += cells[o][d].passed; tf += cells[o][d].failed; tn += cells[o][d].na;
            }
        printf("%-11s %-9s %6d %6d %6d %5d\n", "total", "", tc, tp, tf, tn);
    }
    printf("\nerror cases (expect.kind = error) refused by the C argument checks: %d of %d\n", n_error_refused,
           n_error_cases);
    printf("worst err/tol: the largest |actual - expected| / (atol + rtol * scale) over every compared element "
           "(<= 1 passes)\n");

    if (nas.n) {
        printf("\nnot applicable (%lu):\n", (unsigned long)nas.n);
        for (i = 0; i < nas.n; i++) printf("  %s\n", nas.items[i]);
    }
    if (refusals.n) {
        printf("\ncase files refused (%d):\n", n_refused);
        for (i = 0; i < refusals.n; i++) printf("  %s\n", refusals.items[i]);
    }
    if (failures.n) {
        printf("\nfailures (%lu):\n", (unsigned long)failures.n);
        for (i = 0; i < failures.n; i++) printf("  %s\n", failures.items[i]);
    }
    if (n_run == 0) {
        printf("\nno layer_norm or rms_norm case%s\n", filter ? " matches the filter" : " in the corpus");
        any_fail = 1;
    }
    printf("\n%s\n", any_fail ? "RESULT: FAIL" : "RESULT: PASS");
    sl_free(&failures);
    sl_free(&nas);
    sl_free(&refusals);
    rg_manifest_free(&m);
    return any_fail ? 1 : 0;
}

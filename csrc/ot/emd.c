/* Exact optimal transport: the entry points (fc_emd, fc_emd2_checked, fc_emd_sparse,
 * fc_emd2_batch) around the network simplex (simplex.h) and the assignment solver
 * (assignment.h).  See emd.h for the method. */
#include "ot/emd_util.h"
#include "ot/emd_core.h"
#include "ot/simplex.h"
#include "ot/assignment.h"

/* The cost from its rows' sums, in row order (both paths of fc_emd_core). */
static double sum_rows(const double *rowsum, ptrdiff_t n)
{
    double total = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) total += rowsum[i];
    return total;
}

int fc_emd_core(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M, ptrdiff_t ldm,
                fc_plan_out *out, double *u, double *v, double *cost, long long max_iter, long long *n_iter)
{
    if (n < 0 || m < 0 || ldm < m || !cost || (n > 0 && (!a || !M)) || (m > 0 && !b)) return FC_BAD_ARGUMENT;
    if (n + m >= INT32_MAX / 2) return FC_BAD_ARGUMENT;
    *cost = 0.0;
    if (n_iter) *n_iter = 0;
    if (out && out->G)
        for (ptrdiff_t i = 0; i < n; i++) memset(out->G + i * out->ldg, 0, sizeof(double) * (size_t)m);
    if (out) out->nnz = 0;

    int32_t *ri = malloc(sizeof(int32_t) * (size_t)(n + m + 1));
    double *ab = malloc(sizeof(double) * (size_t)(n + m + 1));
    if (!ri || !ab) { free(ri); free(ab); return FC_OUT_OF_MEMORY; }
    int32_t *cj = ri + n;
    ptrdiff_t nn = 0, mm = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (!(a[i] >= 0.0) || !isfinite(a[i])) { free(ri); free(ab); return FC_BAD_ARGUMENT; }
        if (a[i] > 0.0) { ri[nn] = (int32_t)i; ab[nn++] = a[i]; }
    }
    for (ptrdiff_t j = 0; j < m; j++) {
        if (!(b[j] >= 0.0) || !isfinite(b[j])) { free(ri); free(ab); return FC_BAD_ARGUMENT; }
        if (b[j] > 0.0) { cj[mm] = (int32_t)j; ab[nn + mm++] = b[j]; }
    }
    /* rescale b to a's mass (the caller checked they agree to its tolerance) */
    {
        double sa = 0.0, sb = 0.0;
        for (ptrdiff_t i = 0; i < nn; i++) sa += ab[i];
        for (ptrdiff_t j = 0; j < mm; j++) sb += ab[nn + j];
        if (sa != sb && sb > 0.0) {
            double r = sa / sb;
            for (ptrdiff_t j = 0; j < mm; j++) ab[nn + j] *= r;
        }
    }
    int status = FC_OK;
    fc_ns s;
    memset(&s, 0, sizeof s);
    double *Cc = NULL, *work = NULL;
    int32_t *iwork = NULL;
    if (nn == 0 || mm == 0) {
        if (nn != mm) status = FC_INFEASIBLE;
        goto duals;
    }
    if (nn == n && mm == m) {
        s.C = M;
        s.ldc = ldm;
    } else {
        Cc = malloc(sizeof(double) * (size_t)(nn * mm));
        if (!Cc) { status = FC_OUT_OF_MEMORY; goto done; }
        for (ptrdiff_t i = 0; i < nn; i++) {
            const double *Mi = M + (ptrdiff_t)ri[i] * ldm;
            for (ptrdiff_t j = 0; j < mm; j++) Cc[i * mm + j] = Mi[cj[j]];
        }
        s.C = Cc;
        s.ldc = mm;
    }
    s.n = nn;
    s.m = mm;
    if (!out && !u && !v && max_iter <= 0 && nn == mm && nn <= LSAP_MAX) {
        int uniform = 1;
        for (ptrdiff_t t = 1; t < nn + mm; t++) uniform &= ab[t] == ab[0];
        if (uniform) {
            iwork = malloc(sizeof(int32_t) * 4 * (size_t)nn);
            work = malloc(sizeof(double) * 6 * (size_t)nn);
            if (!iwork || !work) { status = FC_OUT_OF_MEMORY; goto done; }
            status = lsap_solve(nn, s.C, s.ldc, iwork + 3 * nn, work, iwork);
            if (status == FC_NON_FINITE) goto done;
            if (status == FC_OK) {
                /* the same sum, in the same order, as the simplex path below: the rounded
                 * products first (stored, so that no compiler fuses them into the sum with an
                 * FMA, which the simplex path's row sums cannot get), then sum_rows */
                for (ptrdiff_t i = 0; i < nn; i++) work[i] = ab[0] * s.C[i * s.ldc + iwork[3 * nn + i]];
                *cost = sum_rows(work, nn);
                goto done;
            }
            free(iwork); free(work);  /* overflowing reduced costs (|C| near DBL_MAX): simplex */
            iwork = NULL; work = NULL;
            status = FC_OK;
        }
    }
    {
        size_t N1 = (size_t)(nn + mm + 1);
        iwork = malloc(sizeof(int32_t) * 12 * N1);
        work = malloc(sizeof(double) * (2 * N1 + (size_t)nn));
        if (!iwork || !work) { status = FC_OUT_OF_MEMORY; goto done; }
        s.parent = iwork; s.first_child = iwork + N1; s.next_sib = iwork + 2 * N1;
        s.succ = iwork + 3 * N1; s.thread = iwork + 4 * N1; s.rev = iwork + 5 * N1;
        s.last = iwork + 6 * N1; s.pbuf = iwork + 8 * N1;
        s.flow = work; s.pi = work + N1;
    }
    status = ns_solve(&s, ab, ab + nn, max_iter);
    if (status != FC_OK && status != FC_MAX_ITER_REACHED) goto done;
    if (n_iter) *n_iter = s.iters;
    {
        /* sum_i (sum over row i's arcs): row by row, so that a problem with one arc per
         * row (an assignment) sums in the same order as lsap_solve's */
        double *rowsum = work + 2 * (nn + mm + 1);
        int32_t R = NS_ROOT(&s), n32 = (int32_t)nn;
        for (ptrdiff_t i = 0; i < nn; i++) rowsum[i] = 0.0;
        for (int32_t x = 0; x < R; x++) {
            int32_t p = s.parent[x];
            if (p == R || !(s.flow[x] > 0.0)) continue;
            int32_t i = x < n32 ? x : p, j = (x < n32 ? p : x) - n32;
            double f = s.flow[x];
            rowsum[i] += f * s.C[(ptrdiff_t)i * s.ldc + j];
            if (out) {
                if (out->G) out->G[(ptrdiff_t)ri[i] * out->ldg + cj[j]] = f;
                if (out->rows) {
                    out->rows[out->nnz] = ri[i];
                    out->cols[out->nnz] = cj[j];
                    out->vals[out->nnz] = f;
                }
                out->nnz++;
            }
        }
        *cost = sum_rows(rowsum, nn);
    }
duals:
    if (u || v) {
        /* active duals from the potentials; removed rows/columns get the tightest
         * dual-feasible value (columns first, against active rows; then rows). */
        double *uu = malloc(sizeof(double) * (size_t)(n + 1));
        double *vv = malloc(sizeof(double) * (size_t)(m + 1));
        unsigned char *ua = calloc((size_t)(n + m + 1), 1);
        if (!uu || !vv || !ua) { free(uu); free(vv); free(ua); if (status == FC_OK) status = FC_OUT_OF_MEMORY; goto done; }
        unsigned char *va = ua + n;
        if (nn > 0 && mm > 0) {
            for (ptrdiff_t i = 0; i < nn; i++) { uu[ri[i]] = -s.pi[i]; ua[ri[i]] = 1; }
            for (ptrdiff_t j = 0; j < mm; j++) { vv[cj[j]] = s.pi[nn + j]; va[cj[j]] = 1; }
        }
        for (ptrdiff_t j = 0; j < m; j++) {
            if (va[j]) continue;
            double best = INFINITY;
            for (ptrdiff_t i = 0; i < n; i++)
                if (ua[i]) { double t = M[i * ldm + j] - uu[i]; best = t < best ? t : best; }
            vv[j] = isfinite(best) ? best : 0.0;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            if (ua[i]) continue;
            double best = INFINITY;
            for (ptrdiff_t j = 0; j < m; j++) { double t = M[i * ldm + j] - vv[j]; best = t < best ? t : best; }
            uu[i] = isfinite(best) ? best : 0.0;
        }
        if (u) memcpy(u, uu, sizeof(double) * (size_t)n);
        if (v) memcpy(v, vv, sizeof(double) * (size_t)m);
        free(uu); free(vv); free(ua);
    }
done:
    free(s.W); free(Cc); free(work); free(iwork); free(ri); free(ab);
    return status;
}

int fc_emd(const fc_emd_problem *p, fc_emd_out *out)
{
    if (!p || !out) return FC_BAD_ARGUMENT;
    fc_plan_out plan = {NULL, NULL, NULL, 0, out->G, p->m};
    fc_interrupt_begin();
    return fc_emd_core(p->n, p->m, p->a, p->b, p->M, p->ldm, out->G ? &plan : NULL, out->u, out->v, &out->cost,
                       p->max_iter, &out->n_iter);
}

/* checks of the Python layer, uniform weights for NULL a / b, then the solve */
static int emd_checked(const fc_emd_problem *p, double mass_rtol, double *cost, long long *n_iter)
{
    const ptrdiff_t n = p->n, m = p->m;
    const double *a = p->a, *b = p->b, *M = p->M;
    if (n < 1 || m < 1 || !M || !cost) return FC_BAD_ARGUMENT;
    double *ua = NULL, *ub = NULL;
    if (!a || !b) {
        ua = malloc(sizeof(double) * (size_t)(n + m));
        if (!ua) return FC_OUT_OF_MEMORY;
        ub = ua + n;
        for (ptrdiff_t i = 0; i < n; i++) ua[i] = 1.0 / (double)n;
        for (ptrdiff_t j = 0; j < m; j++) ub[j] = 1.0 / (double)m;
        if (!a) a = ua;
        if (!b) b = ub;
    }
    double sa = 0.0, sb = 0.0;
    int ok = 1;
    for (ptrdiff_t i = 0; i < n; i++) { ok &= a[i] >= 0.0 && a[i] <= DBL_MAX; sa += a[i]; }
    for (ptrdiff_t j = 0; j < m; j++) { ok &= b[j] >= 0.0 && b[j] <= DBL_MAX; sb += b[j]; }
    int status;
    if (!ok || !(sa > 0.0) || !(sb > 0.0) || fabs(sa - sb) > mass_rtol * (sa > sb ? sa : sb))
        status = FC_BAD_ARGUMENT;
    else
        status = fc_emd_core(n, m, a, b, M, p->ldm, NULL, NULL, NULL, cost, p->max_iter, n_iter);
    free(ua);
    return status;
}

int fc_emd2_checked(const fc_emd_problem *p, double mass_rtol, fc_emd_out *out)
{
    if (!p || !out) return FC_BAD_ARGUMENT;
    fc_interrupt_begin();
    return emd_checked(p, mass_rtol, &out->cost, &out->n_iter);
}

int fc_emd_sparse(const fc_emd_problem *p, fc_emd_out *out)
{
    if (!p || !out) return FC_BAD_ARGUMENT;
    if (!out->rows || !out->cols || !out->vals) return FC_BAD_ARGUMENT;
    fc_plan_out plan = {out->rows, out->cols, out->vals, 0, NULL, 0};
    fc_interrupt_begin();
    int st = fc_emd_core(p->n, p->m, p->a, p->b, p->M, p->ldm, &plan, out->u, out->v, &out->cost, p->max_iter,
                         &out->n_iter);
    out->nnz = plan.nnz;
    return st;
}

typedef struct {
    const fc_emd_problem *problems;
    double mass_rtol, *costs;
    int *status;
    long long *iters;
    ptrdiff_t n_problems, next;
} fc_emd_batch_job;

/* One rank of fc_emd2_batch: problems claimed one at a time (their sizes differ). */
static void emd_batch_team(void *arg)
{
    fc_emd_batch_job *j = arg;
    for (ptrdiff_t k; (k = fc_claim(&j->next)) < j->n_problems;) {
        if (fc_interrupted()) { j->status[k] = FC_INTERRUPTED; continue; } /* Ctrl-C: mark the rest */
        long long it = 0;
        j->status[k] = emd_checked(&j->problems[k], j->mass_rtol, &j->costs[k], &it);
        if (j->iters) j->iters[k] = it;
    }
}

int fc_emd2_batch(const fc_emd_batch *p, double *costs, int *status, long long *iters)
{
    if (!p) return FC_BAD_ARGUMENT;
    const ptrdiff_t n_problems = p->n_problems;
    const int n_threads = p->n_threads;
    if (n_problems < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (n_problems == 0) return FC_OK;
    if (!p->problems || !costs || !status) return FC_BAD_ARGUMENT;
    fc_emd_batch_job job = {.problems = p->problems, .mass_rtol = p->mass_rtol, .costs = costs,
                            .status = status, .iters = iters, .n_problems = n_problems, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_clamp_threads(n_threads, n_problems), emd_batch_team, &job);
    return fc_interrupt_pending() ? FC_INTERRUPTED : FC_OK;
}

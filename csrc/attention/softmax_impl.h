/* Softmax / log-sum-exp implementation, instantiated once per precision by
 * softmax_f32.c / softmax_f64.c (see fc_real.h).  No include guard on purpose.
 *
 * Reductions are written over FC_LANES independent partial results so that the
 * compiler vectorises them without reassociating floating-point sums.
 */
#ifndef FC_LANES
#define FC_LANES 16
#endif
#ifndef FC_COL_BLOCK
#define FC_COL_BLOCK 256 /* columns of the (n, inner) slab handled together */
#endif

/* The mask value at slice element i of a row, 1 when there is no mask. */
#define FC_KEEP(mk, ms, i) ((mk) == NULL || (mk)[(ptrdiff_t)(i) * (ms)] != 0)

/* Largest unmasked value of a contiguous row (-inf when none; NaN is ignored). */
FC_INLINE fc_real fc_row_max(const fc_real *x, ptrdiff_t n, const uint8_t *mk,
                                          ptrdiff_t ms)
{
    fc_real lane[FC_LANES];
    for (int j = 0; j < FC_LANES; ++j) lane[j] = -FC_INF;
    ptrdiff_t nb = n - n % FC_LANES, i = 0;
    if (mk == NULL) {
        for (; i < nb; i += FC_LANES)
            for (int j = 0; j < FC_LANES; ++j) {
                fc_real v = x[i + j];
                lane[j] = v > lane[j] ? v : lane[j];
            }
    } else if (ms == 1) {
        for (; i < nb; i += FC_LANES)
            for (int j = 0; j < FC_LANES; ++j) {
                fc_real v = mk[i + j] ? x[i + j] : -FC_INF;
                lane[j] = v > lane[j] ? v : lane[j];
            }
    }
    fc_real m = -FC_INF;
    for (; i < n; ++i)
        if (FC_KEEP(mk, ms, i) && x[i] > m) m = x[i];
    for (int j = 0; j < FC_LANES; ++j) m = lane[j] > m ? lane[j] : m;
    return m;
}

/* e_i = exp(x_i - m) at unmasked i, 0 at masked i (a plain map: vectorises). */
FC_INLINE void fc_exp_shift(const fc_real *x, fc_real *e, ptrdiff_t n,
                                     const uint8_t *mk, ptrdiff_t ms, fc_real m)
{
    if (mk == NULL) {
        for (ptrdiff_t i = 0; i < n; ++i) e[i] = FC_EXP(x[i] - m);
    } else if (ms == 1) {
        for (ptrdiff_t i = 0; i < n; ++i) {
            fc_real t = FC_EXP(x[i] - m);
            e[i] = mk[i] ? t : (fc_real)0;
        }
    } else {
        for (ptrdiff_t i = 0; i < n; ++i) e[i] = mk[i * ms] ? FC_EXP(x[i] - m) : (fc_real)0;
    }
}

/* Σ e_i in double, over FC_LANES partial sums. */
FC_INLINE double fc_sum_lanes(const fc_real *e, ptrdiff_t n)
{
    double lane[FC_LANES];
    for (int j = 0; j < FC_LANES; ++j) lane[j] = 0.0;
    ptrdiff_t nb = n - n % FC_LANES;
    for (ptrdiff_t i = 0; i < nb; i += FC_LANES)
        for (int j = 0; j < FC_LANES; ++j) lane[j] += (double)e[i + j];
    double s = 0.0;
    for (ptrdiff_t i = nb; i < n; ++i) s += (double)e[i];
    for (int j = 0; j < FC_LANES; ++j) s += lane[j];
    return s;
}

/* Σ exp(x_i - m) over unmasked i, in double; the terms go to out when out != NULL,
 * else through a small stack buffer.  m must be finite. */
FC_INLINE double fc_row_expsum(const fc_real *x, fc_real *out, ptrdiff_t n,
                                        const uint8_t *mk, ptrdiff_t ms, fc_real m)
{
    if (out != NULL) {
        fc_exp_shift(x, out, n, mk, ms, m);
        return fc_sum_lanes(out, n);
    }
    fc_real buf[512];
    double s = 0.0;
    for (ptrdiff_t c = 0; c < n; c += 512) {
        ptrdiff_t len = n - c < 512 ? n - c : 512;
        fc_exp_shift(x + c, buf, len, mk ? mk + c * ms : NULL, ms, m);
        s += fc_sum_lanes(buf, len);
    }
    return s;
}

/* Slow path for a row whose maximum is not finite, or whose sum is NaN.
 * Writes the softmax to out (if not NULL) and returns the log-sum-exp. */
static fc_real fc_row_special(const fc_real *x, fc_real *out, ptrdiff_t n,
                                       const uint8_t *mk, ptrdiff_t ms, fc_real m)
{
    int has_nan = 0;
    ptrdiff_t n_posinf = 0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        if (!FC_KEEP(mk, ms, i)) continue;
        has_nan |= x[i] != x[i];
        n_posinf += x[i] == FC_INF;
    }
    if (has_nan) {
        if (out != NULL)
            for (ptrdiff_t i = 0; i < n; ++i) out[i] = FC_KEEP(mk, ms, i) ? (fc_real)NAN : (fc_real)0;
        return (fc_real)NAN;
    }
    if (n_posinf > 0) {
        if (out != NULL) {
            fc_real share = (fc_real)(1.0 / (double)n_posinf);
            for (ptrdiff_t i = 0; i < n; ++i)
                out[i] = (FC_KEEP(mk, ms, i) && x[i] == FC_INF) ? share : (fc_real)0;
        }
        return FC_INF;
    }
    (void)m; /* no mass at all */
    if (out != NULL)
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = (fc_real)0;
    return -FC_INF;
}

/* Rows [r0, r1) of the inner == 1 layout.  out_sm: softmax rows or NULL;
 * out_lse: one value per row or NULL. */
static FC_MULTIVERSION void fc_rows(const fc_real *x, fc_real *out_sm, fc_real *out_lse,
                                             ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t n,
                                             const uint8_t *mask, const ptrdiff_t *moff,
                                             ptrdiff_t ms)
{
    for (ptrdiff_t r = r0; r < r1; ++r) {
        const fc_real *xr = x + r * n;
        fc_real *orow = out_sm ? out_sm + r * n : NULL;
        const uint8_t *mk = mask ? mask + moff[r] : NULL;
        if (mk != NULL && ms == 0 && n > 0 && mk[0] != 0) mk = NULL; /* whole row kept */
        fc_real m = fc_row_max(xr, n, mk, ms);
        fc_real lse;
        if (m == -FC_INF || m == FC_INF) {
            lse = fc_row_special(xr, orow, n, mk, ms, m);
        } else {
            double s = fc_row_expsum(xr, orow, n, mk, ms, m);
            if (s != s) {
                lse = fc_row_special(xr, orow, n, mk, ms, m);
            } else {
                lse = (fc_real)((double)m + log(s));
                if (orow != NULL) {
                    fc_real inv = (fc_real)(1.0 / s);
                    for (ptrdiff_t i = 0; i < n; ++i) orow[i] *= inv;
                }
            }
        }
        if (out_lse != NULL) out_lse[r] = lse;
    }
}

/* One (outer o, column block [c0, c1)) tile of the inner > 1 layout: the reduction
 * runs down the columns, the vector lanes across them. */
static FC_MULTIVERSION void fc_cols(const fc_real *x, fc_real *out_sm, fc_real *out_lse,
                                             ptrdiff_t o, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t n,
                                             ptrdiff_t inner, const uint8_t *mask,
                                             const ptrdiff_t *moff, ptrdiff_t msn, ptrdiff_t msi)
{
    fc_real m[FC_COL_BLOCK], shift[FC_COL_BLOCK];
    double s[FC_COL_BLOCK];
    ptrdiff_t w = c1 - c0;
    const fc_real *xs = x + o * n * inner + c0;
    fc_real *os = out_sm ? out_sm + o * n * inner + c0 : NULL;
    const uint8_t *ms = mask ? mask + moff[o] + c0 * msi : NULL;

    for (ptrdiff_t j = 0; j < w; ++j) m[j] = -FC_INF;
    for (ptrdiff_t i = 0; i < n; ++i) {
        const fc_real *xi = xs + i * inner;
        if (ms == NULL) {
            for (ptrdiff_t j = 0; j < w; ++j) m[j] = xi[j] > m[j] ? xi[j] : m[j];
        } else {
            const uint8_t *mi = ms + i * msn;
            for (ptrdiff_t j = 0; j < w; ++j) {
                fc_real v = mi[j * msi] ? xi[j] : -FC_INF;
                m[j] = v > m[j] ? v : m[j];
            }
        }
    }
    /* Columns whose maximum is not finite (all kept entries -inf, or some +inf) are finished
     * first, reading x: with out == x the passes below overwrite it.  They skip such columns. */
    unsigned char special[FC_COL_BLOCK];
    fc_real lse_sp[FC_COL_BLOCK];
    int any_special = 0;
    for (ptrdiff_t j = 0; j < w; ++j) {
        special[j] = m[j] == FC_INF || m[j] == -FC_INF;
        any_special |= special[j];
        s[j] = 0.0;
        shift[j] = special[j] ? (fc_real)0 : m[j];
    }
    for (ptrdiff_t j = 0; any_special && j < w; ++j) {
        if (!special[j]) continue;
        int has_nan = 0;
        ptrdiff_t n_posinf = 0;
        for (ptrdiff_t i = 0; i < n; ++i) {
            int keep = ms == NULL || ms[i * msn + j * msi] != 0;
            fc_real v = xs[i * inner + j];
            if (!keep) continue;
            has_nan |= v != v;
            n_posinf += v == FC_INF;
        }
        lse_sp[j] = has_nan ? (fc_real)NAN : (n_posinf > 0 ? FC_INF : -FC_INF);
        if (os != NULL) {
            fc_real share = n_posinf > 0 ? (fc_real)(1.0 / (double)n_posinf) : (fc_real)0;
            for (ptrdiff_t i = 0; i < n; ++i) {
                int keep = ms == NULL || ms[i * msn + j * msi] != 0;
                fc_real v = xs[i * inner + j];
                fc_real r = (fc_real)0;
                if (keep && has_nan) r = (fc_real)NAN;
                else if (keep && v == FC_INF) r = share;
                os[i * inner + j] = r;
            }
        }
    }
    /* the passes, over runs [ja, jb) of ordinary columns (one run, all of them, but for
     * special ones) */
    for (ptrdiff_t ja = 0, jb; ja < w; ja = jb) {
        if (special[ja]) { jb = ja + 1; continue; }
        for (jb = ja + 1; jb < w && !special[jb]; ++jb) {}
        for (ptrdiff_t i = 0; i < n; ++i) {
            const fc_real *xi = xs + i * inner;
            fc_real *oi = os ? os + i * inner : NULL;
            const uint8_t *mi = ms ? ms + i * msn : NULL;
            for (ptrdiff_t j = ja; j < jb; ++j) {
                fc_real e = FC_EXP(xi[j] - shift[j]);
                if (mi != NULL) e = mi[j * msi] ? e : (fc_real)0;
                if (oi != NULL) oi[j] = e;
                s[j] += (double)e;
            }
        }
        if (os != NULL) {
            fc_real inv[FC_COL_BLOCK];
            for (ptrdiff_t j = ja; j < jb; ++j) inv[j] = (fc_real)(1.0 / s[j]);
            for (ptrdiff_t i = 0; i < n; ++i) {
                fc_real *oi = os + i * inner;
                for (ptrdiff_t j = ja; j < jb; ++j) oi[j] *= inv[j];
            }
        }
    }
    for (ptrdiff_t j = 0; j < w; ++j) {
        fc_real lse;
        if (special[j]) {
            lse = lse_sp[j];
        } else if (s[j] != s[j]) {
            /* a NaN among kept entries of a column with a finite maximum: NaN at every kept
             * entry (the others are 0), decided from the mask alone (x may be overwritten) */
            lse = (fc_real)NAN;
            if (os != NULL)
                for (ptrdiff_t i = 0; i < n; ++i) {
                    int keep = ms == NULL || ms[i * msn + j * msi] != 0;
                    os[i * inner + j] = keep ? (fc_real)NAN : (fc_real)0;
                }
        } else {
            lse = (fc_real)((double)m[j] + log(s[j]));
        }
        if (out_lse != NULL) out_lse[o * inner + c0 + j] = lse;
    }
}

/* The arguments of fc_rows / fc_cols, for fc_parallel_range. */
typedef struct {
    const fc_real *x;
    fc_real *out_sm, *out_lse;
    const uint8_t *mask;
    const ptrdiff_t *moff;
    ptrdiff_t n, inner, nblk, msn, msi;
} fc_softmax_job;

static void fc_rows_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_softmax_job *j = arg;
    fc_rows(j->x, j->out_sm, j->out_lse, lo, hi, j->n, j->mask, j->moff, j->msn);
}

/* column blocks t in [lo, hi): block t % nblk of outer index t / nblk */
static void fc_cols_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_softmax_job *j = arg;
    for (ptrdiff_t t = lo; t < hi; ++t) {
        ptrdiff_t o = t / j->nblk, b = t % j->nblk;
        ptrdiff_t c0 = b * FC_COL_BLOCK;
        ptrdiff_t c1 = c0 + FC_COL_BLOCK < j->inner ? c0 + FC_COL_BLOCK : j->inner;
        fc_cols(j->x, j->out_sm, j->out_lse, o, c0, c1, j->n, j->inner, j->mask, j->moff, j->msn,
                         j->msi);
    }
}

/* fc_softmax (out_sm) or fc_logsumexp (out_lse) of the problem p. */
static int fc_softmax_driver(const fc_softmax_problem *p, fc_real *out_sm, fc_real *out_lse)
{
    const fc_real *x = p->x;
    const ptrdiff_t outer = p->outer, n = p->n, inner = p->inner;
    const uint8_t *mask = p->mask;
    const ptrdiff_t *moff = p->mask_offsets;
    const ptrdiff_t msn = p->mask_stride_n, msi = p->mask_stride_inner;
    const int n_threads = p->n_threads;
    if (outer < 0 || n < 0 || inner < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (outer == 0 || inner == 0) return FC_OK;
    if (x == NULL && n > 0) return FC_BAD_ARGUMENT;
    if (out_sm == NULL && out_lse == NULL) return FC_BAD_ARGUMENT;
    if (mask != NULL && moff == NULL) return FC_BAD_ARGUMENT;
    if (out_sm != NULL && n == 0) return FC_OK; /* nothing to write */

    fc_softmax_job job = {.x = x, .out_sm = out_sm, .out_lse = out_lse, .mask = mask, .moff = moff,
                                   .n = n, .inner = inner, .nblk = (inner + FC_COL_BLOCK - 1) / FC_COL_BLOCK,
                                   .msn = msn, .msi = msi};
    if (inner == 1)
        fc_parallel_range(fc_clamp_threads(n_threads, outer * n / 4096 + 1), outer, fc_rows_range, &job);
    else
        fc_parallel_range(fc_clamp_threads(n_threads, outer * n * inner / 4096 + 1), outer * job.nblk,
                          fc_cols_range, &job);
    return FC_OK;
}

int FC_NAME(fc_softmax)(const fc_softmax_problem *p, void *out_)
{
    fc_real *out = out_;
    if (out == NULL && p->outer > 0 && p->n > 0 && p->inner > 0) return FC_BAD_ARGUMENT;
    if (out == NULL) return FC_OK;
    return fc_softmax_driver(p, out, NULL);
}

int FC_NAME(fc_logsumexp)(const fc_softmax_problem *p, void *out_)
{
    fc_real *out = out_;
    if (out == NULL && p->outer > 0 && p->inner > 0) return FC_BAD_ARGUMENT;
    if (out == NULL) return FC_OK;
    return fc_softmax_driver(p, NULL, out);
}

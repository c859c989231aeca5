/* CRF: fc_crf_check, the one-pass validity check of inputs already in kernel layout.
 * Instantiated once per precision (crf_forward_f32.c / _f64.c): no include guard on purpose. */

/* Branch-free passes the compiler vectorises: x * 0 is NaN exactly when x is NaN or +-inf. */
static FC_MULTIVERSION int fc_crf_check_impl(const fc_real *em, const fc_real *trans, const fc_real *start,
                                                 const fc_real *end, const uint8_t *mask, const int64_t *tags,
                                                 ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K)
{
    int bad = 0;
    const ptrdiff_t n = B * Tn * K;
    if (em != NULL && n > 0) {
        const ptrdiff_t blk = 4096;
        for (ptrdiff_t i0 = 0; i0 < n && !bad; i0 += blk) {
            const ptrdiff_t i1 = i0 + blk < n ? i0 + blk : n;
            fc_real acc[32] = {0}; /* 32 lanes: several independent vector chains */
            ptrdiff_t i = i0;
            for (; i + 32 <= i1; i += 32)
                for (int l = 0; l < 32; ++l) acc[l] += em[i + l] * (fc_real)0;
            for (; i < i1; ++i) acc[0] += em[i] * (fc_real)0;
            fc_real s = 0;
            for (int l = 0; l < 32; ++l) s += acc[l];
            if (s != s) bad |= 1;
        }
    }
    const fc_real *vs[3] = {trans, start, end};
    const ptrdiff_t ns[3] = {K * K, K, K};
    for (int v = 0; v < 3; ++v) {
        if (vs[v] == NULL) continue;
        int b = 0;
        for (ptrdiff_t i = 0; i < ns[v]; ++i) b |= (vs[v][i] != vs[v][i]) | (vs[v][i] > FC_MAXVAL);
        if (b) bad |= 2;
    }
    if (tags != NULL && B * Tn > 0) {
        /* every tag first (one vectorised pass); the mask only when some tag is out of range */
        uint64_t b = 0;
        const ptrdiff_t m = B * Tn;
        for (ptrdiff_t i = 0; i < m; ++i) b |= (uint64_t)tags[i] >= (uint64_t)K;
        if (b && mask != NULL) {
            b = 0;
            for (ptrdiff_t i = 0; i < m; ++i) b |= ((uint64_t)tags[i] >= (uint64_t)K) & (mask[i] != 0);
        }
        if (b) bad |= 4;
    }
    return bad;
}

/* The shared state of fc_crf_check's team (fc_team). */
typedef struct {
    const fc_real *em, *trans, *start, *end;
    const uint8_t *mask;
    const int64_t *tags;
    ptrdiff_t B, Tn, K;
    int bad[FC_CRF_CHECK_RANKS]; /* each rank's findings, or-ed by the caller */
} fc_crf_check_job;

/* One rank of fc_crf_check: its share of the sequences (rank 0 also checks the tables). */
static void fc_crf_check_team(void *arg)
{
    fc_crf_check_job *job = arg;
    const int id = fc_thread_id();
    const ptrdiff_t Tn = job->Tn, K = job->K;
    ptrdiff_t lo, hi;
    fc_split(job->B, fc_thread_count(), id, &lo, &hi);
    job->bad[id] = fc_crf_check_impl(job->em + lo * Tn * K, id == 0 ? job->trans : NULL,
                                              id == 0 ? job->start : NULL, id == 0 ? job->end : NULL,
                                              job->mask ? job->mask + lo * Tn : NULL,
                                              job->tags ? job->tags + lo * Tn : NULL, hi - lo, Tn, K);
}

int FC_NAME(fc_crf_check)(const fc_crf_problem *p)
{
    const fc_real *em = p->em, *trans = p->trans, *start = p->start, *end = p->end;
    const uint8_t *mask = p->mask;
    const int64_t *tags = p->tags;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    if (B < 0 || Tn < 0 || K < 0 || n_threads < 1) return -1;
    /* it runs before every fast-path kernel call: a serial pass over the emissions would cap
     * their thread speed-up */
    const ptrdiff_t per = (ptrdiff_t)1 << 16;
    int nt = fc_clamp_threads(fc_clamp_threads(fc_clamp_threads(n_threads, B * Tn * K / per), B),
                              FC_CRF_CHECK_RANKS);
    if (nt <= 1) return fc_crf_check_impl(em, trans, start, end, mask, tags, B, Tn, K);
    fc_crf_check_job job = {.em = em, .trans = trans, .start = start, .end = end, .mask = mask,
                                     .tags = tags, .B = B, .Tn = Tn, .K = K};
    fc_team(nt, fc_crf_check_team, &job);
    int bad = 0;
    for (int i = 0; i < nt; ++i) bad |= job.bad[i];
    return bad;
}

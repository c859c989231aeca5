/* Square problems with uniform masses: the assignment solver (lsap_solve, shortest augmenting
 * paths with potentials).  Included once, by emd.c. */

#ifndef LSAP_MAX
#define LSAP_MAX 256 /* largest n solved as an assignment problem: measured 1.5-6x faster than the
                       * simplex up to 256 on uniform, shifted and d=64 clouds, 0.75x on shifted 2-D
                       * clouds at 512 */
#endif

/* n x n problems whose masses are all equal (after compaction and rescaling) are
 * assignment problems: the transportation polytope is then n-times the Birkhoff
 * polytope, whose vertices are permutations.  Shortest augmenting paths (Dijkstra on
 * reduced costs with dual potentials, one row at a time, O(n^3) worst case) solve them
 * without the long runs of degenerate pivots the simplex makes on such problems.
 * The Dijkstra step is branch-free over all n columns (4-wide): finished columns
 * hold dist = -inf, so they are never updated and never picked again.
 * work: 6 n doubles, 4 n int32.  Writes the optimal column of each row to col4row. */
static FC_MULTIVERSION int lsap_solve(ptrdiff_t n, const double *C, ptrdiff_t ldc, int32_t *col4row,
                                      double *dwork, int32_t *iwork)
{
    double *u = dwork, *v = u + n, *dist = v + n, *fin = dist + n, *pred = fin + n, *busy = pred + n;
    int32_t *row4col = iwork, *rows_seen = iwork + n, *cols_seen = iwork + 2 * n;
#if FC_VECTOR_EXT
    const fc_v4d ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const fc_v4d pinf = {INFINITY, INFINITY, INFINITY, INFINITY};
#endif
    for (ptrdiff_t t = 0; t < n; t++) { u[t] = 0.0; v[t] = 0.0; busy[t] = 0.0; pred[t] = 0.0; }
    for (ptrdiff_t t = 0; t < n; t++) { row4col[t] = -1; col4row[t] = -1; }
    /* column reduction (as in Jonker-Volgenant): v_j = min_i C_ij keeps the duals
     * feasible with u = 0; column j goes to its cheapest row when that row is free */
    uint64_t bad = 0;  /* bit 63 set once an exponent field is all ones (inf or NaN) */
    for (ptrdiff_t j = 0; j < n; j++) v[j] = INFINITY;
    for (ptrdiff_t i = n - 1; i >= 0; i--) {
        const double *Ci = C + i * ldc;
        for (ptrdiff_t j = 0; j < n; j++) {
            uint64_t bits;
            memcpy(&bits, Ci + j, sizeof bits);
            bad |= (bits & 0x7ff0000000000000ull) + 0x0010000000000000ull;
            int lt = Ci[j] < v[j];
            v[j] = lt ? Ci[j] : v[j];
            pred[j] = lt ? (double)i : pred[j];
        }
    }
    if (bad >> 63) return FC_NON_FINITE;
    for (int32_t j = 0; j < (int32_t)n; j++) {
        int32_t i = (int32_t)pred[j];
        if (col4row[i] < 0) { col4row[i] = j; row4col[j] = i; busy[j] = INFINITY; }
    }
    for (int32_t r0 = 0; r0 < (int32_t)n; r0++) {
        if (col4row[r0] >= 0) continue;
        int32_t nrs = 0, ncs = 0, i = r0, sink = -1;
        for (ptrdiff_t t = 0; t < n; t++) dist[t] = INFINITY;
        double dmin = 0.0;
        while (sink < 0) {
            rows_seen[nrs++] = i;
            const double *Ci = C + (ptrdiff_t)i * ldc;
            double base = dmin - u[i], di = (double)i;
            ptrdiff_t j = 0;
#if FC_VECTOR_EXT
            fc_v4d vb = {base, base, base, base}, vi = {di, di, di, di}, lo4 = pinf, lf4 = pinf;
            fc_v4d jx = {0, 1, 2, 3}, at4 = {-1, -1, -1, -1}, af4 = at4;
            const fc_v4d four = {4, 4, 4, 4};
            for (; j + 4 <= n; j += 4, jx += four) {
                fc_v4d r = vb + v4_load(Ci + j) - v4_load(v + j), d = v4_load(dist + j), p = v4_load(pred + j);
                fc_v4l up = r < d;
                d = (fc_v4d)(((fc_v4l)r & up) | ((fc_v4l)d & ~up));
                p = (fc_v4d)(((fc_v4l)vi & up) | ((fc_v4l)p & ~up));
                memcpy(dist + j, &d, sizeof d);
                memcpy(pred + j, &p, sizeof p);
                fc_v4d df = d + v4_load(busy + j);  /* +inf on assigned columns */
                fc_v4l lt = (d < lo4) & (d > ninf), ltf = (df < lf4) & (d > ninf);
                lo4 = (fc_v4d)(((fc_v4l)d & lt) | ((fc_v4l)lo4 & ~lt));
                at4 = (fc_v4d)(((fc_v4l)jx & lt) | ((fc_v4l)at4 & ~lt));
                lf4 = (fc_v4d)(((fc_v4l)df & ltf) | ((fc_v4l)lf4 & ~ltf));
                af4 = (fc_v4d)(((fc_v4l)jx & ltf) | ((fc_v4l)af4 & ~ltf));
            }
#else
            double lo4[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, lf4[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
            double at4[4] = {-1, -1, -1, -1}, af4[4] = {-1, -1, -1, -1};
#endif
            for (; j < n; j++) {  /* tail columns, same rules (every column in the plain-C backend) */
                double r = base + Ci[j] - v[j], d = dist[j];
                int up = r < d;
                d = up ? r : d;
                pred[j] = up ? di : pred[j];
                dist[j] = d;
                double df = d + busy[j];
                int live = d > -INFINITY, lt = live & (d < lo4[0]), ltf = live & (df < lf4[0]);
                lo4[0] = lt ? d : lo4[0];
                at4[0] = lt ? (double)j : at4[0];
                lf4[0] = ltf ? df : lf4[0];
                af4[0] = ltf ? (double)j : af4[0];
            }
            /* lowest value, then lowest column; a free column if one ties (ends the search).
             * Branch-free: the winner changes unpredictably. */
            double lo = lo4[0] < lo4[1] ? lo4[0] : lo4[1], lo23 = lo4[2] < lo4[3] ? lo4[2] : lo4[3];
            double lf = lf4[0] < lf4[1] ? lf4[0] : lf4[1], lf23 = lf4[2] < lf4[3] ? lf4[2] : lf4[3];
            lo = lo < lo23 ? lo : lo23;
            lf = lf < lf23 ? lf : lf23;
            double atd = 1e300, afd = 1e300;
            for (int l = 0; l < 4; l++) {
                double x = lo4[l] == lo ? at4[l] : 1e300, y = lf4[l] == lf ? af4[l] : 1e300;
                atd = x < atd ? x : atd;
                afd = y < afd ? y : afd;
            }
            if (!(lo < INFINITY)) return FC_INTERNAL; /* cannot happen with finite costs */
            int32_t at = (int32_t)(lf == lo ? afd : atd);
            dmin = lo;
            fin[at] = lo;
            dist[at] = -INFINITY;
            cols_seen[ncs++] = at;
            if (row4col[at] < 0) sink = at;
            else i = row4col[at];
        }
        /* dual update keeps u_i + v_j <= C_ij, with equality on the assignment */
        u[r0] += dmin;
        for (int32_t t = 1; t < nrs; t++) {
            int32_t r = rows_seen[t];
            u[r] += dmin - fin[col4row[r]];
        }
        for (int32_t t = 0; t < ncs; t++) {
            int32_t j = cols_seen[t];
            v[j] -= dmin - fin[j];
        }
        /* augment along the alternating path ending at sink */
        busy[sink] = INFINITY;
        for (int32_t j = sink;;) {
            int32_t r = (int32_t)pred[j], prev = col4row[r];
            row4col[j] = r;
            col4row[r] = j;
            if (r == r0) break;
            j = prev;
        }
    }
    return FC_OK;
}

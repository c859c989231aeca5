/* Exact optimal transport (earth mover's distance) by the primal network simplex.
 *
 * The transportation problem
 *     min_G  sum_ij G_ij M_ij   s.t.  G >= 0,  G 1 = a,  G^T 1 = b
 * for n sources, m sinks and a dense, C-contiguous float64 cost matrix M (n, m).
 *
 * Solver (csrc/emd.c):
 *   - rows/columns with zero mass are removed before solving (their duals are filled in
 *     afterwards as the tightest dual-feasible values);
 *   - the initial basic feasible solution is a greedy "matrix minimum" allocation on the
 *     cheapest entries of each row and column (rounds on the still-unsatisfied rows and
 *     columns), a forest of positive flows; its components hang from an artificial root
 *     by zero-flow arcs pointing to the root (they can never carry flow), so the starting
 *     tree is strongly feasible with no big-M phase;
 *   - pricing: block search over a working set of arcs stored with their costs (the
 *     K cheapest of each row and column to start); when it holds no entering arc, one
 *     pass over M adds the most violated arcs of every row (and certifies optimality
 *     when there are none).  Problems whose optimum is not local (many arcs added per
 *     pass), and small problems, price whole rows of M instead (vectorised row minimum;
 *     blocks of 8 sqrt(n m) entries when n m <= 4096: fewer pivots, 66 -> 44 on 26 x 31
 *     WMD problems).  Small problems sort the greedy candidates as 64-bit keys (cost with
 *     its low 12 bits replaced by the index: any order gives a feasible start);
 *   - Cunningham's leaving-arc rule (last blocking arc from the apex), which keeps the
 *     tree strongly feasible, so degenerate pivots cannot cycle;
 *   - spanning tree stored as parent, subtree sizes (apex search) and a preorder thread
 *     with last-successor links (potential updates walk the smaller side of the cut);
 *     potentials are recomputed from the tree periodically and before optimality is
 *     declared.
 * Cost-only square problems whose (compacted, rescaled) masses are all equal, n <= 256
 * and no pivot limit, are assignment problems (the vertices of the transportation
 * polytope are then permutations) and are solved by shortest augmenting paths instead
 * (Jonker-Volgenant column reduction, then a branch-free 4-wide Dijkstra per free
 * row): no degenerate pivots.  Either way the cost is summed row by row (sum_i of the
 * row's flow * cost), so both solvers give the same bits on a unique optimum.
 * Masses: the caller checks that sum(a) and sum(b) agree to its tolerance; b is then
 * rescaled to a's mass here, and the last ulps of imbalance are left untransported.
 *
 * Everything is float64; nothing is printed.  Memory: O(n + m) for the tree, the
 * working set (about 9 (n + m) arcs plus those added by passes), and an (n', m') copy
 * of M only when zero-mass rows/columns were removed; never a dense plan unless asked.
 */
#ifndef FC_EMD_H
#define FC_EMD_H

#include <stddef.h>
#include <stdint.h>
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Solve one problem.
 *   a (n), b (m): nonnegative masses with equal sums (to rounding).
 *   M (n, m): finite costs, row stride ldm (>= m).
 *   G: NULL, or (n, m) C-contiguous output for the plan (overwritten, zeros off support).
 *   u (n), v (m): NULL, or outputs for dual potentials with u_i + v_j <= M_ij and
 *                 equality where G_ij > 0 (not centred).
 *   cost: output sum_ij G_ij M_ij.
 *   max_iter: pivot limit; <= 0 means no limit.
 *   n_iter: NULL or output pivot count.
 * Returns FC_OK, FC_MAX_ITER_REACHED (the plan is feasible but may be suboptimal),
 * FC_BAD_ARGUMENT, FC_OUT_OF_MEMORY or FC_INTERNAL. */
int fc_emd(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M, ptrdiff_t ldm,
           double *G, double *u, double *v, double *cost, long long max_iter, long long *n_iter);

/* One cost with the checks of the Python layer done in C (the fast path of emd2):
 * a / b NULL = uniform; BAD_ARGUMENT if a weight is negative or not finite, a total is
 * not positive or |sum a - sum b| > mass_rtol * max(sum a, sum b); NON_FINITE for
 * non-finite costs.  M is C-contiguous (n, m).  No iteration limit. */
int fc_emd2_checked(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M,
                    double mass_rtol, double *cost);

/* Sparse form of the plan: at most n + m - 1 nonzeros written to rows/cols/vals (each of
 * capacity n + m), their count to *nnz.  Same other arguments as fc_emd. */
int fc_emd_sparse(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M,
                  ptrdiff_t ldm, int64_t *rows, int64_t *cols, double *vals, ptrdiff_t *nnz,
                  double *u, double *v, double *cost, long long max_iter, long long *n_iter);

/* Many independent problems, costs only, threaded over problems (dynamic schedule).
 * Problem k: sizes ns[k], ms[k], pointers as[k], bs[k] (NULL = uniform), Ms[k]
 * (C-contiguous), checked as in fc_emd2_checked.  costs[k], status[k] (fc_status per
 * problem) and iters[k] (may be NULL) are outputs.  Returns FC_OK unless an argument is
 * invalid; per-problem failures are in status. */
int fc_emd2_batch(ptrdiff_t n_problems, const ptrdiff_t *ns, const ptrdiff_t *ms,
                  const double *const *as, const double *const *bs, const double *const *Ms,
                  double mass_rtol, double *costs, int *status, long long *iters, long long max_iter,
                  int n_threads);

/* Document distances between sets of word vectors (all float64, C-contiguous).
 * Documents are row blocks of one matrix: doc k of set A is rows offa[k] .. offa[k+1]-1 of
 * XA (dimension d), with weights wa[offa[k] .. offa[k+1]-1] (each document's weights sum
 * to 1).  metric 0 = WMD (Euclidean cost), 1 = WRD (rows of XA/XB must be unit vectors,
 * cost 1 - cosine, clamped to >= 0).
 * fc_doc_pairwise: out (na, nb) of exact distances.  status: first non-OK status met. */
int fc_doc_pairwise(int metric, ptrdiff_t d,
                    const double *XA, const double *wa, const int64_t *offa, ptrdiff_t na,
                    const double *XB, const double *wb, const int64_t *offb, ptrdiff_t nb,
                    double *out, int n_threads);

/* k nearest corpus documents of each query, exact, with pruning.
 * cent_q (nq, d) and cent_c (nc, d): the weighted centroids sum_i w_i x_i of each
 * document (WMD: their distance is a lower bound; WRD on unit vectors: 0.5 * ||.||^2 is).  If prune == 0 every pair is solved exactly.
 * Outputs: idx (nq, k) and dist (nq, k) sorted by (distance, index); n_exact (nq): the
 * number of exact solves per query; n_rwmd (nq): relaxed bounds evaluated. */
int fc_doc_knn(int metric, ptrdiff_t d,
               const double *XQ, const double *wq, const int64_t *offq, ptrdiff_t nq,
               const double *XC, const double *wc, const int64_t *offc, ptrdiff_t nc,
               const double *cent_q, const double *cent_c, ptrdiff_t k, int prune,
               int64_t *idx, double *dist, int64_t *n_exact, int64_t *n_rwmd, int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FC_EMD_H */

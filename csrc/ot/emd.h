/* Exact optimal transport (earth mover's distance) by the primal network simplex.
 *
 * The transportation problem
 *     min_G  sum_ij G_ij M_ij   s.t.  G >= 0,  G 1 = a,  G^T 1 = b
 * for n sources, m sinks and a dense, C-contiguous float64 cost matrix M (n, m).
 *
 * Solver (csrc/ot/emd.c, simplex.h, assignment.h; documents.c):
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
#include "core/fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One transportation problem: what fc_emd, fc_emd_sparse and fc_emd2_checked solve, and each
 * entry of an fc_emd2_batch. */
typedef struct fc_emd_problem {
    ptrdiff_t n, m;         /* sources, sinks */
    const double *a;        /* (n,) nonnegative masses; NULL = uniform (fc_emd2_checked, batches) */
    const double *b;        /* (m,) nonnegative masses with a's sum (to rounding); NULL as for a */
    const double *M;        /* (n, m) finite costs, row stride ldm */
    ptrdiff_t ldm;          /* >= m */
    long long max_iter;     /* pivot limit; <= 0 means no limit */
} fc_emd_problem;

/* What one solve writes.  The pointers may be NULL unless said otherwise; nnz, cost and n_iter
 * are written by the call.
 *   G (n, m): C-contiguous output for the plan (fc_emd; overwritten, zeros off support).
 *   rows, cols, vals: the sparse form of the plan (fc_emd_sparse, which needs them): at most
 *     n + m - 1 nonzeros written (each array of capacity n + m), their count to nnz.
 *   u (n), v (m): dual potentials with u_i + v_j <= M_ij and equality where G_ij > 0 (not
 *     centred) (fc_emd, fc_emd_sparse).
 *   cost: sum_ij G_ij M_ij.  n_iter: the pivot count. */
typedef struct fc_emd_out {
    double *G;
    int64_t *rows, *cols;
    double *vals;
    ptrdiff_t nnz;
    double *u, *v;
    double cost;
    long long n_iter;
} fc_emd_out;

/* Solve one problem: cost, n_iter, and G, u, v where not NULL.
 * Returns FC_OK, FC_MAX_ITER_REACHED (the plan is feasible but may be suboptimal),
 * FC_BAD_ARGUMENT, FC_OUT_OF_MEMORY or FC_INTERNAL. */
int fc_emd(const fc_emd_problem *p, fc_emd_out *out);

/* One cost (and n_iter) with the checks of the Python layer done in C (the fast path of emd2):
 * a / b NULL = uniform; BAD_ARGUMENT if a weight is negative or not finite, a total is
 * not positive or |sum a - sum b| > mass_rtol * max(sum a, sum b); NON_FINITE for
 * non-finite costs.  Otherwise the problem is read as by fc_emd (emd2's fast path: ldm = m,
 * max_iter = 0, no limit).  The rest of out is not written. */
int fc_emd2_checked(const fc_emd_problem *p, double mass_rtol, fc_emd_out *out);

/* Sparse form of the plan (out's rows, cols, vals and nnz), cost, n_iter, and u, v where not
 * NULL.  Returns as fc_emd. */
int fc_emd_sparse(const fc_emd_problem *p, fc_emd_out *out);

/* Many independent problems, costs only, threaded over problems (dynamic schedule). */
typedef struct fc_emd_batch {
    ptrdiff_t n_problems;
    const fc_emd_problem *problems; /* (n_problems,): each checked as in fc_emd2_checked */
    double mass_rtol;
    int n_threads;                  /* at most this many threads (>= 1) */
} fc_emd_batch;

/* costs (n_problems,), status (n_problems,) (fc_status per problem) and iters (n_problems,)
 * (may be NULL) are outputs.  Returns FC_OK unless an argument is invalid; per-problem
 * failures are in status. */
int fc_emd2_batch(const fc_emd_batch *p, double *costs, int *status, long long *iters);

/* Document distances between sets of word vectors (all float64, C-contiguous).
 * Documents are row blocks of one matrix: doc t of a set is rows off[t] .. off[t+1]-1 of X
 * (dimension d), with weights w[off[t] .. off[t+1]-1] (each document's weights sum to 1). */
typedef struct fc_doc_set {
    const double *X;        /* (off[count], d) word vectors */
    const double *w;        /* (off[count],) weights */
    const int64_t *off;     /* (count + 1,) row offsets of the documents */
    ptrdiff_t count;        /* number of documents */
    const double *cent;     /* (count, d) the weighted centroids sum_i w_i x_i of each document
                             * (read by fc_doc_knn when it prunes), or NULL */
} fc_doc_set;

/* The request of fc_doc_pairwise and fc_doc_knn.  metric 0 = WMD (Euclidean cost), 1 = WRD
 * (rows of the X must be unit vectors, cost 1 - cosine, clamped to >= 0). */
typedef struct fc_doc_problem {
    int metric;
    ptrdiff_t d;            /* dimension of the word vectors (>= 1) */
    fc_doc_set A, B;        /* fc_doc_pairwise: A x B; fc_doc_knn: the queries A, the corpus B */
    int n_threads;          /* at most this many threads (>= 1) */
} fc_doc_problem;

/* out (A.count, B.count) of exact distances.  Returns the first non-OK status met. */
int fc_doc_pairwise(const fc_doc_problem *p, double *out);

/* What fc_doc_knn writes, for nq = A.count queries: idx (nq, k) and dist (nq, k) sorted by
 * (distance, index); n_exact (nq): the number of exact solves per query; n_rwmd (nq): relaxed
 * bounds evaluated. */
typedef struct fc_doc_knn_out {
    int64_t *idx;
    double *dist;
    int64_t *n_exact, *n_rwmd;
} fc_doc_knn_out;

/* k nearest corpus documents (B) of each query (A), exact, with pruning: A.cent and B.cent
 * are the centroids (WMD: their distance is a lower bound; WRD on unit vectors:
 * 0.5 * ||.||^2 is).  If prune == 0 every pair is solved exactly (the centroids are not read). */
int fc_doc_knn(const fc_doc_problem *p, ptrdiff_t k, int prune, const fc_doc_knn_out *out);

#ifdef __cplusplus
}
#endif
#endif /* FC_EMD_H */

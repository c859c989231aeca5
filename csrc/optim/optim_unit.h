/* What optim_f32.c and optim_f64.c share: the headers and helpers around one instantiation of
 * optim_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
#include <stdlib.h>
#include "optim/optim_internal.h"
#include "core/fc_parallel.h"

/* The flat work list shared by both precisions: item t covers elements
 * [(t - first[k]) * FC_OPT_CHUNK, ...) of the array k with first[k] <= t < first[k+1]. */
#define FC_OPT_CHUNK 65536
#define FC_OPT_MIN_PER_THREAD 65536 /* elements; smaller steps use fewer threads */

typedef struct {
    ptrdiff_t n_items;
    ptrdiff_t total;
    ptrdiff_t *first; /* n_arrays + 1 entries */
} fc_worklist;

static int fc_worklist_make(fc_worklist *wl, const ptrdiff_t *sizes, ptrdiff_t n_arrays,
                            const void *const *ptrs)
{
    wl->first = NULL;
    if (n_arrays < 0 || (n_arrays > 0 && sizes == NULL)) return FC_BAD_ARGUMENT;
    wl->first = (ptrdiff_t *)malloc((size_t)(n_arrays + 1) * sizeof(ptrdiff_t));
    if (wl->first == NULL) return FC_OUT_OF_MEMORY;
    ptrdiff_t t = 0, total = 0;
    for (ptrdiff_t k = 0; k < n_arrays; ++k) {
        if (sizes[k] < 0 || (sizes[k] > 0 && ptrs != NULL && ptrs[k] == NULL)) {
            free(wl->first);
            wl->first = NULL;
            return FC_BAD_ARGUMENT;
        }
        wl->first[k] = t;
        t += (sizes[k] + FC_OPT_CHUNK - 1) / FC_OPT_CHUNK;
        total += sizes[k];
    }
    wl->first[n_arrays] = t;
    wl->n_items = t;
    wl->total = total;
    return FC_OK;
}

static void fc_worklist_free(fc_worklist *wl)
{
    free(wl->first);
    wl->first = NULL;
}

/* The array holding item t (0 <= t < n_items): the last k with first[k] <= t. */
static ptrdiff_t fc_worklist_find(const fc_worklist *wl, ptrdiff_t n_arrays, ptrdiff_t t)
{
    ptrdiff_t lo = 0, hi = n_arrays - 1;
    while (lo < hi) {
        ptrdiff_t mid = lo + (hi - lo + 1) / 2;
        if (wl->first[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int fc_worklist_threads(const fc_worklist *wl, int n_threads)
{
    int nt = fc_clamp_threads(n_threads, wl->total / FC_OPT_MIN_PER_THREAD + 1);
    return (ptrdiff_t)nt > wl->n_items ? (int)(wl->n_items > 0 ? wl->n_items : 1) : nt;
}

#include "core/fc_real.h"
#include "optim/optim_impl.h"

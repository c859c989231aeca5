/* Sinkhorn: log-domain and scaling iterations, plan and costs (sinkhorn.h), float64: the sinkhorn_*.h headers instantiated for one precision.
 * sinkhorn_f32.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 1
#include "ot/sinkhorn_unit.h"

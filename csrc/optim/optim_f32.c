/* Global norms and fused clip + SGD / Adam(W) steps (optim.h), float32: optim_impl.h instantiated for one precision.
 * optim_f64.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 0
#include "optim/optim_unit.h"
